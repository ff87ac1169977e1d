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
