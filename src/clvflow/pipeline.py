"""Train and backtest jobs with MLflow tracking: straight-line functions, one log line per step.

The computation lives in :mod:`clvflow.training` (pure); this module checks the settings against
the data, runs it, and records everything in one MLflow run:

- :func:`train`: backtest at ``cutoff - horizon_days`` (model and both baselines), refit on all
  snapshots up to ``cutoff``, log params / metrics / plots / dataset / models, register the
  ``clv_model`` pyfunc (alias ``candidate``; ``champion`` if its backtest ``spend_gini_norm``
  beats the champion's), export the bundle.
- :func:`backtest`: the backtest at an explicit cutoff, logged the same way (no model export).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvflow.evaluation import decile_table, paired_bootstrap
from clvflow.ingest import DataQualityReport
from clvflow.models import ClvModel, ModelParams
from clvflow.timeutil import DateLike, day_after, to_day
from clvflow.tracking import DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME
from clvflow.training import BASELINE_PREFIXES, BacktestResult, SnapshotSettings, fit_model
from clvflow.training import backtest as run_backtest_computation

log = logging.getLogger(__name__)

#: Evaluation table: method -> metric prefix, and column -> metric (EVALUATION.md layout).
METHODS = {
    "model": "",
    "BG/NBD × Gamma-Gamma": BASELINE_PREFIXES["bgnbd"],
    "historical": BASELINE_PREFIXES["historical"],
}
PREDICTION_KEYS = {"model": "model", "BG/NBD × Gamma-Gamma": "bgnbd", "historical": "historical"}
TABLE_METRICS = {
    "gini_norm": "spend_gini_norm",
    "top_decile": "spend_top_decile_capture",
    "rmse": "spend_rmse",
    "mae": "spend_mae",
    "agg_bias": "spend_agg_bias",
    "roc_auc": "churn_roc_auc",
    "pr_auc": "churn_pr_auc",
    "brier": "churn_brier",
}


@dataclass(frozen=True)
class JobSettings:
    """Settings shared by train and backtest. ``cutoff`` None (train only): the day after the
    last transaction. ``flag_params``: the CLI flags as given, logged under their own names."""

    horizon_days: int
    cutoff: pd.Timestamp | None = None
    params: ModelParams = field(default_factory=ModelParams)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    margin: float = 1.0
    annual_discount_rate: float = 0.0
    experiment_name: str = DEFAULT_EXPERIMENT
    data_name: str = "transactions"
    register_as: str = DEFAULT_MODEL_NAME
    export_dir: Path | None = None
    flag_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobOutcome:
    """What a job produced (for the CLI to print and tests to check)."""

    run_id: str
    cutoff: pd.Timestamp
    metrics: dict[str, float]
    table: pd.DataFrame
    intervals: pd.DataFrame | None = None  # paired bootstrap of the backtest (backtest_intervals)
    registration: Any = None  # tracking.Registration (train only)
    bundle_dir: Path | None = None
    model_uri: str | None = None


# ---- checks (pure) -------------------------------------------------------------------------


def data_name(source: str) -> str:
    """Short name of a data source for run names: ``cdnow`` or the file name without suffixes."""
    if source == "cdnow":
        return "cdnow"
    name = Path(source).name
    return name.split(".", 1)[0] or name


def resolve_cutoff(tx: pd.DataFrame, cutoff: DateLike | None) -> pd.Timestamp:
    """The given cutoff as a day, or the day after the last transaction."""
    if cutoff is None:
        return day_after(tx["timestamp"].max())
    return to_day(cutoff, "cutoff")


def check_history(tx: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, windows: int) -> None:
    """Raise ValueError unless data exist before ``cutoff`` and the history before it holds
    ``windows`` horizons plus at least one day (train: backtest window + a training label
    window = 2; backtest: 1)."""
    first = tx["timestamp"].min().normalize()
    if cutoff <= first:
        raise ValueError(
            f"cutoff {cutoff.date()} is on or before the first transaction ({first.date()}): "
            f"there is no history to learn from; use a cutoff after {first.date()}"
        )
    have = (cutoff - first).days
    if have <= windows * horizon_days:
        why = (
            "training backtests on the last horizon before the cutoff and needs a full "
            "label window of training data before that"
            if windows == 2
            else "training needs a full label window of data before the cutoff"
        )
        raise ValueError(
            f"horizon_days={horizon_days} is too long for the history: the data before "
            f"{cutoff.date()} span {have} days (from {first.date()}), but {why} "
            f"(more than {windows} x {horizon_days} days). Use --horizon-days "
            f"{max((have - 1) // windows, 1)} or less, or more history."
        )


def check_window_covered(tx: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> None:
    """Raise ValueError when the evaluation window ``[cutoff, cutoff + horizon)`` runs past the
    end of the data (the day after the last transaction)."""
    end = day_after(tx["timestamp"].max())
    window_end = cutoff + pd.Timedelta(days=horizon_days)
    if window_end > end:
        latest = end - pd.Timedelta(days=horizon_days)
        raise ValueError(
            f"the evaluation window [{cutoff.date()}, {window_end.date()}) runs past the end of "
            f"the data (last transaction on {(end - pd.Timedelta(days=1)).date()}): use a cutoff "
            f"on or before {latest.date()} or a shorter --horizon-days "
            f"(at most {max((end - cutoff).days, 0)} days from this cutoff)"
        )


def check_train_cutoff(tx: pd.DataFrame, cutoff: pd.Timestamp) -> None:
    """Raise ValueError when the cutoff lies after the data (the backtest window before it would
    not be covered)."""
    end = day_after(tx["timestamp"].max())
    if cutoff > end:
        last = (end - pd.Timedelta(days=1)).date()
        raise ValueError(
            f"cutoff {cutoff.date()} is after the end of the data (last transaction on {last}): "
            "the backtest window before it is not covered by the data; use a cutoff on or "
            f"before {end.date()}, or omit --cutoff"
        )


# ---- evaluation table (pure) ---------------------------------------------------------------


def evaluation_table(metrics: dict[str, float]) -> pd.DataFrame:
    """Rows model / BG/NBD x Gamma-Gamma / historical; EVALUATION.md columns (agg_bias: a share)."""
    rows = {
        method: {col: metrics.get(f"{prefix}{name}", np.nan) for col, name in TABLE_METRICS.items()}
        for method, prefix in METHODS.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def _cell_format(column: str) -> str:
    """Money with 2 decimals, agg_bias in %, everything else with 3 decimals."""
    return {"rmse": "{:.2f}", "mae": "{:.2f}", "agg_bias": "{:+.1%}"}.get(column, "{:.3f}")


def format_evaluation_table(table: pd.DataFrame) -> str:
    """Markdown table as in EVALUATION.md (agg_bias in %, money with 2 decimals); the index is
    the first column (headed by its name, default ``method``), text cells are kept as they are."""

    def cell(col: str, v: Any) -> str:
        if isinstance(v, str):
            return v
        return "-" if pd.isna(v) else _cell_format(col).format(v)

    header = [table.index.name or "method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, row in table.iterrows():
        cells = [cell(col, v) for col, v in row.items()]
        lines.append("| " + " | ".join([str(method), *cells]) + " |")
    return "\n".join(lines)


# ---- logging helpers -----------------------------------------------------------------------


def _param_values(settings: JobSettings, **resolved: Any) -> dict[str, Any]:
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
        **model_params,
        **resolved,
    }


def _aligned(result: BacktestResult, key: str) -> pd.DataFrame:
    """Actuals joined with one method's predictions (same customers, same order)."""
    pred = result.predictions[key][["customer_id", "p_active", "expected_spend"]]
    return result.actuals.merge(pred, on="customer_id", how="left", validate="one_to_one")


def backtest_intervals(result: BacktestResult, n_resamples: int = 200) -> pd.DataFrame:
    """95% paired-bootstrap intervals (over customers) of the model's and BG/NBD's headline
    metrics and of the model's gain over BG/NBD (:func:`clvflow.evaluation.paired_bootstrap`).
    Methods are named ``model``, ``bgnbd`` and ``model - bgnbd``."""
    preds = {key: result.predictions[key] for key in ("model", "bgnbd")}
    return paired_bootstrap(result.actuals, preds, reference="bgnbd", n_resamples=n_resamples)


#: MLflow metric prefixes of the interval rows (``<prefix><metric>_ci95_low`` / ``_high``).
INTERVAL_PREFIXES = {
    "model": "",
    "bgnbd": BASELINE_PREFIXES["bgnbd"],
    "model - bgnbd": "gain_vs_bgnbd_",
}


def interval_metrics(intervals: pd.DataFrame) -> dict[str, float]:
    """Flat MLflow metrics of :func:`backtest_intervals`."""
    out = {}
    for row in intervals.itertuples():
        name = f"{INTERVAL_PREFIXES[row.method]}{row.metric}_ci95"
        out[f"{name}_low"], out[f"{name}_high"] = row.low, row.high
    return out


def format_intervals(intervals: pd.DataFrame) -> str:
    """Markdown table: one row per method, ``estimate [low, high]`` per metric (columns named and
    formatted as in :func:`format_evaluation_table`)."""
    columns = {name: col for col, name in TABLE_METRICS.items() if name in set(intervals["metric"])}
    names = {"model": "model", "bgnbd": "BG/NBD × Gamma-Gamma", "model - bgnbd": "model − BG/NBD"}
    lines = ["| method | " + " | ".join(columns.values()) + " |", "|" + "---|" * (len(columns) + 1)]
    for method, rows in intervals.groupby("method", sort=False):
        cells = []
        for name, col in columns.items():
            r = rows.loc[rows["metric"] == name].iloc[0]
            fmt = _cell_format(col)
            cells.append(f"{fmt.format(r.estimate)} [{fmt.format(r.low)}, {fmt.format(r.high)}]")
        lines.append(f"| {names.get(method, method)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def log_backtest(result: BacktestResult, intervals: pd.DataFrame) -> dict[str, float]:
    """Log a backtest's metrics, bootstrap intervals, counts, evaluation and decile tables and
    plots.

    Returns:
        The metrics logged (backtest metrics + intervals + counts + decile MAPEs).
    """
    from clvflow import plots, tracking

    aligned = {method: _aligned(result, key) for method, key in PREDICTION_KEYS.items()}
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


def log_feature_importance(model: ClvModel) -> None:
    """One PNG per booster: total gain per model input."""
    from clvflow import plots, tracking

    for name, gain in model.feature_importance().items():
        fig = plots.feature_importance_figure(
            gain, f"{name} booster: total gain per input", xlabel="Total gain (model units)"
        )
        tracking.log_figure(fig, f"plots/feature_importance_{name}.png")


def _log_inputs(tx: pd.DataFrame, report: DataQualityReport, name: str) -> str:
    """Log the transactions as dataset input and the data-quality report; return the hash."""
    import mlflow

    from clvflow import tracking

    sha = tracking.transactions_sha256(tx)
    tracking.log_transactions_input(tx, name, sha)
    mlflow.set_tag("data_sha256", sha)
    mlflow.log_dict(report.to_dict(), "data_quality.json")
    return sha


# ---- jobs ----------------------------------------------------------------------------------


def backtest(tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings) -> JobOutcome:
    """Out-of-time backtest at ``settings.cutoff``, logged as an MLflow run.

    Raises:
        ValueError: no cutoff, cutoff before the data, horizon too long for the history, or an
            evaluation window past the end of the data.
    """
    from clvflow import tracking

    if settings.cutoff is None:
        raise ValueError("backtest needs an explicit cutoff (--cutoff YYYY-MM-DD)")
    cutoff, horizon = to_day(settings.cutoff, "cutoff"), settings.horizon_days
    check_history(tx, cutoff, horizon, windows=1)
    check_window_covered(tx, cutoff, horizon)
    tracking.configure_tracking()
    run_name = f"backtest {settings.data_name} h{horizon} cutoff {cutoff.date()}"
    with tracking.tracked_run(settings.experiment_name, run_name) as run:
        ts = tx["timestamp"]
        past = tx.loc[(ts < cutoff).to_numpy()]
        sha = _log_inputs(past, report, settings.data_name)
        window = tx.loc[((ts >= cutoff) & (ts < cutoff + pd.Timedelta(days=horizon))).to_numpy()]
        tracking.log_transactions_input(
            window,
            f"{settings.data_name} window",
            tracking.transactions_sha256(window),
            "evaluation",
        )
        tracking.log_params_once(
            _param_values(
                settings, cutoff=cutoff.date(), data_source=report.source, data_sha256=sha
            )
        )
        result = run_backtest_computation(
            tx, cutoff, horizon, params=settings.params, snapshots=settings.snapshots
        )
        intervals = backtest_intervals(result)
        metrics = log_backtest(result, intervals)
        log_feature_importance(result.model)
    return JobOutcome(run.info.run_id, cutoff, metrics, evaluation_table(result.metrics), intervals)


def train(tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings) -> JobOutcome:
    """Backtest, refit, log, register and export a model (module docstring).

    Raises:
        ValueError: cutoff before or after the data, horizon too long for the history, or an
            export folder that holds something other than a bundle.
    """
    from clvflow import bundle, tracking

    horizon = settings.horizon_days
    cutoff = resolve_cutoff(tx, settings.cutoff)
    check_history(tx, cutoff, horizon, windows=2)
    check_train_cutoff(tx, cutoff)
    backtest_cutoff = cutoff - pd.Timedelta(days=horizon)
    past = tx.loc[(tx["timestamp"] < cutoff).to_numpy()]
    export_dir = settings.export_dir or tracking.project_root() / "models" / settings.register_as
    bundle.check_export_dir(export_dir)  # fail before hours of training, not after
    tracking.configure_tracking()
    run_name = f"train {settings.data_name} h{horizon} cutoff {cutoff.date()}"
    with tracking.tracked_run(settings.experiment_name, run_name) as run:
        sha = _log_inputs(past, report, settings.data_name)
        tracking.log_params_once(
            _param_values(
                settings,
                cutoff=cutoff.date(),
                backtest_cutoff=backtest_cutoff.date(),
                data_source=report.source,
                data_sha256=sha,
                export_dir=Path(export_dir).resolve(),
            )
        )
        log.info("step 1/3: backtest at %s (+%d days)", backtest_cutoff.date(), horizon)
        # The full log, not `past`: rows after the cutoff prove the window [backtest_cutoff,
        # cutoff) is covered even when its last days have no sales; labels end at the cutoff,
        # so nothing on or after it is used.
        result = run_backtest_computation(
            tx,
            backtest_cutoff,
            horizon,
            params=settings.params,
            snapshots=settings.snapshots,
        )
        intervals = backtest_intervals(result)
        metrics = log_backtest(result, intervals)
        log.info("step 2/3: refit on snapshots up to %s", cutoff.date())
        model, features = fit_model(
            past, cutoff, horizon, params=settings.params, snapshots=settings.snapshots
        )
        _log_final_model_facts(model, features, len(past))
        log.info("step 3/3: log, register and export the model")
        registration, model_uri, bundle_dir = _publish(
            model,
            features,
            settings,
            cutoff,
            sha,
            run.info.run_id,
            export_dir,
            score=result.metrics[tracking.PROMOTION_METRIC],
        )
        metrics["promoted"] = float(registration.promoted)
    return JobOutcome(
        run.info.run_id,
        cutoff,
        metrics,
        evaluation_table(result.metrics),
        intervals,
        registration,
        bundle_dir,
        model_uri,
    )


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


def _log_final_model_facts(model: ClvModel, features: pd.DataFrame, n_transactions: int) -> None:
    from clvflow import tracking

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


def _publish(
    model: ClvModel,
    features: pd.DataFrame,
    settings: JobSettings,
    cutoff: pd.Timestamp,
    sha: str,
    run_id: str,
    export_dir: Path,
    *,
    score: float,
) -> tuple[Any, str, Path]:
    """Log the pyfunc and boosters, register (promoting on ``score``), export the bundle."""
    import mlflow

    from clvflow import bundle, pyfunc_model, tracking

    manifest = bundle.build_manifest(
        model,
        reference_profile=_reference_profile(model, features),
        cutoff=cutoff.date().isoformat(),
        training_data_sha256=sha,
        data_source=settings.flag_params.get("transactions", settings.data_name),
        mlflow_run_id=run_id,
        scoring_defaults={
            "margin": settings.margin,
            "annual_discount_rate": settings.annual_discount_rate,
        },
    )
    with tempfile.TemporaryDirectory(prefix="clvflow-bundle-") as tmp:
        staged = bundle.write_bundle_files(model, Path(tmp) / bundle.PYFUNC_ARTIFACT, manifest)
        info = pyfunc_model.log_clv_model(
            staged,
            features,
            margin=settings.margin,
            annual_discount_rate=settings.annual_discount_rate,
        )
        pyfunc_model.log_boosters(model)
        reg = tracking.register_candidate(info.model_uri, settings.register_as, float(score))
        _log_registration(reg)
        bundle_dir = bundle.export_bundle(
            staged, export_dir, registered_model={"name": reg.name, "version": reg.version}
        )
    mlflow.set_tag("bundle_dir", str(bundle_dir))
    return reg, info.model_uri, bundle_dir


def _reference_profile(model: ClvModel, features: pd.DataFrame) -> dict[str, dict]:
    """The training population (features and predictions at the cutoff) for drift checks."""
    from clvflow.monitoring import PREDICTION_PROFILE_COLUMNS, reference_profile

    pred = model.predict(features)[PREDICTION_PROFILE_COLUMNS]
    table = pd.concat([features.reset_index(drop=True), pred.reset_index(drop=True)], axis=1)
    return reference_profile(table, [*model.feature_columns_, *PREDICTION_PROFILE_COLUMNS])


def _log_registration(reg: Any) -> None:
    import mlflow

    from clvflow import tracking

    mlflow.log_metric("promoted", float(reg.promoted))
    tags = {
        "registered_model": reg.name,
        "registered_version": reg.version,
        "promoted": str(reg.promoted).lower(),
        "champion_version": reg.version if reg.promoted else str(reg.previous_champion),
    }
    if reg.previous_score is not None:
        tags["previous_champion_" + tracking.PROMOTION_METRIC] = f"{reg.previous_score:.6f}"
    mlflow.set_tags(tags)
