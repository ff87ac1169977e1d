import pandas as pd
import pytest

from clvflow.features import FEATURE_COLUMNS
from clvflow.simulate import simulate
from clvflow.training_set import (
    MIN_SEASON_BUYERS,
    SEASON_LAG_DAYS,
    build_training_set,
    same_season_snapshot,
    snapshot_dates,
)
from tests.conftest import make_tx


def test_snapshot_dates_spacing_and_label_windows_end_by_cutoff():
    dates = snapshot_dates(pd.Timestamp("2023-01-01"), "2024-01-01", 30, 3, 10)
    assert dates == [
        pd.Timestamp("2023-12-02"),
        pd.Timestamp("2023-11-22"),
        pd.Timestamp("2023-11-12"),
    ]
    assert all(d + pd.Timedelta(days=30) <= pd.Timestamp("2024-01-01") for d in dates)


def test_snapshots_without_history_are_skipped():
    dates = snapshot_dates(pd.Timestamp("2023-11-15"), "2024-01-01", 30, 5, 10)
    assert dates == [pd.Timestamp("2023-12-02"), pd.Timestamp("2023-11-22")]


def test_history_too_short_is_refused():
    with pytest.raises(ValueError, match="history too short for horizon_days=181"):
        snapshot_dates(pd.Timestamp("2023-10-01"), "2024-01-01", 181, 3, 30)


def test_cutoff_before_data_is_refused(tiny_tx):
    with pytest.raises(ValueError, match="no transaction before the cutoff 2020-01-01"):
        build_training_set(tiny_tx, "2020-01-01", 30)


def test_stacked_snapshots_ignore_everything_from_cutoff_on():
    tx = make_tx(
        [
            ("a", "2024-01-05", 10.0),
            ("a", "2024-02-05", 20.0),
            ("b", "2024-01-20", 5.0),
            ("a", "2024-03-01", 1000.0),  # on the cutoff: must not appear anywhere
        ]
    )
    ts = build_training_set(tx, "2024-03-01", horizon_days=14, n_snapshots=3, spacing_days=7)
    assert list(ts.columns) == ["snapshot_date", "customer_id", *FEATURE_COLUMNS, "active", "spend"]
    assert sorted(ts["snapshot_date"].unique()) == list(
        pd.to_datetime(["2024-02-02", "2024-02-09", "2024-02-16"])
    )
    latest = ts[ts["snapshot_date"] == pd.Timestamp("2024-02-16")].set_index("customer_id")
    assert latest.loc["a", "spend"] == 0.0  # the 1000 on the cutoff is outside every window
    first = ts[ts["snapshot_date"] == pd.Timestamp("2024-02-02")].set_index("customer_id")
    assert first.loc["a", "active"] == 1 and first.loc["a", "spend"] == 20.0
    assert ts["total_spend"].max() == 30.0


@pytest.fixture(scope="module")
def two_years():
    """2021-01-01 .. 2023-03-31: enough history for a same-season snapshot at 2023-01-01."""
    return simulate(4000, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=3)


def test_same_season_snapshot_is_52_weeks_back_and_ends_by_the_cutoff(two_years):
    rows = same_season_snapshot(two_years.transactions, "2023-01-01", 90)
    as_of = pd.Timestamp("2023-01-01") - pd.Timedelta(days=SEASON_LAG_DAYS)
    assert as_of == pd.Timestamp("2022-01-02")
    assert set(rows["snapshot_date"]) == {as_of}
    assert list(rows.columns) == [
        "snapshot_date",
        "customer_id",
        *FEATURE_COLUMNS,
        "active",
        "spend",
    ]
    tx = two_years.transactions
    known = tx.loc[tx["timestamp"] < as_of, "customer_id"].nunique()
    assert len(rows) == known and (rows["n_purchase_days"] > 0).sum() >= MIN_SEASON_BUYERS


def test_same_season_snapshot_ignores_everything_from_cutoff_on(two_years):
    tx = two_years.transactions
    cutoff = pd.Timestamp("2023-01-01")
    full = same_season_snapshot(tx, cutoff, 364)  # label window ends exactly on the cutoff
    cut = same_season_snapshot(tx.loc[tx["timestamp"] < cutoff], cutoff, 364)
    pd.testing.assert_frame_equal(full, cut)


def test_no_same_season_snapshot_when_impossible_or_too_thin(two_years):
    tx = two_years.transactions
    assert same_season_snapshot(tx, "2023-01-01", SEASON_LAG_DAYS + 1) is None  # would leak
    assert same_season_snapshot(tx, "2021-12-01", 90) is None  # no data a year before
    assert same_season_snapshot(tx.iloc[:3000], "2023-01-01", 90) is None  # too few buyers
