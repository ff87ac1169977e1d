"""build_features equals, bit for bit, the straightforward DuckDB query it replaced.

The reference below is the previous implementation (one DuckDB query over the pandas frame, money
as DECIMAL(18,4), then the same derivations; since then a purchase day's spend is its net amount
floored at 0), kept as an oracle: any change of meaning in the numpy engine shows up here on a
simulated log with returns, same-day cancellations, zero amounts and split baskets.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from clvflow.core.dates import to_day
from clvflow.data.simulate import simulate
from clvflow.features import build as features
from clvflow.features.build import FEATURE_COLUMNS, RECENT_WINDOWS_DAYS, build_features


def _window_sql() -> str:
    parts = []
    for w in RECENT_WINDOWS_DAYS:
        parts.append(f"count(buy) FILTER (WHERE day >= $as_of_day - {w}) AS purchase_days_{w}d")
        parts.append(
            f"coalesce(sum(coalesce(buy, 0) - coalesce(ret, 0)) FILTER "
            f"(WHERE day >= $as_of_day - {w}), 0) AS spend_{w}d"
        )
    return ",\n        ".join(parts)


_SQL = f"""
WITH days AS (
    SELECT customer_id,
           CAST(timestamp AS DATE) AS day,
           sum(CAST(amount AS DECIMAL(18, 4))) FILTER (WHERE amount >= 0) AS buy,
           sum(CAST(-amount AS DECIMAL(18, 4))) FILTER (WHERE amount < 0) AS ret
    FROM tx
    WHERE timestamp < $as_of
    GROUP BY ALL
),
d AS (
    -- spend of a purchase day: its net amount (same-day returns taken off), floored at 0
    SELECT *, CASE WHEN buy IS NOT NULL THEN greatest(buy - coalesce(ret, 0), 0) END AS spend
    FROM days
),
agg AS (
    SELECT customer_id,
        min(day) AS first_day,
        min(day) FILTER (WHERE buy IS NOT NULL) AS fp,
        max(day) FILTER (WHERE buy IS NOT NULL) AS lp,
        count(buy) AS n_purchase_days,
        coalesce(sum(buy), 0) AS gross_spend,
        coalesce(sum(spend), 0) AS purchase_spend,
        coalesce(sum(ret), 0) AS return_amount,
        count(ret) AS n_return_days,
        coalesce(max(spend), 0) AS max_spend_per_day,
        coalesce(arg_min(spend, day) FILTER (WHERE buy IS NOT NULL), 0) AS first_purchase_spend,
        coalesce(arg_max(spend, day) FILTER (WHERE buy IS NOT NULL), 0) AS last_purchase_spend,
        {_window_sql()},
        coalesce(sum(coalesce(buy, 0) - coalesce(ret, 0)) FILTER
            (WHERE day >= $as_of_day - 360 AND day < $as_of_day - 180), 0) AS spend_prev_180d
    FROM d
    GROUP BY customer_id
),
g AS (
    SELECT customer_id, day,
           day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS gap
    FROM d
    WHERE buy IS NOT NULL
),
gaps AS (
    SELECT customer_id,
           count(gap) AS n_gaps,
           sum(gap) AS gap_sum,
           sum(gap * gap) AS gap_sq_sum,
           max(gap) AS gap_max_days,
           arg_max(gap, day) AS gap_last_days
    FROM g
    WHERE gap IS NOT NULL
    GROUP BY customer_id
)
SELECT agg.*, gaps.n_gaps, gaps.gap_sum, gaps.gap_sq_sum, gaps.gap_max_days, gaps.gap_last_days
FROM agg LEFT JOIN gaps USING (customer_id)
ORDER BY customer_id
"""


def reference_features(tx: pd.DataFrame, as_of: str) -> pd.DataFrame:
    day = to_day(as_of)
    con = duckdb.connect()
    try:
        con.register("tx", tx[["customer_id", "timestamp", "amount"]])
        raw = con.execute(_SQL, {"as_of": day.to_pydatetime(), "as_of_day": day.date()}).df()
    finally:
        con.close()
    return _derive(raw, day)


def _derive(raw: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Turn the aggregates into the feature table (vectorised numpy)."""
    as_of_day = np.datetime64(as_of.date(), "D")

    def days_until_as_of(col: str) -> np.ndarray:
        return (as_of_day - raw[col].to_numpy().astype("datetime64[D]")).astype("float64")

    f = pd.DataFrame({"customer_id": raw["customer_id"].astype("str")})
    n = raw["n_purchase_days"].to_numpy("float64")
    has_buy = n > 0
    tenure = days_until_as_of("first_day")
    since_fp = np.where(has_buy, days_until_as_of("fp"), tenure)  # returns-only: first day
    since_lp = np.where(has_buy, days_until_as_of("lp"), tenure)
    frequency = np.maximum(n - 1, 0)
    gross = raw["gross_spend"].to_numpy("float64")
    net_days = raw["purchase_spend"].to_numpy("float64")
    first_spend = raw["first_purchase_spend"].to_numpy("float64")
    returns = raw["return_amount"].to_numpy("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        f["recency_days"] = since_lp
        f["tenure_days"] = tenure
        f["n_purchase_days"] = n
        f["frequency"] = frequency
        f["t_x_days"] = since_fp - since_lp
        f["T_days"] = since_fp - 1
        f["mean_repeat_spend"] = np.where(frequency > 0, (net_days - first_spend) / frequency, 0.0)
        f["total_spend"] = gross - returns
        f["gross_spend"] = gross
        f["mean_spend_per_day"] = np.where(has_buy, net_days / n, 0.0)
        f["max_spend_per_day"] = raw["max_spend_per_day"].to_numpy("float64")
        f["first_purchase_spend"] = first_spend
        f["last_purchase_spend"] = raw["last_purchase_spend"].to_numpy("float64")
        for w in RECENT_WINDOWS_DAYS:
            f[f"purchase_days_{w}d"] = raw[f"purchase_days_{w}d"].to_numpy("float64")
        for w in RECENT_WINDOWS_DAYS:
            f[f"spend_{w}d"] = raw[f"spend_{w}d"].to_numpy("float64")
        recent = f["spend_180d"].to_numpy()
        prev = raw["spend_prev_180d"].to_numpy("float64")
        f["spend_prev_180d"] = prev
        denom = np.abs(recent) + np.abs(prev)
        f["spend_trend"] = np.where(denom > 0, (recent - prev) / denom, 0.0)
        f["purchase_days_per_30d"] = 30.0 * n / np.maximum(since_fp, 1.0)
        n_gaps = raw["n_gaps"].to_numpy("float64")  # NaN when no gaps
        gap_sum = raw["gap_sum"].to_numpy("float64")
        gap_sq = raw["gap_sq_sum"].to_numpy("float64")
        mean_gap = gap_sum / n_gaps
        f["gap_mean_days"] = mean_gap
        f["gap_std_days"] = np.sqrt(np.maximum(gap_sq / n_gaps - mean_gap**2, 0.0))
        f["gap_max_days"] = raw["gap_max_days"].to_numpy("float64")
        f["gap_last_days"] = raw["gap_last_days"].to_numpy("float64")
        f["recency_over_gap_mean"] = since_lp / mean_gap
        f["return_amount"] = returns
        f["n_return_days"] = raw["n_return_days"].to_numpy("float64")
        f["returns_share"] = np.where(gross > 0, returns / gross, np.where(returns > 0, 1.0, 0.0))
    return f[["customer_id", *FEATURE_COLUMNS]].reset_index(drop=True)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    """Simulated log plus same-day cancellations (the simulator's returns come days later): 8% of
    the purchase rows get a negative row an hour later of 0.5, 1 or 1.5 times their amount, so a
    day's net is positive, zero or negative (floored)."""
    tx = simulate(3000, seed=11, zero_amount_prob=0.02, return_prob=0.1).transactions
    rng = np.random.default_rng(5)
    bought = tx[(tx["amount"] > 0) & (rng.random(len(tx)) < 0.08)]
    cancels = bought.assign(
        timestamp=bought["timestamp"].dt.floor("D") + pd.Timedelta(hours=23),
        amount=-(bought["amount"] * rng.choice([0.5, 1.0, 1.5], len(bought))).round(2),
    )
    return pd.concat([tx, cancels], ignore_index=True)


@pytest.mark.parametrize("as_of", ["2022-03-01", "2023-06-15", "2024-01-01", "2024-05-01"])
def test_equals_the_duckdb_reference(log, as_of):
    pd.testing.assert_frame_equal(build_features(log, as_of), reference_features(log, as_of))


def test_blocks_and_threads_do_not_change_a_bit(log, monkeypatch):
    whole = build_features(log, "2024-01-01", threads=1)
    monkeypatch.setattr(features, "_BLOCK_ROWS", 997)  # many blocks, one customer may span one
    for threads in (1, 3):
        pd.testing.assert_frame_equal(build_features(log, "2024-01-01", threads=threads), whole)
