"""Freed memory given back to the operating system between a training's steps."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A fresh process frees 200 MB of 64 KB blocks (under malloc's mmap threshold: they live in its
# heap) while the block allocated last stays alive above them, so malloc cannot shrink its heap
# by itself: the freed memory stays resident until it is released.
_SCRIPT = """
from clvflow.core.memory import release_free_memory

def rss_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))

blocks = [bytearray(64 * 1024) for _ in range(3200)]
last = blocks[-1]
del blocks
held = rss_kb()
release_free_memory()
print(held, rss_kb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc, /proc")
def test_freed_heap_memory_goes_back_to_the_system():
    """Issue 11 item 4: memory freed inside malloc's heap, which malloc keeps resident on its own
    (a live block above it), leaves the process when ``release_free_memory`` runs between steps."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True
    ).stdout
    held, after = (int(v) for v in out.split())
    assert held - after > 150_000  # kB: most of the 200 MB freed


# A fresh process frees a 20 MB array: with clvflow's malloc settings the block came from the
# heap and stays there for the next temporary; with glibc's defaults (128 KB mmap threshold at
# start) it was mapped on its own and goes back at once.
_KEPT = """
import clvflow, numpy as np
from clvflow.core.memory import release_free_memory

def rss_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

base = rss_mb()
block = np.ones(20 << 17)
del block
kept = rss_mb() - base
release_free_memory()
print(round(kept), round(rss_mb() - base))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc, /proc")
@pytest.mark.parametrize(("env", "kept"), [({}, 20), ({"CLVFLOW_MALLOC_DEFAULTS": "1"}, 0)])
def test_large_temporaries_are_kept_for_reuse_unless_the_defaults_are_asked_for(env, kept):
    """Issue 11: importing clvflow lets malloc keep freed blocks of up to 32 MB for reuse
    (NumPy's per-step temporaries stop costing fresh pages each time);
    ``release_free_memory`` still gives them back; ``CLVFLOW_MALLOC_DEFAULTS`` keeps glibc's
    own settings."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    env.pop("GLIBC_TUNABLES", None)
    out = subprocess.run(
        [sys.executable, "-c", _KEPT], capture_output=True, text=True, check=True, env=env
    ).stdout.split()
    assert [int(v) for v in out] == [kept, 0]
