"""Progress of long steps (snapshots, BTYD fits, boosting rounds, bootstrap resamples).

On a terminal a line on stderr that updates in place; otherwise (a log file, CI, `mlflow run`
output) log lines: at least every ``LOG_EVERY_S`` seconds while the step runs, and when it ends.
Only the main thread draws the line in place: a step on another thread (``clvflow train``
builds the refit's inputs beside the backtest's bootstrap) logs lines, so two bars never
overwrite each other.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import xgboost as xgb

from clvflow.core.cores import abandoned

log = logging.getLogger("clvflow.core.progress")

#: Without a terminal, a progress log line at least this often during a step.
LOG_EVERY_S = 30.0
T = TypeVar("T")


class Progress:
    """Counts ``total`` units of work named ``what``; ``step()`` after each one."""

    def __init__(self, what: str, total: int, *, every_s: float = LOG_EVERY_S) -> None:
        self.what, self.total, self.done = what, total, 0
        self.every_s = every_s
        self.tty = sys.stderr.isatty() and threading.current_thread() is threading.main_thread()
        self.start = self.last = time.perf_counter()

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty:
            sys.stderr.write(f"\r{self.what}: {self.done}/{self.total} ({now - self.start:.0f} s)")
            sys.stderr.flush()
        elif now - self.last >= self.every_s and self.done < self.total:
            log.info("%s: %d/%d (%.0f s)", self.what, self.done, self.total, now - self.start)
            self.last = now

    def close(self) -> None:
        elapsed = time.perf_counter() - self.start
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            log.info("%s: %d/%d done (%.1f s)", self.what, self.done, self.total, elapsed)


def track(items: Iterable[T], what: str, total: int) -> Iterator[T]:
    """Yield ``items`` while showing their progress (``total`` of them)."""
    bar = Progress(what, total)
    try:
        for item in items:
            yield item
            bar.step()
    finally:
        bar.close()


class BoostingProgress(xgb.callback.TrainingCallback):
    """An XGBoost callback: boosting rounds as :class:`Progress` (at most ``rounds``)."""

    def __init__(self, what: str, rounds: int) -> None:
        super().__init__()
        self.what, self.rounds = what, rounds
        self.bar: Progress | None = None

    def before_training(self, model: Any) -> Any:
        self.bar = Progress(self.what, self.rounds)
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        assert self.bar is not None, "XGBoost calls before_training first"
        self.bar.step()
        # (True stops the boosting: nobody will read the result of abandoned work)
        return abandoned()

    def after_training(self, model: Any) -> Any:
        assert self.bar is not None, "XGBoost calls before_training first"
        self.bar.close()
        return model
