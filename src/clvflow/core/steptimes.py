"""Where a run spends its time: wall and CPU seconds per kind of step (``make bench-train``).

Long steps are wrapped in :func:`timed` (or decorated with :func:`timed_step`) under a kind such
as ``"btyd fits"`` or ``"xgboost"``. Times are exclusive: while a nested step runs, the step
around it is paused, so on one thread the kinds add up to at most the run's total. CPU is the
process's (every thread). Steps on other threads are timed the same way, each thread with its
own nesting: while two threads run steps at once, both count the time (and the CPU of both), so
the kinds can then add up to more than the run's total. Recording costs two clock reads per
step; :func:`reset` starts a new tally and :func:`totals` reads it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: kind -> [wall seconds, CPU seconds, calls]
_totals: dict[str, list[float]] = {}
_lock = threading.Lock()
#: Per thread, the kinds being timed there, innermost last, each with the clocks at its (re)start.
_local = threading.local()


def _stack() -> list[tuple[str, float, float]]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _add(kind: str, wall: float, cpu: float, calls: int = 0) -> None:
    with _lock:
        row = _totals.setdefault(kind, [0.0, 0.0, 0])
        row[0] += wall
        row[1] += cpu
        row[2] += calls


@contextmanager
def timed(kind: str) -> Iterator[None]:
    """Count the time inside the block to ``kind`` (minus any nested :func:`timed` block)."""
    stack = _stack()
    wall, cpu = _clocks()
    if stack:  # pause the enclosing step
        outer, outer_wall, outer_cpu = stack[-1]
        _add(outer, wall - outer_wall, cpu - outer_cpu)
    stack.append((kind, wall, cpu))
    try:
        yield
    finally:
        end_wall, end_cpu = _clocks()
        _, start_wall, start_cpu = stack.pop()
        _add(kind, end_wall - start_wall, end_cpu - start_cpu, 1)
        if stack:  # resume it
            outer, _, _ = stack[-1]
            stack[-1] = (outer, end_wall, end_cpu)


def timed_step(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator form of :func:`timed`."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with timed(kind):
                return func(*args, **kwargs)

        return wrapper

    return decorate


def reset() -> None:
    """Forget the times recorded so far."""
    with _lock:
        _totals.clear()


def totals() -> dict[str, dict[str, float]]:
    """``{kind: {"wall": s, "cpu": s, "calls": n}}`` recorded since :func:`reset`."""
    with _lock:
        return {k: {"wall": w, "cpu": c, "calls": int(n)} for k, (w, c, n) in _totals.items()}
