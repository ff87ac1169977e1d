"""Tests for clvflow.models.purchases: expected purchase days, the next purchase date and what they are
judged on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.models.btyd import BgNbdParams
from clvflow.models.purchases import (
    expected_purchases,
    next_purchase_date,
    next_purchase_days,
    window_purchases,
)


def test_next_purchase_from_a_constant_rate() -> None:
    """Issue 10 item 5: without BG/NBD, P(a purchase by t) = 1 - (1 - p)^(t / H); its median is
    H ln 2 / -ln(1 - p): p = 0.75, H = 100 -> 50 days; p = 0.5 -> 100 (the horizon's end);
    p = 0.4 -> not expected within the horizon (NaN)."""
    days = next_purchase_days(np.array([0.75, 0.5, 0.4]), 100, None, np.zeros(3), np.zeros(3))
    np.testing.assert_allclose(days[:2], [50.0, 100.0])
    assert np.isnan(days[2])


def test_next_purchase_from_bgnbd_timing() -> None:
    """Issue 10 item 5: r = 1, alpha = 10 weeks, x = 1, T = 10 weeks, H = 20 weeks (140 days):
    q(t) = (20 / (20 + t))^2, 1 - q(H) = 0.75. With p_active = 0.75 the median solves
    0.75 (1 - q(t)) / 0.75 = 0.5, so t = 20 (sqrt 2 - 1) weeks = 57.99 days; the date is as_of
    plus 57 whole days."""
    bg = BgNbdParams(r=1.0, alpha=10.0, a=1.0, b=1.0, log_likelihood=0.0)
    days = next_purchase_days(
        np.array([0.75, 0.3]), 140, bg, np.array([1.0, 1.0]), np.array([70.0, 70.0])
    )
    assert days[0] == pytest.approx(20 * (np.sqrt(2) - 1) * 7)
    assert np.isnan(days[1])
    dates = next_purchase_date("2024-01-01", days)
    assert dates.iloc[0] == pd.Timestamp("2024-02-27") and pd.isna(dates.iloc[1])


def test_expected_purchases_agree_with_p_active() -> None:
    """Issue 10 item 5: p_active x BG/NBD's count given a purchase (bg_expected / bg_p_active,
    at least 1): 0.5 x 2 / 0.8 = 1.25; a count below one purchase given a purchase is 1; no
    BG/NBD chance of buying -> 1 per purchase; without BG/NBD the historical count (>= 1)."""
    got = expected_purchases(
        np.array([0.5, 0.4, 0.3]),
        np.array([2.0, 0.1, 0.0]),
        np.array([0.8, 0.2, 0.0]),
        np.zeros(3),
    )
    np.testing.assert_allclose(got, [1.25, 0.4, 0.3])
    fallback = expected_purchases(np.array([0.5, 0.5]), None, None, np.array([3.0, 0.2]))
    np.testing.assert_allclose(fallback, [1.5, 0.5])


def test_window_purchases_counts_purchase_days() -> None:
    """Issue 10 item 5: purchase days in [as_of, as_of + H) are calendar days with a row of
    amount >= 0; the first is counted from as_of; returns and later rows do not count; a customer
    first seen in the window is not listed."""
    ts = pd.to_datetime(
        [
            "2024-01-01",  # a: history
            "2024-02-04 10:00",  # a: day 3, a purchase and a return the same day
            "2024-02-04 11:00",
            "2024-02-11",  # a: day 10
            "2024-01-05",  # b: history
            "2024-02-02",  # b: a return only
            "2024-01-06",  # c: history
            "2024-03-05",  # c: after the window
            "2024-02-03",  # d: first seen in the window
        ],
        format="ISO8601",
    )
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b", "b", "c", "c", "d"],
            "timestamp": ts,
            "amount": [10.0, 5.0, -5.0, 7.0, 3.0, -3.0, 4.0, 4.0, 9.0],
        }
    )
    out = window_purchases(tx, "2024-02-01", 30)
    assert out["customer_id"].tolist() == ["a", "b", "c"]
    assert out["window_purchase_days"].tolist() == [2, 0, 0]
    assert out["first_purchase_day"].iloc[0] == 3.0
    assert out["first_purchase_day"].iloc[1:].isna().all()
