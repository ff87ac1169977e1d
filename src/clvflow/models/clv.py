"""The CLV model: an XGBoost churn classifier and an XGBoost spend regressor that learn
*relative* corrections to BG/NBD x Gamma-Gamma, whose aggregate level stays BG/NBD's.

Design (chosen by backtest, see ``docs/model-research.md``):
- Inputs are the feature table of :mod:`clvflow.features.build` plus BG/NBD x Gamma-Gamma predictions
  (:func:`clvflow.models.btyd.btyd_predictions`). BTYD parameters are fitted per training snapshot
  on that snapshot's history, and, for scoring, on the history before the training cutoff; they
  travel inside the model.
- Churn: binary logistic booster predicting ``active`` in the window, started from the BG/NBD
  log-odds (``base_margin``) **plus a per-snapshot intercept** that makes the start match the
  snapshot's observed active rate. Spend: hurdle model; E[spend | active] by a gamma-deviance
  booster (log link) on the active rows, started from log of BG/NBD's own E[spend | active]
  (``bg_expected_spend / bg_p_active``) plus a per-snapshot log-level. expected_spend =
  p_active x that.
- Why the intercepts: training snapshots' label windows must end by the cutoff, so they are
  younger and fall in other seasons than the scored window, where BG/NBD's level error differs.
  Without the intercepts the trees learn the training seasons' level and carry it into the
  scored window; with them the trees only learn who buys more or less than BG/NBD says
  *relative to the period's level*, so all features (including the age-cumulative ones) can be
  used without extrapolating the level (the CDNOW diagnosis is in docs/model-research.md).
- Level anchoring (``ModelParams.anchor_to_btyd``): at fit time, on the cutoff population, one
  logit shift makes mean(p_active) equal BG/NBD's mean P(active) and one factor makes
  sum(expected_spend) equal BG/NBD's total. The boosters set the ranking, BG/NBD (which models
  ageing and dropout) sets the totals. The constants are stored, so predictions are row-wise
  (independent of the batch scored).
- Seasonal level (``ModelParams.seasonal_level``): neither BG/NBD nor the boosters can learn a
  season (training windows lie in other seasons; the intercepts remove each period's level). When
  the history holds a snapshot 52 weeks before the cutoff
  (:func:`clvflow.features.snapshots.same_season_snapshot`), BG/NBD's observed error there (logit shift
  of the active rate, ratio of total spend) corrects both anchor targets.
- Early stopping uses the latest snapshot (a later time slice than the rows trained on), never
  the evaluation window. The internal backtest judges those early-stopped boosters (trained on
  the earlier snapshots, cut at the best iteration); the exported boosters are fitted on all
  snapshots with the internal backtest's tree counts, or, without an internal backtest, with
  the counts of their own early stopping (``n_trees_source_`` says which; docs/benchmarks.md has
  the backtest that justified it).
- Degenerate BTYD fits (:func:`clvflow.models.btyd.fit_btyd_checked`: too few repeat buyers,
  parameters on the bound, q <= 1, non-finite predictions) never stop training: such a snapshot
  keeps its rows with the BTYD inputs missing and a flat start at its own level (recorded in
  ``btyd_fallbacks_``); without BTYD at the cutoff, the model scores at the latest snapshot's
  observed level.
- What is exported (``blend_``, :mod:`clvflow.models.selection`): the boosters, BG/NBD x Gamma-Gamma
  or a blend of their probabilities and money, chosen by :func:`clvflow.models.training.select_method`
  on the internal backtest; :meth:`ClvModel.predict` applies it.
- Measured results (backtests against BG/NBD, the in-window ceiling of `make ceiling`), each
  with its command and date: docs/model-research.md.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.optimize import brentq

from clvflow.core.cores import available_cores
from clvflow.core.progress import BoostingProgress, track
from clvflow.core.steptimes import timed_step
from clvflow.features.build import FEATURE_COLUMNS
from clvflow.features.labels import validate_horizon
from clvflow.features.snapshots import SEASON_LAG_DAYS, SnapshotCheck, SnapshotStream
from clvflow.models.btyd import (
    BTYD_PREDICTION_COLUMNS,
    BtydFit,
    BtydFitter,
    btyd_predictions,
    fit_btyd_checked,
)
from clvflow.models.lifetime import MbgNbdParams, fit_long_run, long_run_p_alive
from clvflow.models.selection import Blend, blend_arrays

log = logging.getLogger(__name__)

#: Output columns of :meth:`ClvModel.predict` (the start of the scores table).
PREDICTION_COLUMNS = ["customer_id", "p_active", "expected_spend_if_active", "expected_spend"]

#: Features whose values grow with customer age (scoring populations are older than the training
#: snapshots). Kept for reference: with per-snapshot level intercepts the model uses them (they
#: improved ranking and RMSE in backtests, see docs/model-research.md).
AGE_CUMULATIVE_FEATURES = frozenset(
    {
        "tenure_days",
        "n_purchase_days",
        "frequency",
        "t_x_days",
        "T_days",
        "total_spend",
        "gross_spend",
        "purchase_days_365d",
        "spend_365d",
        "return_amount",
        "n_return_days",
    }
)

MODEL_INPUT_COLUMNS: list[str] = [*FEATURE_COLUMNS, *BTYD_PREDICTION_COLUMNS]

_EPS = 1e-6

#: Files of a saved model: the boosters in XGBoost's UBJSON format, the rest in ``MODEL_JSON``.
BOOSTER_FILES = {"churn": "churn_booster.ubj", "spend": "spend_booster.ubj"}
MODEL_JSON = "model.json"
MODEL_FORMAT = "clvflow-model/2"
#: Booster files of models saved by clvflow before MODEL_FORMAT 2 (pickles): refused, not read.
LEGACY_PICKLE_FILES = ("churn_booster.joblib", "spend_booster.joblib")
RETRAIN = (
    "retrain the model with this clvflow version (`clvflow train ... --export-dir DIR`) to get "
    "a bundle in the current format"
)


@dataclass
class ModelParams:
    """Hyperparameters (all logged to MLflow)."""

    n_estimators: int = 400
    learning_rate: float = 0.03
    max_depth: int = 3
    min_child_weight: float = 10.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    early_stopping_rounds: int = 40
    snapshot_levels: bool = True  # per-snapshot level intercepts (see module docstring)
    anchor_to_btyd: bool = True  # scored totals = BG/NBD totals (mean p_active, sum of spend)
    seasonal_level: bool = True  # ... corrected by BG/NBD's error in the same season a year ago
    seed: int = 0
    # Threads: XGBoost's, the bootstrap's and the blend choice's, and a second one that builds the
    # refit's inputs beside the internal backtest's bootstrap (1: one thread throughout)
    n_jobs: int = field(default_factory=available_cores)
    extra: dict[str, Any] = field(default_factory=dict)

    def xgb_params(self) -> dict[str, Any]:
        """The native ``xgboost.train`` parameters (tree count, objective and ``extra`` added by the caller)."""
        return {
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "seed": self.seed,
            "nthread": self.n_jobs,
            "tree_method": "hist",
        }


def _logit(p: np.ndarray | pd.Series) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logit_shift(margin: np.ndarray, target_mean: float) -> float:
    """The constant c with mean(sigmoid(margin + c)) = target_mean."""
    target = float(np.clip(target_mean, 1e-4, 1 - 1e-4))
    return float(brentq(lambda c: _sigmoid(margin + c).mean() - target, -30.0, 30.0))


def _bg_spend_if_active(x: pd.DataFrame) -> np.ndarray:
    """BG/NBD x Gamma-Gamma E[spend | at least one purchase in the window] (floored at 1)."""
    p = x["bg_p_active"].to_numpy(dtype="float64")
    total = x["bg_expected_spend"].to_numpy(dtype="float64")
    per_purchase = x["gg_expected_spend"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(p > _EPS, total / p, per_purchase)
    return np.maximum(cond, 1.0)


def _btyd_inputs(fit: BtydFit | None, features: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """BTYD predictions as model inputs, all missing (NaN) without a usable fit."""
    if fit is None:
        return pd.DataFrame(np.nan, index=features.index, columns=BTYD_PREDICTION_COLUMNS)
    return btyd_predictions(fit, features, horizon_days)


def _btyd_bases(x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """BG/NBD log-odds of P(active) and log of its E[spend | active]; 0 (a flat start) on rows
    without BTYD predictions (a degenerate fit, see :func:`clvflow.models.btyd.fit_btyd_checked`)."""
    missing = x["bg_p_active"].isna().to_numpy()
    if not missing.any():
        return _logit(x["bg_p_active"]), np.log(_bg_spend_if_active(x))
    churn, spend = np.zeros(len(x)), np.zeros(len(x))
    have = x.loc[~missing]
    churn[~missing], spend[~missing] = (
        _logit(have["bg_p_active"]),
        np.log(_bg_spend_if_active(have)),
    )
    return churn, spend


def _snapshot_offsets(rows: pd.DataFrame, level: bool) -> tuple[np.ndarray, np.ndarray]:
    """Base margins (churn log-odds, spend log) for training rows: BG/NBD plus, if ``level``,
    a per-snapshot constant that matches the snapshot's observed level (active rate; mean ratio
    of spend to BG/NBD E[spend | active] among the active). A snapshot without BTYD predictions
    always gets the constant: its start is then the snapshot's own level."""
    churn, spend = _btyd_bases(rows)
    no_btyd = rows["bg_p_active"].isna().to_numpy()
    snap = rows["snapshot_date"].to_numpy()
    active = rows["active"].to_numpy() == 1
    ratio = np.maximum(rows["spend"].to_numpy(dtype="float64"), 0.01) / np.exp(spend)
    for s in np.unique(snap):
        i = snap == s
        if not (level or no_btyd[i].any()):
            continue
        churn[i] += _logit_shift(churn[i], rows["active"].to_numpy()[i].mean())
        if (i & active).any():
            spend[i] += np.log(ratio[i & active].mean())
    return churn, spend


def _season_correction(
    reference: pd.DataFrame, horizon_days: int, init: BtydFit | None = None
) -> dict | None:
    """BG/NBD x Gamma-Gamma's error on the same-season snapshot a year before the cutoff (fitted
    on that snapshot's own history): the logit shift that turns its mean P(active) into the
    observed active rate, and observed / predicted total spend. None when BTYD cannot be fitted.
    ``init``: a warm start for that fit.
    """
    buyers = reference.loc[reference["n_purchase_days"] > 0]
    fit, why = fit_btyd_checked(buyers, horizon_days, init)
    if fit is None:
        log.warning("no seasonal level correction: BTYD unusable on the snapshot (%s)", why)
        return None
    btyd = btyd_predictions(fit, buyers, horizon_days)
    predicted = float(btyd["bg_expected_spend"].sum())
    if predicted <= 0:
        return None
    churn_shift = _logit_shift(_logit(btyd["bg_p_active"]), float(buyers["active"].mean()))
    snapshot = pd.Timestamp(reference["snapshot_date"].iloc[0]).date().isoformat()
    correction = {
        "snapshot": snapshot,
        "churn_shift": float(churn_shift),
        "spend_ratio": float(buyers["spend"].sum() / predicted),
    }
    log.info("seasonal level correction from %s: %s", snapshot, correction)
    return correction


def _latest_level(rows: pd.DataFrame) -> dict:
    """Level constants without BTYD at the cutoff: the latest training snapshot's active rate
    (as a logit) and mean spend among its active customers (as the spend factor)."""
    latest = rows.loc[rows["snapshot_date"] == rows["snapshot_date"].max()]
    active = latest["active"].to_numpy() == 1
    rate = float(np.clip(active.mean(), 1e-4, 1 - 1e-4))
    spend = float(np.maximum(latest["spend"].to_numpy(dtype="float64")[active], 0.01).mean())
    return {"churn_logit_shift": float(np.log(rate / (1 - rate))), "spend_factor": spend}


#: Columns of the stacked training rows kept beside the model inputs: the labels and what the
#: per-snapshot level offsets (:func:`_snapshot_offsets`) need.
_ROW_COLUMNS = ["snapshot_date", "active", "spend"]
_OFFSET_BTYD_COLUMNS = ["bg_p_active", "bg_expected_spend", "gg_expected_spend"]


def _snapshot_blocks(training_set: pd.DataFrame) -> Iterator[tuple[Any, pd.DataFrame]]:
    """(snapshot date, its rows in their order) for each snapshot, oldest first, as
    ``groupby("snapshot_date", sort=True)`` would give them but without its sorted copy of the
    whole frame: a snapshot stored as one block of rows is a slice (no data copied)."""
    dates = training_set["snapshot_date"].to_numpy()
    for date in np.unique(dates):
        rows = np.flatnonzero(dates == date)
        if rows[-1] - rows[0] + 1 == len(rows):
            yield date, training_set.iloc[rows[0] : rows[-1] + 1]
        else:
            yield date, training_set.iloc[rows]


#: Rows per block when a snapshot's columns are written into the (row-major) matrix.
_FILL_ROWS = 1 << 16


def _fill_rows(out: np.ndarray, columns: list[pd.Series]) -> None:
    """Write ``columns`` (float32) into the columns of the row-major ``out``, a block of rows at
    a time: each block is filled column by column in a small column-major buffer and copied
    across once. (Writing each column straight into ``out`` strides over the whole matrix once
    per column: 3x slower at a million rows.)"""
    # (numpy columns as they are, without a copy; others converted, as float32, once)
    arrays = [
        c.to_numpy() if isinstance(c.dtype, np.dtype) else c.to_numpy(dtype="float32")
        for c in columns
    ]
    block = np.empty((len(arrays), min(_FILL_ROWS, len(out))), dtype="float32")
    for lo in range(0, len(out), _FILL_ROWS):
        rows = slice(lo, min(lo + _FILL_ROWS, len(out)))
        m = rows.stop - lo
        for j, values in enumerate(arrays):
            block[j, :m] = values[rows]
        out[rows] = block[:, :m].T


def _consumed(parts: list[pd.DataFrame]) -> Iterator[tuple[Any, pd.DataFrame]]:
    """(snapshot date, its rows) for each frame of one snapshot, oldest first, each taken out of
    ``parts`` as it is given."""
    parts.sort(key=lambda part: part["snapshot_date"].iloc[0], reverse=True)
    while parts:
        part = parts.pop()
        yield part["snapshot_date"].iloc[0], part


def _first_rows_kept(
    frames: Iterator[pd.DataFrame], heads: list[pd.DataFrame]
) -> Iterator[tuple[Any, pd.DataFrame]]:
    """(snapshot date, its rows) for each frame of a stream, keeping each one's first row in
    ``heads`` (the dtypes of the stacked frame, known once all have passed)."""
    for frame in frames:
        heads.append(frame.iloc[:1].copy())
        yield frame["snapshot_date"].iloc[0], frame


def _feature_types(training_set: pd.DataFrame) -> list[str]:
    """XGBoost's feature types of the model inputs, as it infers them from a pandas frame of the
    stacked rows (the features' dtypes; the BTYD predictions are floats)."""
    features = xgb.DMatrix(training_set[FEATURE_COLUMNS].iloc[:1])
    return [*(features.feature_types or []), *["float"] * len(BTYD_PREDICTION_COLUMNS)]


@dataclass
class StackedInputs:
    """The boosters' training rows, in snapshot order (oldest first).

    ``x`` holds the model inputs (``MODEL_INPUT_COLUMNS``) as float32, the precision XGBoost
    stores its matrix in anyway, so the boosters are those of the float64 frame (tested byte for
    byte) at a quarter of its memory (no pandas copy, no per-split frames); ``rows`` the labels
    and snapshot dates; the base margins come from :func:`_snapshot_offsets`.
    """

    x: np.ndarray
    feature_types: list[str]
    rows: pd.DataFrame  # _ROW_COLUMNS + _OFFSET_BTYD_COLUMNS
    churn_base: np.ndarray
    spend_base: np.ndarray
    latest_fit: BtydFit | None  # the latest snapshot's usable BTYD fit (the cutoff's warm start)

    def dmatrix(
        self, positions: np.ndarray, y: np.ndarray, margin: np.ndarray, *, training: bool
    ) -> xgb.DMatrix:
        """The XGBoost matrix of the rows at ``positions`` (a view of ``x`` when they are
        contiguous). ``training``: a ``QuantileDMatrix``, which keeps only the histogram bins
        that ``hist`` trains on (1 byte a cell instead of a sparse copy at 8; the same cuts, so
        the same boosters: tested byte for byte); else a plain ``DMatrix`` (evaluation rows)."""
        take: slice | np.ndarray = positions
        if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
            take = slice(int(positions[0]), int(positions[-1]) + 1)
        kind = xgb.QuantileDMatrix if training else xgb.DMatrix
        return kind(
            self.x[take],
            label=y[take],
            base_margin=margin[take],
            feature_names=MODEL_INPUT_COLUMNS,
            feature_types=self.feature_types,
        )


#: Where a model's tree counts (``n_trees_``) came from (``n_trees_source_``, logged and saved):
#: its own early stopping on the latest snapshot, the counts given to it (the refit: the internal
#: backtest's early stopping), or ``n_estimators`` (one snapshot: nothing to stop on).
TREES_EARLY_STOPPING = "early stopping"
TREES_INTERNAL_BACKTEST = "internal backtest"
TREES_N_ESTIMATORS = "n_estimators"


class NotFittedError(RuntimeError):
    """The model was used before :meth:`ClvModel.fit`."""


@dataclass
class BacktestResult:
    """Everything a backtest produced: metrics, per-customer predictions and actuals.

    ``predictions`` keys: ``model`` (the method judged), ``bgnbd`` and ``historical``
    (baselines; ``bgnbd`` missing when its fit is degenerate on these data), and ``boosters``
    when the model is not the boosters alone.
    """

    cutoff: pd.Timestamp
    horizon_days: int
    metrics: dict[str, float]
    predictions: dict[str, pd.DataFrame]
    actuals: pd.DataFrame
    model: ClvModel
    n_training_rows: int
    snapshots: list[SnapshotCheck] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


@dataclass
class Selection:
    """The internal backtest's verdict: the blend to export and the backtest it came from
    (None, with ``reason``, when the history is too short for one)."""

    blend: Blend
    backtest: BacktestResult | None
    reason: str = ""


@dataclass
class CutoffFits:
    """The fits at the cutoff that do not need the boosters (:func:`fit_cutoff`)."""

    btyd: BtydFit | None  # BG/NBD x Gamma-Gamma on the cutoff's features: the scoring inputs
    btyd_why: str  # why ``btyd`` is None ("" when fitted)
    long_run: MbgNbdParams | None  # MBG/NBD (the long run), or None when unusable
    season: dict | None  # the same-season correction of the level, when one applies


def fit_cutoff(
    features: pd.DataFrame,
    horizon_days: int,
    params: ModelParams,
    latest_fit: BtydFit | None = None,
    cutoff_btyd: BtydFitter | None = None,
    season_reference: pd.DataFrame | None = None,
) -> CutoffFits:
    """BG/NBD x Gamma-Gamma on the cutoff's ``features`` (warm-started from the latest
    snapshot's ``latest_fit``; ``cutoff_btyd``: fits instead, e.g. on the whole population),
    MBG/NBD from it, and BTYD's error on the same season a year before (``season_reference``,
    when the level is anchored to BTYD with ``seasonal_level``). None of them depends on the
    boosters, so they can be made before (beside) the boosters' fit."""
    btyd, why = fit_btyd_checked(features, horizon_days, latest_fit, cutoff_btyd)
    if btyd is None:
        log.warning(
            "BG/NBD x Gamma-Gamma is unusable at the cutoff (%s): the model scores without "
            "BTYD inputs, at the latest training snapshot's level",
            why,
        )
    long_run, long_why = fit_long_run(features, None if btyd is None else btyd.bgnbd)
    if long_run is None:
        log.warning("no long-run model (MBG/NBD unusable at the cutoff: %s)", long_why)
    season = None
    if (
        btyd is not None
        and params.anchor_to_btyd
        and params.seasonal_level
        and season_reference is not None
    ):
        season = _season_correction(season_reference, horizon_days, btyd)
    return CutoffFits(btyd, why, long_run, season)


class ClvModel:
    """Churn + spend model for one horizon. Hyperparameters in ``__init__``, fitted state in
    attributes ending in ``_``; ``fit`` returns ``self``."""

    # Set by clvflow.models.training after fit (absent on a loaded model):
    n_training_rows_: int
    snapshot_checks_: list[SnapshotCheck]
    selection_: Selection
    spend_calibration_: dict | None  # clvflow.models.uncertainty.SpendCalibration as a dict

    def __init__(self, horizon_days: int, params: ModelParams | None = None) -> None:
        self.horizon_days = validate_horizon(horizon_days)
        self.params = params or ModelParams()

    # ---- fitting -------------------------------------------------------------------------
    def fit(
        self,
        training_set: pd.DataFrame,
        cutoff_features: pd.DataFrame,
        season_reference: pd.DataFrame | None = None,
        cutoff_btyd: BtydFitter | None = None,
    ) -> ClvModel:
        """Fit on stacked snapshots (:meth:`stack_inputs` then :meth:`fit_stacked`).

        Args:
            training_set: from :func:`clvflow.features.snapshots.build_training_set` (features,
                ``snapshot_date``, ``active``, ``spend``).
            cutoff_features: features as of the training cutoff; the BTYD parameters used at
                scoring are fitted on them (history before the cutoff only).
            season_reference: the same-season snapshot a year before the cutoff
                (:func:`clvflow.features.snapshots.same_season_snapshot`), or None. Used only for the
                level, when ``anchor_to_btyd`` and ``seasonal_level`` are on.
            cutoff_btyd: fits the cutoff's BTYD parameters on the whole population when
                ``cutoff_features`` are a sample's (the Spark engine); default: on them.
        """
        return self.fit_stacked(
            self.stack_inputs(training_set), cutoff_features, season_reference, cutoff_btyd
        )

    def stack_inputs(
        self, training_set: pd.DataFrame | list[pd.DataFrame] | SnapshotStream
    ) -> StackedInputs:
        """The boosters' training rows (:class:`StackedInputs`) from stacked snapshots, with
        BTYD predictions fitted on each snapshot's own history. A snapshot where the fit is
        degenerate keeps its rows with the BTYD inputs missing (logged, and recorded in
        ``btyd_fallbacks_``). Each fit starts from the previous usable one.

        ``training_set``: the stacked rows (:func:`clvflow.features.snapshots.stack_snapshots`),
        or one frame per snapshot (:func:`clvflow.features.snapshots.snapshot_parts`), a list
        this consumes: each frame leaves it once its rows are in the matrix, so its memory can
        go at once; or a :class:`~clvflow.features.snapshots.SnapshotStream`, whose frames are
        built while the previous ones are fitted (the same rows, never all held at once).
        Nothing returned refers to any of them.
        """
        heads: list[pd.DataFrame] = []  # (a stream's first rows: the stacked frame's dtypes)
        types: list[str] = []
        what = "BTYD fits per snapshot"
        if isinstance(training_set, pd.DataFrame):
            n_rows, n_snapshots = len(training_set), training_set["snapshot_date"].nunique()
            types = _feature_types(training_set)
            blocks: Iterator[tuple[Any, pd.DataFrame]] = _snapshot_blocks(training_set)
        elif isinstance(training_set, SnapshotStream):
            # (room for the most rows the snapshots can have; the pages past the rows stacked
            # are never written, so they take no memory, and the matrix returned ends there)
            n_rows, n_snapshots = training_set.max_rows, training_set.n_snapshots
            blocks = _first_rows_kept(training_set.frames, heads)
            what = "training snapshots (features, labels, BTYD fits)"  # (built as stacked)
        else:
            n_rows, n_snapshots = sum(len(part) for part in training_set), len(training_set)
            # (the dtypes the stacked frame would have)
            types = _feature_types(pd.concat([part.iloc[:1] for part in training_set]))
            blocks = _consumed(training_set)
        x = np.empty((n_rows, len(MODEL_INPUT_COLUMNS)), dtype="float32")
        parts = []
        self.btyd_fallbacks_: dict[str, str] = {}
        latest: BtydFit | None = None
        start = 0
        for date, snap in track(blocks, what, n_snapshots):
            fit, why = fit_btyd_checked(snap, self.horizon_days, latest)
            latest = fit or latest
            if fit is None:
                day = pd.Timestamp(date).date().isoformat()
                log.warning(
                    "snapshot %s: BTYD base dropped (%s); its trees start from the "
                    "snapshot's level",
                    day,
                    why,
                )
                self.btyd_fallbacks_[day] = why
            btyd = _btyd_inputs(fit, snap, self.horizon_days)
            end = start + len(snap)
            columns = [
                (btyd if column in btyd.columns else snap)[column] for column in MODEL_INPUT_COLUMNS
            ]
            _fill_rows(x[start:end], columns)
            parts.append(pd.concat([snap[_ROW_COLUMNS], btyd[_OFFSET_BTYD_COLUMNS]], axis=1))
            start = end
        rows = pd.concat(parts, ignore_index=True)
        if isinstance(training_set, SnapshotStream):
            x, types = x[:start], _feature_types(pd.concat(heads))
        churn_base, spend_base = _snapshot_offsets(rows, self.params.snapshot_levels)
        return StackedInputs(x, types, rows, churn_base, spend_base, latest)

    def fit_stacked(
        self,
        stacked: StackedInputs,
        cutoff_features: pd.DataFrame,
        season_reference: pd.DataFrame | None = None,
        cutoff_btyd: BtydFitter | None = None,
        *,
        n_trees: dict[str, int] | None = None,
        early_stopped: bool = False,
        cutoff: CutoffFits | None = None,
    ) -> ClvModel:
        """:meth:`fit` from the rows of :meth:`stack_inputs` (same arguments otherwise).
        ``cutoff``: :func:`fit_cutoff` of the same arguments, when made already (the fits that
        do not need the boosters); else they are made here.

        How the boosters are fitted:

        - ``n_trees`` given (churn and spend counts: the internal backtest's): on all snapshots
          with those counts, no early stopping;
        - else, with more than one snapshot, early stopping on the latest snapshot (trained on
          the others), then, unless ``early_stopped``, refitted on all snapshots with the counts
          found; ``early_stopped`` keeps the early-stopped boosters (cut at their best
          iteration) instead: the internal backtest's, judged without a second fit;
        - one snapshot: on it, ``n_estimators`` trees.
        """
        self.fit_trees(stacked, n_trees=n_trees, early_stopped=early_stopped)
        if cutoff is None:
            cutoff = fit_cutoff(
                cutoff_features,
                self.horizon_days,
                self.params,
                stacked.latest_fit,
                cutoff_btyd,
                season_reference,
            )
        return self.fit_level(cutoff_features, cutoff)

    def fit_trees(
        self,
        stacked: StackedInputs,
        *,
        n_trees: dict[str, int] | None = None,
        early_stopped: bool = False,
    ) -> ClvModel:
        """The boosters of :meth:`fit_stacked` (its first half: nothing here needs the cutoff's
        features or fits, so they can be made beside it); :meth:`fit_level` then completes
        the model."""
        if n_trees is not None and early_stopped:
            raise ValueError("early_stopped needs the model's own early stopping: give no n_trees")
        p = self.params
        self._fitted_trees: tuple[weakref.ref[pd.DataFrame], pd.DataFrame] | None = None
        rows = stacked.rows
        snapshots = sorted(rows["snapshot_date"].unique())
        everything = slice(0, len(rows))
        refit = True  # (the final boosters on all snapshots: all but the kept early-stopped ones)
        if n_trees is not None:
            n_churn, n_spend, source = n_trees["churn"], n_trees["spend"], TREES_INTERNAL_BACKTEST
        elif len(snapshots) > 1:
            # rows are in snapshot order: the latest snapshot (the holdout) is the last block
            first_latest = int(np.searchsorted(rows["snapshot_date"].to_numpy(), snapshots[-1]))
            train, holdout = slice(0, first_latest), slice(first_latest, len(rows))
            churn, n_churn = self._fit_churn(stacked, train, holdout)
            spend, n_spend = self._fit_spend(stacked, train, holdout)
            source = TREES_EARLY_STOPPING
            if early_stopped:
                # (XGBoost keeps the rounds after the best one; predictions would use them)
                self.churn_booster_, self.spend_booster_ = churn[:n_churn], spend[:n_spend]
                refit = False
        else:
            n_churn, n_spend, source = p.n_estimators, p.n_estimators, TREES_N_ESTIMATORS
        if refit:
            self.churn_booster_, _ = self._fit_churn(stacked, everything, None, n_churn)
            self.spend_booster_, _ = self._fit_spend(stacked, everything, None, n_spend)
        self.n_trees_ = {"churn": n_churn, "spend": n_spend}
        self.n_trees_source_ = source
        self.snapshots_ = [pd.Timestamp(s).date().isoformat() for s in snapshots]
        # (what fit_level needs of the rows, which need not outlive this: the latest snapshot's
        # labels, for the level when BTYD is unusable at the cutoff)
        latest = (
            rows.loc[rows["snapshot_date"] == snapshots[-1], _ROW_COLUMNS] if snapshots else rows
        )
        self._trees_fit: tuple[int, pd.DataFrame, bool] | None = (len(rows), latest, early_stopped)
        return self

    def fit_level(self, cutoff_features: pd.DataFrame, cutoff: CutoffFits) -> ClvModel:
        """Complete the model after :meth:`fit_trees`: the BTYD fits at the cutoff
        (:func:`fit_cutoff` of ``cutoff_features``) and the level they anchor."""
        facts = getattr(self, "_trees_fit", None)
        if facts is None:
            raise NotFittedError("fit_level completes fit_trees: call fit_trees first")
        n_rows, latest, early_stopped = facts
        self._trees_fit = None
        n_churn, n_spend = self.n_trees_["churn"], self.n_trees_["spend"]
        self.btyd_, self.long_run_ = cutoff.btyd, cutoff.long_run
        if self.btyd_ is None:
            self.btyd_fallbacks_["cutoff"] = cutoff.btyd_why
        self.blend_ = Blend()
        self.feature_columns_ = list(FEATURE_COLUMNS)
        self.model_input_columns_ = list(MODEL_INPUT_COLUMNS)
        # floats, and "season" (a dict) when the level was corrected for the season
        self.level_: dict[str, Any] = {"churn_logit_shift": 0.0, "spend_factor": 1.0}
        if self.btyd_ is None:
            self.level_ = _latest_level(latest)
        elif self.params.anchor_to_btyd:
            raw = self._raw(cutoff_features)
            self.level_ = self._anchor(raw, cutoff.season)
            # (the trees' predictions of the cutoff population, made here anyway: predict()
            # of that very frame takes them instead of running the trees again)
            self._fitted_trees = (weakref.ref(cutoff_features), self._boosters_alone(*raw))
        log.info(
            "fitted on %d rows from %d snapshots%s; trees churn=%d spend=%d (from %s); level %s",
            n_rows,
            len(self.snapshots_),
            " (boosters: the early-stopped ones, without the latest)" if early_stopped else "",
            n_churn,
            n_spend,
            self.n_trees_source_,
            self.level_,
        )
        return self

    def _anchor(
        self, raw: tuple[pd.DataFrame, np.ndarray, np.ndarray], season: dict | None
    ) -> dict:
        """Constants that give the cutoff population (its :meth:`_raw` predictions) BG/NBD's
        mean P(active) and total spend, corrected by ``season`` (BG/NBD's error in the same
        season a year ago) when given."""
        x, margin, spend_if_active = raw
        buyers = x["n_purchase_days"].to_numpy() > 0
        level: dict = {"churn_logit_shift": 0.0, "spend_factor": 1.0}
        if not buyers.any():
            return level
        bg_p = x.loc[buyers, "bg_p_active"].to_numpy(dtype="float64")
        if season is not None:
            bg_p = _sigmoid(_logit(bg_p) + season["churn_shift"])
        target_p = float(bg_p.mean())
        shift = _logit_shift(margin[buyers], target_p)
        expected = _sigmoid(margin[buyers] + shift) * spend_if_active[buyers]
        target = float(x.loc[buyers, "bg_expected_spend"].sum())
        if season is not None:
            target *= season["spend_ratio"]
        factor = target / expected.sum() if expected.sum() > 0 and target > 0 else 1.0
        level.update(churn_logit_shift=shift, spend_factor=float(factor))
        if season is not None:
            level["season"] = season
        return level

    def _fit_churn(
        self,
        stacked: StackedInputs,
        train: slice,
        valid: slice | None,
        n_trees: int | None = None,
    ) -> tuple[xgb.Booster, int]:
        active = stacked.rows["active"].to_numpy()
        return self._train(
            {"objective": "binary:logistic", "eval_metric": "logloss"},
            stacked,
            active,
            stacked.churn_base,
            np.arange(len(active))[train],
            None if valid is None else np.arange(len(active))[valid],
            n_trees,
        )

    def _fit_spend(
        self,
        stacked: StackedInputs,
        train: slice,
        valid: slice | None,
        n_trees: int | None = None,
    ) -> tuple[xgb.Booster, int]:
        active = stacked.rows["active"].to_numpy() == 1
        positions = np.arange(len(active))

        def buyers(part: slice) -> np.ndarray:
            return positions[part][active[part]]

        return self._train(
            {"objective": "reg:gamma", "eval_metric": "gamma-deviance"},
            stacked,
            np.maximum(stacked.rows["spend"].to_numpy(), 0.01),
            stacked.spend_base,
            buyers(train),
            None if valid is None else buyers(valid),
            n_trees,
        )

    @timed_step("xgboost")
    def _train(
        self,
        objective: dict[str, str],
        stacked: StackedInputs,
        y: np.ndarray,
        margin: np.ndarray,
        train: np.ndarray,
        valid: np.ndarray | None,
        n_trees: int | None,
    ) -> tuple[xgb.Booster, int]:
        """One booster on the stacked rows at positions ``train`` (early stopping on ``valid``
        when given, else ``n_trees`` rounds); ``y`` and ``margin`` cover all stacked rows."""
        p = self.params
        params = {**p.xgb_params(), **objective, **p.extra}
        dtrain = stacked.dmatrix(train, y, margin, training=True)
        rounds = n_trees or p.n_estimators
        kind = "churn" if objective["objective"] == "binary:logistic" else "spend"
        shown = [BoostingProgress(f"{kind} booster rounds", rounds)]
        if valid is None:
            booster = xgb.train(params, dtrain, num_boost_round=rounds, callbacks=shown)
            return booster, rounds
        dvalid = stacked.dmatrix(valid, y, margin, training=False)
        booster = xgb.train(
            params,
            dtrain,
            num_boost_round=p.n_estimators,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=p.early_stopping_rounds,
            verbose_eval=False,
            callbacks=shown,
        )
        return booster, int(booster.best_iteration) + 1

    # ---- prediction ----------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "churn_booster_"):
            raise NotFittedError("ClvModel is not fitted yet: call fit() or load a saved model")

    @timed_step("predict")
    def predict(
        self, features: pd.DataFrame, *, boosters: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """P(active) and expected spend in the horizon for each row of a feature table.

        Args:
            features: ``customer_id`` + ``FEATURE_COLUMNS`` (as of the scoring date).
            boosters: this model's predictions of ``features`` with the boosters alone (a blend of
                weight 1, e.g. from judging them), in the same row order: the trees are not run
                again, only the blend is applied (the same numbers, bit for bit). Without it,
                the very frame the model was fitted on as of its cutoff (the same object, not
                changed since) takes the fit's predictions the same way.

        Returns:
            DataFrame with ``PREDICTION_COLUMNS``, rows in input order.

        Raises:
            ValueError: feature columns missing.
        """
        self._check_fitted()
        missing = [c for c in ["customer_id", *self.feature_columns_] if c not in features.columns]
        if missing:
            raise ValueError(
                f"feature table lacks the model's feature column(s) {missing}; build it with "
                "clvflow.features.build.build_features (same clvflow version as the model)"
            )
        fitted = getattr(self, "_fitted_trees", None)
        if boosters is None and fitted is not None and fitted[0]() is features:
            boosters = fitted[1]
        if boosters is None:
            x, margin, spend_if_active = self._raw(features)
            boosters = self._boosters_alone(x, margin, spend_if_active)
        elif len(boosters) != len(features):
            raise ValueError("`boosters` must hold the predictions of these very features")
        else:
            x = self._with_btyd(features)
        p_active = boosters["p_active"].to_numpy(dtype="float64")
        spend_if_active = boosters["expected_spend_if_active"].to_numpy(dtype="float64")
        expected_spend = boosters["expected_spend"].to_numpy(dtype="float64")
        blend = getattr(self, "blend_", Blend())
        if blend.method != "boosters" and self.btyd_ is not None:
            p_active, expected_spend = blend_arrays(
                blend,
                p_active,
                expected_spend,
                x["bg_p_active"].to_numpy(dtype="float64"),
                x["bg_expected_spend"].to_numpy(dtype="float64"),
            )
            with np.errstate(divide="ignore", invalid="ignore"):
                spend_if_active = np.where(p_active > 0, expected_spend / p_active, spend_if_active)
        return pd.DataFrame(
            {
                "customer_id": x["customer_id"].astype("str").to_numpy(),
                "p_active": p_active.astype("float64"),
                "expected_spend_if_active": spend_if_active.astype("float64"),
                "expected_spend": expected_spend.astype("float64"),
            }
        )

    def p_alive(self, features: pd.DataFrame) -> np.ndarray:
        """P(alive at as_of | history) per row of a feature table: MBG/NBD's (the long-run model,
        :mod:`clvflow.models.lifetime`), else BG/NBD's from the model's own BTYD fit (a model saved
        before the long-run model, or one where MBG/NBD was unusable); 0 without a purchase day,
        1 when the model has neither (unknown: treated as alive)."""
        self._check_fitted()
        long_run = getattr(self, "long_run_", None)
        if long_run is not None:
            return long_run_p_alive(long_run, features)
        if self.btyd_ is None:
            no_purchase = features["n_purchase_days"].to_numpy(dtype="float64") <= 0
            return np.where(no_purchase, 0.0, 1.0)
        pred = btyd_predictions(self.btyd_, features, self.horizon_days)
        return pred["bg_p_alive"].to_numpy(dtype="float64")

    def model_inputs(
        self, features: pd.DataFrame
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
        """What the boosters see for each row of a feature table: the features with the BTYD
        predictions, the float32 input matrix (``model_input_columns_``), and the base margins
        the boosters start from (churn log-odds, log E[spend | active])."""
        x = self._with_btyd(features)
        inputs = x[self.model_input_columns_].to_numpy(dtype="float32")
        churn_base, spend_base = _btyd_bases(x)
        return x, inputs, churn_base, spend_base

    def _with_btyd(self, features: pd.DataFrame) -> pd.DataFrame:
        """The features with the BTYD predictions the boosters start from."""
        btyd = _btyd_inputs(self.btyd_, features, self.horizon_days)
        return pd.concat([features.reset_index(drop=True), btyd.reset_index(drop=True)], axis=1)

    def _raw(self, features: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """Model inputs, churn margin and E[spend | active] before level anchoring."""
        # one float32 matrix for both boosters; inplace_predict skips building DMatrix objects
        x, inputs, churn_base, spend_base = self.model_inputs(features)
        margin = self.churn_booster_.inplace_predict(
            inputs, predict_type="margin", base_margin=churn_base
        )
        spend = self.spend_booster_.inplace_predict(inputs, base_margin=spend_base)
        return x, margin.astype("float64"), np.maximum(spend, 0.0).astype("float64")

    def _boosters_alone(
        self, x: pd.DataFrame, margin: np.ndarray, spend_if_active: np.ndarray
    ) -> pd.DataFrame:
        """The boosters' predictions (no blend) from their :meth:`_raw` outputs, at the level."""
        p_active = _sigmoid(margin + self.level_["churn_logit_shift"])
        spend_if_active = spend_if_active * self.level_["spend_factor"]
        no_purchase = x["n_purchase_days"].to_numpy() <= 0
        p_active = np.where(no_purchase, 0.0, p_active)  # returns-only: no purchase history
        return pd.DataFrame(
            {
                "p_active": p_active,
                "expected_spend_if_active": spend_if_active,
                "expected_spend": p_active * spend_if_active,
            }
        )

    def season_window_start(self) -> pd.Timestamp | None:
        """Start of the window whose season the level was corrected for (the training cutoff),
        or None when no seasonal correction was applied."""
        season = self.level_.get("season")
        if not season:
            return None
        return pd.Timestamp(season["snapshot"]) + pd.Timedelta(days=SEASON_LAG_DAYS)

    def feature_importance(self) -> dict[str, pd.Series]:
        """Total gain per model input for each booster."""
        self._check_fitted()
        out = {}
        for name, booster in (("churn", self.churn_booster_), ("spend", self.spend_booster_)):
            gain = booster.get_score(importance_type="total_gain")
            out[name] = pd.Series(gain, dtype="float64").sort_values(ascending=False)
        return out

    # ---- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> list[Path]:
        """Write the fitted model to ``directory``: the boosters in XGBoost's own UBJSON format
        (``BOOSTER_FILES``) and everything else as JSON (``model.json``). No pickles: loading runs
        no code.

        Returns:
            The files written.
        """
        self._check_fitted()
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, file in BOOSTER_FILES.items():
            getattr(self, f"{name}_booster_").save_model(str(d / file))
        meta = {
            "format": MODEL_FORMAT,
            "horizon_days": self.horizon_days,
            "params": asdict(self.params),
            "btyd": None
            if self.btyd_ is None
            else {
                "bgnbd": asdict(self.btyd_.bgnbd),
                "gamma_gamma": asdict(self.btyd_.gamma_gamma),
            },
            "long_run": None if self.long_run_ is None else asdict(self.long_run_),
            "btyd_fallbacks": getattr(self, "btyd_fallbacks_", {}),
            "blend": getattr(self, "blend_", Blend()).to_dict(),
            "n_trees": self.n_trees_,
            "n_trees_source": self.n_trees_source_,
            "snapshots": self.snapshots_,
            "feature_columns": self.feature_columns_,
            "model_input_columns": self.model_input_columns_,
            "level": self.level_,
            "spend_calibration": getattr(self, "spend_calibration_", None),
        }
        (d / MODEL_JSON).write_text(json.dumps(meta, indent=2))
        return [d / n for n in [*BOOSTER_FILES.values(), MODEL_JSON]]

    @classmethod
    def load(cls, directory: str | Path) -> ClvModel:
        """Load a model written by :meth:`save` (JSON and XGBoost UBJSON only, never a pickle).

        Raises:
            ValueError: a folder from an older clvflow (pickled boosters), or a booster file
                missing or not an XGBoost model.
        """
        from clvflow.models.btyd import BgNbdParams, GammaGammaParams

        d = Path(directory)
        _refuse_pickled_model(d)
        meta = json.loads((d / MODEL_JSON).read_text())
        if meta.get("format") != MODEL_FORMAT:
            raise ValueError(
                f"{d / MODEL_JSON}: not a {MODEL_FORMAT} model (written by another clvflow "
                f"version); {RETRAIN}"
            )
        model = cls(meta["horizon_days"], ModelParams(**meta["params"]))
        for name, file in BOOSTER_FILES.items():
            setattr(model, f"{name}_booster_", _load_booster(d / file))
        btyd = meta["btyd"]
        model.btyd_ = (
            None
            if btyd is None
            else BtydFit(BgNbdParams(**btyd["bgnbd"]), GammaGammaParams(**btyd["gamma_gamma"]))
        )
        long_run = meta.get("long_run")  # (absent in models saved before it existed)
        model.long_run_ = None if long_run is None else MbgNbdParams(**long_run)
        model.btyd_fallbacks_ = meta.get("btyd_fallbacks", {})
        model.blend_ = Blend.from_dict(meta.get("blend"))
        model.n_trees_ = meta["n_trees"]
        model.n_trees_source_ = meta.get("n_trees_source", "not recorded")  # (older models)
        model.snapshots_ = meta["snapshots"]
        model.feature_columns_ = meta["feature_columns"]
        model.model_input_columns_ = meta["model_input_columns"]
        model.level_ = meta["level"]
        # (absent from models saved before per-customer intervals: their interval columns are NaN)
        model.spend_calibration_ = meta.get("spend_calibration")
        return model


def _refuse_pickled_model(directory: Path) -> None:
    """Raise ValueError when ``directory`` holds the pickled boosters of an older clvflow.

    Their files are never opened: a pickle runs code when loaded, whatever its checksum says.
    """
    pickled = [name for name in LEGACY_PICKLE_FILES if (directory / name).exists()]
    if pickled:
        raise ValueError(
            f"{directory}: holds pickled boosters {pickled} (a model saved by an older clvflow); "
            f"clvflow does not load pickles, since loading one can run any code. {RETRAIN}"
        )


def _load_booster(path: Path) -> xgb.Booster:
    """A booster from XGBoost's own format (parsed as data, no code runs), predicting on the
    cores available here."""
    if not path.is_file():
        raise ValueError(f"{path}: booster file missing; {RETRAIN}")
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
    except xgb.core.XGBoostError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ValueError(f"{path}: not an XGBoost model ({first}); {RETRAIN}") from None
    booster.set_param({"nthread": available_cores()})
    return booster
