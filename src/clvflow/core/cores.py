"""How many CPU cores this process may use (its affinity mask, not the machine's count)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores the process may run on: the scheduler affinity where the OS has one (containers and
    ``taskset`` narrow it), else the machine's count; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)
