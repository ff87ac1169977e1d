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
