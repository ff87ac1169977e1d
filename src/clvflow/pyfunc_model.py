"""The pyfunc's import path before the package had stages: ``clv_model`` versions logged then
run ``from clvflow.pyfunc_model import ClvPyfunc`` when MLflow loads them, so it stays."""

from clvflow.mlops.pyfunc import ClvPyfunc

__all__ = ["ClvPyfunc"]
