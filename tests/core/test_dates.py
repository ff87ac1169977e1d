import pandas as pd
import pytest

from clvflow.core.dates import day_after, default_as_of, to_day


def test_default_as_of_is_the_day_after_the_last_transaction_day():
    """The one rule for a missing --as-of / --cutoff (leap day, late evening)."""
    tx = pd.DataFrame({"timestamp": pd.to_datetime(["2024-01-05 08:00", "2024-02-29 23:59"])})
    assert default_as_of(tx) == pd.Timestamp("2024-03-01")
    assert day_after(pd.Timestamp("2023-12-31 00:00")) == pd.Timestamp("2024-01-01")


@pytest.mark.parametrize("text", ["1998-13-01", "1998-01-01 10:30"])
def test_to_day_refuses_what_is_not_a_plain_date(text):
    with pytest.raises(ValueError, match="cutoff"):
        to_day(text, "cutoff")


def test_rows_before_copies_no_data_when_every_row_is_before_the_day():
    """Issue 11 item 4: a log already cut at the day is not duplicated (the train job, the
    internal backtest and the snapshots each asked for a copy of the million-customer log); a log
    with later rows is cut, and writing to the result never changes the log."""
    import numpy as np

    from clvflow.core.dates import rows_before

    tx = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(
                ["2024-01-01 10:00", "2024-01-02 00:00", "2024-01-03 23:59"]
            ),
            "amount": [1.0, 2.0, 3.0],
        }
    )
    same = rows_before(tx, pd.Timestamp("2024-01-04"))
    assert np.shares_memory(same["amount"].to_numpy(), tx["amount"].to_numpy())
    assert same["amount"].tolist() == [1.0, 2.0, 3.0]
    same.loc[0, "amount"] = 9.0
    assert tx["amount"].tolist() == [1.0, 2.0, 3.0]
    assert rows_before(tx, pd.Timestamp("2024-01-03"))["amount"].tolist() == [1.0, 2.0]
    assert rows_before(tx, pd.Timestamp("2024-01-01")).empty
