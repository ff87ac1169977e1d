"""Train and backtest jobs with MLflow tracking: straight-line functions, one log line per step.

The computation lives in :mod:`clvflow.models.training` (pure); this module checks the settings against
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
import logging
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from clvflow.core.cores import beside
from clvflow.core.dates import rows_before, to_day
from clvflow.core.memory import release_free_memory
from clvflow.data.ingest import DataQualityReport
from clvflow.evaluation.metrics import (
    mean_gain_intervals,
)
from clvflow.features.build import customer_days
from clvflow.mlops.checks import check_history, check_train_cutoff, check_window_covered
from clvflow.mlops.publish import (
    log_final_model_facts,
    promotion_verdict,
    publish,
    registry_description,
)
from clvflow.mlops.run_log import (
    backtest_intervals,
    log_backtest,
    log_feature_importance,
    log_inputs,
    log_selection,
    log_snapshots,
    mlflow_active_run_id,
    param_values,
)
from clvflow.mlops.settings import (
    JobOutcome,
    JobSettings,
    default_model_name,
    resolve_cutoff,
)
from clvflow.models.clv import ClvModel
from clvflow.models.tables import (
    evaluation_table,
    summary_metrics,
)
from clvflow.models.training import (
    BoosterInputs,
    BtydAt,
    adopt_selection,
    booster_inputs,
    fit_boosters,
    internal_backtest_possible,
    select_method,
    trees_found,
)
from clvflow.models.training import backtest as run_backtest_computation

log = logging.getLogger(__name__)


def _run_name(kind: str, settings: JobSettings, cutoff: pd.Timestamp) -> str:
    """``<kind> <data> h<H> cutoff <date> (<UTC time>)``: unique, so runs are told apart."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{kind} {settings.data_name} h{settings.horizon_days} cutoff {cutoff.date()} ({stamp} UTC)"
    )


def _backtest_in_run(
    tx: pd.DataFrame, cutoff: pd.Timestamp, settings: JobSettings, btyd_at: BtydAt | None
) -> tuple[JobOutcome, tuple[dict, pd.DataFrame] | None]:
    """Run and log one backtest in the active run."""
    result = run_backtest_computation(
        tx,
        cutoff,
        settings.horizon_days,
        params=settings.params,
        snapshots=settings.snapshots,
        method=settings.method,
        btyd_at=btyd_at,
    )
    intervals, gain = backtest_intervals(result)
    metrics = log_backtest(result, intervals)
    log_selection(result.model.selection_)
    log_snapshots(result.model, "snapshots")
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


def _check_backtest_cutoff(tx: pd.DataFrame, cutoff: Any, settings: JobSettings) -> pd.Timestamp:
    cutoff = to_day(cutoff, "cutoff")
    check_window_covered(tx, cutoff, settings.horizon_days)
    check_history(tx, cutoff, settings.horizon_days, settings.snapshots)
    return cutoff


def backtest(
    tx: pd.DataFrame,
    report: DataQualityReport,
    settings: JobSettings,
    btyd_at: BtydAt | None = None,
) -> JobOutcome:
    """Out-of-time backtest at ``settings.cutoff`` of what ``train`` would export there, logged
    as an MLflow run. ``btyd_at``: BTYD on the whole population when ``tx`` is a sample's
    (:data:`clvflow.models.training.BtydAt`).

    Raises:
        ValueError: no cutoff, cutoff before the data, horizon too long for the history, or an
            evaluation window past the end of the data.
    """
    from clvflow.mlops import tracking

    if settings.cutoff is None:
        raise ValueError("backtest needs an explicit cutoff (--cutoff YYYY-MM-DD)")
    cutoff = _check_backtest_cutoff(tx, settings.cutoff, settings)
    tracking.configure_tracking()
    with tracking.tracked_run(settings.experiment_name, _run_name("backtest", settings, cutoff)):
        _log_backtest_inputs(tx, report, settings, [cutoff])
        outcome, _ = _backtest_in_run(tx, cutoff, settings, btyd_at)
    return outcome


def _log_backtest_inputs(
    tx: pd.DataFrame, report: DataQualityReport, settings: JobSettings, cutoffs: list
) -> None:
    """Transactions before the last cutoff (training input), each evaluation window, params."""
    from clvflow.mlops import tracking

    ts = tx["timestamp"]
    last = max(cutoffs)
    sha = log_inputs(tx.loc[(ts < last).to_numpy()], report, settings.data_name)
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
        param_values(settings, data_source=report.source, data_sha256=sha, **resolved)
    )


@dataclass
class MultiBacktest:
    """A backtest at several cutoffs: one outcome per cutoff and the summary across them."""

    run_id: str
    outcomes: list[JobOutcome]
    summary: pd.DataFrame  # evaluation.mean_gain_intervals (model - BG/NBD); empty without it


def backtest_cutoffs(
    tx: pd.DataFrame,
    report: DataQualityReport,
    settings: JobSettings,
    cutoffs: list,
    btyd_at: BtydAt | None = None,
) -> MultiBacktest:
    """:func:`backtest` at each cutoff, as child runs of one parent run that logs the summary:
    the mean gain over BG/NBD across cutoffs with its 95% interval
    (:func:`clvflow.evaluation.metrics.mean_gain_intervals`).

    Raises:
        ValueError: a cutoff that :func:`backtest` would refuse (checked before any run).
    """
    from clvflow.mlops import tracking

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
                    param_values(settings, cutoff=cutoff.date(), data_source=report.source)
                )
                outcome, gain = _backtest_in_run(tx, cutoff, settings, btyd_at)
            outcomes.append(outcome)
            if gain is not None:
                gains.append(gain)
        summary = mean_gain_intervals(gains) if gains else pd.DataFrame()
        if not summary.empty:
            tracking.log_table(summary, "tables/mean_gain_vs_bgnbd")
            tracking.log_metrics_finite(summary_metrics(summary))
    return MultiBacktest(parent.info.run_id, outcomes, summary)


def training_rows(tx: pd.DataFrame, settings: JobSettings) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The rows :func:`train_before` learns from (dated before the cutoff) and the cutoff, after
    the checks that need the whole log. A caller that drops ``tx`` then holds only these rows
    through the training (at a million customers the rest of the log is GBs).
    (:func:`train_before` counts the customers of the snapshots, beside its first inputs.)

    Raises:
        ValueError: cutoff before or after the data, or history too short for a snapshot.
    """
    cutoff = resolve_cutoff(tx, settings.cutoff)
    check_train_cutoff(tx, cutoff)
    export_target(settings)  # a folder that is not ours is refused whatever the data
    check_history(tx, cutoff, settings.horizon_days, settings.snapshots, count=False)
    return rows_before(tx, cutoff), cutoff


def export_target(settings: JobSettings) -> tuple[str, Path, dict[str, Any]]:
    """(registered name, export folder, identity) of a train with ``settings``, after checking
    that the folder is free or a bundle of the same data and horizon (fail before hours of
    training, not after).

    Raises:
        ValueError: the export folder holds something else.
    """
    from clvflow.mlops import bundle, tracking

    name = settings.register_as or default_model_name(settings.data_name, settings.horizon_days)
    export_dir = Path(settings.export_dir or tracking.project_root() / "models" / name)
    identity = {"data_name": settings.data_name, "horizon_days": settings.horizon_days}
    bundle.check_export_dir(export_dir, identity)
    return name, export_dir, identity


def train(
    tx: pd.DataFrame,
    report: DataQualityReport,
    settings: JobSettings,
    btyd_at: BtydAt | None = None,
) -> JobOutcome:
    """Internal backtest, refit, log, register and export a model (module docstring).
    ``btyd_at``: BTYD on the whole population when ``tx`` is a sample's.

    Raises:
        ValueError: cutoff before or after the data, history too short for one usable
            snapshot, or a registered name / export folder that belongs to other data.
    """
    past, cutoff = training_rows(tx, settings)
    return train_before(past, cutoff, report, settings, btyd_at)


def train_before(
    past: pd.DataFrame,
    cutoff: pd.Timestamp,
    report: DataQualityReport,
    settings: JobSettings,
    btyd_at: BtydAt | None = None,
) -> JobOutcome:
    """:func:`train` on the rows and cutoff of :func:`training_rows`.

    Raises:
        ValueError: too few customers for one usable snapshot, or a registered name / export
            folder that belongs to other data.
    """
    from clvflow.mlops import tracking

    horizon = settings.horizon_days
    threads = settings.params.n_jobs
    # Work that does not depend on the steps before it runs beside them on a second thread
    # when there are threads to spare (else on this thread, when needed): the internal
    # backtest's inputs (snapshots, features, BTYD fits) while the snapshots' customers are
    # counted, the MLflow store and run are set up and the input is hashed; then, once the
    # backtest's boosters are fitted, the refit's inputs and the refit's boosters (they need
    # only the backtest's tree counts) while the backtest is judged, bootstrapped and logged:
    # XGBoost leaves part of a core idle, which the judging fills. The same results either
    # way. (Not beside the backtest's boosters: the two fits' matrices at once would take GBs
    # more at a million customers.) Each fit's features and fits at its cutoff are made on a
    # third thread beside its boosters. An error here leaves without waiting for them.
    with beside(threads) as pool:
        # (the customer-days sorted once, to the cutoff: both inputs' features come from them;
        # dropped once the refit's are built, the last from them)
        days = [pool.submit(customer_days, past, cutoff)]
        inputs_at = partial(
            booster_inputs,
            past,
            horizon_days=horizon,
            params=settings.params,
            snapshots=settings.snapshots,
            btyd_at=btyd_at,
            # (the cutoff's features and fits on a third thread while the boosters fit)
            cutoff_beside=threads > 1,
        )
        backtest_inputs: Future[BoosterInputs] | None = None
        if internal_backtest_possible(past, cutoff, horizon, settings.snapshots)[0]:
            start = cutoff - pd.Timedelta(days=horizon)
            backtest_inputs = pool.submit(
                lambda: inputs_at(start, threads=threads, days=days[0].result())
            )
        check_history(past, cutoff, horizon, settings.snapshots)  # (the customers' counts)
        name, export_dir, identity = export_target(settings)
        tracking.configure_tracking()
        tracking.check_registered_model(name, identity)
        run_name = _run_name("train", settings, cutoff)
        with tracking.tracked_run(settings.experiment_name, run_name) as run:
            sha = log_inputs(past, report, settings.data_name)
            release_free_memory()  # (the hashing's copies of the log)
            tracking.log_params_once(
                param_values(
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
            refit_boosters: list[Future[tuple[ClvModel, pd.DataFrame]]] = []

            def fit_refit_boosters(n_trees: dict[str, int] | None) -> tuple[ClvModel, pd.DataFrame]:
                log.info("building the refit's inputs (snapshots before %s)", cutoff.date())
                # (threads=1: the snapshots one at a time, beside the judging's resamples;
                # two in flight with them took 6 GB at 1M customers)
                inputs = inputs_at(cutoff, threads=1, days=days[0].result())
                days.clear()  # (0.35 GB at 1M customers)
                log.info(
                    "step 2/3: refit the boosters on the usable snapshots before %s", cutoff.date()
                )
                return fit_boosters(
                    past,
                    cutoff,
                    horizon,
                    params=settings.params,
                    snapshots=settings.snapshots,
                    btyd_at=btyd_at,
                    n_trees=n_trees,
                    inputs=inputs,
                )

            def refit_beside(backtest_model: ClvModel) -> None:
                refit_boosters.append(pool.submit(fit_refit_boosters, trees_found(backtest_model)))

            selection = select_method(
                past,
                cutoff,
                horizon,
                params=settings.params,
                snapshots=settings.snapshots,
                method=settings.method,
                btyd_at=btyd_at,
                inputs=None if backtest_inputs is None else backtest_inputs.result,
                after_fit=refit_beside,
            )
            del backtest_inputs  # (its matrix went with the backtest's fit; the rest goes now)
            metrics: dict[str, float] = {}
            intervals = None
            if selection.backtest is not None:
                intervals, _ = backtest_intervals(selection.backtest)
                metrics = log_backtest(selection.backtest, intervals)
                log_snapshots(selection.backtest.model, "backtest_snapshots")
            log_selection(selection)
            if refit_boosters:
                model, features = refit_boosters.pop().result()
            else:  # (no internal backtest's boosters: nothing to fit beside)
                model, features = fit_refit_boosters(None)
            model = adopt_selection(model, past, cutoff, selection)
            log_snapshots(model, "snapshots")
            log_final_model_facts(model, features, len(past))
            log.info(
                "step 3/3: log, register and export the model (%s)", selection.blend.describe()
            )
            eligible, why_not = promotion_verdict(selection)
            registration, model_uri, bundle_dir = publish(
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
