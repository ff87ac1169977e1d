"""Training and backtesting pipelines (pure: DataFrames in, fitted model and results out).

- :func:`fit_model`: fit a :class:`ClvModel` on stacked snapshots before a cutoff.
- :func:`backtest`: fit with data before ``cutoff`` only, predict every customer known at
  ``cutoff``, and judge model and baselines on ``[cutoff, cutoff + horizon_days)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from clvflow.baselines import bgnbd_gamma_gamma_baseline, historical_baseline
from clvflow.evaluation import evaluate_predictions
from clvflow.features import build_features
from clvflow.labels import build_labels, validate_horizon
from clvflow.models import ClvModel, ModelParams
from clvflow.timeutil import DateLike, to_day
from clvflow.training_set import build_training_set, same_season_snapshot

log = logging.getLogger(__name__)

#: Metric-name prefixes: the model's metrics are ``<target>_<metric>``; baselines add these.
BASELINE_PREFIXES = {"bgnbd": "baseline_bgnbd_", "historical": "baseline_historical_"}


@dataclass(frozen=True)
class SnapshotSettings:
    """How the stacked training snapshots are laid out (see :mod:`clvflow.training_set`)."""

    n_snapshots: int = 6
    spacing_days: int = 30


@dataclass
class BacktestResult:
    """Everything a backtest produced: metrics, per-customer predictions and actuals."""

    cutoff: pd.Timestamp
    horizon_days: int
    metrics: dict[str, float]
    predictions: dict[str, pd.DataFrame]  # "model", "bgnbd", "historical"
    actuals: pd.DataFrame
    model: ClvModel
    n_training_rows: int
    extra: dict = field(default_factory=dict)


def fit_model(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
) -> tuple[ClvModel, pd.DataFrame]:
    """Fit a model using only transactions dated before ``cutoff``.

    Returns:
        (fitted model, features as of the cutoff).
    """
    cutoff_day = to_day(cutoff, "cutoff")
    horizon_days = validate_horizon(horizon_days)
    snapshots = snapshots or SnapshotSettings()
    past = tx.loc[(tx["timestamp"] < cutoff_day).to_numpy()]
    training_set = build_training_set(
        past,
        cutoff_day,
        horizon_days,
        n_snapshots=snapshots.n_snapshots,
        spacing_days=snapshots.spacing_days,
    )
    features = build_features(past, cutoff_day)
    model = ClvModel(horizon_days, params)
    season = None
    if model.params.anchor_to_btyd and model.params.seasonal_level:
        season = same_season_snapshot(past, cutoff_day, horizon_days)
    model.fit(training_set, features, season)
    model.n_training_rows_ = len(training_set)
    return model, features


def backtest(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    params: ModelParams | None = None,
    snapshots: SnapshotSettings | None = None,
) -> BacktestResult:
    """Out-of-time backtest at ``cutoff`` (EVALUATION.md protocol).

    Everything fitted (model, early stopping, calibration, baselines) sees only transactions
    dated before ``cutoff``; the actuals come from ``[cutoff, cutoff + horizon_days)``.

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
    model, features = fit_model(tx, cutoff_day, horizon_days, params=params, snapshots=snapshots)
    actuals = build_labels(tx, cutoff_day, horizon_days)
    predictions = {
        "model": model.predict(features),
        "bgnbd": bgnbd_gamma_gamma_baseline(features, horizon_days),
        "historical": historical_baseline(features, horizon_days),
    }
    metrics: dict[str, float] = {}
    for name, pred in predictions.items():
        prefix = BASELINE_PREFIXES.get(name, "")
        for key, value in evaluate_predictions(actuals, pred).items():
            metrics[f"{prefix}{key}"] = value
    log.info(
        "backtest at %s (+%d days): %d customers, %.1f%% active",
        cutoff_day.date(),
        horizon_days,
        len(actuals),
        100 * actuals["active"].mean(),
    )
    return BacktestResult(
        cutoff=cutoff_day,
        horizon_days=horizon_days,
        metrics=metrics,
        predictions=predictions,
        actuals=actuals,
        model=model,
        n_training_rows=model.n_training_rows_,
    )
