"""Train and backtest jobs with MLflow tracking: straight-line functions, one log line per step.

The computation lives in :mod:`clvflow.training` (pure); this module checks the settings against
the data, runs it, and records everything in one MLflow run:

- :func:`train`: the internal backtest at ``cutoff - horizon_days`` (boosters, BG/NBD x
  Gamma-Gamma, the blend it chooses, the historical baseline), refit on all usable snapshots up
  to ``cutoff``, log params / metrics / plots / dataset / models, register the ``clv_model``
  pyfunc (alias ``candidate``; ``champion`` only when the backtest exists, the exported method
  does not lose to BG/NBD on it, and its ``spend_gini_norm`` beats the champion's), export the
  bundle.
- :func:`backtest`: what ``train`` would export at an explicit cutoff, judged on the window
  after it, logged the same way (no model export); :func:`backtest_cutoffs` does it for several
  cutoffs under one parent run and summarises the gain over BG/NBD across them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvflow.evaluation import (
    bootstrap_draws,
    decile_table,
    intervals_from_draws,
    mean_gain_intervals,
)
from clvflow.ingest import DataQualityReport
from clvflow.models import ClvModel, ModelParams
from clvflow.steptimes import timed_step
from clvflow.tables import (
    METHODS,
    PREDICTION_KEYS,
    evaluation_table,
    format_evaluation_table,
    interval_metrics,
    snapshot_table,
    summary_metrics,
)
from clvflow.timeutil import DateLike, day_after, to_day
from clvflow.tracking import DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME
from clvflow.training import (
    BASELINE_PREFIXES,
    BacktestResult,
    Selection,
    SnapshotSettings,
    refit,
    select_method,
)
from clvflow.training import backtest as run_backtest_computation
from clvflow.training_set import shortest_history_days, usable_snapshots

log = logging.getLogger(__name__)

#: Bootstrap resamples of every backtest's intervals.
N_RESAMPLES = 500


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
    register_as: str | None = None  # None: default_model_name(data_name, horizon_days)
    export_dir: Path | None = None
    method: str = "auto"  # training.METHODS
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
    selection: Selection | None = None


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


def default_model_name(data: str, horizon_days: int) -> str:
    """Registered-model name for a data source and horizon, e.g. ``clvflow-cdnow-h181``: one
    registered model per data set and horizon, so champions are only compared like for like."""
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in data).strip("-") or "data"
    return f"{DEFAULT_MODEL_NAME}-{slug}-h{horizon_days}"


def check_history(
    tx: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, snapshots: SnapshotSettings
) -> None:
    """Raise ValueError unless the history before ``cutoff`` holds at least one usable training
    snapshot: a full label window after the snapshot rule's minimum history, and enough
    customers (:func:`clvflow.training_set.usable_snapshots`), checked before any run starts."""
    first = tx["timestamp"].min().normalize()
    if cutoff <= first:
        raise ValueError(
            f"cutoff {cutoff.date()} is on or before the first transaction ({first.date()}): "
            f"there is no history to learn from; use a cutoff after {first.date()}"
        )
    have = (cutoff - first).days
    need = shortest_history_days(horizon_days, snapshots.rule)
    if have < need:
        shorter = have - snapshots.rule.min_history_days
        raise ValueError(
            f"horizon_days={horizon_days} is too long for the history: the data before "
            f"{cutoff.date()} span {have} days (from {first.date()}), but training needs a "
            f"{horizon_days}-day label window after at least {snapshots.rule.min_history_days} "
            f"days of history, i.e. {need} days. Use a cutoff on or after "
            f"{(first + pd.Timedelta(days=need)).date()}"
            + (f", or --horizon-days {shorter} or less" if shorter >= 1 else "")
            + "."
        )
    usable_snapshots(
        tx,
        cutoff,
        horizon_days,
        snapshots.n_snapshots,
        snapshots.spacing_days,
        snapshots.rule,
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


@timed_step("bootstrap")
def backtest_intervals(
    result: BacktestResult, n_resamples: int = N_RESAMPLES
) -> tuple[pd.DataFrame, tuple[dict, pd.DataFrame] | None]:
    """95% paired-bootstrap intervals (over customers) of the model's and BG/NBD's headline
    metrics and of the model's gain over BG/NBD (:func:`clvflow.evaluation.paired_bootstrap`).
    Methods are named ``model``, ``bgnbd`` and ``model - bgnbd`` (the model alone when BG/NBD
    could not be fitted).

    Returns:
        (intervals, gain): gain is (estimate per metric, one row per resample) of model minus
        BG/NBD, for :func:`clvflow.evaluation.mean_gain_intervals`; None without BG/NBD.
    """
    keys: list[str] = [k for k in ("model", "bgnbd") if k in result.predictions]
    preds = {key: result.predictions[key] for key in keys}
    estimates, draws = bootstrap_draws(result.actuals, preds, n_resamples=n_resamples)
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
    from clvflow import plots, tracking

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
    from clvflow import plots, tracking

    for name, gain in model.feature_importance().items():
        fig = plots.feature_importance_figure(
            gain, f"{name} booster: total gain per input", xlabel="Total gain (model units)"
        )
        tracking.log_figure(fig, f"plots/feature_importance_{name}.png")


@timed_step("i/o and logging")
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


def _run_name(kind: str, settings: JobSettings, cutoff: pd.Timestamp) -> str:
    """``<kind> <data> h<H> cutoff <date> (<UTC time>)``: unique, so runs are told apart."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{kind} {settings.data_name} h{settings.horizon_days} cutoff {cutoff.date()} ({stamp} UTC)"
    )


@timed_step("i/o and logging")
def _log_snapshots(model: ClvModel, stem: str) -> None:
    """The snapshot checks and the BTYD fallbacks of a fitted model, as a table and metrics."""
    from clvflow import tracking

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
def _log_selection(selection: Selection) -> None:
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


def _backtest_in_run(
    tx: pd.DataFrame, cutoff: pd.Timestamp, settings: JobSettings
) -> tuple[JobOutcome, tuple[dict, pd.DataFrame] | None]:
    """Run and log one backtest in the active run."""
    result = run_backtest_computation(
        tx,
        cutoff,
        settings.horizon_days,
        params=settings.params,
        snapshots=settings.snapshots,
        method=settings.method,
    )
    intervals, gain = backtest_intervals(result)
    metrics = log_backtest(result, intervals)
    _log_selection(result.model.selection_)
    _log_snapshots(result.model, "snapshots")
    log_feature_importance(result.model)
    run_id = mlflow_active_run_id()
    outcome = JobOutcome(
        run_id,
        cutoff,
        metrics,
        evaluation_table(result.metrics),
        intervals,
        selection=result.model.selection_,
    )
    return outcome, gain


def mlflow_active_run_id() -> str:
    import mlflow

    run = mlflow.active_run()
    assert run is not None, "called inside a run"
    return run.info.run_id


def _check_backtest_cutoff(tx: pd.DataFrame, cutoff: Any, settings: JobSettings) -> pd.Timestamp:
    cutoff = to_day(cutoff, "cutoff")
    check_window_covered(tx, cutoff, settings.horizon_days)
    check_history(tx, cutoff, settings.horizon_days, settings.snapshots)
    return cutoff


def backtest(tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings) -> JobOutcome:
    """Out-of-time backtest at ``settings.cutoff`` of what ``train`` would export there, logged
    as an MLflow run.

    Raises:
        ValueError: no cutoff, cutoff before the data, horizon too long for the history, or an
            evaluation window past the end of the data.
    """
    from clvflow import tracking

    if settings.cutoff is None:
        raise ValueError("backtest needs an explicit cutoff (--cutoff YYYY-MM-DD)")
    cutoff = _check_backtest_cutoff(tx, settings.cutoff, settings)
    tracking.configure_tracking()
    with tracking.tracked_run(settings.experiment_name, _run_name("backtest", settings, cutoff)):
        _log_backtest_inputs(tx, report, settings, [cutoff])
        outcome, _ = _backtest_in_run(tx, cutoff, settings)
    return outcome


def _log_backtest_inputs(
    tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings, cutoffs: list
) -> None:
    """Transactions before the last cutoff (training input), each evaluation window, params."""
    from clvflow import tracking

    ts = tx["timestamp"]
    last = max(cutoffs)
    sha = _log_inputs(tx.loc[(ts < last).to_numpy()], report, settings.data_name)
    horizon = pd.Timedelta(days=settings.horizon_days)
    start, end = min(cutoffs), last + horizon
    window = tx.loc[((ts >= start) & (ts < end)).to_numpy()]
    tracking.log_transactions_input(
        window, f"{settings.data_name} window", tracking.transactions_sha256(window), "evaluation"
    )
    resolved = {"cutoff": cutoffs[0].date()} if len(cutoffs) == 1 else {}
    if len(cutoffs) > 1:
        resolved["cutoffs"] = " ".join(str(c.date()) for c in cutoffs)
    tracking.log_params_once(
        _param_values(settings, data_source=report.source, data_sha256=sha, **resolved)
    )


@dataclass
class MultiBacktest:
    """A backtest at several cutoffs: one outcome per cutoff and the summary across them."""

    run_id: str
    outcomes: list[JobOutcome]
    summary: pd.DataFrame  # evaluation.mean_gain_intervals (model - BG/NBD); empty without it


def backtest_cutoffs(
    tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings, cutoffs: list
) -> MultiBacktest:
    """:func:`backtest` at each cutoff, as child runs of one parent run that logs the summary:
    the mean gain over BG/NBD across cutoffs with its 95% interval
    (:func:`clvflow.evaluation.mean_gain_intervals`).

    Raises:
        ValueError: a cutoff that :func:`backtest` would refuse (checked before any run).
    """
    from clvflow import tracking

    days = sorted({_check_backtest_cutoff(tx, c, settings) for c in cutoffs})
    tracking.configure_tracking()
    name = (
        f"backtest {settings.data_name} h{settings.horizon_days} cutoffs "
        f"{days[0].date()}..{days[-1].date()} ({len(days)})"
    )
    outcomes, gains = [], []
    with tracking.tracked_run(settings.experiment_name, name) as parent:
        _log_backtest_inputs(tx, report, settings, days)
        for i, cutoff in enumerate(days, 1):
            log.info("cutoff %d/%d: %s", i, len(days), cutoff.date())
            with tracking.child_run(_run_name("backtest", settings, cutoff)):
                tracking.log_params_once(
                    _param_values(settings, cutoff=cutoff.date(), data_source=report.source)
                )
                outcome, gain = _backtest_in_run(tx, cutoff, settings)
            outcomes.append(outcome)
            if gain is not None:
                gains.append(gain)
        summary = mean_gain_intervals(gains) if gains else pd.DataFrame()
        if not summary.empty:
            tracking.log_table(summary, "tables/mean_gain_vs_bgnbd")
            tracking.log_metrics_finite(summary_metrics(summary))
    return MultiBacktest(parent.info.run_id, outcomes, summary)


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


def train(tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings) -> JobOutcome:
    """Internal backtest, refit, log, register and export a model (module docstring).

    Raises:
        ValueError: cutoff before or after the data, history too short for one usable
            snapshot, or a registered name / export folder that belongs to other data.
    """
    from clvflow import bundle, tracking

    horizon = settings.horizon_days
    cutoff = resolve_cutoff(tx, settings.cutoff)
    check_train_cutoff(tx, cutoff)
    name = settings.register_as or default_model_name(settings.data_name, horizon)
    export_dir = settings.export_dir or tracking.project_root() / "models" / name
    identity = {"data_name": settings.data_name, "horizon_days": horizon}
    bundle.check_export_dir(export_dir, identity)  # fail before hours of training, not after
    check_history(tx, cutoff, horizon, settings.snapshots)
    past = tx.loc[(tx["timestamp"] < cutoff).to_numpy()]
    tracking.configure_tracking()
    tracking.check_registered_model(name, identity)
    with tracking.tracked_run(
        settings.experiment_name, _run_name("train", settings, cutoff)
    ) as run:
        sha = _log_inputs(past, report, settings.data_name)
        tracking.log_params_once(
            _param_values(
                settings,
                cutoff=cutoff.date(),
                backtest_cutoff=(cutoff - pd.Timedelta(days=horizon)).date(),
                data_source=report.source,
                data_sha256=sha,
                export_dir=Path(export_dir).resolve(),
                registered_model=name,
            )
        )
        log.info("step 1/3: internal backtest on the %d days before %s", horizon, cutoff.date())
        selection = select_method(
            past,
            cutoff,
            horizon,
            params=settings.params,
            snapshots=settings.snapshots,
            method=settings.method,
        )
        metrics: dict[str, float] = {}
        intervals = None
        if selection.backtest is not None:
            intervals, _ = backtest_intervals(selection.backtest)
            metrics = log_backtest(selection.backtest, intervals)
            _log_snapshots(selection.backtest.model, "backtest_snapshots")
        _log_selection(selection)
        log.info("step 2/3: refit on the usable snapshots before %s", cutoff.date())
        model, features = refit(
            past, cutoff, horizon, selection, params=settings.params, snapshots=settings.snapshots
        )
        _log_snapshots(model, "snapshots")
        _log_final_model_facts(model, features, len(past))
        log.info("step 3/3: log, register and export the model (%s)", selection.blend.describe())
        eligible, why_not = promotion_verdict(selection)
        registration, model_uri, bundle_dir = _publish(
            model,
            features,
            settings,
            cutoff,
            sha,
            run.info.run_id,
            export_dir,
            name=name,
            score=metrics.get(tracking.PROMOTION_METRIC, float("nan")),
            eligible=eligible,
            why_not=why_not,
            description=registry_description(settings, cutoff, selection, metrics, why_not),
        )
        metrics["promoted"] = float(registration.promoted)
    return JobOutcome(
        run.info.run_id,
        cutoff,
        metrics,
        evaluation_table(selection.backtest.metrics if selection.backtest else {}),
        intervals,
        registration,
        bundle_dir,
        model_uri,
        selection,
    )


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


@timed_step("i/o and logging")
def _publish(
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

    from clvflow import bundle, pyfunc_model, tracking

    manifest = bundle.build_manifest(
        model,
        reference_profile=_reference_profile(model, features),
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
        info = pyfunc_model.log_clv_model(
            staged,
            features,
            margin=settings.margin,
            annual_discount_rate=settings.annual_discount_rate,
        )
        pyfunc_model.log_boosters(model)
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
        "champion_decision": reg.decision,
    }
    if reg.previous_score is not None:
        tags["previous_champion_" + tracking.PROMOTION_METRIC] = f"{reg.previous_score:.6f}"
    mlflow.set_tags(tags)
