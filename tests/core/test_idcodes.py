"""clvflow.core.idcodes: exact integer codes of ids, in byte order, with selection and the memo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from clvflow.core.idcodes import count_codes, encode_ids, is_plain_text, packed_text_keys

ID_FORMS = {
    "fixed width": ["C002", "C001", "C002", "C010"],
    "up to 8 bytes": ["bb", "a", "b", "abcdefgh", "a", ""],
    "longer than 8 bytes": ["customer-0002", "customer-0001", "customer-0002"],
    "NUL bytes": ["a\x00", "a", "a\x00", "a\x00\x00"],
    "non-ASCII": ["é", "e", "é", "z"],
    "missing": ["b", None, "a", None, "b"],
}


def _decoded(codes: np.ndarray, ids: pd.Index) -> list:
    return [ids[c] if c >= 0 else None for c in codes]


@pytest.mark.parametrize("values", ID_FORMS.values(), ids=ID_FORMS.keys())
@pytest.mark.parametrize("dtype", ["str", object])
def test_codes_decode_to_the_ids_in_byte_order(values, dtype):
    coded = encode_ids(pd.Series(values, dtype=dtype))
    assert _decoded(coded.codes, coded.ids) == values
    present = sorted({v for v in values if v is not None}, key=lambda v: v.encode())
    assert list(coded.ids) == present
    assert coded.codes.dtype == np.int32


@pytest.mark.parametrize("values", ID_FORMS.values(), ids=ID_FORMS.keys())
def test_only_selected_rows_get_codes(values):
    rows = np.arange(len(values)) % 2 == 0
    coded = encode_ids(pd.Series(values, dtype="str"), rows)
    expected = [v if keep else None for v, keep in zip(values, rows, strict=True)]
    assert _decoded(coded.codes, coded.ids) == expected
    assert coded.n_ids == len({v for v in expected if v is not None})


def test_chunked_text_and_non_text_ids():
    chunked = pa.chunked_array([pa.array(["x1", "y22"]), pa.array(["x1", None, "z"])])
    coded = encode_ids(pd.Series(pd.arrays.ArrowStringArray(chunked)))
    assert list(coded.ids) == ["x1", "y22", "z"] and list(coded.codes) == [0, 1, 0, -1, 2]
    numbers = encode_ids(pd.Series([30, 4, 30]), np.array([True, True, False]))
    assert list(numbers.ids) == [4, 30] and list(numbers.codes) == [1, 0, -1]


def test_memo_returns_the_same_codes_only_for_the_same_column_and_rows():
    values = pd.Series(["b", "a", "b", "c"], dtype="str")
    rows = np.array([True, True, False, True])
    first = encode_ids(values, rows)
    assert encode_ids(values, rows.copy()) is first
    assert not first.codes.flags.writeable
    other_rows = encode_ids(values, ~rows)
    assert list(other_rows.ids) == ["b"] and list(other_rows.codes) == [-1, -1, 0, -1]
    filtered = values[values != "a"].reset_index(drop=True)  # a new array: coded afresh
    assert list(encode_ids(filtered).ids) == ["b", "c"]


def test_count_codes_skips_unused_rows():
    codes = np.array([0, 1, -1, 1, 0, 1], dtype=np.int32)
    assert list(count_codes(codes, 2)) == [2, 3]
    assert list(count_codes(codes, 2, codes != 0)) == [0, 3]


def test_packed_keys_only_for_short_text():
    keys = packed_text_keys(pd.Series(["ab", "b", "ab"], dtype="str"))
    assert keys[0] == keys[2] != keys[1] and keys[0] < keys[1]
    assert packed_text_keys(pd.Series(["longer than 8"], dtype="str")) is None
    assert packed_text_keys(pd.Series([1.5, 2.0])) is None


@pytest.mark.parametrize(
    ("values", "plain"),
    [
        (["C001", "00042", None], True),
        ([" C001"], False),
        (["C001\t"], False),
        (["17850.0"], False),
        ([""], False),
        (["né"], False),
    ],
)
def test_is_plain_text(values, plain):
    assert is_plain_text(pd.Series(values, dtype="str")) is plain


def test_memo_keeps_every_rows_coding_apart_from_the_last_selection():
    """Issue 11 item 3: the coding of every row survives codings of selections in between (a
    train's labels code the whole log once, its features code a selection per date)."""
    values = pd.Series(["b", "a", "b", "c"], dtype="str")
    everything = encode_ids(values)
    selected = encode_ids(values, np.array([True, False, False, True]))
    assert list(selected.ids) == ["b", "c"] and list(selected.codes) == [0, -1, -1, 1]
    assert encode_ids(values) is everything
    assert list(everything.ids) == ["a", "b", "c"] and list(everything.codes) == [1, 0, 1, 2]


@pytest.mark.parametrize("values", ID_FORMS.values(), ids=ID_FORMS.keys())
def test_a_selection_coded_from_every_rows_coding_equals_a_fresh_coding(values):
    """Issue 11 item 3: once every row of a column is coded, a selection's codes come from that
    coding (no text read again) and equal those of a fresh coding of the same rows."""
    column = pd.Series(values, dtype="str")
    everything = encode_ids(column)
    for rows in (np.arange(len(values)) % 2 == 1, np.zeros(len(values), dtype=bool)):
        derived = encode_ids(column, rows)
        fresh = encode_ids(pd.Series(values, dtype="str"), rows)  # a new array: no memo
        assert np.array_equal(derived.codes, fresh.codes) and derived.codes.dtype == np.int32
        pd.testing.assert_index_equal(derived.ids, fresh.ids, exact=True)
    assert encode_ids(column) is everything
    # hand-made: rows 1 and 2 of (b, a, b, c) keep ids a, b: codes (-1, 0, 1, -1)
    column = pd.Series(["b", "a", "b", "c"], dtype="str")
    encode_ids(column)
    picked = encode_ids(column, np.array([False, True, True, False]))
    assert list(picked.ids) == ["a", "b"] and list(picked.codes) == [-1, 0, 1, -1]
