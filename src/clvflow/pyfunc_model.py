"""The ``clv_model`` MLflow pyfunc: a feature table in, the scores table out.

Logged as models-from-code (``clv_pyfunc_code.py``, no cloudpickle); its one artifact is the model
bundle (:mod:`clvflow.bundle`), verified when loaded. Requirements are pinned to the versions
installed here, clvflow included: load or serve it where clvflow is installed (``--env-manager
local`` in the project venv). The package source is deliberately not logged as ``code_paths``:
MLflow would put it first on ``sys.path`` and shadow the installed clvflow for the whole
process. Serving input: send JSON (``dataframe_split``) with ``customer_id`` as strings; a CSV
whose ids look numeric is refused by the signature (string ids, e.g. CDNOW's "00001").

The two boosters are also logged on their own (``churn``, ``spend``) for inspection; alone they
lack the BG/NBD starting margins, so predictions come from ``clv_model``.
"""

from __future__ import annotations

import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from clvflow.bundle import PYFUNC_ARTIFACT, load_bundle
from clvflow.scoring import score_features
from clvflow.timeutil import to_day

log = logging.getLogger(__name__)

PYFUNC_NAME = "clv_model"
CODE_FILE = Path(__file__).with_name("clv_pyfunc_code.py")
#: Distributions the pyfunc imports at load/predict time (pinned to installed versions).
REQUIRED_DISTRIBUTIONS = (
    "clvflow",
    "mlflow",
    "xgboost-cpu",
    "scikit-learn",
    "pandas",
    "numpy",
    "scipy",
    "duckdb",
    "pyarrow",
)
BOOSTER_REQUIREMENTS = ("mlflow", "xgboost-cpu", "numpy", "pandas", "scikit-learn")
EXAMPLE_ROWS = 5


def pinned(distributions: tuple[str, ...]) -> list[str]:
    """``name==version`` for each installed distribution."""
    return [f"{d}=={metadata.version(d)}" for d in distributions]


class ClvPyfunc(mlflow.pyfunc.PythonModel):
    """Scores a feature table (``customer_id`` + FEATURE_COLUMNS) with a bundled ClvModel."""

    def load_context(self, context: Any) -> None:
        self.model, self.manifest = load_bundle(context.artifacts[PYFUNC_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores table (ARCHITECTURE.md); params ``as_of`` (date the features were built for;
        default: the training cutoff), ``margin``, ``annual_discount_rate``."""
        settings = {**self.manifest.get("scoring_defaults", {}), **(params or {})}
        as_of = to_day(settings.get("as_of") or self.manifest["cutoff"], "as_of")
        features = model_input.copy()
        features["customer_id"] = features["customer_id"].astype("str")
        return score_features(
            self.model,
            features,
            as_of,
            margin=float(settings.get("margin", 1.0)),
            annual_discount_rate=float(settings.get("annual_discount_rate", 0.0)),
        )


def input_example(features: pd.DataFrame) -> pd.DataFrame:
    """A few complete rows (no NaN, so the JSON example is valid), ids included."""
    complete = features.dropna()
    rows = complete if len(complete) >= EXAMPLE_ROWS else features
    example = rows.head(EXAMPLE_ROWS).reset_index(drop=True)
    numeric = [c for c in example.columns if c != "customer_id"]
    example[numeric] = example[numeric].astype("float64")  # int columns are a schema trap
    example["customer_id"] = example["customer_id"].astype("str")
    return example


def _signature(bundle_dir: Path, example: pd.DataFrame, params: dict[str, Any]) -> Any:
    model, manifest = load_bundle(bundle_dir)
    wrapper = ClvPyfunc()
    wrapper.model, wrapper.manifest = model, manifest
    output = wrapper.predict(None, example, params)
    with warnings.catch_warnings():  # the integer horizon_days output column is never missing
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        return mlflow.models.infer_signature(example, output, params=params)


def log_clv_model(
    bundle_dir: Path,
    features: pd.DataFrame,
    *,
    margin: float,
    annual_discount_rate: float,
) -> Any:
    """Log the ``clv_model`` pyfunc into the active run.

    Args:
        bundle_dir: a bundle folder (its manifest holds the cutoff = default ``as_of``).
        features: feature table as of the cutoff (a few rows become the input example).
        margin, annual_discount_rate: the defaults of the predict params.

    Returns:
        ``mlflow.models.model.ModelInfo`` (``.model_uri`` for registration).
    """
    _, manifest = load_bundle(bundle_dir)
    params = {
        "as_of": str(manifest["cutoff"]),
        "margin": float(margin),
        "annual_discount_rate": float(annual_discount_rate),
    }
    example = input_example(features)
    return mlflow.pyfunc.log_model(
        name=PYFUNC_NAME,
        python_model=str(CODE_FILE),
        artifacts={PYFUNC_ARTIFACT: str(bundle_dir)},
        signature=_signature(bundle_dir, example, params),
        input_example=example,
        pip_requirements=pinned(REQUIRED_DISTRIBUTIONS),
    )


def log_boosters(model: Any) -> dict[str, str]:
    """Log the churn and spend boosters as XGBoost models ``churn`` and ``spend``.

    Returns:
        Booster name -> model URI.
    """
    import mlflow.xgboost
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ColSpec, Schema

    uris = {}
    for name in ("churn", "spend"):
        booster = getattr(model, f"{name}_booster_", None)
        if booster is None:
            raise ValueError(f"the model has no fitted {name} booster to log")
        columns = list(booster.feature_names or [])
        signature = ModelSignature(inputs=Schema([ColSpec("double", c) for c in columns]))
        info = mlflow.xgboost.log_model(
            booster,
            name=name,
            signature=signature,
            pip_requirements=pinned(BOOSTER_REQUIREMENTS),
            metadata={"note": "needs the BG/NBD base margin; predict with clv_model"},
        )
        uris[name] = info.model_uri
    return uris
