"""Purchase counts and timing: the BTYD columns of the scores table and what they are judged on.

- ``expected_purchases``: purchase days expected in the window = ``p_active x`` BG/NBD's
  E[purchase days | at least one] (``bg_expected_purchases / bg_p_active``): the model's
  P(active), BG/NBD's count given a purchase, so that it agrees with ``p_active`` (at least 1
  when active, 0 when not). Without a usable BG/NBD fit the count given a purchase is the
  customer's historical rate x the horizon, at least 1.
- ``next_purchase_date``: the day by which the customer has more likely than not bought again
  (the median time to the next purchase), or empty (NaT, "not expected within the horizon")
  when P(active) < 0.5. Within the window the chance of a purchase by time ``t`` is ``p_active
  x P_bg(t) / P_bg(H)``, the model's P(active) spread over the window with BG/NBD's timing,
  where ``P_bg(t) / P_bg(H) = (1 - q(t)) / (1 - q(H))``, ``q(t) = ((alpha + T) / (alpha + T +
  t))^(r + x)`` (P(alive) cancels), solved in closed form. Without a usable BG/NBD fit the
  timing is a constant rate: ``1 - (1 - p_active)^(t / H)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.core.dates import DateLike, to_day
from clvflow.models.btyd import DAYS_PER_WEEK, BgNbdParams

#: P(active) at or above which a next purchase date is given.
NEXT_PURCHASE_MIN_P = 0.5


def purchases_given_active(
    bg_expected_purchases: np.ndarray, bg_p_active: np.ndarray
) -> np.ndarray:
    """BG/NBD's E[purchase days | at least one in the window] = expected / P(at least one),
    at least 1 (and 1 where BG/NBD gives no chance of a purchase)."""
    n = np.asarray(bg_expected_purchases, dtype="float64")
    q = np.asarray(bg_p_active, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        given = np.where(q > 1e-12, n / q, 1.0)
    return np.maximum(given, 1.0)


def expected_purchases(
    p_active: np.ndarray,
    bg_expected_purchases: np.ndarray | None,
    bg_p_active: np.ndarray | None,
    rate_count: np.ndarray,
) -> np.ndarray:
    """``p_active x`` E[purchase days | at least one] (module docstring).

    Args:
        p_active: the model's P(active) per customer.
        bg_expected_purchases, bg_p_active: BG/NBD's, or None without a usable fit.
        rate_count: the historical fallback, purchase days per day x horizon.
    """
    p = np.asarray(p_active, dtype="float64")
    fallback = np.maximum(np.asarray(rate_count, dtype="float64"), 1.0)
    if bg_expected_purchases is None or bg_p_active is None:
        return p * fallback
    return p * purchases_given_active(bg_expected_purchases, bg_p_active)


def next_purchase_days(
    p_active: np.ndarray,
    horizon_days: int,
    bgnbd: BgNbdParams | None,
    frequency: np.ndarray,
    T_days: np.ndarray,
) -> np.ndarray:
    """Days from ``as_of`` to the median time of the next purchase (module docstring); NaN when
    ``p_active < NEXT_PURCHASE_MIN_P`` (not expected within the horizon)."""
    p = np.asarray(p_active, dtype="float64")
    given = p >= NEXT_PURCHASE_MIN_P
    share = np.where(given, NEXT_PURCHASE_MIN_P / np.where(given, p, 1.0), 1.0)
    if bgnbd is None:
        with np.errstate(divide="ignore"):
            days = horizon_days * np.log(1.0 - share * p) / np.log1p(-np.minimum(p, 1 - 1e-12))
        return np.where(given, days, np.nan)
    power = bgnbd.r + np.asarray(frequency, dtype="float64")
    base = bgnbd.alpha + np.asarray(T_days, dtype="float64") / DAYS_PER_WEEK
    h = horizon_days / DAYS_PER_WEEK
    reach = -np.expm1(power * (np.log(base) - np.log(base + h)))  # 1 - q(H)
    with np.errstate(divide="ignore"):  # reach 1 (q(H) underflows) at share 1: t = inf, capped
        weeks = base * np.expm1(-np.log1p(-share * reach) / power)
    return np.where(given, np.minimum(weeks * DAYS_PER_WEEK, horizon_days), np.nan)


def next_purchase_date(as_of: DateLike, days: np.ndarray) -> pd.Series:
    """``as_of`` + the whole days elapsed (a purchase at day offset ``d`` falls on ``as_of +
    d``); NaT where ``days`` is NaN."""
    start = to_day(as_of, "as_of")
    offsets = pd.to_timedelta(np.floor(np.asarray(days, dtype="float64")), unit="D")
    return pd.Series(start + offsets, dtype="datetime64[ns]")


def window_purchases(tx: pd.DataFrame, as_of: DateLike, horizon_days: int) -> pd.DataFrame:
    """What the purchase columns are judged on, per customer known before ``as_of``:
    ``window_purchase_days`` in ``[as_of, as_of + horizon_days)`` (calendar days with a row of amount
    >= 0, the features' definition) and ``first_purchase_day`` (days from ``as_of`` to the
    first, NaN without one)."""
    start = to_day(as_of, "as_of")
    end = start + pd.Timedelta(days=horizon_days)
    ts = tx["timestamp"]
    known = pd.Index(tx.loc[(ts < start).to_numpy(), "customer_id"].unique()).sort_values()
    window = tx.loc[((ts >= start) & (ts < end) & (tx["amount"] >= 0)).to_numpy()]
    day = (window["timestamp"].dt.normalize() - start).dt.days
    days = pd.DataFrame({"customer_id": window["customer_id"].to_numpy(), "day": day.to_numpy()})
    grouped = days.groupby("customer_id")["day"]
    count = grouped.nunique().reindex(known).fillna(0)
    first = grouped.min().reindex(known)
    return pd.DataFrame(
        {
            "customer_id": known.astype("str"),
            "window_purchase_days": count.to_numpy("int64"),
            "first_purchase_day": first.to_numpy("float64"),
        }
    )
