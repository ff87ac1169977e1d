"""How many CPU cores this process may use (its affinity mask, not the machine's count)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager


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
