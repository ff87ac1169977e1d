"""Scoring: the per-customer scores table (docs/architecture.md contract) from a fitted model.

``score_features`` is the one place where model output, the CLV formulas (:mod:`clvflow.scoring.value`)
and the history columns are put together; the MLflow pyfunc, the bundle and the CLI all call it.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clvflow.models.btyd import btyd_predictions
from clvflow.models.clv import ClvModel
from clvflow.models.lifetime import lifetime_discount_rate, lifetime_value, long_run_dert
from clvflow.models.purchases import (
    expected_purchases,
    next_purchase_date,
    next_purchase_days,
    purchases_given_active,
)
from clvflow.models.uncertainty import LOWER, UPPER, SpendCalibration, spend_quantiles
from clvflow.scoring.reasons import REASON_COLUMNS, reasons
from clvflow.scoring.value import horizon_clv

logger = logging.getLogger(__name__)

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
#: The BTYD columns and the per-customer intervals (10th / 90th percentiles) that close it.
BTYD_COLUMNS = ["expected_purchases", "next_purchase_date"]
INTERVAL_COLUMNS = ["spend_p10", "spend_p90", "clv_p10", "clv_p90"]
SCORES_TABLE_COLUMNS = [
    *SCORE_COLUMNS,
    *HISTORY_COLUMNS,
    "clv_lifetime",
    "p_alive",
    "lifetime_discount_rate",
    *BTYD_COLUMNS,
    *INTERVAL_COLUMNS,
    *REASON_COLUMNS,
]


def score_features(
    model: ClvModel,
    features: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
    with_reasons: bool = True,
) -> pd.DataFrame:
    """Scores table for every row of a feature table built as of ``as_of``.

    Args:
        model: fitted model; its horizon is the window length.
        features: from :func:`clvflow.features.build.build_features` (as of ``as_of``).
        as_of: the date the features were built for (window start).
        margin: share of revenue kept (0, 1].
        annual_discount_rate: yearly discount rate for CLV, e.g. 0.1; lifetime value is
            discounted at it, or at 10% a year when it is 0
            (:func:`clvflow.models.lifetime.lifetime_discount_rate`).
        with_reasons: add the reason columns (:mod:`clvflow.scoring.reasons`); False skips their cost
            (e.g. the earlier dates of a trend, whose only use is totals).


    Returns:
        ``SCORE_COLUMNS``, the history columns, ``clv_lifetime``, ``p_alive``,
        ``lifetime_discount_rate`` (the yearly rate of clv_lifetime, the same on every row),
        ``BTYD_COLUMNS``, ``INTERVAL_COLUMNS`` and (with ``with_reasons``) ``REASON_COLUMNS``;
        one row per input row. ``p_alive`` = max(the model's P(alive) (MBG/NBD,
        :meth:`ClvModel.p_alive`), p_active): buying in the window needs the customer alive.
        ``clv_lifetime``: see :func:`lifetime_clv`. The BTYD columns:
        :mod:`clvflow.models.purchases`; the intervals: :mod:`clvflow.models.uncertainty` (NaN
        for a model saved without a calibration).
    """
    horizon = model.horizon_days
    pred = model.predict(features)
    # BG/NBD's predictions, once: the lifetime value and the BTYD columns both use them
    btyd = None if model.btyd_ is None else btyd_predictions(model.btyd_, features, horizon)
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
        model,
        features,
        spend_if_active,
        scores["clv"].to_numpy(),
        None if btyd is None else _purchases_given(btyd),
        margin=margin,
        annual_discount_rate=annual_discount_rate,
    )
    scores["p_alive"] = np.maximum(model.p_alive(features), p_active)
    scores["lifetime_discount_rate"] = lifetime_discount_rate(annual_discount_rate)
    _add_btyd_columns(scores, model, features, as_of, btyd)
    _add_intervals(scores, model, margin=margin, annual_discount_rate=annual_discount_rate)
    if with_reasons:
        scores[REASON_COLUMNS] = reasons(model, features)[REASON_COLUMNS].to_numpy()
    return scores


def _add_btyd_columns(
    scores: pd.DataFrame,
    model: ClvModel,
    features: pd.DataFrame,
    as_of: pd.Timestamp,
    btyd: pd.DataFrame | None,
) -> None:
    """``expected_purchases`` and ``next_purchase_date`` (:mod:`clvflow.models.purchases`);
    ``btyd``: the model's BG/NBD predictions for ``features``, None without a fit."""
    horizon = model.horizon_days
    p_active = scores["p_active"].to_numpy("float64")
    observed = features["T_days"].to_numpy("float64") + 1.0
    rate = features["n_purchase_days"].to_numpy("float64") / np.maximum(observed, 1.0) * horizon
    if btyd is None:
        count = expected_purchases(p_active, None, None, rate)
    else:
        count = expected_purchases(
            p_active,
            btyd["bg_expected_purchases"].to_numpy("float64"),
            btyd["bg_p_active"].to_numpy("float64"),
            rate,
        )
    scores["expected_purchases"] = count
    days = next_purchase_days(
        p_active,
        horizon,
        None if model.btyd_ is None else model.btyd_.bgnbd,
        features["frequency"].to_numpy("float64"),
        features["T_days"].to_numpy("float64"),
    )
    scores["next_purchase_date"] = next_purchase_date(as_of, days).to_numpy()


def _add_intervals(
    scores: pd.DataFrame, model: ClvModel, *, margin: float, annual_discount_rate: float
) -> None:
    """The 10th and 90th percentiles of spend in the window and of CLV (the same quantiles
    valued like ``clv``)."""
    cal = SpendCalibration.from_dict(getattr(model, "spend_calibration_", None))
    p = scores["p_active"].to_numpy("float64")
    s = scores["expected_spend_if_active"].to_numpy("float64")
    for level, name in ((LOWER, "p10"), (UPPER, "p90")):
        spend = np.full(len(p), np.nan) if cal is None else spend_quantiles(cal, p, s, level)
        scores[f"spend_{name}"] = spend
    for name in ("p10", "p90"):
        scores[f"clv_{name}"] = horizon_clv(
            scores[f"spend_{name}"].to_numpy(),
            horizon_days=model.horizon_days,
            margin=margin,
            annual_discount_rate=annual_discount_rate,
        )


def lifetime_clv(
    model: ClvModel,
    features: pd.DataFrame,
    spend_if_active: np.ndarray,
    clv: np.ndarray,
    purchases: np.ndarray | None,
    *,
    margin: float,
    annual_discount_rate: float,
) -> np.ndarray:
    """Lifetime value per customer (currency), discounted at
    :func:`clvflow.models.lifetime.lifetime_discount_rate` (10% a year unless a rate is given).

    = margin x DERT x spend per purchase: DERT the customer's discounted expected purchase days
    over the rest of their life under the model's MBG/NBD (:mod:`clvflow.models.lifetime`), spend per
    purchase the model's E[spend | active in the window] / BG/NBD's E[purchase days | active in
    the window]. Both MBG/NBD and BG/NBD are fitted on the history before the cutoff whatever
    the horizon, so only the boosters' spend per purchase depends on it (``purchases``:
    :func:`purchases_if_active`, None without a BG/NBD fit). A model without them
    (saved before the long-run model, or MBG/NBD unusable at the cutoff) has no long run: its
    lifetime value is the horizon's ``clv``, with a warning.
    """
    long_run = getattr(model, "long_run_", None)
    if long_run is None or purchases is None:
        logger.warning(
            "the model has no long-run model (MBG/NBD): clv_lifetime = the horizon's clv; "
            "retrain with this clvflow version for a lifetime value"
        )
        return np.asarray(clv, dtype="float64").copy()
    rate = lifetime_discount_rate(annual_discount_rate)
    dert = long_run_dert(long_run, features, rate)
    return lifetime_value(dert, spend_if_active, purchases, margin=margin)


def purchases_if_active(model: ClvModel, features: pd.DataFrame) -> np.ndarray:
    """BG/NBD's E[purchase days | active in the window] per row (the model's own fit;
    :func:`clvflow.models.purchases.purchases_given_active`)."""
    if model.btyd_ is None:
        raise ValueError("purchases if active need the model's BG/NBD fit; this model has none")
    return _purchases_given(btyd_predictions(model.btyd_, features, model.horizon_days))


def _purchases_given(btyd: pd.DataFrame) -> np.ndarray:
    """:func:`clvflow.models.purchases.purchases_given_active` of BG/NBD's prediction frame."""
    return purchases_given_active(
        btyd["bg_expected_purchases"].to_numpy("float64"), btyd["bg_p_active"].to_numpy("float64")
    )
