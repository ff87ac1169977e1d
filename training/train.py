"""MLproject entry point ``main``: ``clvflow train`` with the flags given (wiring only)."""

import sys

from clvflow.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
