"""Scoring: the per-customer scores table (docs/architecture.md contract) from a fitted model.

``score_features`` is the one place where model output, the CLV formulas (:mod:`clvflow.scoring.value`)
and the history columns are put together; the MLflow pyfunc, the bundle and the CLI all call it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.models.clv import ClvModel
from clvflow.scoring.value import horizon_clv, lifetime_clv

#: The stable leading columns of every scores table.
SCORE_COLUMNS = [
    "customer_id",
    "as_of",
    "horizon_days",
    "p_active",
    "p_churn",
    "expected_spend_if_active",
    "expected_spend",
    "clv",
]
#: History columns (from the feature table) that follow.
HISTORY_COLUMNS = {
    "historical_clv": "total_spend",
    "purchase_days": "n_purchase_days",
    "aov": "mean_spend_per_day",
    "recency_days": "recency_days",
    "tenure_days": "tenure_days",
}
#: Every column :func:`score_features` returns, in order.
SCORES_TABLE_COLUMNS = [*SCORE_COLUMNS, *HISTORY_COLUMNS, "clv_lifetime", "p_alive"]


def score_features(
    model: ClvModel,
    features: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
) -> pd.DataFrame:
    """Scores table for every row of a feature table built as of ``as_of``.

    Args:
        model: fitted model; its horizon is the window length.
        features: from :func:`clvflow.features.build.build_features` (as of ``as_of``).
        as_of: the date the features were built for (window start).
        margin: share of revenue kept (0, 1].
        annual_discount_rate: yearly discount rate for CLV, e.g. 0.1.

    Returns:
        ``SCORE_COLUMNS``, the history columns, ``clv_lifetime`` and ``p_alive``; one row per
        input row. ``p_alive`` = max(the model's BG/NBD P(alive), p_active): buying in the window
        needs the customer alive.
    """
    horizon = model.horizon_days
    pred = model.predict(features)
    p_active = pred["p_active"].to_numpy("float64")
    spend_if_active = pred["expected_spend_if_active"].to_numpy("float64")
    scores = pd.DataFrame(
        {
            "customer_id": pred["customer_id"],
            "as_of": pd.Timestamp(as_of).normalize(),
            "horizon_days": horizon,
            "p_active": p_active,
            "p_churn": 1.0 - p_active,
            "expected_spend_if_active": spend_if_active,
            "expected_spend": p_active * spend_if_active,
        }
    )
    scores["clv"] = horizon_clv(
        scores["expected_spend"].to_numpy(),
        horizon_days=horizon,
        margin=margin,
        annual_discount_rate=annual_discount_rate,
    )
    for out, source in HISTORY_COLUMNS.items():
        scores[out] = features[source].to_numpy()
    scores["clv_lifetime"] = lifetime_clv(
        scores["expected_spend_if_active"].to_numpy(),
        scores["p_active"].to_numpy(),
        horizon_days=horizon,
        margin=margin,
        annual_discount_rate=annual_discount_rate,
    )
    scores["p_alive"] = np.maximum(model.p_alive(features), p_active)
    return scores
