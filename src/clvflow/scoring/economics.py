"""Unit economics from a segmented scores table: CLV vs acquisition cost, churn what-ifs.

Pure functions of DataFrames; CLV formulas come from clvflow.scoring.value. Money is in the currency of
the input amounts; CLV is margin-based (as in the scores table), so CLV:CAC compares profit to cost.
"""

from __future__ import annotations

import logging
from numbers import Real
from typing import Any

import numpy as np
import pandas as pd

from clvflow.scoring.segments import CHURN_RISKS, SEGMENTS, VALUE_TIERS, check_scores
from clvflow.scoring.value import horizon_clv, lifetime_clv

logger = logging.getLogger(__name__)

SEGMENT_TABLE_COLUMNS = (
    "customers",
    "clv_total",
    "clv_mean",
    "clv_lifetime_total",
    "clv_lifetime_mean",
    "churn_rate",
    "cac_mean",
    "clv_cac_ratio",
)
_ORDERS = {"segment": SEGMENTS, "value_tier": VALUE_TIERS, "churn_risk": CHURN_RISKS}


def _cac_per_customer(scores: pd.DataFrame, cac: float | pd.Series | None) -> np.ndarray:
    """CAC for each row of `scores` (NaN when `cac` is None); raise ValueError if invalid."""
    n = len(scores)
    if cac is None:
        return np.full(n, np.nan)
    if isinstance(cac, pd.Series):
        if cac.index.has_duplicates:
            dups = cac.index[cac.index.duplicated()].unique().tolist()[:5]
            raise ValueError(f"`cac` repeats customer_id(s) {dups}; give one CAC per customer")
        values = cac.reindex(pd.Index(scores["customer_id"])).to_numpy("float64")
        missing = np.isnan(values)
        if missing.any():
            ids = scores.loc[missing, "customer_id"].head(5).tolist()
            raise ValueError(
                f"`cac` has no value for {int(missing.sum())} customer(s), e.g. {ids}; "
                "index the Series by customer_id and cover every scored customer"
            )
    elif isinstance(cac, Real) and not isinstance(cac, bool):
        values = np.full(n, float(cac))
    else:
        raise ValueError(
            f"`cac` must be a number, a Series by customer_id or None, got {type(cac)}"
        )
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        ids = scores.loc[bad, "customer_id"].head(5).tolist()
        raise ValueError(f"`cac` must be finite and >= 0 (currency); bad for customers {ids}")
    return values


def _ordered(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Known label columns in their natural order (best first), others sorted."""
    known = _ORDERS.get(by)
    if known is None:
        return table.sort_index()
    order = [g for g in known if g in table.index] + sorted(set(table.index) - set(known))
    return table.loc[order]


def clv_cac_by_segment(
    scores: pd.DataFrame, cac: float | pd.Series | None, by: str = "segment"
) -> pd.DataFrame:
    """CLV, churn and CLV:CAC per group of customers.

    Args:
        scores: segmented scores table (see clvflow.scoring.segments.add_segments) with `by`, clv,
            clv_lifetime and p_churn.
        cac: customer acquisition cost (currency): one value for all, a Series indexed by
            customer_id covering every customer, or None (CAC columns are then NaN).
        by: column to group by, e.g. "segment", "value_tier", "churn_risk".

    Returns:
        One row per group (index named `by`; segments, tiers and risks in their natural order)
        with SEGMENT_TABLE_COLUMNS: customers; clv_total, clv_mean (horizon CLV);
        clv_lifetime_total, clv_lifetime_mean; churn_rate (mean p_churn, 0-1); cac_mean;
        clv_cac_ratio = clv_lifetime_mean / cac_mean (NaN when cac_mean is 0 or unknown).

    Raises:
        ValueError: a column is missing or invalid, or `cac` is invalid or misses customers.
    """
    check_scores(scores, ("customer_id", by, "clv", "clv_lifetime", "p_churn"))
    frame = pd.DataFrame(
        {
            by: scores[by].to_numpy(),
            "clv": scores["clv"].to_numpy("float64"),
            "clv_lifetime": scores["clv_lifetime"].to_numpy("float64"),
            "p_churn": scores["p_churn"].to_numpy("float64"),
            "cac": _cac_per_customer(scores, cac),
        }
    )
    table = frame.groupby(by, sort=False, dropna=False).agg(
        customers=("clv", "size"),
        clv_total=("clv", "sum"),
        clv_mean=("clv", "mean"),
        clv_lifetime_total=("clv_lifetime", "sum"),
        clv_lifetime_mean=("clv_lifetime", "mean"),
        churn_rate=("p_churn", "mean"),
        cac_mean=("cac", "mean"),
    )
    cac_mean = table["cac_mean"].to_numpy("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(cac_mean > 0, table["clv_lifetime_mean"].to_numpy() / cac_mean, np.nan)
    table["clv_cac_ratio"] = ratio
    return _ordered(table, by)


def what_if_churn_reduction(
    scores: pd.DataFrame,
    segment: str,
    points: float,
    *,
    by: str = "segment",
    horizon_days: int | None = None,
    margin: float,
    annual_discount_rate: float,
) -> dict[str, float | int | str]:
    """Gain in total CLV if churn in one group fell by `points` percentage points.

    For customers with ``scores[by] == segment``, p_active becomes min(p_active + points / 100, 1);
    horizon and lifetime CLV of every customer are computed with clvflow.scoring.value before and after.
    Give the margin and discount rate used at scoring: a warning is logged when they do not
    reproduce the table's ``clv``.

    Args:
        scores: segmented scores table with `by`, p_active, expected_spend_if_active, clv.
        segment: the group to act on, e.g. "at risk" or (with by="value_tier") "VIP".
        points: churn reduction in percentage points, 0-100 (5 = p_churn 0.90 -> 0.85).
        by: column holding `segment`.
        horizon_days: prediction window (days); default: the table's single horizon_days.
        margin: share of revenue that is profit, (0, 1].
        annual_discount_rate: e.g. 0.1 for 10% a year, [0, 1).

    Returns:
        dict with by, segment, points, customers_affected and, over the whole table (currency),
        clv_before, clv_after, clv_gain, clv_lifetime_before, clv_lifetime_after,
        clv_lifetime_gain.

    Raises:
        ValueError: bad columns or arguments, or no customer is in `segment`.
    """
    check_scores(scores, ("customer_id", by, "p_active", "expected_spend_if_active", "clv"))
    if not 0 <= points <= 100:
        raise ValueError(f"`points` is a churn reduction in percentage points, 0-100; got {points}")
    horizon_days = _horizon_days(scores, horizon_days)
    in_group = (scores[by] == segment).to_numpy(dtype=bool)
    if not in_group.any():
        groups = sorted(scores[by].dropna().astype(str).unique().tolist())
        raise ValueError(f"no customer has {by} == {segment!r}; values present: {groups}")
    spend_if_active = scores["expected_spend_if_active"].to_numpy("float64")
    p_before = scores["p_active"].to_numpy("float64")
    p_after = np.where(in_group, np.minimum(p_before + points / 100.0, 1.0), p_before)
    economics: dict[str, Any] = {
        "horizon_days": horizon_days,
        "margin": margin,
        "annual_discount_rate": annual_discount_rate,
    }
    clv_before = horizon_clv(p_before * spend_if_active, **economics)
    if not np.allclose(clv_before, scores["clv"].to_numpy("float64"), rtol=1e-6, atol=1e-9):
        logger.warning(
            "margin=%s, annual_discount_rate=%s, horizon_days=%s do not reproduce the table's clv; "
            "the what-if uses them anyway",
            margin,
            annual_discount_rate,
            horizon_days,
        )
    clv_after = horizon_clv(p_after * spend_if_active, **economics)
    life_before = lifetime_clv(spend_if_active, p_before, **economics)
    life_after = lifetime_clv(spend_if_active, p_after, **economics)
    result: dict[str, float | int | str] = {
        "by": by,
        "segment": segment,
        "points": float(points),
        "customers_affected": int(in_group.sum()),
        "clv_before": float(clv_before.sum()),
        "clv_after": float(clv_after.sum()),
        "clv_gain": float((clv_after - clv_before).sum()),
        "clv_lifetime_before": float(life_before.sum()),
        "clv_lifetime_after": float(life_after.sum()),
        "clv_lifetime_gain": float((life_after - life_before).sum()),
    }
    logger.info(
        "what-if: %s churn -%s pts for %d customers: clv +%.2f, lifetime clv +%.2f",
        segment,
        points,
        result["customers_affected"],
        result["clv_gain"],
        result["clv_lifetime_gain"],
    )
    return result


def _horizon_days(scores: pd.DataFrame, horizon_days: int | None) -> int:
    """The explicit horizon, checked against the table's, or the table's single horizon."""
    table_horizons = (
        sorted(scores["horizon_days"].unique().tolist()) if "horizon_days" in scores else []
    )
    if horizon_days is None:
        if len(table_horizons) != 1:
            raise ValueError(
                f"pass horizon_days: the table has horizon_days values {table_horizons}"
            )
        return int(table_horizons[0])
    if table_horizons and table_horizons != [horizon_days]:
        raise ValueError(f"horizon_days={horizon_days} but the table has {table_horizons}")
    if horizon_days <= 0:
        raise ValueError(f"horizon_days must be a positive number of days, got {horizon_days}")
    return int(horizon_days)
