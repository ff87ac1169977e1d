"""Checks of a job's settings against the data, before any work (pure; raise ``InputError``)."""

from __future__ import annotations

import pandas as pd

from clvflow.core.dates import default_as_of
from clvflow.features.snapshots import shortest_history_days, usable_snapshots
from clvflow.models.training import SnapshotSettings


def check_history(
    tx: pd.DataFrame,
    cutoff: pd.Timestamp,
    horizon_days: int,
    snapshots: SnapshotSettings,
    *,
    count: bool = True,
) -> None:
    """Raise ValueError unless the history before ``cutoff`` holds at least one usable training
    snapshot: a full label window after the snapshot rule's minimum history, and enough
    customers (:func:`clvflow.features.snapshots.usable_snapshots`), checked before any run starts.
    ``count=False``: the history's length only, not the customers (a pass over the rows per
    candidate snapshot: ``clvflow train`` counts them while its first inputs are built)."""
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
    if not count:
        return
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
    end = default_as_of(tx)
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
    end = default_as_of(tx)
    if cutoff > end:
        last = (end - pd.Timedelta(days=1)).date()
        raise ValueError(
            f"cutoff {cutoff.date()} is after the end of the data (last transaction on {last}): "
            "the backtest window before it is not covered by the data; use a cutoff on or "
            f"before {end.date()}, or omit --cutoff"
        )
