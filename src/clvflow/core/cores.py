"""How many CPU cores this process may use (its affinity mask, not the machine's count)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from contextvars import ContextVar
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """Cores the process may run on: the scheduler affinity where the OS has one (containers and
    ``taskset`` narrow it), else the machine's count; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def one_blas_thread() -> AbstractContextManager:
    """A context in which BLAS (NumPy's dot products) runs on one thread: for loops of many
    vector-sized dot products (bootstrap resamples, small optimiser steps). OpenBLAS wakes its
    threads for each call over a few thousand elements and then spins waiting for more work:
    on the shared 2-core machine the bootstrap used 4x the CPU it uses on one thread. One
    thread also adds up in the same order on every machine (same draws, same sums)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def map_in_order(
    fn: Callable[[T], R],
    items: Iterable[T],
    threads: int | None = None,
    *,
    in_flight: int | None = None,
) -> Iterator[R]:
    """``map(fn, items)`` on ``threads`` threads (default: :func:`available_cores`), results in
    the order of ``items``. ``items`` is read in this thread, lazily, so a generator of random
    draws gives the same draws as a plain loop; at most ``in_flight`` items (default two per
    thread) are computed or waiting to be read (a draw of a million customers is megabytes, a
    snapshot's rows hundreds). One thread: the plain loop, each result computed when it is
    read. For work that releases the GIL (NumPy over large arrays): the results are those of
    the plain loop, whatever the threads."""
    threads = available_cores() if threads is None else max(int(threads), 1)
    if threads == 1:
        yield from map(fn, items)
        return
    limit = 2 * threads if in_flight is None else max(int(in_flight), 1)
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # (an error or an abandoned loop: nothing left running behind it)
            for future in pending:
                future.cancel()


class _Later(Future):
    """A task's future that runs the task when its result is first asked for, on the thread
    that asks."""

    def __init__(self, call: Callable[[], object]) -> None:
        super().__init__()
        self._call: Callable[[], object] | None = call

    def result(self, timeout: float | None = None) -> Any:
        call, self._call = self._call, None
        if call is not None:
            try:
                self.set_result(call())
            except BaseException as err:  # (given to whoever reads the result, as a thread would)
                self.set_exception(err)
        return super().result(timeout)


class _InLine(Executor):
    """An executor whose tasks run on the calling thread when their results are first asked
    for (not when submitted: the steps before that keep their order)."""

    def submit(self, fn: Callable[..., R], /, *args: object, **kwargs: object) -> Future[R]:
        return _Later(partial(fn, *args, **kwargs))


#: Set on a :func:`beside` thread to its executor's "abandoned" event.
_ABANDONED: ContextVar[threading.Event | None] = ContextVar("clvflow_abandoned", default=None)


def abandoned() -> bool:
    """Whether the work running on this thread was abandoned: it runs for a :func:`beside`
    block that was left on an error, so nobody will read its result. Long loops (the boosting
    rounds: :class:`clvflow.core.progress.BoostingProgress`) stop early then."""
    event = _ABANDONED.get()
    return event is not None and event.is_set()


class _Beside(ThreadPoolExecutor):
    """One worker thread; leaving its ``with`` block on an error does not wait for the task
    running there (the error is reported at once; the task is told it is :func:`abandoned`,
    so that its boosting stops at the next round, and ends on its own) and drops those not
    started."""

    def __init__(self) -> None:
        super().__init__(1, thread_name_prefix="clvflow-beside")
        self._abandoned = threading.Event()

    def submit(self, fn: Callable[..., R], /, *args: object, **kwargs: object) -> Future[R]:
        return super().submit(self._run, partial(fn, *args, **kwargs))

    def _run(self, task: Callable[[], R]) -> R:
        _ABANDONED.set(self._abandoned)  # (this executor's one thread: for all its tasks)
        return task()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if exc_type is None:
            return super().__exit__(exc_type, exc, tb)
        self._abandoned.set()
        self.shutdown(wait=False, cancel_futures=True)
        return None


def beside(threads: int) -> Executor:
    """An executor for one task run beside the calling thread's work: a second thread when
    ``threads`` > 1 (an error in the calling thread's work leaves at once, without waiting for
    the task), else the task runs on the calling thread when its result is first asked for
    (one core: no overlap, and the steps before that keep their order)."""
    if threads > 1:
        return _Beside()
    return _InLine()
