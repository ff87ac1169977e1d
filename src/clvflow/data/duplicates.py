"""Exact duplicate rows of a large frame: ``DataFrame.duplicated(keep="first")``, fast.

pandas factorizes every column and then the row tuples; on 20M rows that takes half a minute. Here
each row gets a 64-bit hash: a sum of per-column integer keys (the bits of numbers and times, text
packed or hashed from its bytes) times odd constants, modulo 2**64. Rows whose hash occurs only once
cannot be duplicates; the others (the duplicates, plus the rare
hash collision) go to pandas itself, so the answer is exactly pandas' own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.core.idcodes import packed_text_keys, text_hash_keys

_MISSING = np.uint64(0x9E3779B97F4A7C15)  # key of a missing value (any constant would do)
_CHUNK_ROWS = 1 << 19


def duplicated_rows(frame: pd.DataFrame) -> np.ndarray:
    """Boolean mask of rows equal in every column to an earlier row (NaN equals NaN).

    Same result as ``frame.duplicated(keep="first").to_numpy()``.
    """
    columns = [_column_keys(frame[name]) for name in frame.columns]
    row_hash = np.empty(len(frame), dtype=np.uint64)
    for rows in _chunks(len(frame)):
        row_hash[rows] = _row_hashes(columns, rows)
    row_hash.sort()
    repeated = np.unique(row_hash[1:][row_hash[1:] == row_hash[:-1]])
    del row_hash
    duplicated = np.zeros(len(frame), dtype=bool)
    if len(repeated) == 0:
        return duplicated
    candidates = np.concatenate(
        [
            rows.start + _positions_of(_row_hashes(columns, rows), repeated)
            for rows in _chunks(len(frame))
        ]
    )
    duplicated[candidates] = frame.iloc[candidates].duplicated(keep="first").to_numpy()
    return duplicated


def _chunks(n: int) -> list[slice]:
    """Row ranges small enough that per-chunk temporaries are recycled (see features)."""
    return [slice(i, min(i + _CHUNK_ROWS, n)) for i in range(0, n, _CHUNK_ROWS)]


def _row_hashes(columns: list[np.ndarray], rows: slice) -> np.ndarray:
    """Sum over columns of key x odd constant (mod 2**64), for a range of rows."""
    out = np.zeros(rows.stop - rows.start, dtype=np.uint64)
    for keys, multiplier in zip(columns, _multipliers(len(columns)), strict=True):
        part = keys[rows]
        if part.dtype == np.float64:
            part = part + 0.0  # -0.0 becomes 0.0
            part[np.isnan(part)] = np.nan  # one NaN bit pattern
        out += part.view(np.uint64) * multiplier
    return out


def _column_keys(values: pd.Series) -> np.ndarray:
    """A 64-bit key per row (uint64, int64 or float64); values that pandas' ``duplicated`` takes as
    equal get equal keys (floats once made canonical by _row_hashes)."""
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        dtype = values.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        return values.to_numpy().view(np.uint64)  # NaT is one fixed value
    if isinstance(dtype, np.dtype) and dtype.kind == "f":
        return values.to_numpy(np.float64)  # (made canonical chunk by chunk in _row_hashes)
    if isinstance(dtype, np.dtype) and dtype.kind in "iub":
        return values.to_numpy().astype(np.int64).view(np.uint64)  # a copy: 1 byte bools too
    keys = packed_text_keys(values)
    if keys is None:
        keys = text_hash_keys(values)
    if keys is None:  # anything else: pandas' own codes define equality exactly
        return pd.factorize(values)[0].astype(np.int64).view(np.uint64)
    missing = values.isna().to_numpy()
    if missing.any():
        keys = keys.copy()  # (the packed keys are shared with idcodes' memo)
        keys[missing] = _MISSING
    return keys


def _multipliers(n: int) -> list[np.uint64]:
    """n fixed odd 64-bit constants (splitmix64 outputs), one per column."""
    state, out = 0, []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        z = (state ^ (state >> 30)) * 0xBF58476D1CE4E5B9 % 2**64
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB % 2**64
        out.append(np.uint64((z ^ (z >> 31)) | 1))
    return out


def _positions_of(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Indices of the elements of ``values`` that are in the sorted array ``wanted``."""
    if len(wanted) <= 8:  # the usual case: a handful of duplicates, if any
        hit = np.zeros(len(values), dtype=bool)
        for value in wanted:
            hit |= values == value
        return np.flatnonzero(hit)
    position = np.minimum(np.searchsorted(wanted, values), len(wanted) - 1)
    return np.flatnonzero(wanted[position] == values)
