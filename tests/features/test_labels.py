import datetime as dt

import pandas as pd
import pytest

from clvflow.features.labels import build_labels
from tests.conftest import TINY_AS_OF


@pytest.mark.parametrize(
    "as_of", [TINY_AS_OF, dt.date(2024, 3, 1), pd.Timestamp("2024-03-01")], ids=str
)
def test_hand_computed_labels(tiny_tx, as_of):
    labels = build_labels(tiny_tx, as_of, horizon_days=30)
    expected = pd.DataFrame(
        {
            "customer_id": pd.Series(["001", "002", "003", "004"], dtype="str"),
            "active": [1, 0, 0, 0],
            "spend": [100.0, 0.0, 0.0, 0.0],
        }
    )
    pd.testing.assert_frame_equal(labels, expected)


def test_window_end_is_exclusive(tiny_tx):
    # 002's 999 at 2024-03-31 00:00 is in a 31-day window but not in a 30-day one
    labels = build_labels(tiny_tx, TINY_AS_OF, horizon_days=31).set_index("customer_id")
    assert labels.loc["002", "spend"] == 999.0
    assert labels.loc["002", "active"] == 1


def test_returns_are_netted_and_floored(tiny_tx):
    labels = build_labels(tiny_tx, "2024-02-10", horizon_days=1).set_index("customer_id")
    assert labels.loc["001", "spend"] == 25.0  # 30 bought - 5 returned that day


@pytest.mark.parametrize("horizon", [0, -5, 2.5, True])
def test_bad_horizon(tiny_tx, horizon):
    with pytest.raises(ValueError, match="horizon_days must be a whole number"):
        build_labels(tiny_tx, TINY_AS_OF, horizon)


def test_labels_group_by_codes_as_by_the_id_text():
    """Issue 11 item 3: labels grouped by integer id codes equal, to the bit, those grouped by the
    id text (the code before), at several dates of one log: known customers only, a customer
    first seen in the window left out, returns netted, sums in pandas' order."""
    from clvflow.features.labels import _labels_by_id
    from tests.conftest import TINY_ROWS, make_tx

    extra = [("006", "2024-03-03 10:00", 0.1), ("006", "2024-03-03 11:00", 0.2)]
    extra += [("001", "2024-03-06 10:00", 0.7), ("004", "2024-03-12 10:00", 11.3)]
    tx = make_tx(TINY_ROWS + extra)
    for as_of, horizon in (("2024-01-05", 40), ("2024-02-15", 30), (TINY_AS_OF, 30)):
        day = pd.Timestamp(as_of)
        ts = tx["timestamp"]
        before = (ts < day).to_numpy()
        window = ((ts >= day) & (ts < day + pd.Timedelta(days=horizon))).to_numpy()
        expected = _labels_by_id(tx, before, window)
        pd.testing.assert_frame_equal(build_labels(tx, as_of, horizon), expected, check_exact=True)
    # hand-computed at 2024-03-02 for 29 days (002's 999 on 03-31 is out): 001 100.7 active,
    # 004 -10 + 11.3 (its 40 is on 02-29, before the window), active (a purchase row);
    # 005 and 006 first seen from 2024-03-02: not known
    labels = build_labels(tx, "2024-03-02", 29).set_index("customer_id")
    assert list(labels.index) == ["001", "002", "003", "004"]
    assert labels["active"].tolist() == [1, 0, 0, 1]
    assert labels["spend"].tolist() == [100.0 + 0.7, 0.0, 0.0, -10.0 + 11.3]


def test_labels_with_a_missing_id_count_it_as_a_customer():
    """Issue 11 item 3: a row without an id before as_of is still one known customer, as before
    the labels were grouped by code."""
    tx = pd.DataFrame(
        {
            "customer_id": pd.Series(["a", None, "a"], dtype="str"),
            "timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-02-02"]),
            "amount": [5.0, 3.0, 7.0],
        }
    )
    labels = build_labels(tx, "2024-02-01", 30)
    assert len(labels) == 2 and labels["active"].tolist() == [1, 0]
