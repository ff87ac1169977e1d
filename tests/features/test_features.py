import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clvflow.features.build import (
    FEATURE_COLUMNS,
    build_features,
    check_feature_table,
    feature_table_problems,
)
from tests.conftest import TINY_AS_OF, make_tx

NAN = math.nan

# Hand-computed from TINY_ROWS as of 2024-03-01 (see conftest for the story of each customer).
EXPECTED = {
    "001": dict(
        recency_days=20,
        tenure_days=60,
        n_purchase_days=3,
        frequency=2,
        t_x_days=40,
        T_days=59,
        mean_repeat_spend=22.5,  # (20 + 25) / 2: the last purchase day nets 30 - 5 = 25
        total_spend=60,
        gross_spend=65,
        mean_spend_per_day=20,
        max_spend_per_day=25,
        first_purchase_spend=15,
        last_purchase_spend=25,
        purchase_days_30d=1,
        purchase_days_90d=3,
        purchase_days_180d=3,
        purchase_days_365d=3,
        spend_30d=25,
        spend_90d=60,
        spend_180d=60,
        spend_365d=60,
        spend_prev_180d=0,
        spend_trend=1,
        purchase_days_per_30d=1.5,
        gap_mean_days=20,
        gap_std_days=10,
        gap_max_days=30,
        gap_last_days=30,
        recency_over_gap_mean=1,
        return_amount=5,
        n_return_days=1,
        returns_share=5 / 65,
    ),
    "002": dict(
        recency_days=10,
        tenure_days=10,
        n_purchase_days=1,
        frequency=0,
        t_x_days=0,
        T_days=9,
        mean_repeat_spend=0,
        total_spend=50,
        gross_spend=50,
        mean_spend_per_day=50,
        max_spend_per_day=50,
        first_purchase_spend=50,
        last_purchase_spend=50,
        purchase_days_30d=1,
        purchase_days_90d=1,
        purchase_days_180d=1,
        purchase_days_365d=1,
        spend_30d=50,
        spend_90d=50,
        spend_180d=50,
        spend_365d=50,
        spend_prev_180d=0,
        spend_trend=1,
        purchase_days_per_30d=3,
        gap_mean_days=NAN,
        gap_std_days=NAN,
        gap_max_days=NAN,
        gap_last_days=NAN,
        recency_over_gap_mean=NAN,
        return_amount=0,
        n_return_days=0,
        returns_share=0,
    ),
    "003": dict(
        recency_days=46,
        tenure_days=46,
        n_purchase_days=0,
        frequency=0,
        t_x_days=0,
        T_days=45,
        mean_repeat_spend=0,
        total_spend=-12,
        gross_spend=0,
        mean_spend_per_day=0,
        max_spend_per_day=0,
        first_purchase_spend=0,
        last_purchase_spend=0,
        purchase_days_30d=0,
        purchase_days_90d=0,
        purchase_days_180d=0,
        purchase_days_365d=0,
        spend_30d=0,
        spend_90d=-12,
        spend_180d=-12,
        spend_365d=-12,
        spend_prev_180d=0,
        spend_trend=-1,
        purchase_days_per_30d=0,
        gap_mean_days=NAN,
        gap_std_days=NAN,
        gap_max_days=NAN,
        gap_last_days=NAN,
        recency_over_gap_mean=NAN,
        return_amount=12,
        n_return_days=1,
        returns_share=1,
    ),
    "004": dict(
        recency_days=1,
        tenure_days=91,
        n_purchase_days=2,
        frequency=1,
        t_x_days=90,
        T_days=90,
        mean_repeat_spend=40,
        total_spend=40,
        gross_spend=40,
        mean_spend_per_day=20,
        max_spend_per_day=40,
        first_purchase_spend=0,
        last_purchase_spend=40,
        purchase_days_30d=1,
        purchase_days_90d=1,
        purchase_days_180d=2,
        purchase_days_365d=2,
        spend_30d=40,
        spend_90d=40,
        spend_180d=40,
        spend_365d=40,
        spend_prev_180d=0,
        spend_trend=1,
        purchase_days_per_30d=60 / 91,
        gap_mean_days=90,
        gap_std_days=0,
        gap_max_days=90,
        gap_last_days=90,
        recency_over_gap_mean=1 / 90,
        return_amount=0,
        n_return_days=0,
        returns_share=0,
    ),
}


@pytest.mark.parametrize(
    "as_of",
    [TINY_AS_OF, dt.date(2024, 3, 1), pd.Timestamp("2024-03-01"), dt.datetime(2024, 3, 1)],
    ids=["str", "date", "Timestamp", "datetime"],
)
def test_hand_computed_features(tiny_tx, as_of):
    features = build_features(tiny_tx, as_of)
    assert list(features.columns) == ["customer_id", *FEATURE_COLUMNS]
    assert list(features["customer_id"]) == ["001", "002", "003", "004"]
    expected = pd.DataFrame.from_dict(EXPECTED, orient="index")[FEATURE_COLUMNS].astype("float64")
    actual = features.set_index("customer_id")[FEATURE_COLUMNS]
    pd.testing.assert_frame_equal(actual, expected, check_names=False, rtol=1e-12, atol=1e-12)


def test_expected_table_covers_every_feature():
    assert all(set(row) == set(FEATURE_COLUMNS) for row in EXPECTED.values())


def test_as_of_with_time_of_day_is_refused(tiny_tx):
    with pytest.raises(ValueError, match="time of day"):
        build_features(tiny_tx, "2024-03-01 12:00")


def test_missing_column_is_named(tiny_tx):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['amount'\]"):
        build_features(tiny_tx.drop(columns="amount"), TINY_AS_OF)


def test_no_customer_before_as_of_gives_empty_table(tiny_tx):
    features = build_features(tiny_tx, "2020-01-01")
    assert features.empty
    assert list(features.columns) == ["customer_id", *FEATURE_COLUMNS]


def test_same_day_cancellations_are_netted_per_purchase_day():
    """An order cancelled the same day leaves only what was kept; a day whose cancellations
    exceed its purchases spends 0 (not negative), and is still a purchase day."""
    rows = [
        ("A", "2024-01-05 09:00", 168_000.0),  # ordered ...
        ("A", "2024-01-05 09:00", 2.9),
        ("A", "2024-01-05 17:00", -168_000.0),  # ... and cancelled the same day: net 2.90
        ("A", "2024-02-01 10:00", 10.0),
        ("B", "2024-01-10 10:00", 40.0),
        ("B", "2024-02-20 10:00", 50.0),
        ("B", "2024-02-20 11:00", -80.0),  # cancels more than that day's purchase: net 0
    ]
    columns = [
        "n_purchase_days",
        "mean_repeat_spend",
        "mean_spend_per_day",
        "max_spend_per_day",
        "first_purchase_spend",
        "last_purchase_spend",
        "gross_spend",
        "total_spend",
        "return_amount",
    ]
    expected = pd.DataFrame(
        {
            "A": [2, 10.0, 6.45, 10.0, 2.9, 10.0, 168_012.9, 12.9, 168_000.0],
            "B": [2, 0.0, 20.0, 40.0, 40.0, 0.0, 90.0, 10.0, 80.0],
        },
        index=columns,
    ).T.astype("float64")
    features = build_features(make_tx(rows), TINY_AS_OF).set_index("customer_id")[columns]
    # (total_spend is gross - returns in float: 168,012.9 - 168,000 is 12.9 to about 1e-12)
    pd.testing.assert_frame_equal(features, expected, check_names=False, rtol=1e-12)


AS_OF = pd.Timestamp("2024-06-01")
_minutes = st.integers(min_value=-400 * 1440, max_value=-1)
_future_minutes = st.integers(min_value=0, max_value=200 * 1440)
_amounts = st.sampled_from([-20.0, 0.0, 0.01, 5.5, 19.99, 100.0, 1234.5])
_ids = st.sampled_from(["a", "b", "00c", "d"])


def _rows(minutes):
    return st.lists(st.tuples(_ids, minutes, _amounts), min_size=1, max_size=25)


def _frame(rows):
    return make_tx([(c, str(AS_OF + pd.Timedelta(minutes=m)), a) for c, m, a in rows])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(past=_rows(_minutes), future=_rows(_future_minutes), other_future=_rows(_future_minutes))
def test_no_leakage_rows_on_or_after_as_of_never_change_features(past, future, other_future):
    """Adding, removing or changing rows dated on/after as_of never changes the features."""
    base = build_features(_frame(past), AS_OF)
    with_future = build_features(_frame(past + future), AS_OF)
    changed_future = build_features(_frame(future[:1] + past + other_future), AS_OF)
    pd.testing.assert_frame_equal(base, with_future)
    pd.testing.assert_frame_equal(base, changed_future)


@settings(max_examples=30, deadline=None)
@given(rows=_rows(_minutes))
def test_invariants(rows):
    f = build_features(_frame(rows), AS_OF).set_index("customer_id")
    assert (f["recency_days"] >= 1).all()
    assert (f["t_x_days"] <= f["T_days"]).all()
    assert (f["recency_days"] <= f["tenure_days"]).all()
    assert (f["frequency"] == np.maximum(f["n_purchase_days"] - 1, 0)).all()
    np.testing.assert_allclose(f["total_spend"], f["gross_spend"] - f["return_amount"], atol=1e-9)
    assert feature_table_problems(f.reset_index()) == []  # the serving checks hold on real tables


def test_impossible_feature_values_are_named_with_their_rows(tiny_tx):
    """Issue 9 item 10: a feature table no transactions can produce is refused, naming the rule,
    the rows and their customer ids (the checks the served model applies)."""
    good = build_features(tiny_tx, TINY_AS_OF)
    assert feature_table_problems(good) == []
    bad = good.copy()
    bad.loc[0, "recency_days"] = -1e308
    bad.loc[1, "recency_days"] = 11.0  # tenure 10
    bad.loc[2, "spend_30d"] = np.inf
    bad.loc[3, "gap_mean_days"] = np.nan  # allowed: undefined gaps are missing
    assert feature_table_problems(bad) == [
        "spend_30d must be a finite number: row(s) 2 ('003')",
        "recency_days must be >= 1 (as_of is after the last day): row(s) 0 ('001')",
        "recency_days must be <= tenure_days: row(s) 1 ('002')",
        "t_x_days + recency_days must equal T_days + 1: row(s) 0 ('001'), 1 ('002')",
    ]
    with pytest.raises(
        ValueError,
        match=r"^feature table: impossible feature values .*"
        r"and 1 more rule\(s\) broken; build the table with `clvflow features`",
    ):
        check_feature_table(bad)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['returns_share'\]"):
        check_feature_table(good.drop(columns="returns_share"))
