"""Publishing a trained model: the promotion verdict, the model card, registration, the bundle."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvflow.core.steptimes import timed_step
from clvflow.mlops.run_log import log_feature_importance, log_long_run, log_shap_importance
from clvflow.mlops.settings import JobSettings
from clvflow.models.clv import ClvModel, Selection
from clvflow.models.tables import (
    evaluation_table,
    format_evaluation_table,
)
from clvflow.models.training import BASELINE_PREFIXES


def promotion_verdict(selection: Selection) -> tuple[bool, str]:
    """Whether a trained model may become champion, and why not: it needs an internal backtest,
    with BG/NBD in it, where the exported method does not lose to BG/NBD on gini or ROC AUC."""
    result = selection.backtest
    if result is None:
        return False, f"no internal backtest ({selection.reason})"
    m = result.metrics
    bg = BASELINE_PREFIXES["bgnbd"]
    if f"{bg}spend_gini_norm" not in m:
        return False, "BG/NBD x Gamma-Gamma could not be fitted in the internal backtest"
    gini = m["spend_gini_norm"] - m[f"{bg}spend_gini_norm"]
    auc = m["churn_roc_auc"] - m[f"{bg}churn_roc_auc"]
    if gini < 0 or auc < 0:
        return False, (
            f"loses to BG/NBD x Gamma-Gamma in the internal backtest (gini {gini:+.4f}, "
            f"ROC AUC {auc:+.4f})"
        )
    return True, ""


def model_card(settings: JobSettings, cutoff: pd.Timestamp, selection: Selection) -> dict:
    """What the report shows about the model (stored in the bundle manifest): data, cutoff,
    exported method and why, and the internal backtest's table (or why there is none)."""
    card: dict[str, Any] = {
        "data": settings.data_name,
        "cutoff": cutoff.date().isoformat(),
        "horizon_days": settings.horizon_days,
        "method": selection.blend.describe(),
        "reason": selection.blend.reason,
    }
    if selection.backtest is None:
        card["no_backtest"] = selection.reason
        return card
    start = cutoff - pd.Timedelta(days=settings.horizon_days)
    table = evaluation_table(selection.backtest.metrics).reset_index()
    card["backtest"] = {
        "window": [start.date().isoformat(), cutoff.date().isoformat()],
        "table": json.loads(table.to_json(orient="records")),
    }
    return card


def registry_description(
    settings: JobSettings,
    cutoff: pd.Timestamp,
    selection: Selection,
    metrics: dict[str, float],
    why_not: str,
) -> str:
    """The registry version's description: data, cutoff, horizon, method, backtest figures."""
    lines = [
        f"Trained on {settings.data_name} before {cutoff.date()}, horizon {settings.horizon_days} "
        f"days. Exported method: {selection.blend.describe()}.",
    ]
    if selection.backtest is None:
        lines.append(f"Not backtested: {selection.reason}. Registered as candidate only.")
    else:
        start = (cutoff - pd.Timedelta(days=settings.horizon_days)).date()
        lines.append(f"Internal backtest on [{start}, {cutoff.date()}):")
        lines.append(format_evaluation_table(evaluation_table(selection.backtest.metrics)))
        lines.append(f"Chosen because: {selection.blend.reason}.")
    if why_not:
        lines.append(f"Not eligible for champion: {why_not}.")
    return "\n\n".join(lines)


def level_metrics(model: ClvModel) -> dict[str, float]:
    """The fitted level constants (and the same-season correction, when one was used)."""
    level = model.level_
    season = level.get("season") or {}
    return {
        "level_churn_logit_shift": level["churn_logit_shift"],
        "level_spend_factor": level["spend_factor"],
        "level_season_churn_shift": season.get("churn_shift", np.nan),
        "level_season_spend_ratio": season.get("spend_ratio", np.nan),
    }


def log_final_model_facts(model: ClvModel, features: pd.DataFrame, n_transactions: int) -> None:
    from clvflow.mlops import tracking

    # where n_trees_churn / n_trees_spend came from (clvflow.models.clv.TREES_*)
    tracking.log_params_once({"n_trees_source": model.n_trees_source_})
    tracking.log_metrics_finite(
        {
            "final_n_training_rows": getattr(model, "n_training_rows_", np.nan),
            "final_n_customers": len(features),
            "n_transactions": n_transactions,
            "n_trees_churn": model.n_trees_["churn"],
            "n_trees_spend": model.n_trees_["spend"],
            **level_metrics(model),
        }
    )
    log_feature_importance(model)
    log_shap_importance(model, features)
    log_long_run(model)


@timed_step("i/o and logging")
def publish(
    model: ClvModel,
    features: pd.DataFrame,
    settings: JobSettings,
    cutoff: pd.Timestamp,
    sha: str,
    run_id: str,
    export_dir: Path,
    *,
    name: str,
    score: float,
    eligible: bool,
    why_not: str,
    description: str,
) -> tuple[Any, str, Path]:
    """Log the pyfunc and boosters, register (promoting on ``score`` when ``eligible``), export
    the bundle."""
    import mlflow

    from clvflow.mlops import bundle, pyfunc, tracking

    manifest = bundle.build_manifest(
        model,
        reference_profile=reference_profile(model, features),
        cutoff=cutoff.date().isoformat(),
        training_data_sha256=sha,
        data_source=settings.flag_params.get("transactions", settings.data_name),
        data_name=settings.data_name,
        exported_method=model.blend_.to_dict(),
        model_card=model_card(settings, cutoff, model.selection_),
        mlflow_run_id=run_id,
        scoring_defaults={
            "margin": settings.margin,
            "annual_discount_rate": settings.annual_discount_rate,
        },
    )
    with tempfile.TemporaryDirectory(prefix="clvflow-bundle-") as tmp:
        staged = bundle.write_bundle_files(model, Path(tmp) / bundle.PYFUNC_ARTIFACT, manifest)
        info = pyfunc.log_clv_model(
            staged,
            features,
            margin=settings.margin,
            annual_discount_rate=settings.annual_discount_rate,
        )
        pyfunc.log_boosters(model)
        reg = tracking.register_candidate(
            info.model_uri,
            name,
            float(score),
            eligible=eligible,
            why_not=why_not,
            description=description,
            tags={
                "data_name": settings.data_name,
                "horizon_days": str(settings.horizon_days),
                "cutoff": cutoff.date().isoformat(),
                "exported_method": model.blend_.method,
            },
        )
        log_registration(reg)
        bundle_dir = bundle.export_bundle(
            staged, export_dir, registered_model={"name": reg.name, "version": reg.version}
        )
    mlflow.set_tag("bundle_dir", str(bundle_dir))
    return reg, info.model_uri, bundle_dir


def reference_profile(model: ClvModel, features: pd.DataFrame) -> dict[str, dict]:
    """The training population (features and predictions at the cutoff) for drift checks."""
    from clvflow.scoring.drift import PREDICTION_PROFILE_COLUMNS, reference_profile

    pred = model.predict(features)[PREDICTION_PROFILE_COLUMNS]
    table = pd.concat([features.reset_index(drop=True), pred.reset_index(drop=True)], axis=1)
    return reference_profile(table, [*model.feature_columns_, *PREDICTION_PROFILE_COLUMNS])


def log_registration(reg: Any) -> None:
    import mlflow

    from clvflow.mlops import tracking

    mlflow.log_metric("promoted", float(reg.promoted))
    tags = {
        "registered_model": reg.name,
        "registered_version": reg.version,
        "promoted": str(reg.promoted).lower(),
        "champion_version": reg.version if reg.promoted else str(reg.previous_champion),
        "champion_decision": reg.decision,
    }
    if reg.previous_score is not None:
        tags["previous_champion_" + tracking.PROMOTION_METRIC] = f"{reg.previous_score:.6f}"
    mlflow.set_tags(tags)
