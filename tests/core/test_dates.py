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
