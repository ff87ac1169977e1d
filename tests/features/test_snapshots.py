import pandas as pd
import pytest

from clvflow.data.simulate import simulate
from clvflow.features.build import FEATURE_COLUMNS
from clvflow.features.snapshots import (
    MIN_SEASON_BUYERS,
    SEASON_LAG_DAYS,
    SnapshotRule,
    build_training_set,
    same_season_snapshot,
    snapshot_dates,
    stack_snapshots,
)
from tests.conftest import make_tx


def test_snapshot_dates_spacing_and_label_windows_end_by_cutoff():
    dates = snapshot_dates("2024-01-01", 30, 3, 10)
    assert dates == [
        pd.Timestamp("2023-12-02"),
        pd.Timestamp("2023-11-22"),
        pd.Timestamp("2023-11-12"),
    ]
    assert all(d + pd.Timedelta(days=30) <= pd.Timestamp("2024-01-01") for d in dates)


#: No minimum: every snapshot with a day of history and a customer is used.
ANY = SnapshotRule(min_history_days=1, min_buyers=1, min_outcomes=0)


def _daily_log(first: str, last: str, n_customers: int = 60) -> pd.DataFrame:
    """Customer i buys on day i mod 7 of every week from ``first`` to ``last``."""
    days = pd.date_range(first, last, freq="D")
    rows = [
        (f"c{i:03d}", str(day.date()), 10.0 + i)
        for i in range(n_customers)
        for k, day in enumerate(days)
        if k % 7 == i % 7 and (k // 7 + i) % 3 != 0
    ]
    return make_tx(rows)


def test_snapshots_with_too_little_history_are_dropped_with_their_reason(caplog):
    # data from 2023-11-15; candidates 12-02 (17 days of history), 11-22 (7), 11-12 (none)
    tx = _daily_log("2023-11-15", "2023-12-31")
    with caplog.at_level("INFO", logger="clvflow.features.snapshots"):
        rows, checks = stack_snapshots(
            tx, "2024-01-01", 30, n_snapshots=3, spacing_days=10, rule=SnapshotRule(14, 1, 0)
        )
    assert [(c.snapshot_date.date().isoformat(), c.history_days, c.used) for c in checks] == [
        ("2023-12-02", 17, True),
        ("2023-11-22", 7, False),
        ("2023-11-12", -3, False),
    ]
    assert checks[1].reason == "history < 14 days"
    assert set(rows["snapshot_date"]) == {pd.Timestamp("2023-12-02")}
    assert "snapshot 2023-11-22 (7 days of history): dropped, history < 14 days" in caplog.text


def test_snapshots_with_too_few_buyers_or_outcomes_are_dropped():
    tx = _daily_log("2023-10-01", "2023-12-31", n_customers=30)
    with pytest.raises(ValueError, match="dropped, fewer than 31 buyers. Snapshots need 31"):
        stack_snapshots(
            tx, "2024-01-01", 30, n_snapshots=1, spacing_days=10, rule=SnapshotRule(1, 31, 0)
        )
    # everybody buys every week: nobody is inactive in the window, nothing to learn churn from
    with pytest.raises(ValueError, match="30 active.: dropped, fewer than 1 active or inactive"):
        stack_snapshots(
            tx, "2024-01-01", 30, n_snapshots=1, spacing_days=10, rule=SnapshotRule(1, 1, 1)
        )
    rows, checks = stack_snapshots(
        tx, "2024-01-01", 30, n_snapshots=1, spacing_days=10, rule=SnapshotRule(1, 30, 0)
    )
    assert checks[0].used and checks[0].n_buyers == 30 and len(rows) == 30


def test_no_usable_snapshot_says_what_history_would_do():
    tx = _daily_log("2023-11-15", "2023-12-31")
    with pytest.raises(ValueError, match="no usable training snapshot") as err:
        stack_snapshots(tx, "2024-01-01", 30, n_snapshots=2, spacing_days=10)
    text = str(err.value)
    assert "2023-12-02 (17 days of history): dropped, history < 31 days" in text
    assert "at least 61 days" in text and "on or after 2024-01-15" in text
    assert "--horizon-days 16 or less" in text


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
    ts = build_training_set(
        tx, "2024-03-01", horizon_days=14, n_snapshots=3, spacing_days=7, rule=ANY
    )
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


def test_snapshot_counts_by_hand_with_returns_and_late_customers():
    """Issue 11 (snapshot checks counted on integer id codes, not text): as of 2024-02-01,
    buyers = customers with a purchase row before it (a, b; c only returned), known = a, b, c;
    active = known customers buying in [2024-02-01, 2024-03-02): a (b only returns, d is new)."""
    from clvflow.features.snapshots import check_snapshots

    tx = make_tx(
        [
            ("a", "2024-01-05", 10.0),
            ("b", "2024-01-06", 5.0),
            ("c", "2024-01-07", -3.0),
            ("a", "2024-02-10", 7.0),
            ("b", "2024-02-11", -5.0),
            ("d", "2024-02-12", 9.0),
            ("c", "2024-03-02", 4.0),  # the day after the window
        ]
    )
    (check,) = check_snapshots(tx, "2024-03-03", 30, 1, 30, SnapshotRule(1, 1, 1))
    assert check.snapshot_date == pd.Timestamp("2024-02-02")
    # as of 2024-02-02: the window [2024-02-02, 2024-03-03) holds c's purchase on 2024-03-02
    assert (check.n_buyers, check.n_active) == (2, 2)
    (check,) = check_snapshots(tx, "2024-03-02", 30, 1, 30, SnapshotRule(1, 1, 1))
    assert check.snapshot_date == pd.Timestamp("2024-02-01")
    assert (check.n_buyers, check.n_active, check.used) == (2, 1, True)


def test_snapshot_rows_join_labels_as_a_merge_would():
    """Issue 11 item 3: a snapshot's rows (labels set beside the features when both list the
    same customers in the same order) equal the merge on customer_id, bit for bit."""
    from clvflow.features.build import build_features
    from clvflow.features.labels import build_labels
    from clvflow.features.snapshots import snapshot_rows
    from tests.conftest import TINY_AS_OF, TINY_ROWS, make_tx

    tx = make_tx(TINY_ROWS)
    for as_of in ("2024-01-12", "2024-02-15", TINY_AS_OF):
        day = pd.Timestamp(as_of)
        features, labels = build_features(tx, day), build_labels(tx, day, 30)
        merged = features.merge(labels, on="customer_id", how="left", validate="one_to_one")
        merged.insert(0, "snapshot_date", day)
        pd.testing.assert_frame_equal(snapshot_rows(tx, day, 30), merged, check_exact=True)


def test_snapshots_from_the_whole_log_equal_those_from_the_log_cut_at_the_cutoff():
    """Issue 11 item 4: the training snapshots and the same-season snapshot read only the rows
    dated before the cutoff of the log they are given, so the whole log (text ids, rows after
    the cutoff: no copy cut at the cutoff is made) gives exactly the rows of the cut log."""
    from clvflow.features.snapshots import snapshot_parts

    log = simulate(1500, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=4)
    tx = log.transactions
    cutoff = pd.Timestamp("2023-01-01")
    assert (tx["timestamp"] >= cutoff).sum() > 1000  # rows after the cutoff are present
    cut = tx.loc[tx["timestamp"] < cutoff].reset_index(drop=True)
    layout = {"n_snapshots": 3, "spacing_days": 30}
    whole_parts, whole_checks = snapshot_parts(tx, cutoff, 90, **layout)
    cut_parts, cut_checks = snapshot_parts(cut, cutoff, 90, **layout)
    assert whole_checks == cut_checks and len(whole_parts) == len(cut_parts) == 3
    for got, want in zip(whole_parts, cut_parts, strict=True):
        pd.testing.assert_frame_equal(got, want)
    got, want = same_season_snapshot(tx, cutoff, 90), same_season_snapshot(cut, cutoff, 90)
    assert got is not None
    pd.testing.assert_frame_equal(got, want)
