"""clvflow: predictive customer lifetime value with XGBoost, honest backtests and MLflow.

The front door (:mod:`clvflow.api`; loaded on first use, so ``import clvflow`` and the CLI stay
quick)::

    tx = clvflow.load_transactions(df, customer="CustomerID", timestamp="InvoiceDate", amount="Revenue")
    model = clvflow.ClvModel(horizon_days=90).fit(tx)
    scores = model.score(tx)

``clvflow.ClvModel`` fits from a transactions table as ``clvflow train`` does; it is not
``clvflow.models.clv.ClvModel`` (the boosters on stacked snapshots, which it holds as ``model_``).
"""

import os

# OpenMP threads (XGBoost's) spin-wait for work by default: on a busy 2-core machine that made
# the same boosting call up to 200x slower. libgomp reads this once, when it is loaded, so it
# must be set before xgboost is first imported; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import sys  # (builtin: no import cost)


def _keep_freed_blocks() -> None:
    """Let glibc's malloc keep freed blocks of up to 32 MB (its most) and up to 64 MB free at
    a heap's top for reuse, instead of mapping fresh pages for each large temporary and
    unmapping them at each free (its defaults once a thread frees a block that big). NumPy's
    per-step temporaries (a few MB each at a million customers) then reuse memory: the
    bootstrap of 1M customers took 7.1 s instead of 10.1 s on one thread, with 55 MB more
    peak memory. ``clvflow.core.memory.release_free_memory`` still returns what is free
    between the big steps. Not done on other C libraries, or when the user set malloc's
    parameters (``GLIBC_TUNABLES``, ``MALLOC_*``) or ``CLVFLOW_MALLOC_DEFAULTS``."""
    if not sys.platform.startswith("linux") or "CLVFLOW_MALLOC_DEFAULTS" in os.environ:
        return
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
        name.startswith("MALLOC_") for name in os.environ
    ):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # (malloc.h)
    mallopt(m_trim_threshold, 64 << 20)
    mallopt(m_mmap_threshold, 32 << 20)


_keep_freed_blocks()

# Names for the type checker only: neither `types` nor `typing` is loaded at run time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

__version__ = "0.1.0"

#: Front-door name -> module that defines it (imported on first access).
_EXPORTS = {
    "ClvModel": "clvflow.api",
    "InputError": "clvflow.core.errors",
    "backtest": "clvflow.api",
    "load_cdnow": "clvflow.data.ingest",
    "load_model": "clvflow.api",
    "load_transactions": "clvflow.api",
    "simulate": "clvflow.data.simulate",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> "Any":
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clvflow' has no attribute {name!r}")
    value = getattr(_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def _module(name: str) -> "ModuleType":
    """The submodule ``name``, imported (``importlib`` itself would cost ``import clvflow`` time)."""
    __import__(name)
    return sys.modules[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
