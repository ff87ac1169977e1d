"""MLproject entry point ``backtest``: ``clvflow backtest`` with the flags given (wiring only)."""

import sys

from clvflow.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["backtest", *sys.argv[1:]]))
