"""Dates: one way to turn a user-given date into a day (timezone-naive midnight Timestamp)."""

from __future__ import annotations

import datetime as dt

import pandas as pd

DateLike = str | dt.date | dt.datetime | pd.Timestamp


def to_day(value: DateLike, name: str = "as_of") -> pd.Timestamp:
    """Parse a date given as str, ``date``, ``datetime`` or ``Timestamp`` into a naive day.

    Args:
        value: e.g. ``"1998-01-01"``, ``date(1998, 1, 1)``, ``pd.Timestamp("1998-01-01")``.
        name: the argument name, for the error message.

    Returns:
        A timezone-naive ``Timestamp`` at midnight.

    Raises:
        ValueError: unparseable, or with a time of day other than midnight.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{name}: {value!r} is not a date; use YYYY-MM-DD") from exc
    # pd.Timestamp("NaT") returns NaT, which pandas-stubs does not model
    if ts is pd.NaT:  # type: ignore[comparison-overlap]
        raise ValueError(f"{name}: {value!r} is not a date; use YYYY-MM-DD")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    if ts != ts.normalize():
        raise ValueError(f"{name}: {value!r} has a time of day; give a date (YYYY-MM-DD)")
    return ts.as_unit("us") if hasattr(ts, "as_unit") else ts


def day_after(ts: pd.Timestamp) -> pd.Timestamp:
    """The day after the day of ``ts`` (the default as-of / cutoff for a log ending at ``ts``)."""
    return pd.Timestamp(ts).normalize() + pd.Timedelta(days=1)


def default_as_of(tx: pd.DataFrame) -> pd.Timestamp:
    """The default as-of date and cutoff: the day after the last transaction's day."""
    return day_after(tx["timestamp"].max())


def rows_before(tx: pd.DataFrame, day: pd.Timestamp) -> pd.DataFrame:
    """The rows of a transactions table dated before ``day``. When all are, ``tx`` itself as a
    copy-on-write shallow copy (no data copied): a log already cut at ``day`` is not duplicated
    (at a million customers each copy of the log is hundreds of MB)."""
    before = (tx["timestamp"] < day).to_numpy()
    if before.all():
        return tx.copy(deep=False)
    return tx.loc[before]
