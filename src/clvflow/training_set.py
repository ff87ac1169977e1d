"""Training set: stacked snapshots of (features at C0, labels after C0) before a cutoff.

Snapshot dates are ``C0 = cutoff - horizon_days - k * spacing_days`` for k = 0 .. n_snapshots - 1,
so every label window ``[C0, C0 + horizon_days)`` ends on or before the cutoff. Nothing dated on or
after the cutoff is even looked at.

:func:`same_season_snapshot` gives one more snapshot, 52 weeks before the cutoff: its label window
covers the same season (and weekday mix) as the window being predicted, a year earlier.
"""

from __future__ import annotations

import logging

import pandas as pd

from clvflow.features import build_features
from clvflow.labels import build_labels, validate_horizon
from clvflow.timeutil import DateLike, to_day

log = logging.getLogger(__name__)

#: The same-season snapshot lies this many days before the cutoff (52 weeks: same weekdays).
SEASON_LAG_DAYS = 364
#: Below these counts the same-season snapshot is too thin to estimate a level from.
MIN_SEASON_BUYERS, MIN_SEASON_ACTIVE = 1000, 100


def snapshot_dates(
    first_day: pd.Timestamp,
    cutoff: DateLike,
    horizon_days: int,
    n_snapshots: int,
    spacing_days: int,
) -> list[pd.Timestamp]:
    """Snapshot dates, latest first, that have at least one day of history before them.

    Raises:
        ValueError: not even the latest snapshot has history (history too short for the horizon).
    """
    if n_snapshots < 1 or spacing_days < 1:
        raise ValueError(
            f"n_snapshots and spacing_days must be >= 1 (got {n_snapshots}, {spacing_days})"
        )
    cutoff_day = to_day(cutoff, "cutoff")
    horizon = pd.Timedelta(days=validate_horizon(horizon_days))
    first = pd.Timestamp(first_day).normalize()
    dates = [cutoff_day - horizon - pd.Timedelta(days=k * spacing_days) for k in range(n_snapshots)]
    usable = [d for d in dates if d > first]
    if not usable:
        have = (cutoff_day - first).days
        raise ValueError(
            f"history too short for horizon_days={horizon_days}: the data before the cutoff "
            f"{cutoff_day.date()} start on {first.date()} ({have} days), but training needs a "
            f"label window of {horizon_days} days after some history. Use a shorter horizon "
            f"(< {have} days) or a later cutoff."
        )
    if len(usable) < n_snapshots:
        log.warning(
            "only %d of %d snapshots fit in the history; using %s",
            len(usable),
            n_snapshots,
            [d.date().isoformat() for d in usable],
        )
    return usable


def snapshot_rows(past: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """One snapshot: ``snapshot_date``, ``customer_id``, features as of ``as_of`` and the labels of
    ``[as_of, as_of + horizon_days)``, computed from ``past`` (already cut at the cutoff)."""
    features = build_features(past, as_of)
    labels = build_labels(past, as_of, horizon_days)
    rows = features.merge(labels, on="customer_id", how="left", validate="one_to_one")
    rows.insert(0, "snapshot_date", as_of)
    return rows


def build_training_set(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    n_snapshots: int = 4,
    spacing_days: int = 30,
) -> pd.DataFrame:
    """Stacked feature/label rows from snapshots whose label windows end by ``cutoff``.

    Args:
        tx: transactions table.
        cutoff: date; only transactions dated before it are used.
        horizon_days: label window length in days.
        n_snapshots: number of snapshot dates.
        spacing_days: days between consecutive snapshot dates.

    Returns:
        DataFrame: ``snapshot_date``, ``customer_id``, features, ``active``, ``spend``; latest
        snapshot first.

    Raises:
        ValueError: no transaction before the cutoff, or history too short for the horizon.
    """
    cutoff_day = to_day(cutoff, "cutoff")
    past = tx.loc[(tx["timestamp"] < cutoff_day).to_numpy()]
    if past.empty:
        raise ValueError(
            f"no transaction before the cutoff {cutoff_day.date()}: the data start on "
            f"{tx['timestamp'].min().date()}. Use a later cutoff."
        )
    dates = snapshot_dates(
        past["timestamp"].min(), cutoff_day, horizon_days, n_snapshots, spacing_days
    )
    parts = []
    for as_of in dates:
        rows = snapshot_rows(past, as_of, horizon_days)
        parts.append(rows)
        log.info(
            "snapshot %s: %d customers, %.1f%% active",
            as_of.date(),
            len(rows),
            100 * rows["active"].mean(),
        )
    return pd.concat(parts, ignore_index=True)


def same_season_snapshot(
    tx: pd.DataFrame, cutoff: DateLike, horizon_days: int
) -> pd.DataFrame | None:
    """Features as of ``cutoff - 52 weeks`` and labels over the horizon after it, or None.

    The label window ``[C - 364 d, C - 364 d + horizon_days)`` is the predicted window's season a
    year earlier; it must end by the cutoff, so ``horizon_days <= 364``. None (logged) when the
    horizon is longer, or when fewer than ``MIN_SEASON_BUYERS`` customers bought before that date
    or fewer than ``MIN_SEASON_ACTIVE`` bought in its window (too thin to estimate a level).

    Returns:
        DataFrame like :func:`build_training_set`'s (one snapshot), or None.
    """
    cutoff_day = to_day(cutoff, "cutoff")
    horizon_days = validate_horizon(horizon_days)
    if horizon_days > SEASON_LAG_DAYS:
        log.info("no same-season snapshot: horizon %d > %d days", horizon_days, SEASON_LAG_DAYS)
        return None
    as_of = cutoff_day - pd.Timedelta(days=SEASON_LAG_DAYS)
    past = tx.loc[(tx["timestamp"] < cutoff_day).to_numpy()]
    if not (past["timestamp"] < as_of).any():
        log.info("no same-season snapshot: no transaction before %s", as_of.date())
        return None
    rows = snapshot_rows(past, as_of, horizon_days)
    buyers = int((rows["n_purchase_days"] > 0).sum())
    active = int(rows["active"].sum())
    if buyers < MIN_SEASON_BUYERS or active < MIN_SEASON_ACTIVE:
        log.info(
            "no same-season snapshot at %s: %d buyers, %d active (need %d and %d)",
            as_of.date(),
            buyers,
            active,
            MIN_SEASON_BUYERS,
            MIN_SEASON_ACTIVE,
        )
        return None
    log.info("same-season snapshot %s: %d customers, %d active", as_of.date(), len(rows), active)
    return rows
