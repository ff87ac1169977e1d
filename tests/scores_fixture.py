"""A seeded synthetic scores table (the scoring output contract) for segment/report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.scoring.scores import SCORES_TABLE_COLUMNS
from clvflow.scoring.value import horizon_clv, lifetime_clv

SCORES_COLUMNS = tuple(SCORES_TABLE_COLUMNS)


def synthetic_scores(
    n: int,
    seed: int,
    as_of: str | pd.Timestamp = "2024-01-01",
    *,
    horizon_days: int = 90,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
) -> pd.DataFrame:
    """A plausible retail scores table of `n` customers, reproducible from `seed`.

    Invariants: p_churn = 1 - p_active, expected_spend = p_active x expected_spend_if_active,
    clv / clv_lifetime from clvflow.scoring.value with the given horizon, margin and discount rate;
    recency_days <= tenure_days; aov = historical_clv / purchase_days (0 without purchase days).
    p_alive = p_active + (1 - p_active) x exp(-recency_days / 365) (>= p_active; near p_active
    for the long lapsed). About 2% of customers have only returns (purchase_days 0, negative historical_clv).
    """
    rng = np.random.default_rng(seed)
    tenure_days = rng.integers(1, 1500, n)
    purchase_days = 1 + rng.geometric(0.45, n) - 1 + (rng.random(n) < 0.3) * rng.poisson(4, n)
    returns_only = rng.random(n) < 0.02
    purchase_days = np.where(returns_only, 0, purchase_days)
    recency_days = np.where(
        purchase_days > 1, np.ceil(rng.random(n) ** 2 * tenure_days), tenure_days
    ).astype("int64")
    recency_days = np.maximum(recency_days, 1)
    tenure_days = np.maximum(tenure_days, recency_days)
    aov = np.round(rng.lognormal(3.5, 0.8, n), 2)
    historical_clv = np.where(
        returns_only, -np.round(rng.uniform(5, 50, n), 2), purchase_days * aov
    )
    aov = np.where(purchase_days > 0, historical_clv / np.maximum(purchase_days, 1), 0.0)
    logit = -0.8 + 0.6 * np.log1p(purchase_days) - 1.6 * recency_days / 365.0
    p_active = 1.0 / (1.0 + np.exp(-logit))
    p_active = np.where(returns_only, 0.01, p_active)
    spend_if_active = np.maximum(aov, 10.0) * (1.0 + 0.15 * purchase_days**0.5)
    spend_if_active = spend_if_active * rng.lognormal(0.0, 0.2, n)
    expected_spend = p_active * spend_if_active
    economics = {
        "horizon_days": horizon_days,
        "margin": margin,
        "annual_discount_rate": annual_discount_rate,
    }
    return pd.DataFrame(
        {
            "customer_id": pd.Series([f"C{i:06d}" for i in range(n)], dtype="str"),
            "as_of": pd.Timestamp(as_of),
            "horizon_days": horizon_days,
            "p_active": p_active,
            "p_churn": 1.0 - p_active,
            "expected_spend_if_active": spend_if_active,
            "expected_spend": expected_spend,
            "clv": horizon_clv(expected_spend, **economics),
            "historical_clv": historical_clv,
            "purchase_days": purchase_days.astype("int64"),
            "aov": aov,
            "recency_days": recency_days,
            "tenure_days": tenure_days.astype("int64"),
            "clv_lifetime": lifetime_clv(spend_if_active, p_active, **economics),
            "p_alive": p_active + (1.0 - p_active) * np.exp(-recency_days / 365.0),
        }
    )
