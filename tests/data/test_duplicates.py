"""clvflow.data.duplicates: the fast duplicate check gives exactly pandas' answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from clvflow.data.duplicates import duplicated_rows

_rows = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "long customer id", None]),
        st.sampled_from(["2024-01-01", "2024-01-01 10:00", None]),
        st.sampled_from([0.0, -0.0, 1.5, np.nan, -2.0]),
        st.integers(0, 2),
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(rows=_rows)
def test_same_as_pandas(rows):
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
            "timestamp": pd.to_datetime(
                pd.Series([r[1] for r in rows], dtype=object), format="mixed"
            ),
            "amount": pd.Series([r[2] for r in rows], dtype="float64"),
            "n": pd.Series([r[3] for r in rows], dtype="int64"),
            "note": pd.Series([str(r[3]) * 12 for r in rows], dtype=object),
        }
    )
    expected = frame.duplicated(keep="first").to_numpy()
    np.testing.assert_array_equal(duplicated_rows(frame), expected)


def test_many_duplicates():
    frame = pd.DataFrame({"x": np.arange(1000) % 7, "y": pd.Series(["p", "q"] * 500, dtype="str")})
    np.testing.assert_array_equal(duplicated_rows(frame), frame.duplicated().to_numpy())
