"""The ``clv_model`` MLflow pyfunc: a feature table in, the scores table out.

Logged as models-from-code (``pyfunc_code.py``, no cloudpickle); its one artifact is the model
bundle (:mod:`clvflow.mlops.bundle`), verified when loaded. Requirements are pinned to the versions
installed here, clvflow included: load or serve it where clvflow is installed (``--env-manager
local`` in the project venv). The package source is deliberately not logged as ``code_paths``:
MLflow would put it first on ``sys.path`` and shadow the installed clvflow for the whole
process. Serving input: send JSON (``dataframe_split``) with ``customer_id`` as strings (a CSV
whose ids look numeric is refused by the signature: string ids, e.g. CDNOW's "00001") and
``params.as_of``, the date the features were built for (no default). Bad params and impossible
feature values (:func:`clvflow.features.build.check_feature_table`) get a short HTTP 400.

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
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR
from mlflow.pyfunc import PythonModel  # (mlflow.pyfunc is a lazy loader mypy cannot follow)

from clvflow.core.dates import to_day
from clvflow.features.build import check_feature_table
from clvflow.mlops.bundle import PYFUNC_ARTIFACT, load_bundle
from clvflow.scoring.scores import score_features
from clvflow.scoring.value import check_economics

log = logging.getLogger(__name__)

PYFUNC_NAME = "clv_model"
CODE_FILE = Path(__file__).with_name("pyfunc_code.py")
#: Distributions the pyfunc imports at load/predict time (pinned to installed versions).
REQUIRED_DISTRIBUTIONS = (
    "clvflow",
    "mlflow",
    "xgboost-cpu",
    "scikit-learn",
    "pandas",
    "numpy",
    "scipy",
    "pyarrow",
)
BOOSTER_REQUIREMENTS = ("mlflow", "xgboost-cpu", "numpy", "pandas", "scikit-learn")
EXAMPLE_ROWS = 5


def pinned(distributions: tuple[str, ...]) -> list[str]:
    """``name==version`` for each installed distribution."""
    return [f"{d}=={metadata.version(d)}" for d in distributions]


class ClvPyfunc(PythonModel):
    """Scores a feature table (``customer_id`` + FEATURE_COLUMNS) with a bundled ClvModel."""

    def load_context(self, context: Any) -> None:
        self.model, self.manifest = load_bundle(context.artifacts[PYFUNC_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores table (one row per input row, its ``as_of`` column the date given).

        params: ``as_of`` (required: the date the features were built for, YYYY-MM-DD),
        ``margin``, ``annual_discount_rate``.

        Raises:
            MlflowException: bad params or impossible feature values (HTTP 400), or an
                unexpected failure (HTTP 500, details in the server log); a short message,
                never a stack trace.
        """
        try:
            as_of, margin, rate = self._settings(params)
            features = model_input.copy()
            check_feature_table(features, "input")
            features["customer_id"] = features["customer_id"].astype("str")
        except ValueError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        try:
            return score_features(
                self.model, features, as_of, margin=margin, annual_discount_rate=rate
            )
        except Exception as exc:
            log.exception("clv_model failed to score %d rows", len(features))
            raise MlflowException(
                f"clv_model could not score the input ({type(exc).__name__}: {exc}); "
                "the server log has the details",
                error_code=INTERNAL_ERROR,
            ) from None

    def _settings(self, params: dict[str, Any] | None) -> tuple[pd.Timestamp, float, float]:
        """(as_of, margin, annual_discount_rate) from the request's params, checked."""
        settings = {**self.manifest.get("scoring_defaults", {}), **(params or {})}
        if not settings.get("as_of"):
            raise ValueError(
                'params: "as_of" is required: the date the features were built for '
                '(`clvflow features --as-of`), e.g. "params": {"as_of": "1998-07-01"}; '
                f"this model was trained with cutoff {self.manifest.get('cutoff')}"
            )
        as_of = to_day(settings["as_of"], "params: as_of")
        try:
            margin = float(settings.get("margin", 1.0))
            rate = float(settings.get("annual_discount_rate", 0.0))
        except (TypeError, ValueError):
            raise ValueError(
                "params: margin and annual_discount_rate must be numbers, got "
                f"{settings.get('margin')!r} and {settings.get('annual_discount_rate')!r}"
            ) from None
        check_economics(margin, rate)
        return as_of, margin, rate


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
    """Input, output and params schema; ``as_of`` has no default (every request says it)."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    model, manifest = load_bundle(bundle_dir)
    wrapper = ClvPyfunc()
    wrapper.model, wrapper.manifest = model, manifest
    output = wrapper.predict(None, example, params)
    with warnings.catch_warnings():  # the integer horizon_days output column is never missing
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        inferred = mlflow.models.infer_signature(example, output)
    specs = [ParamSpec("as_of", "string", None)]
    specs += [ParamSpec(k, "double", v) for k, v in params.items() if k != "as_of"]
    return ModelSignature(inferred.inputs, inferred.outputs, ParamSchema(specs))


def log_clv_model(
    bundle_dir: Path,
    features: pd.DataFrame,
    *,
    margin: float,
    annual_discount_rate: float,
) -> Any:
    """Log the ``clv_model`` pyfunc into the active run.

    Args:
        bundle_dir: a bundle folder.
        features: feature table as of the cutoff (a few rows become the input example, sent
            with ``as_of`` = the cutoff).
        margin, annual_discount_rate: the defaults of the predict params (``as_of`` has none).

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
        input_example=(example, {"as_of": params["as_of"]}),
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
