"""Training and backtesting pipelines (pure: DataFrames in, fitted model and results out).

- :func:`fit_boosters`: fit the boosters (:class:`ClvModel`) on the usable stacked snapshots
  before a cutoff.
- :func:`select_method`: the internal backtest. Fit the boosters with data before
  ``cutoff - horizon_days`` (the early-stopped ones: trained on all but the latest snapshot),
  judge them and BG/NBD x Gamma-Gamma on ``[cutoff - horizon_days, cutoff)`` and choose what to
  export (:mod:`clvflow.models.selection`), or say why that is impossible.
- :func:`fit_model`: what ``clvflow train`` exports: the method chosen by the internal backtest,
  refitted on everything before the cutoff with the internal backtest's tree counts.
- :func:`backtest`: :func:`fit_model` with data before ``cutoff`` only, judged with the
  baselines on ``[cutoff, cutoff + horizon_days)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial

import pandas as pd

from clvflow.core.cores import beside
from clvflow.core.dates import DateLike, rows_before, to_day
from clvflow.core.memory import release_free_memory
from clvflow.core.steptimes import timed_step
from clvflow.evaluation.metrics import METRIC_NAMES, evaluate_predictions
from clvflow.features.build import (
    CustomerDays,
    build_features,
    customer_days,
    features_from_days,
)
from clvflow.features.labels import build_labels, validate_horizon
from clvflow.features.snapshots import (
    SnapshotCheck,
    SnapshotRule,
    same_season_snapshot,
    shortest_history_days,
    snapshot_stream,
    usable_snapshots,
)
from clvflow.models.btyd import BtydFit, bgnbd_gamma_gamma_baseline, historical_baseline
from clvflow.models.clv import (
    TREES_EARLY_STOPPING,
    BacktestResult,
    ClvModel,
    CutoffFits,
    ModelParams,
    Selection,
    StackedInputs,
    fit_cutoff,
)
from clvflow.models.selection import Blend, choose_blend
from clvflow.models.uncertainty import SpendCalibration, calibrate_spend, interval_coverage

log = logging.getLogger(__name__)

#: Metric-name prefixes: the exported model's metrics are ``<target>_<metric>``; the others add
#: these (``boosters``: the boosters alone, when the exported method is a blend or BG/NBD).
BASELINE_PREFIXES = {
    "boosters": "boosters_",
    "bgnbd": "baseline_bgnbd_",
    "historical": "baseline_historical_",
}

#: BG/NBD x Gamma-Gamma on the whole population as of a cutoff day, given a warm start: the
#: Spark engine's (:func:`clvflow.spark.training.full_data_btyd`) when the boosters train on a
#: sample of customers. None everywhere below: fitted on the data given.
BtydAt = Callable[[pd.Timestamp, BtydFit | None], BtydFit]

#: ``method`` setting: ``auto`` chooses by the internal backtest; the others force a method.
METHODS = ("auto", "boosters", "bgnbd")
#: What a forced method exports.
FORCED = {"boosters": Blend(1.0, 1.0, "forced"), "bgnbd": Blend(0.0, 0.0, "forced")}


@dataclass(frozen=True)
class SnapshotSettings:
    """How the stacked training snapshots are laid out and which are usable
    (see :mod:`clvflow.features.snapshots`)."""

    n_snapshots: int = 6
    spacing_days: int = 30
    rule: SnapshotRule = field(default_factory=SnapshotRule)


@dataclass
class BoosterInputs:
    """What the boosters of one cutoff are fitted on (:func:`booster_inputs`): the stacked
    snapshots with their BTYD inputs, held by the unfitted model that stacked them, and the
    features and fits at the cutoff (``at_cutoff``, perhaps still being made on another
    thread: :attr:`features` and :attr:`cutoff` wait for them). :func:`fit_boosters` takes the
    matrix out (``stacked`` None after), so that whatever still holds these inputs does not
    keep GBs alive through the boosters' fit."""

    model: ClvModel
    stacked: StackedInputs | None
    at_cutoff: Future[tuple[pd.DataFrame, CutoffFits]]
    n_rows: int
    checks: list[SnapshotCheck]

    @property
    def features(self) -> pd.DataFrame:
        """The features as of the cutoff."""
        return self.at_cutoff.result()[0]

    @property
    def cutoff(self) -> CutoffFits:
        """BTYD, MBG/NBD and the seasonal correction at the cutoff (:func:`fit_cutoff`)."""
        return self.at_cutoff.result()[1]


def booster_inputs(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
    btyd_at: BtydAt | None = None,
    threads: int = 1,
    days: CustomerDays | None = None,
    cutoff_beside: bool = False,
) -> BoosterInputs:
    """The inputs of :func:`fit_boosters` at ``cutoff`` from transactions dated before it: the
    usable snapshots, stacked with the BTYD fit of each, the features as of the cutoff and the
    fits there that do not need the boosters (:func:`clvflow.models.clv.fit_cutoff`; ``btyd_at``
    as in :func:`fit_boosters`). They depend on the data and settings only (not on any internal
    backtest), so ``clvflow train`` builds the refit's beside the internal backtest's judging.
    ``threads`` > 1: the next snapshots are built on threads while the BTYD fits stack the
    current one (the same inputs). ``days``: ``tx``'s customer-days up to the cutoff or later,
    built already (``clvflow train`` builds them once, to its cutoff, for the internal
    backtest's inputs and the refit's; the features of a date depend only on the days before
    it, so they are the same). ``cutoff_beside``: the features and fits at the cutoff (what
    the boosters do not need, about 10 s on one core at 1M customers) are made on another
    thread, while the caller goes on (to fit the boosters); the same ones.

    Raises:
        ValueError: no usable training snapshot (the message says what history would do).
    """
    cutoff_day = to_day(cutoff, "cutoff")
    horizon_days = validate_horizon(horizon_days)
    snapshots = snapshots or SnapshotSettings()
    # No copy of the rows before the cutoff is kept here: each step below reads only those rows
    # of ``tx`` (a copy would live through the boosters: GBs at a million customers).
    # The customer-days before the cutoff, sorted once (unless given): the features of every
    # date below come from them (8 dates: one sort of the rows instead of 8; about 0.35 GB at 1M
    # customers, not held here once the inputs are built).
    if days is None:
        days = customer_days(tx, cutoff_day)
    stream, checks = snapshot_stream(
        tx,
        cutoff_day,
        horizon_days,
        days,
        n_snapshots=snapshots.n_snapshots,
        spacing_days=snapshots.spacing_days,
        rule=snapshots.rule,
        threads=threads,
    )
    model = ClvModel(horizon_days, params)
    # (each snapshot's rows leave once stacked: at 1M customers they are GBs in all)
    stacked = model.stack_inputs(stream)
    release_free_memory()  # (the snapshots' temporaries: GBs at 1M customers)
    cutoff_btyd = None if btyd_at is None else partial(btyd_at, cutoff_day)
    latest_fit = stacked.latest_fit

    def at_cutoff(days: CustomerDays) -> tuple[pd.DataFrame, CutoffFits]:
        features = features_from_days(days, cutoff_day)
        season = None
        if model.params.anchor_to_btyd and model.params.seasonal_level:
            season = same_season_snapshot(tx, cutoff_day, horizon_days, days)
        fits = fit_cutoff(features, horizon_days, model.params, latest_fit, cutoff_btyd, season)
        del season
        release_free_memory()  # (the same-season snapshot's rows)
        return features, fits

    if cutoff_beside:
        pool = beside(2)
        part = pool.submit(at_cutoff, days)
        pool.shutdown(wait=False)  # (the thread ends with the task)
    else:
        part = Future()
        part.set_result(at_cutoff(days))
    del days  # (the task's own reference goes when it is done)
    return BoosterInputs(model, stacked, part, len(stacked.rows), checks)


def fit_boosters(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
    btyd_at: BtydAt | None = None,
    n_trees: dict[str, int] | None = None,
    early_stopped: bool = False,
    inputs: BoosterInputs | None = None,
) -> tuple[ClvModel, pd.DataFrame]:
    """Fit the boosters using only transactions dated before ``cutoff`` (``btyd_at``: the
    cutoff's BTYD fit on the whole population, when ``tx`` is a sample's). ``n_trees``: the
    internal backtest's tree counts (no early stopping); ``early_stopped``: keep the
    early-stopped boosters (see :meth:`ClvModel.fit_stacked`); ``inputs``: those of
    :func:`booster_inputs` with the same data and settings (``btyd_at`` included), built
    already (this consumes them).

    Returns:
        (fitted model exporting the boosters, features as of the cutoff). The snapshot checks
        are in ``model.snapshot_checks_``.

    Raises:
        ValueError: no usable training snapshot (the message says what history would do).
    """
    if inputs is None:
        inputs = booster_inputs(
            tx,
            cutoff,
            horizon_days,
            params=params,
            snapshots=snapshots,
            btyd_at=btyd_at,
            threads=(params or ModelParams()).n_jobs,
        )
    model, stacked = inputs.model, inputs.stacked
    if stacked is None:
        raise ValueError("these booster inputs were fitted already: build them anew")
    inputs.stacked = None  # (the matrix goes once the boosters are fitted: GBs at 1M customers)
    model.fit_trees(stacked, n_trees=n_trees, early_stopped=early_stopped)
    del stacked
    release_free_memory()
    features = inputs.features  # (perhaps made beside the trees: waits for them)
    model.fit_level(features, inputs.cutoff)
    model.n_training_rows_ = inputs.n_rows
    model.snapshot_checks_ = inputs.checks
    return model, features


def internal_backtest_possible(
    tx: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, snapshots: SnapshotSettings
) -> tuple[bool, str]:
    """Whether the history before ``cutoff - horizon_days`` can train boosters (by the snapshot
    rule's history length), and if not, why."""
    first = tx["timestamp"].min().normalize()
    need = shortest_history_days(horizon_days, snapshots.rule) + horizon_days
    have = (cutoff - first).days
    if have >= need:
        return True, ""
    return False, (
        f"history too short for an internal backtest: {have} days before {cutoff.date()}, "
        f"{need} needed (a {horizon_days}-day evaluation window, a {horizon_days}-day label "
        f"window and {snapshots.rule.min_history_days} days of history before it)"
    )


def unjudged_choice(
    past: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, snapshots: SnapshotSettings
) -> Blend:
    """What to export when no internal backtest can judge the boosters: the boosters when the
    latest usable training snapshot has at least ``horizon_days`` of history, else BG/NBD x
    Gamma-Gamma. Trees fitted on customers observed for less time than the window they predict
    extrapolate every tenure and recency feature (measured on CDNOW at 1997-08-01, H 181:
    docs/model-research.md)."""
    checks = usable_snapshots(
        past, cutoff, horizon_days, snapshots.n_snapshots, snapshots.spacing_days, snapshots.rule
    )
    history = max(c.history_days for c in checks if c.used)
    if history >= horizon_days:
        return Blend(
            1.0,
            1.0,
            f"unjudged: the latest training snapshot has {history} days of history, at least "
            f"the {horizon_days}-day horizon",
        )
    return Blend(
        0.0,
        0.0,
        f"unjudged: the latest training snapshot has only {history} days of history, less "
        f"than the {horizon_days}-day horizon, so the boosters would extrapolate",
    )


def _predictions(
    model: ClvModel, features: pd.DataFrame, horizon_days: int, boosters: BacktestResult | None
) -> dict[str, pd.DataFrame]:
    """The model's, the boosters' (if different) and the baselines' predictions at one cutoff;
    ``boosters``: a judgement of the same boosters at the same cutoff whose boosters' and
    baselines' predictions are reused."""
    if boosters is None:
        preds = {"model": model.predict(features)}
    else:  # (the same boosters on the same features: their trees' predictions serve the blend)
        preds = {"model": model.predict(features, boosters=boosters.predictions["model"])}
        if model.blend_.method != "boosters":
            preds["boosters"] = boosters.predictions["model"]
        preds.update(
            {k: v for k, v in boosters.predictions.items() if k in ("bgnbd", "historical")}
        )
        return preds
    if model.blend_.method != "boosters":
        boosters_only = model.blend_
        model.blend_ = Blend()
        try:
            preds["boosters"] = model.predict(features)
        finally:
            model.blend_ = boosters_only
    try:
        # The model's own cutoff fit was made on these features: the baseline is that fit.
        preds["bgnbd"] = bgnbd_gamma_gamma_baseline(features, horizon_days, model.btyd_)
    except ValueError as err:
        log.warning("no BG/NBD x Gamma-Gamma baseline at this cutoff: %s", err)
    preds["historical"] = historical_baseline(features, horizon_days)
    return preds


@timed_step("evaluation")
def judge(
    model: ClvModel,
    features: pd.DataFrame,
    tx: pd.DataFrame,
    cutoff: pd.Timestamp,
    *,
    boosters: BacktestResult | None = None,
) -> BacktestResult:
    """Judge ``model`` (fitted before ``cutoff``; ``features`` as of it) and the baselines on
    ``[cutoff, cutoff + horizon)``; the data must cover that window. ``boosters``: the judgement
    of the same boosters alone on the same window, when the model now exports a blend (its
    actuals and baselines are reused, not refitted)."""
    horizon_days = model.horizon_days
    actuals = build_labels(tx, cutoff, horizon_days) if boosters is None else boosters.actuals
    predictions = _predictions(model, features, horizon_days, boosters)
    metrics: dict[str, float] = {}
    for name, pred in predictions.items():
        prefix = BASELINE_PREFIXES.get(name, "")
        if boosters is not None and name != "model":
            # (the same predictions of the same actuals as in ``boosters``: its metrics, where
            # the boosters were the model, unprefixed)
            known = "" if name == "boosters" else prefix
            metrics.update(
                {f"{prefix}{key}": boosters.metrics[known + key] for key in METRIC_NAMES}
            )
            continue
        for key, value in evaluate_predictions(actuals, pred).items():
            metrics[f"{prefix}{key}"] = value
    metrics.update(_interval_metrics(model, predictions["model"], actuals))
    log.info(
        "backtest at %s (+%d days): %d customers, %.1f%% active",
        cutoff.date(),
        horizon_days,
        len(actuals),
        100 * actuals["active"].mean(),
    )
    return BacktestResult(
        cutoff=cutoff,
        horizon_days=horizon_days,
        metrics=metrics,
        predictions=predictions,
        actuals=actuals,
        model=model,
        n_training_rows=model.n_training_rows_,
        snapshots=getattr(model, "snapshot_checks_", []),
    )


#: Coverage of the per-customer intervals (:func:`clvflow.models.uncertainty.interval_coverage`) ->
#: metric name; a model without a calibration (e.g. the internal backtest's) logs none.
INTERVAL_METRICS = {
    "covered": "spend_interval_coverage",
    "nominal": "spend_interval_nominal",
    "pit": "spend_interval_pit_coverage",
    "active_covered": "spend_if_active_interval_coverage",
}


def _interval_metrics(
    model: ClvModel, pred: pd.DataFrame, actuals: pd.DataFrame
) -> dict[str, float]:
    """Empirical coverage of the model's 10th-90th percentile spend intervals in the window."""
    cal = SpendCalibration.from_dict(getattr(model, "spend_calibration_", None))
    if cal is None:
        return {}
    both = actuals.merge(pred, on="customer_id", validate="one_to_one")
    coverage = interval_coverage(
        cal,
        both["p_active"].to_numpy("float64"),
        both["expected_spend_if_active"].to_numpy("float64"),
        both["spend"].to_numpy("float64"),
        both["active"].to_numpy(),
    )
    return {name: coverage[key] for key, name in INTERVAL_METRICS.items()}


def select_method(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
    method: str = "auto",
    btyd_at: BtydAt | None = None,
    inputs: Callable[[], BoosterInputs] | None = None,
    after_fit: Callable[[ClvModel], object] | None = None,
) -> Selection:
    """The internal backtest at ``cutoff - horizon_days`` and the method it chooses.

    Only transactions dated before ``cutoff`` are used. ``method`` ``boosters`` or ``bgnbd``
    forces that method (the backtest still runs and is reported). ``inputs``: gives the
    backtest boosters' inputs (:func:`booster_inputs` at ``cutoff - horizon_days``, same data
    and settings) when they are built already or being built (``clvflow train`` starts them
    on a second thread while it sets up the run). ``after_fit`` is called with the backtest's
    model once its boosters are fitted, before they are judged (``clvflow train`` starts the
    refit's boosters there, with the tree counts found: :func:`trees_found`). Neither is
    called without an internal backtest.

    Returns:
        A :class:`Selection`; its ``backtest`` is None when the history is too short, and then
        the method is :func:`unjudged_choice`'s (``auto``), with the reason stated.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cutoff_day = to_day(cutoff, "cutoff")
    horizon_days = validate_horizon(horizon_days)
    snapshots = snapshots or SnapshotSettings()
    past = rows_before(tx, cutoff_day)
    ok, why = internal_backtest_possible(past, cutoff_day, horizon_days, snapshots)
    if not ok:
        blend = FORCED.get(method) or unjudged_choice(past, cutoff_day, horizon_days, snapshots)
        log.warning("%s; exporting %s unjudged (%s)", why, blend.method, blend.reason)
        return Selection(blend, None, why)
    start = cutoff_day - pd.Timedelta(days=horizon_days)
    log.info(
        "internal backtest: fit before %s, judge on [%s, %s)",
        start.date(),
        start.date(),
        cutoff_day.date(),
    )
    model, features = fit_boosters(
        past,
        start,
        horizon_days,
        params=params,
        snapshots=snapshots,
        btyd_at=btyd_at,
        early_stopped=True,
        inputs=None if inputs is None else inputs(),
    )
    if after_fit is not None:
        after_fit(model)
    boosters = judge(model, features, past, start)
    if "bgnbd" not in boosters.predictions:
        why = "BG/NBD x Gamma-Gamma could not be fitted at the internal backtest's cutoff"
        return Selection(FORCED.get(method, Blend(reason=why)), boosters, why)
    if method == "auto":
        blend = choose_blend(
            boosters.actuals,
            boosters.predictions["model"],
            boosters.predictions["bgnbd"],
            threads=model.params.n_jobs,
        )
    else:
        blend = FORCED[method]
    model.blend_ = blend
    result = judge(model, features, past, start, boosters=boosters)
    del features
    release_free_memory()
    log.info("internal backtest chose %s: %s", blend.describe(), blend.reason)
    return Selection(blend, result, blend.reason)


def fit_model(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
    method: str = "boosters",
    btyd_at: BtydAt | None = None,
) -> tuple[ClvModel, pd.DataFrame]:
    """Fit the model ``clvflow train`` would export at ``cutoff`` (data before it only).

    ``method`` ``auto`` runs :func:`select_method` first and exports its choice (the selection is
    in ``model.selection_``); ``boosters`` (the default here, for speed in library use) or
    ``bgnbd`` fix the method without an internal backtest.

    Returns:
        (fitted model, features as of the cutoff).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    cutoff_day = to_day(cutoff, "cutoff")
    if method == "auto":
        selection = select_method(
            tx, cutoff_day, horizon_days, params=params, snapshots=snapshots, btyd_at=btyd_at
        )
    else:
        selection = Selection(FORCED[method], None, "forced")
    return refit(
        tx,
        cutoff_day,
        horizon_days,
        selection,
        params=params,
        snapshots=snapshots,
        btyd_at=btyd_at,
    )


def refit(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    selection: Selection,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
    btyd_at: BtydAt | None = None,
    inputs: BoosterInputs | None = None,
) -> tuple[ClvModel, pd.DataFrame]:
    """The boosters fitted on everything before ``cutoff``, exporting ``selection``'s blend
    (kept in ``model.selection_``), with the tree counts of the internal backtest's early
    stopping when it had one (:func:`trees_found`), else with their own early stopping.
    ``inputs``: :func:`booster_inputs` at ``cutoff`` with the same data and settings, when
    built already.

    Returns:
        (fitted model, features as of the cutoff).
    """
    model, features = fit_boosters(
        tx,
        cutoff,
        horizon_days,
        params=params,
        snapshots=snapshots,
        btyd_at=btyd_at,
        n_trees=None if selection.backtest is None else trees_found(selection.backtest.model),
        inputs=inputs,
    )
    return adopt_selection(model, tx, to_day(cutoff, "cutoff"), selection), features


def adopt_selection(
    model: ClvModel, tx: pd.DataFrame, cutoff: pd.Timestamp, selection: Selection
) -> ClvModel:
    """``model`` (the refit's boosters, fitted with ``selection``'s tree counts) exporting
    ``selection``'s blend, with it in ``model.selection_`` and the spend intervals calibrated
    (:func:`calibrate_intervals`). The second half of :func:`refit`."""
    model.blend_ = selection.blend
    model.selection_ = selection
    model.spend_calibration_ = calibrate_intervals(model, tx, cutoff, selection)
    return model


def trees_found(backtest_model: ClvModel) -> dict[str, int] | None:
    """The tree counts the internal backtest's early stopping found (churn, spend), or None
    when its boosters did not early-stop (one snapshot)."""
    if backtest_model.n_trees_source_ != TREES_EARLY_STOPPING:
        return None
    return dict(backtest_model.n_trees_)


def calibrate_intervals(
    model: ClvModel, tx: pd.DataFrame, cutoff: pd.Timestamp, selection: Selection
) -> dict | None:
    """The spread of the per-customer spend intervals (:mod:`clvflow.models.uncertainty`), calibrated
    on the last window before ``cutoff``, ``[cutoff - H, cutoff)``, from rows dated before the
    cutoff only: the internal backtest's predictions there (a model fitted before that window:
    held out in time) or, without an internal backtest, this model's own predictions for it
    (the window is its latest training window: in-sample, said in ``source``). None (intervals
    left empty, logged) when that window has too few active customers."""
    horizon = model.horizon_days
    start = cutoff - pd.Timedelta(days=horizon)
    if selection.backtest is not None:
        actuals = selection.backtest.actuals
        pred = selection.backtest.predictions["model"]
        source = f"internal backtest window [{start.date()}, {cutoff.date()}), held out"
    else:
        past = rows_before(tx, cutoff)
        if past["timestamp"].min() >= start:
            log.warning("no per-customer intervals: no history before %s", start.date())
            return None
        actuals = build_labels(past, start, horizon)
        pred = model.predict(build_features(past, start))
        source = f"latest training window [{start.date()}, {cutoff.date()}), in-sample"
    try:
        calibration = calibrate_spend(actuals, pred, source=source)
    except ValueError as err:
        log.warning("no per-customer intervals: %s", err)
        return None
    log.info("spend intervals calibrated on the %s", source)
    return calibration.to_dict()


def backtest(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
    method: str = "auto",
    btyd_at: BtydAt | None = None,
) -> BacktestResult:
    """Out-of-time backtest at ``cutoff``: the model ``train`` would export at ``cutoff``
    (including its own internal backtest at ``cutoff - horizon_days``), judged with the
    baselines on ``[cutoff, cutoff + horizon_days)``.

    Raises:
        ValueError: the data do not cover the evaluation window, or history is too short.
    """
    cutoff_day = to_day(cutoff, "cutoff")
    horizon_days = validate_horizon(horizon_days)
    window_end = cutoff_day + pd.Timedelta(days=horizon_days)
    last_day = tx["timestamp"].max().normalize()
    if last_day + pd.Timedelta(days=1) < window_end:
        raise ValueError(
            f"the evaluation window [{cutoff_day.date()}, {window_end.date()}) runs past the end "
            f"of the data ({last_day.date()}): use a cutoff on or before "
            f"{(last_day + pd.Timedelta(days=1) - pd.Timedelta(days=horizon_days)).date()} "
            "or a shorter horizon"
        )
    past = rows_before(tx, cutoff_day)
    model, features = fit_model(
        past,
        cutoff_day,
        horizon_days,
        params=params,
        snapshots=snapshots,
        method=method,
        btyd_at=btyd_at,
    )
    return judge(model, features, tx, cutoff_day)
