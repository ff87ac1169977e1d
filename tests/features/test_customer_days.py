"""Features from customer-days sorted once (clvflow.features.build.customer_days): the same table
as build_features at every date, refusals included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.features.build import build_features, customer_days, features_from_days
from tests.conftest import TINY_AS_OF, TINY_ROWS, make_tx


def _messy_log(n_customers: int, seed: int) -> pd.DataFrame:
    """Purchases over two years with same-day repeats, returns and cancellations, text ids of
    varying length, several rows per customer-day and rows out of order."""
    rng = np.random.default_rng(seed)
    n = n_customers * 8
    ids = np.array([f"c{i}" if i % 3 else f"{i:07d}" for i in range(n_customers)])
    stamps = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730 * 24, n), unit="h")
    amounts = np.round(rng.gamma(2.0, 20.0, n), 2)
    amounts[rng.random(n) < 0.1] *= -1  # returns and cancellations
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids[rng.integers(0, n_customers, n)], dtype="str"),
            "timestamp": stamps,
            "amount": amounts,
        }
    )


def test_features_from_customer_days_are_build_features_at_every_date() -> None:
    """Issue 11 item 3: customer-days built once up to a cutoff give, at every earlier date
    (before the first row, inside the log, the cutoff itself), exactly build_features' table."""
    tx = _messy_log(3000, 1)
    days = customer_days(tx, "2024-01-01")
    for as_of in (
        "2021-06-01",
        "2022-01-01",
        "2022-01-02",
        "2022-07-15",
        "2023-06-30",
        "2024-01-01",
    ):
        want = build_features(tx, as_of)
        got = features_from_days(days, as_of)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert len(features_from_days(days, "2022-01-01")) == 0  # (no row before the first day)


def test_features_from_customer_days_on_the_hand_computed_log() -> None:
    """Issue 11 item 3: on the hand-computed log, features from customer-days are the expected
    table of build_features (tests/features/test_features.py)."""
    tx = make_tx(TINY_ROWS)
    days = customer_days(tx, TINY_AS_OF)
    pd.testing.assert_frame_equal(
        features_from_days(days, TINY_AS_OF), build_features(tx, TINY_AS_OF), check_exact=True
    )


@pytest.mark.parametrize("bad", ["amount", "customer_id"])
def test_features_from_customer_days_refuse_what_build_features_refuses(bad: str) -> None:
    """Issue 11 item 3: a row with no amount or no id is refused from the first date that would
    use it, with build_features' message, and ignored before it."""
    rows = [("a", "2024-01-01", 5.0), ("b", "2024-01-10", 7.0), ("a", "2024-02-01", 3.0)]
    tx = make_tx(rows)
    if bad == "amount":
        tx.loc[1, "amount"] = np.nan
    else:
        tx.loc[1, "customer_id"] = None
    days = customer_days(tx, "2024-03-01")
    pd.testing.assert_frame_equal(
        features_from_days(days, "2024-01-10"), build_features(tx, "2024-01-10"), check_exact=True
    )
    with pytest.raises(ValueError) as expected:
        build_features(tx, "2024-01-11")
    with pytest.raises(ValueError, match=f"column '{bad}'") as got:
        features_from_days(days, "2024-01-11")
    assert str(got.value) == str(expected.value)


def test_features_from_customer_days_stop_at_their_end() -> None:
    """Issue 11 item 3: customer-days built to a date cannot give a later date's features."""
    days = customer_days(make_tx(TINY_ROWS), "2024-02-01")
    with pytest.raises(ValueError, match="customer-days end before 2024-03-01"):
        features_from_days(days, "2024-03-01")
