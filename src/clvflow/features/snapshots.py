"""Training set: stacked snapshots of (features at C0, labels after C0) before a cutoff.

Snapshot dates are ``C0 = cutoff - horizon_days - k * spacing_days`` for k = 0 .. n_snapshots - 1,
so every label window ``[C0, C0 + horizon_days)`` ends on or before the cutoff. Nothing dated on or
after the cutoff is even looked at.

:func:`same_season_snapshot` gives one more snapshot, 52 weeks before the cutoff: its label window
covers the same season (and weekday mix) as the window being predicted, a year earlier.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvflow.core.cores import map_in_order
from clvflow.core.dates import DateLike, rows_before, to_day
from clvflow.core.idcodes import encode_ids
from clvflow.core.progress import track
from clvflow.core.steptimes import timed_step
from clvflow.features.build import CustomerDays, build_features, features_from_days
from clvflow.features.labels import LABEL_COLUMNS, build_labels, validate_horizon

log = logging.getLogger(__name__)

#: The same-season snapshot lies this many days before the cutoff (52 weeks: same weekdays).
SEASON_LAG_DAYS = 364
#: Below these counts the same-season snapshot is too thin to estimate a level from.
MIN_SEASON_BUYERS, MIN_SEASON_ACTIVE = 1000, 100


@dataclass(frozen=True)
class SnapshotRule:
    """When a snapshot has enough to learn from (see ``docs/model-research.md`` for the choice).

    A snapshot at ``C0`` is used only with at least ``min_history_days`` days between the first
    transaction and ``C0``, ``min_buyers`` customers with a purchase before ``C0``, and at least
    ``min_outcomes`` customers both active and inactive in its label window. Shorter histories
    gave BTYD fits that run off and boosters fitted on a handful of days of behaviour (CDNOW
    measurements in ``docs/model-research.md``).
    """

    min_history_days: int = 31
    min_buyers: int = 50
    min_outcomes: int = 10


@dataclass(frozen=True)
class SnapshotCheck:
    """One candidate snapshot: what it holds and whether it was used (``reason``: why not)."""

    snapshot_date: pd.Timestamp
    history_days: int
    n_buyers: int
    n_active: int
    used: bool
    reason: str = ""

    def describe(self) -> str:
        what = f"{self.snapshot_date.date()} ({self.history_days} days of history"
        if self.n_buyers:
            what += f", {self.n_buyers:,} buyers, {self.n_active:,} active"
        return what + ("): used" if self.used else f"): dropped, {self.reason}")


def snapshot_dates(
    cutoff: DateLike, horizon_days: int, n_snapshots: int, spacing_days: int
) -> list[pd.Timestamp]:
    """Candidate snapshot dates, latest first: ``cutoff - horizon_days - k * spacing_days``, so
    every label window ends by the cutoff.

    Raises:
        ValueError: n_snapshots or spacing_days below 1.
    """
    if n_snapshots < 1 or spacing_days < 1:
        raise ValueError(
            f"n_snapshots and spacing_days must be >= 1 (got {n_snapshots}, {spacing_days})"
        )
    cutoff_day = to_day(cutoff, "cutoff")
    horizon = pd.Timedelta(days=validate_horizon(horizon_days))
    return [cutoff_day - horizon - pd.Timedelta(days=k * spacing_days) for k in range(n_snapshots)]


def shortest_history_days(horizon_days: int, rule: SnapshotRule) -> int:
    """Days of history before a cutoff that the latest snapshot needs: its label window plus
    the rule's minimum history."""
    return horizon_days + rule.min_history_days


def snapshot_rows(
    past: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int, days: CustomerDays | None = None
) -> pd.DataFrame:
    """One snapshot: ``snapshot_date``, ``customer_id``, features as of ``as_of`` and the labels of
    ``[as_of, as_of + horizon_days)``, computed from ``past`` (only its rows dated before the
    window's end are read, so a log not cut at the cutoff gives the same rows). ``days``:
    ``past``'s customer-days (:func:`clvflow.features.build.customer_days`), to build the
    features from (the same ones, without sorting the rows again)."""
    features = build_features(past, as_of) if days is None else features_from_days(days, as_of)
    labels = build_labels(past, as_of, horizon_days)
    if features["customer_id"].array.equals(labels["customer_id"].array):
        # (the usual case: both list the customers known at as_of in id order; a join by text
        # would give the same rows at the cost of hashing every id)
        rows = features
        for column in LABEL_COLUMNS:
            rows[column] = labels[column].to_numpy()
    else:
        rows = features.merge(labels, on="customer_id", how="left", validate="one_to_one")
    rows.insert(0, "snapshot_date", as_of)
    return rows


def check_snapshots(
    past: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    n_snapshots: int,
    spacing_days: int,
    rule: SnapshotRule,
) -> list[SnapshotCheck]:
    """Judge every candidate snapshot by the rule, from counts over ``past`` (transactions
    before the cutoff) without building features: buyers = customers with a purchase row
    (amount >= 0) before the snapshot, active = those of the customers known then with a purchase
    row in its label window (the definitions of features and labels)."""
    first = past["timestamp"].min().normalize()
    ts = past["timestamp"].to_numpy()
    coded = encode_ids(past["customer_id"])  # integer codes: distinct counts without text hashing
    ids = np.where(coded.codes < 0, coded.n_ids, coded.codes)  # (a missing id counts as one id)
    n_codes = coded.n_ids + 1
    buys = past["amount"].to_numpy() >= 0
    horizon = pd.Timedelta(days=horizon_days)
    checks = []
    for as_of in snapshot_dates(cutoff, horizon_days, n_snapshots, spacing_days):
        history = (as_of - first).days
        if history < rule.min_history_days:
            reason = f"history < {rule.min_history_days} days"
            checks.append(SnapshotCheck(as_of, history, 0, 0, False, reason))
            continue
        before = ts < as_of.to_datetime64()
        known = np.bincount(ids[before], minlength=n_codes) > 0
        n_buyers = int((np.bincount(ids[before & buys], minlength=n_codes) > 0).sum())
        window = (~before) & (ts < (as_of + horizon).to_datetime64()) & buys
        n_active = int((known & (np.bincount(ids[window], minlength=n_codes) > 0)).sum())
        n_inactive = int(known.sum()) - n_active
        reason = ""
        if n_buyers < rule.min_buyers:
            reason = f"fewer than {rule.min_buyers} buyers"
        elif min(n_active, n_inactive) < rule.min_outcomes:
            reason = f"fewer than {rule.min_outcomes} active or inactive customers in its window"
        checks.append(SnapshotCheck(as_of, history, n_buyers, n_active, not reason, reason))
    return checks


def usable_snapshots(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    n_snapshots: int,
    spacing_days: int,
    rule: SnapshotRule,
) -> list[SnapshotCheck]:
    """:func:`check_snapshots` on the transactions before ``cutoff``, raising when none is
    usable.

    Raises:
        ValueError: no transaction before the cutoff, or no usable snapshot (the message gives
            each candidate's reason and what would make one usable).
    """
    cutoff_day = to_day(cutoff, "cutoff")
    past = rows_before(tx, cutoff_day)
    if past.empty:
        raise ValueError(
            f"no transaction before the cutoff {cutoff_day.date()}: the data start on "
            f"{tx['timestamp'].min().date()}. Use a later cutoff."
        )
    checks = check_snapshots(past, cutoff_day, horizon_days, n_snapshots, spacing_days, rule)
    if not any(c.used for c in checks):
        first = past["timestamp"].min().normalize()
        raise ValueError(_no_snapshot_message(checks, first, cutoff_day, horizon_days, rule))
    return checks


def _no_snapshot_message(
    checks: list[SnapshotCheck],
    first: pd.Timestamp,
    cutoff: pd.Timestamp,
    horizon_days: int,
    rule: SnapshotRule,
) -> str:
    """Why no candidate snapshot is usable, and what would make one usable."""
    head = (
        f"no usable training snapshot before the cutoff {cutoff.date()} with "
        f"horizon_days={horizon_days}: " + "; ".join(c.describe() for c in checks)
    )
    if any(c.n_buyers for c in checks):  # history was enough somewhere: too few customers
        return (
            f"{head}. Snapshots need {rule.min_buyers} customers with a purchase and "
            f"{rule.min_outcomes} customers both active and inactive in their label window: "
            "use more data (a later cutoff) or another horizon."
        )
    need = shortest_history_days(horizon_days, rule)
    have = (cutoff - first).days
    shorter = have - rule.min_history_days
    return (
        f"{head}. The data start on {first.date()} ({have} days before the cutoff); a snapshot "
        f"needs {rule.min_history_days} days of history and a full {horizon_days}-day label "
        f"window before the cutoff, i.e. at least {need} days. Use a cutoff on or after "
        f"{(first + pd.Timedelta(days=need)).date()}"
        + (f" or --horizon-days {shorter} or less" if shorter >= 1 else "")
        + ", or more data."
    )


@dataclass
class SnapshotStream:
    """The rows of each usable snapshot (:func:`snapshot_rows`), oldest first, each built when
    the one before it is taken (on other threads when :func:`snapshot_stream` was given them):
    a consumer that stacks them one at a time (:meth:`clvflow.models.clv.ClvModel.stack_inputs`)
    never holds them all (GBs at a million customers) and works beside their building."""

    frames: Iterator[pd.DataFrame]
    n_snapshots: int
    #: At most this many rows in all (every snapshot lists at most the customers of the days).
    max_rows: int


@timed_step("features and labels")
def snapshot_stream(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    days: CustomerDays,
    *,
    n_snapshots: int = 4,
    spacing_days: int = 30,
    rule: SnapshotRule | None = None,
    threads: int = 1,
) -> tuple[SnapshotStream, list[SnapshotCheck]]:
    """The usable snapshots whose label window ends by ``cutoff`` as a :class:`SnapshotStream`
    (features from ``days``: ``tx``'s customer-days up to the cutoff), and the check of every
    candidate (logged). ``threads`` > 1: the next snapshots are built on that many threads
    while the current one is consumed (two at most ahead); the rows are the same.

    Raises:
        ValueError: no transaction before the cutoff, or no usable snapshot (the message gives
            each candidate's reason and the shortest history that would work).
    """
    used, checks = _used_dates(tx, cutoff, horizon_days, n_snapshots, spacing_days, rule)
    # Every used snapshot's label window ends by the cutoff, so its rows read only transactions
    # before it: ``tx`` itself serves, without a copy cut at the cutoff (GBs at 1M customers).
    frames = map_in_order(
        lambda day: snapshot_rows(tx, day, horizon_days, days), used, threads, in_flight=2
    )
    return SnapshotStream(frames, len(used), len(used) * len(days.ids)), checks


@timed_step("features and labels")
def snapshot_parts(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    n_snapshots: int = 4,
    spacing_days: int = 30,
    rule: SnapshotRule | None = None,
    days: CustomerDays | None = None,
) -> tuple[list[pd.DataFrame], list[SnapshotCheck]]:
    """The feature/label rows of each usable snapshot whose label window ends by ``cutoff``
    (one frame per snapshot, latest first), and the check of every candidate (logged). What
    :func:`stack_snapshots` stacks.

    Args:
        tx: transactions table.
        cutoff: date; only transactions dated before it are used.
        horizon_days: label window length in days.
        n_snapshots: number of candidate snapshot dates.
        spacing_days: days between consecutive snapshot dates.
        rule: what makes a snapshot usable (default :class:`SnapshotRule`).
        days: ``tx``'s customer-days up to the cutoff, to build the features from
            (:func:`snapshot_rows`).

    Returns:
        (parts, checks): each part has ``snapshot_date``, ``customer_id``, features,
        ``active``, ``spend``, latest snapshot first; checks has one entry per candidate date.

    Raises:
        ValueError: no transaction before the cutoff, or no usable snapshot (the message gives
            each candidate's reason and the shortest history that would work).
    """
    used, checks = _used_dates(tx, cutoff, horizon_days, n_snapshots, spacing_days, rule)
    # (as in snapshot_stream: ``tx`` itself serves, without a copy cut at the cutoff)
    parts = [
        snapshot_rows(tx, day, horizon_days, days)
        for day in track(used[::-1], "training snapshots (features, labels)", len(used))
    ]
    return parts, checks


def _used_dates(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    n_snapshots: int,
    spacing_days: int,
    rule: SnapshotRule | None,
) -> tuple[list[pd.Timestamp], list[SnapshotCheck]]:
    """(the usable snapshot dates, oldest first; every candidate's check, logged)."""
    rule = rule or SnapshotRule()
    checks = usable_snapshots(tx, cutoff, horizon_days, n_snapshots, spacing_days, rule)
    for check in checks:
        log.info("snapshot %s", check.describe())
    return sorted(c.snapshot_date for c in checks if c.used), checks


@timed_step("features and labels")
def stack_snapshots(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    n_snapshots: int = 4,
    spacing_days: int = 30,
    rule: SnapshotRule | None = None,
) -> tuple[pd.DataFrame, list[SnapshotCheck]]:
    """Stacked feature/label rows of the usable snapshots (:func:`snapshot_parts`, same
    arguments and errors), latest snapshot first, and the check of every candidate."""
    parts, checks = snapshot_parts(
        tx, cutoff, horizon_days, n_snapshots=n_snapshots, spacing_days=spacing_days, rule=rule
    )
    return pd.concat(parts, ignore_index=True), checks


def build_training_set(
    tx: pd.DataFrame,
    cutoff: DateLike,
    horizon_days: int,
    *,
    n_snapshots: int = 4,
    spacing_days: int = 30,
    rule: SnapshotRule | None = None,
) -> pd.DataFrame:
    """The rows of :func:`stack_snapshots` (same arguments and errors)."""
    rows, _ = stack_snapshots(
        tx, cutoff, horizon_days, n_snapshots=n_snapshots, spacing_days=spacing_days, rule=rule
    )
    return rows


@timed_step("features and labels")
def same_season_snapshot(
    tx: pd.DataFrame, cutoff: DateLike, horizon_days: int, days: CustomerDays | None = None
) -> pd.DataFrame | None:
    """Features as of ``cutoff - 52 weeks`` and labels over the horizon after it, or None.

    The label window ``[C - 364 d, C - 364 d + horizon_days)`` is the predicted window's season a
    year earlier; it must end by the cutoff, so ``horizon_days <= 364``. None (logged) when the
    horizon is longer, or when fewer than ``MIN_SEASON_BUYERS`` customers bought before that date
    or fewer than ``MIN_SEASON_ACTIVE`` bought in its window (too thin to estimate a level).

    ``days``: ``tx``'s customer-days up to the cutoff, to build the features from
    (:func:`snapshot_rows`).

    Returns:
        DataFrame like :func:`build_training_set`'s (one snapshot), or None.
    """
    cutoff_day = to_day(cutoff, "cutoff")
    horizon_days = validate_horizon(horizon_days)
    if horizon_days > SEASON_LAG_DAYS:
        log.info("no same-season snapshot: horizon %d > %d days", horizon_days, SEASON_LAG_DAYS)
        return None
    as_of = cutoff_day - pd.Timedelta(days=SEASON_LAG_DAYS)
    # (its label window ends by the cutoff: ``tx`` itself serves, no copy cut at the cutoff)
    if not (tx["timestamp"] < as_of).any():
        log.info("no same-season snapshot: no transaction before %s", as_of.date())
        return None
    rows = snapshot_rows(tx, as_of, horizon_days, days)
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
