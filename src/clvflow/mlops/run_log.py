"""What a job records in its MLflow run: params, backtest metrics and tables, inputs, plots."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pandas as pd

from clvflow.core.steptimes import timed_step
from clvflow.data.ingest import DataQualityReport
from clvflow.evaluation.metrics import (
    BOOTSTRAP_METRICS,
    bootstrap_draws,
    decile_table,
    intervals_from_draws,
    prediction_arrays,
)
from clvflow.mlops.settings import N_RESAMPLES, JobSettings
from clvflow.models.clv import BacktestResult, ClvModel, Selection
from clvflow.models.lifetime import LIFETIME_FORMULA, lifetime_discount_rate
from clvflow.models.tables import (
    METHODS,
    PREDICTION_KEYS,
    evaluation_table,
    interval_metrics,
    snapshot_table,
)
from clvflow.models.training import BASELINE_PREFIXES


def param_values(settings: JobSettings, **resolved: Any) -> dict[str, Any]:
    """Every setting, model hyperparameter and resolved value, by name."""
    model_params = asdict(settings.params)
    model_params.pop("seed")
    return {
        **settings.flag_params,
        "horizon_days": settings.horizon_days,
        "seed": settings.params.seed,
        "n_snapshots": settings.snapshots.n_snapshots,
        "snapshot_spacing_days": settings.snapshots.spacing_days,
        "margin": settings.margin,
        "annual_discount_rate": settings.annual_discount_rate,
        "lifetime_discount_rate": lifetime_discount_rate(settings.annual_discount_rate),
        **model_params,
        "engine": settings.engine,
        **settings.engine_params,
        **resolved,
    }


def _aligned(result: BacktestResult, key: str) -> pd.DataFrame:
    """Actuals with one method's predictions (same customers, the actuals' order)."""
    p_active, expected_spend = prediction_arrays(result.actuals, result.predictions[key])
    return result.actuals.assign(p_active=p_active, expected_spend=expected_spend)


@timed_step("bootstrap")
def backtest_intervals(
    result: BacktestResult, n_resamples: int = N_RESAMPLES
) -> tuple[pd.DataFrame, tuple[dict, pd.DataFrame] | None]:
    """95% paired-bootstrap intervals (over customers) of the model's and BG/NBD's headline
    metrics and of the model's gain over BG/NBD (:func:`clvflow.evaluation.metrics.paired_bootstrap`).
    Methods are named ``model``, ``bgnbd`` and ``model - bgnbd`` (the model alone when BG/NBD
    could not be fitted).

    Returns:
        (intervals, gain): gain is (estimate per metric, one row per resample) of model minus
        BG/NBD, for :func:`clvflow.evaluation.metrics.mean_gain_intervals`; None without BG/NBD.
    """
    keys: list[str] = [k for k in ("model", "bgnbd") if k in result.predictions]
    preds = {key: result.predictions[key] for key in keys}
    threads = result.model.params.n_jobs
    # (the judge's metrics of all customers: the point estimates, where they are the same)
    known = {}
    for key in keys:
        prefix = BASELINE_PREFIXES.get(key, "")
        known[key] = {
            m: result.metrics[prefix + m] for m in BOOTSTRAP_METRICS if prefix + m in result.metrics
        }
    estimates, draws = bootstrap_draws(
        result.actuals, preds, n_resamples=n_resamples, threads=threads, known=known
    )
    intervals = intervals_from_draws(estimates, draws, reference=keys[-1])
    if "bgnbd" not in preds:
        return intervals, None
    gain = {k: estimates["model"][k] - estimates["bgnbd"][k] for k in estimates["model"]}
    return intervals, (gain, draws["model"] - draws["bgnbd"])


@timed_step("i/o and logging")
def log_backtest(result: BacktestResult, intervals: pd.DataFrame) -> dict[str, float]:
    """Log a backtest's metrics, bootstrap intervals, counts, evaluation and decile tables and
    plots.

    Returns:
        The metrics logged (backtest metrics + intervals + counts + decile MAPEs).
    """
    from clvflow.evaluation import plots
    from clvflow.mlops import tracking

    aligned = {
        method: _aligned(result, key)
        for method, key in PREDICTION_KEYS.items()
        if key in result.predictions
    }
    actual = result.actuals["spend"].to_numpy()
    deciles = []
    metrics = dict(result.metrics)
    for method, frame in aligned.items():
        table = decile_table(frame["spend"], frame["expected_spend"])
        metrics[f"{METHODS[method]}spend_decile_mape"] = table.attrs["mape"]
        deciles.append(table.reset_index().assign(method=method))
        if method == "model":
            tracking.log_figure(plots.decile_figure(table), "plots/decile_table.png")
    metrics.update(
        n_customers_scored=len(result.actuals),
        n_active_in_window=int(result.actuals["active"].sum()),
        window_active_share=float(result.actuals["active"].mean()),
        window_spend=float(actual.sum()),
        n_training_rows=result.n_training_rows,
    )
    metrics.update(interval_metrics(intervals))
    tracking.log_metrics_finite(metrics)
    tracking.log_table(intervals, "tables/bootstrap_intervals")
    tracking.log_table(pd.concat(deciles, ignore_index=True), "tables/decile_table")
    table = evaluation_table(result.metrics)
    tracking.log_table(table.reset_index(), "tables/evaluation_table")
    preds = {m: f["expected_spend"].to_numpy() for m, f in aligned.items()}
    probs = {m: f["p_active"].to_numpy() for m, f in aligned.items()}
    tracking.log_figure(plots.gain_curve_figure(actual, preds), "plots/gain_curve.png")
    tracking.log_figure(
        plots.reliability_figure(result.actuals["active"].to_numpy(), probs),
        "plots/reliability_curve.png",
    )
    return metrics


@timed_step("i/o and logging")
def log_feature_importance(model: ClvModel) -> None:
    """One PNG per booster: total gain per model input."""
    from clvflow.evaluation import plots
    from clvflow.mlops import tracking

    for name, gain in model.feature_importance().items():
        fig = plots.feature_importance_figure(
            gain, f"{name} booster: total gain per input", xlabel="Total gain (model units)"
        )
        tracking.log_figure(fig, f"plots/feature_importance_{name}.png")


def log_shap_importance(model: ClvModel, features: pd.DataFrame) -> None:
    """The global picture of the per-customer reasons: mean |TreeSHAP contribution| per input
    and booster on the cutoff population (:func:`clvflow.scoring.reasons.mean_abs_contributions`),
    as ``tables/shap_importance.csv|json`` and one bar plot per booster."""
    from clvflow.evaluation import plots
    from clvflow.mlops import tracking
    from clvflow.scoring.reasons import mean_abs_contributions

    table = mean_abs_contributions(model, features, seed=model.params.seed)
    tracking.log_table(table, "tables/shap_importance")
    units = {"churn": "log-odds of P(active)", "spend": "log E[spend | active]"}
    for name, unit in units.items():
        fig = plots.feature_importance_figure(
            table.set_index("feature")[f"{name}_mean_abs_shap"],
            f"{name} booster: mean |SHAP contribution| per input ({table.attrs['rows']} customers)",
            xlabel=f"Mean |contribution| ({unit})",
        )
        tracking.log_figure(fig, f"plots/shap_importance_{name}.png")


@timed_step("i/o and logging")
def log_inputs(tx: pd.DataFrame, report: DataQualityReport, name: str) -> str:
    """Log the transactions as dataset input and the data-quality report; return the hash."""
    import mlflow

    from clvflow.mlops import tracking

    sha = tracking.transactions_sha256(tx)
    tracking.log_transactions_input(tx, name, sha)
    mlflow.set_tag("data_sha256", sha)
    mlflow.log_dict(report.to_dict(), "data_quality.json")
    return sha


@timed_step("i/o and logging")
def log_snapshots(model: ClvModel, stem: str) -> None:
    """The snapshot checks and the BTYD fallbacks of a fitted model, as a table and metrics."""
    from clvflow.mlops import tracking

    table = snapshot_table(getattr(model, "snapshot_checks_", []))
    fallbacks = getattr(model, "btyd_fallbacks_", {})
    table["btyd"] = [fallbacks.get(d, "fitted") for d in table["snapshot_date"]]
    tracking.log_table(table, f"tables/{stem}")
    tracking.log_metrics_finite(
        {
            f"{stem}_used": int(table["used"].sum()),
            f"{stem}_dropped": int((~table["used"]).sum()),
            f"{stem}_btyd_fallbacks": len(fallbacks),
        }
    )


@timed_step("i/o and logging")
def log_selection(selection: Selection) -> None:
    import mlflow

    blend = selection.blend
    mlflow.log_params(
        {
            "exported_method": blend.method,
            "blend_active_weight": blend.active_weight,
            "blend_spend_weight": blend.spend_weight,
        }
    )
    mlflow.set_tags(
        {
            "exported_method": blend.describe(),
            "method_reason": selection.reason or blend.reason,
            "internal_backtest": "yes" if selection.backtest else f"none: {selection.reason}",
        }
    )


def mlflow_active_run_id() -> str:
    import mlflow

    run = mlflow.active_run()
    assert run is not None, "called inside a run"
    return run.info.run_id


def log_long_run(model: ClvModel) -> None:
    """The long-run model behind clv_lifetime and p_alive (MBG/NBD parameters, in weeks, or
    null when unusable) and the lifetime formula, as ``long_run.json``."""
    import mlflow

    long_run = getattr(model, "long_run_", None)
    mlflow.log_dict(
        {
            "model": "MBG/NBD",
            "params_weeks": None if long_run is None else asdict(long_run),
            "formula": LIFETIME_FORMULA,
        },
        "long_run.json",
    )
