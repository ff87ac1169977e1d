"""Value tiers, churn risk, RFM-style segments and retention priorities for a scores table.

Pure functions of the scores table (see docs/architecture.md, "Contract 4: the scores table"); no
I/O. Every rule is deterministic: the same table, in any row order, gets the same labels.

No net spend, no VIP: a customer whose net spend to date (``historical_clv``: purchases minus
returns and cancellations) is <= 0 gets value tier "low" whatever the model predicts, and comes
after every customer with positive net spend in ``retention_priority``. An order cancelled in full
must not make its customer a VIP or the top retention priority.

Retention or win-back: a customer whose P(alive) (``p_alive``, the model's BG/NBD probability that
the customer has not silently left for good) is below WINBACK_P_ALIVE is a win-back target, not a
retention priority: ranked by ``winback_priority`` (by spend to date) and after every customer
still alive in ``retention_priority``.

Segment rules
-------------
Each customer gets R, F and M scores from 1 (worst) to 5 (best), the quintile of the customer
within the table: R from ``recency_days`` (fewer days since the last purchase is better), F from
``purchase_days``, M from ``historical_clv``. Score = ceil(5 x rank / n) with ties given the lowest
rank of their group (pandas ``method="min"``), so tied customers share a score and e.g. all
one-time buyers get the same F (F = 1 when they are the most common kind). The first matching rule
names the segment (in this order):

1. ``new``: ``tenure_days`` < NEW_TENURE_DAYS (too little history to judge).
2. ``can't lose them``: M = 5 and churn_risk "high" (top-fifth spenders predicted to leave).
3. ``champions``: R >= 4, F >= 4 and M >= 4.
4. ``loyal``: F >= 4 and R >= 3.
5. ``potential loyalists``: R >= 4 (recent, not yet frequent or valuable).
6. ``at risk``: F >= 3 or M >= 4 (were frequent or valuable, no longer recent: R <= 3).
7. ``lost``: R <= 2 and churn_risk "high" (lapsed, infrequent, low value, predicted gone).
8. ``hibernating``: everyone else (lapsed, infrequent, low value, the model still sees a chance).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clvflow.scoring.scores import SCORES_TABLE_COLUMNS

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "customer_id",
    "p_churn",
    "expected_spend_if_active",
    "expected_spend",
    "clv",
    "clv_lifetime",
    "historical_clv",
    "purchase_days",
    "recency_days",
    "tenure_days",
    "p_alive",
)
NUMERIC_COLUMNS = frozenset(SCORES_TABLE_COLUMNS) - {"customer_id", "as_of"}
SEGMENT_COLUMNS = (
    "clv_percentile",
    "value_tier",
    "churn_risk",
    "segment",
    "value_at_risk",
    "retention_priority",
    "winback_priority",
)

# Value tiers by clv_percentile: a tier holds the customers whose percentile is above
# 100 - (cumulative top share). Top 5% VIP, next 15% high, next 30% medium, the rest low.
VALUE_TIERS = ("VIP", "high", "medium", "low")
VIP_TOP_PCT = 5.0
HIGH_TOP_PCT = 20.0
MEDIUM_TOP_PCT = 50.0

# Churn risk from p_churn over the horizon (fixed, not quantiles, so labels mean the same across
# tables and dates). Over a short window most retail customers do not buy, so p_churn >= 0.8 is
# common; "high" flags customers with less than a 1-in-5 chance of buying, "low" those more likely
# to buy than not.
CHURN_RISKS = ("low", "medium", "high")
CHURN_RISK_MEDIUM = 0.5
CHURN_RISK_HIGH = 0.8

#: P(alive) below this: the customer is most likely gone for good, a win-back target.
WINBACK_P_ALIVE = 0.05

NEW_TENURE_DAYS = 90  # first purchase less than this many days before as_of: segment "new"
SEGMENTS = (
    "champions",
    "loyal",
    "potential loyalists",
    "new",
    "at risk",
    "can't lose them",
    "hibernating",
    "lost",
)


def check_scores(scores: pd.DataFrame, required: tuple[str, ...] = REQUIRED_COLUMNS) -> None:
    """Raise ValueError unless `scores` has the `required` columns, numeric ones finite.

    Args:
        scores: a scores table.
        required: column names that must be present.

    Raises:
        ValueError: a column is missing, a numeric column is not numeric or holds NaN/inf, or a
            probability is outside [0, 1]; the message names the column and the first offenders.
    """
    missing = [c for c in required if c not in scores.columns]
    if missing:
        raise ValueError(
            f"scores table lacks column(s) {missing}; has {list(scores.columns)}. "
            "Pass the output of clvflow scoring."
        )
    for col in required:
        if col not in NUMERIC_COLUMNS:
            continue
        if not pd.api.types.is_numeric_dtype(scores[col]):
            raise ValueError(f"column `{col}` must be numeric, got dtype {scores[col].dtype}")
        bad = ~np.isfinite(scores[col].to_numpy("float64"))
        if bad.any():
            ids = scores.loc[bad, "customer_id"].head(5).tolist()
            raise ValueError(f"column `{col}` has NaN/inf for {int(bad.sum())} rows, e.g. {ids}")
    for col in ("p_active", "p_churn", "p_alive"):
        if col not in required:
            continue
        p = scores[col].to_numpy("float64")
        bad = (p < 0) | (p > 1)
        if bad.any():
            ids = scores.loc[bad, "customer_id"].head(5).tolist()
            raise ValueError(
                f"column `{col}` must be in [0, 1]; {int(bad.sum())} rows not, e.g. {ids}"
            )


def _quintile_score(values: pd.Series, higher_is_better: bool) -> np.ndarray:
    """1..5 quintile score within the table; ties get the lowest rank of their group."""
    n = len(values)
    ranks = values.rank(method="min", ascending=higher_is_better).to_numpy("float64")
    return np.ceil(5.0 * ranks / n).astype("int64")  # multiply first: exact at quintile edges


def _value_tier(percentile: np.ndarray, has_net_spend: np.ndarray) -> np.ndarray:
    conditions = [
        percentile > 100.0 - VIP_TOP_PCT,
        percentile > 100.0 - HIGH_TOP_PCT,
        percentile > 100.0 - MEDIUM_TOP_PCT,
    ]
    tier = np.select(conditions, list(VALUE_TIERS[:3]), default=VALUE_TIERS[3])
    return np.where(has_net_spend, tier, VALUE_TIERS[3])


def _churn_risk(p_churn: np.ndarray) -> np.ndarray:
    conditions = [p_churn >= CHURN_RISK_HIGH, p_churn >= CHURN_RISK_MEDIUM]
    return np.select(conditions, ["high", "medium"], default="low")


def _segment(scores: pd.DataFrame, churn_risk: np.ndarray) -> np.ndarray:
    """Apply the module docstring's segment rules, first match wins."""
    r = _quintile_score(scores["recency_days"], higher_is_better=False)
    f = _quintile_score(scores["purchase_days"], higher_is_better=True)
    m = _quintile_score(scores["historical_clv"], higher_is_better=True)
    high_risk = churn_risk == "high"
    rules = {
        "new": scores["tenure_days"].to_numpy("float64") < NEW_TENURE_DAYS,
        "can't lose them": (m == 5) & high_risk,
        "champions": (r >= 4) & (f >= 4) & (m >= 4),
        "loyal": (f >= 4) & (r >= 3),
        "potential loyalists": r >= 4,
        "at risk": (f >= 3) | (m >= 4),
        "lost": (r <= 2) & high_risk,
    }
    return np.select(list(rules.values()), list(rules.keys()), default="hibernating")


def clv_if_active(scores: pd.DataFrame) -> np.ndarray:
    """Horizon CLV per customer if the customer buys in the window (currency).

    expected_spend_if_active x the table's margin-and-discount factor, read from the table as
    sum(clv) / sum(expected_spend) (the same for every row: clv = expected_spend x margin x
    discount), so no economics need to be passed. Without any expected spend (a warning) the
    factor is 1.
    """
    spend = scores["expected_spend"].to_numpy("float64")
    total = spend.sum()
    if total > 0:
        factor = scores["clv"].to_numpy("float64").sum() / total
    else:
        factor = 1.0
        if len(scores):
            logger.warning("no expected spend in the table: clv_if_active taken at margin 1")
    return factor * scores["expected_spend_if_active"].to_numpy("float64")


def _rank(by_id: np.ndarray, value: np.ndarray, group: np.ndarray) -> np.ndarray:
    """1..n: by group ascending, then value descending, then the order of ``by_id``."""
    order = by_id[np.argsort(-value[by_id], kind="stable")]
    order = order[np.argsort(group[order], kind="stable")]
    rank = np.empty(len(value), dtype="int64")
    rank[order] = np.arange(1, len(value) + 1)
    return rank


def add_segments(scores: pd.DataFrame) -> pd.DataFrame:
    """Add value/risk columns to a scores table (one row per customer).

    Adds, in this order (replacing them if present):
    - ``clv_percentile``: 0-100, 100 x rank of ``clv`` / n, ties averaged (highest clv = 100).
    - ``value_tier``: "VIP" if clv_percentile > 95 (top 5%), "high" if > 80 (next 15%), "medium"
      if > 50 (next 30%), else "low"; but always "low" when historical_clv (net spend to date)
      is <= 0. Equal clv and positive net spend always get the same tier.
    - ``churn_risk``: "low" if p_churn < 0.5, "medium" if 0.5 <= p_churn < 0.8, else "high".
    - ``segment``: RFM-style name, rules in the module docstring.
    - ``value_at_risk``: max(p_alive - p_active, 0) x clv_if_active (currency) = P(alive) x
      P(no purchase in the window | alive) x clv_if_active: the horizon value of the customers
      still alive who will not buy, i.e. what retention can still save. clv_if_active is the
      horizon CLV of the window if the customer does buy: expected_spend_if_active x the table's
      own margin-and-discount factor (clv / expected_spend). Per customer clv + value_at_risk =
      p_alive x clv_if_active (the value if retained), so the long gone (p_alive ~ 0) have
      almost none, and total value_at_risk <= total value if retained.
    - ``retention_priority``: 1..n: first the customers still alive (p_alive >= WINBACK_P_ALIVE)
      with historical_clv > 0, then those alive without net spend, then the win-back targets;
      within each, by value_at_risk descending, ties by customer_id ascending.
    - ``winback_priority``: 1..k for the k win-back targets (p_alive < WINBACK_P_ALIVE), by
      historical_clv (spend to date) descending, ties by customer_id ascending; 0 for the others.

    Args:
        scores: scores table with at least REQUIRED_COLUMNS, unique customer_id.

    Returns:
        A copy of `scores` with the columns above appended.

    Raises:
        ValueError: a required column is missing or invalid, or a customer_id repeats.
    """
    check_scores(scores)
    dup = scores["customer_id"].duplicated()
    if dup.any():
        repeated = scores.loc[dup, "customer_id"].head(5).tolist()
        raise ValueError(
            f"customer_id repeats ({int(dup.sum())} rows, e.g. {repeated}); segment one scores table "
            "(one as_of) at a time"
        )
    out = scores.drop(columns=[c for c in SEGMENT_COLUMNS if c in scores.columns])
    n = len(out)
    if n == 0:
        for col, dtype in zip(
            SEGMENT_COLUMNS,
            ("float64", "str", "str", "str", "float64", "int64", "int64"),
            strict=True,
        ):
            out[col] = pd.Series(dtype=dtype)
        return out
    ranks = out["clv"].rank(method="average").to_numpy("float64")
    percentile = 100.0 * ranks / n
    risk = _churn_risk(out["p_churn"].to_numpy("float64"))
    has_net_spend = out["historical_clv"].to_numpy("float64") > 0
    out["clv_percentile"] = percentile
    out["value_tier"] = _value_tier(percentile, has_net_spend)
    out["churn_risk"] = risk
    out["segment"] = _segment(out, risk)
    p_alive = out["p_alive"].to_numpy("float64")
    p_active = 1.0 - out["p_churn"].to_numpy("float64")
    out["value_at_risk"] = np.maximum(p_alive - p_active, 0.0) * clv_if_active(out)
    # Groups (alive with net spend, alive without, win-back) in order, within each by
    # value_at_risk descending, ties by customer_id ascending: stable sorts on the value then the
    # group after ordering by id (scores tables usually arrive sorted by id: that step is skipped).
    ids = out["customer_id"].reset_index(drop=True)
    by_id = (
        np.arange(n) if ids.is_monotonic_increasing else np.argsort(ids.to_numpy(), kind="stable")
    )
    winback = p_alive < WINBACK_P_ALIVE
    group = np.where(winback, 2, np.where(has_net_spend, 0, 1))
    out["retention_priority"] = _rank(by_id, out["value_at_risk"].to_numpy(), group)
    spend = out["historical_clv"].to_numpy("float64")
    winback_rank = _rank(by_id, spend, (~winback).astype("int64"))
    out["winback_priority"] = np.where(winback, winback_rank, 0)
    logger.debug("segmented %d customers: %s", n, out["segment"].value_counts().to_dict())
    return out
