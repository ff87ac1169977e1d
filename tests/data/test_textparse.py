"""clvflow.data.textparse: the fast parsers give exactly what ingest's pandas parsing gives, or decline."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clvflow.data.textparse import exact_numbers, iso_timestamps


def _pandas_numbers(text: list[str]) -> np.ndarray:
    series = pd.Series(text, dtype="str").str.strip()
    return pd.to_numeric(series, errors="coerce").astype("float64").to_numpy()


def _pandas_timestamps(text: list[str]) -> np.ndarray:
    with warnings.catch_warnings():  # mixed layouts: "Could not infer format" is expected
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(pd.Series(text, dtype="str"), errors="coerce", utc=True)
    return parsed.dt.tz_localize(None).to_numpy()


_number_text = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.from_regex(r"[+-]?[0-9]{1,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["1,5", " 2", "3 ", "$4", "0x10", "1_000", "nan", "inf", "-0", ".5", "5."]),
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_number_text, min_size=1, max_size=20))
def test_numbers_match_pandas_when_taken(text):
    fast = exact_numbers(pd.Series(text, dtype="str"))
    if fast is not None:
        np.testing.assert_array_equal(fast.to_numpy(), _pandas_numbers(text))


_timestamp_text = st.one_of(
    st.datetimes(min_value=pd.Timestamp("1900-01-01"), max_value=pd.Timestamp("2200-01-01")).map(
        lambda t: t.strftime("%Y-%m-%d %H:%M:%S")
    ),
    st.dates(min_value=pd.Timestamp("1900-01-01").date()).map(str),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}:[0-9]{2})?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_timestamp_text, min_size=1, max_size=20))
@example(text=["2000-01-01 00:00:00", "0001-01-01T00:00:00"])  # (a separator mix: pandas NaT)
def test_iso_timestamps_match_pandas_when_taken(text):
    fast = iso_timestamps(pd.Series(text, dtype="str"))
    if fast is not None:
        np.testing.assert_array_equal(fast.to_numpy(), _pandas_timestamps(text))
        assert fast.dtype == "datetime64[us]"


@pytest.mark.parametrize(
    "text",
    [
        ["2023-02-29"],  # not a leap year
        ["2024-02-30 10:00:00"],
        ["2024-01-01 24:00:00"],
        ["2024-01-01 10:00:60"],
        ["2024-13-01"],
        ["2024-1-01"],
        ["2024-01-01 10:00:00+02:00"],
        ["2024-01-01", "2024-01-01 10:00:00"],
    ],
)
def test_anything_unusual_is_left_to_pandas(text):
    assert iso_timestamps(pd.Series(text, dtype="str")) is None


def test_leading_plus_is_left_to_pandas():
    assert exact_numbers(pd.Series(["+5.29371507697736932"], dtype="str")) is None
    assert exact_numbers(pd.Series(["5.25", "-1e3"], dtype="str")).tolist() == [5.25, -1000.0]


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.from_regex(r"-?[0-9]{1,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,3})?", fullmatch=True),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_plain_numbers_take_the_fast_path(text):
    fast = exact_numbers(pd.Series(text, dtype="str"))
    assert fast is not None
    np.testing.assert_array_equal(fast.to_numpy(), _pandas_numbers(text))


@settings(max_examples=200, deadline=None)
@given(
    stamps=st.lists(
        st.datetimes(min_value=pd.Timestamp("1900-01-01"), max_value=pd.Timestamp("2200-01-01")),
        min_size=1,
        max_size=20,
    ),
    layout=st.sampled_from(["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
)
def test_plain_iso_timestamps_take_the_fast_path(stamps, layout):
    text = [t.strftime(layout) for t in stamps]
    fast = iso_timestamps(pd.Series(text, dtype="str"))
    assert fast is not None
    np.testing.assert_array_equal(fast.to_numpy(), _pandas_timestamps(text))


def test_iso_timestamps_leave_a_mix_of_space_and_t_separators_to_pandas():
    """Found by the property test above: pandas reads a column in the first value's layout, so a
    'T' after values with a space is NaT there. The fast path reads one layout only, or none."""
    mixed = pd.Series(["2000-01-01 00:00:00", "2000-01-02T00:00:00"], dtype="str")
    assert iso_timestamps(mixed) is None
    same = pd.Series(["2000-01-01T00:00:00", "2000-01-02T06:30:00"], dtype="str")
    assert list(iso_timestamps(same)) == [
        pd.Timestamp("2000-01-01"),
        pd.Timestamp("2000-01-02 06:30"),
    ]
