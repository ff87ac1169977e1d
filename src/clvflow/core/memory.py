"""Give memory that is freed but kept by the allocators back to the operating system.

A training at a million customers allocates and frees GBs in each step (the snapshots'
features, the stacked matrix, the boosters' matrices, the judgement's predictions). The
allocators keep what is freed for reuse: glibc's malloc the blocks under its mmap threshold
(which it raises to up to 32 MB as large blocks are freed) in its heaps, one per thread that
allocated, and Arrow's pool the text columns. Within a step that is what makes small
temporaries cheap; across steps it adds to the next step's peak what the last step left free.
:func:`release_free_memory`, called between the big steps, asks both to return it. No data is
touched (only unused pages go), so results cannot change.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

import pyarrow as pa


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None on other C libraries: nothing to call)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the free memory held by malloc (all its heaps) and by Arrow's default pool to the
    operating system; a no-op where neither can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    pa.default_memory_pool().release_unused()
