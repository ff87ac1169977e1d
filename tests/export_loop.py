"""Run by tests/data/test_outputs.py as a separate process: export the bundle SOURCE to TARGET over
and over (printing a line after each) until killed.

Usage: python -m tests.export_loop SOURCE TARGET
"""

from __future__ import annotations

import sys
from pathlib import Path

from clvflow.mlops.bundle import export_bundle

if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    n = 0
    while True:
        n += 1
        export_bundle(source, target, mlflow_run_id=f"r{n}")
        print(n, flush=True)
