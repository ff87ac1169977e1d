"""Integer codes for customer ids: the one place where ids are looked at row by row.

Grouping tens of millions of rows by a text id dominates the cost of ingest and features, so it is
done here and everything after works on integer codes (bincounts, sorts and segment sums in numpy).
Ids of at most 8 bytes (numeric ids, ``'C0012345'``) are packed exactly into one uint64 that keeps
their byte order; other ids go through pyarrow's dictionary encoder. Either way the codes are exact:
no hashing, no collisions.

Memo: the last packing and coding of a text column (and its coding of every row) is remembered
for as long as the (immutable) pyarrow array behind it lives, so that ingest (data-quality
counts) and features (grouping) code the same 20M ids once, not twice (at ~12 bytes a row kept
alongside the frame). A filtered or rebuilt
column is a new array and is coded afresh, and a hit needs the same row selection, so the memo can
only return what a fresh computation would.
"""

from __future__ import annotations

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view

_PACKED_BYTES = 8
_MEMO_SIZE = 4
_CHUNK_ROWS = 1 << 21  # rows per chunk in per-row passes: temporaries stay small (< 32 MB)
_WORD_MULTIPLIERS = np.array(  # odd 64-bit constants (from splitmix64) for text_hash_keys
    [0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93,
     0xA0761D6478BD642F, 0xE7037ED1A0B428DB, 0x8EBC6AF09C88C6E3, 0x589965CC75374CC3],
    dtype=np.uint64,
)  # fmt: skip


@dataclass(frozen=True)
class IdCodes:
    """Dense integer codes of ids.

    codes: int32, one per row: the position of the row's id in ``ids``; -1 for a missing id or a
        row that was not selected.
    ids: the distinct ids of the selected rows, in ascending order (byte order for text, as DuckDB
        and pyarrow sort).
    """

    codes: np.ndarray
    ids: pd.Index

    @property
    def n_ids(self) -> int:
        return len(self.ids)


@dataclass
class _Memo:
    array: weakref.ref
    lock: threading.Lock = field(default_factory=threading.Lock)
    packed: tuple[np.ndarray | None, int | None] | None = None
    rows: np.ndarray | None = None
    coded: IdCodes | None = None
    all_coded: IdCodes | None = None  # (every row coded: kept apart from the last selection's)


_memos: list[_Memo] = []
_memo_lock = threading.Lock()  # ingest reads the memo from two threads


def encode_ids(values: pd.Series, rows: np.ndarray | None = None) -> IdCodes:
    """Code the ids of the rows selected by ``rows`` as 0 .. n_ids - 1 in ascending id order.

    Args:
        values: ids (text, or any other type pandas can factorize).
        rows: optional boolean mask over ``values``: only these rows get a code (others -1), and
            only their ids are counted.

    Returns:
        :class:`IdCodes`; ``codes`` is read-only (it may be shared with an earlier call on the same
        column).
    """
    chunks, memo = _arrow_chunks(values)
    if chunks is None:  # not text held by pyarrow: pandas' own factorize, sorted
        if rows is None:
            codes, uniques = pd.factorize(values, sort=True)
            return IdCodes(codes.astype(np.int32), pd.Index(uniques))
        selected, uniques = pd.factorize(values[rows], sort=True)
        codes = np.full(len(values), -1, dtype=np.int32)
        codes[rows] = selected
        return IdCodes(codes, pd.Index(uniques))
    if memo is not None and rows is None and memo.all_coded is not None:
        return memo.all_coded
    if memo is not None and memo.coded is not None and _same_rows(memo.rows, rows):
        return memo.coded
    keep = values.notna().to_numpy() if any(c.null_count for c in chunks) else None
    if rows is not None:
        keep = rows if keep is None else keep & rows
    if memo is not None and keep is not None and memo.all_coded is not None:
        coded = _selected(memo.all_coded, keep)  # (no text looked at again)
    else:
        coded = _encode(chunks, keep, _packed(chunks, memo))
    coded.codes.flags.writeable = False  # may be shared through the memo
    if memo is not None and rows is None:
        memo.all_coded = coded
    elif memo is not None and rows is not None:
        memo.rows, memo.coded = rows.copy(), coded
    return coded


def count_codes(codes: np.ndarray, n_ids: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows per code (codes < 0 not counted), optionally only over the ``rows`` mask."""
    counts = np.zeros(n_ids, dtype=np.int64)
    for i in range(0, len(codes), _CHUNK_ROWS):
        chunk = codes[i : i + _CHUNK_ROWS]
        used = chunk >= 0 if rows is None else (chunk >= 0) & rows[i : i + _CHUNK_ROWS]
        counts += np.bincount(chunk[used], minlength=n_ids)
    return counts


def packed_text_keys(values: pd.Series) -> np.ndarray | None:
    """Exact uint64 keys of short text values (see :func:`_packed_keys`), or None.

    None when ``values`` is not text held by pyarrow or some value is longer than 8 bytes. Keys of
    missing values are arbitrary. Read-only (shared with the memo).
    """
    chunks, memo = _arrow_chunks(values, convert=False)
    return None if chunks is None else _packed(chunks, memo)[0]


def text_hash_keys(values: pd.Series) -> np.ndarray | None:
    """uint64 per value, equal for equal text (a hash: different text may collide), or None.

    For fixed-width text up to 64 bytes held by pyarrow (e.g. ISO timestamps read from CSV):
    the 8-byte words of each value combined with odd multipliers. Missing values get arbitrary
    keys. None for anything else.
    """
    chunks, _ = _arrow_chunks(values, convert=False)
    if chunks is None:
        return None
    lengths = [np.diff(_offsets(c)) for c in chunks]
    width = int(lengths[0][0]) if len(lengths[0]) else 0
    if not 0 < width <= 64 or any((x != width).any() for x in lengths):
        return None
    words = -(-width // 8)
    out = np.empty(sum(len(c) for c in chunks), dtype=np.uint64)
    start = 0
    for chunk in chunks:
        offsets, data = _offsets(chunk), _data(chunk)
        block = np.zeros((len(chunk), words * 8), dtype=np.uint8)
        block[:, :width] = data[offsets[0] : offsets[0] + len(chunk) * width].reshape(-1, width)
        mixed = block.view(np.uint64) * _WORD_MULTIPLIERS[:words]
        out[start : start + len(chunk)] = mixed.sum(axis=1, dtype=np.uint64)
        start += len(chunk)
    return out


def is_plain_text(values: pd.Series) -> bool:
    """True when every value is text that stripping and float-id normalising would leave as is.

    That is: pyarrow-held text, every present value non-empty, starting and ending with a printable
    ASCII character, without a '.' or a control character below 0x20 (ingest refuses those). A cheap
    scan of the raw bytes, so that clean ids (the usual case) skip the per-row string operations.
    """
    chunks, _ = _arrow_chunks(values, convert=False)
    if chunks is None:
        return False
    for chunk in chunks:
        valid = np.asarray(chunk.is_valid()) if chunk.null_count else slice(None)
        offsets, data = _offsets(chunk), _data(chunk)
        starts, ends = offsets[:-1][valid], offsets[1:][valid]
        if np.any(ends <= starts):
            return False
        edges = np.concatenate((data[starts], data[ends - 1]))
        if np.any((edges <= 0x20) | (edges >= 0x7F)):  # whitespace, control or non-ASCII
            return False
        used = data[offsets[0] : offsets[-1]]
        if used.min(initial=0x20) < 0x20 or np.any(used == ord(".")):  # (min: no temporary)
            return False
    return True


def _encode(
    chunks: list[pa.Array],
    keep: np.ndarray | None,
    packed: tuple[np.ndarray | None, int | None],
) -> IdCodes:
    """Dictionary-encode all rows, then number the ids of the kept rows in sorted order.

    Packed keys are encoded in two halves at once (two threads), and the two dictionaries merged.
    """
    keys, width = packed
    if keys is None:
        encoded = pc.dictionary_encode(pa.chunked_array(chunks, type=chunks[0].type))
        parts = [encoded.combine_chunks()]
        order = pc.sort_indices(parts[0].dictionary).to_numpy()
        entries = [np.empty(len(order), dtype=np.int64)]
        entries[0][order] = np.arange(len(order))  # dictionary index -> rank in sorted order
        distinct = parts[0].dictionary.take(pa.array(order))
    else:
        halves = [slice(0, len(keys) // 2), slice(len(keys) // 2, len(keys))]
        with ThreadPoolExecutor(max_workers=2) as pool:
            parts = list(pool.map(lambda rows: pc.dictionary_encode(pa.array(keys[rows])), halves))
        sizes = [len(p.dictionary) for p in parts]
        merged = np.concatenate([p.dictionary.to_numpy() for p in parts])
        distinct, entry = np.unique(merged, return_inverse=True)  # uint64 order = byte order
        entries = np.split(entry, np.cumsum(sizes)[:-1])
    bounds = np.cumsum([0] + [len(p) for p in parts])
    indices = [_indices(p) for p in parts]
    present = np.zeros(len(distinct), dtype=bool)
    for part_indices, entry, lo in zip(indices, entries, bounds[:-1], strict=True):
        part_keep = None if keep is None else keep[lo : lo + len(part_indices)]
        present[entry[count_codes(part_indices, len(entry), part_keep) > 0]] = True
    code_of = np.full(len(distinct), -1, dtype=np.int32)
    code_of[present] = np.arange(np.count_nonzero(present), dtype=np.int32)
    codes = np.empty(int(bounds[-1]), dtype=np.int32)
    for part_indices, entry, lo in zip(indices, entries, bounds[:-1], strict=True):
        part_code = code_of[entry]  # dictionary index of this part -> final code
        for i in range(0, len(part_indices), _CHUNK_ROWS):
            rows = slice(lo + i, lo + min(i + _CHUNK_ROWS, len(part_indices)))
            codes[rows] = part_code[part_indices[i : i + _CHUNK_ROWS]]
            if keep is not None:
                codes[rows][~keep[rows]] = -1
    if keys is None:
        ids = pd.Index(pd.array(distinct.filter(pa.array(present)), dtype="str"))
    else:
        ids = _unpack(distinct[present], width)
    return IdCodes(codes, ids)


def _selected(everything: IdCodes, keep: np.ndarray) -> IdCodes:
    """What :func:`_encode` gives for the rows ``keep`` (with ids), from the coding of every row:
    the ids of the kept rows keep their order, so a kept row's code is its id's rank among them."""
    n_ids = everything.n_ids
    present = count_codes(everything.codes, n_ids, keep) > 0
    code_of = np.cumsum(present, dtype=np.int64).astype(np.int32) - 1
    codes = np.empty(len(keep), dtype=np.int32)
    for i in range(0, len(keep), _CHUNK_ROWS):
        rows = slice(i, i + _CHUNK_ROWS)
        chunk = everything.codes[rows]
        codes[rows] = np.where(keep[rows] & (chunk >= 0), code_of[chunk], -1)
    return IdCodes(codes, everything.ids[present])


def _indices(encoded: pa.DictionaryArray) -> np.ndarray:
    """Dictionary indices as numpy (a missing id gets index 0: it is never kept)."""
    indices = encoded.indices
    return (pc.fill_null(indices, 0) if indices.null_count else indices).to_numpy()


def _same_rows(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _arrow_chunks(
    values: pd.Series, convert: bool = True
) -> tuple[list[pa.Array] | None, _Memo | None]:
    """The pyarrow string chunks behind a text column and its memo (None when converted here).

    Text held as Python objects is converted when ``convert``; anything else gives (None, None).
    """
    array = values.array
    memo = None
    if isinstance(array, pd.arrays.ArrowStringArray):
        chunked = array.__arrow_array__()
        memo = _memo_for(chunked)
    elif (
        convert
        and pd.api.types.is_string_dtype(values.dtype)
        and not isinstance(values.dtype, pd.CategoricalDtype)
    ):
        try:
            chunked = pa.chunked_array(
                [pa.array(values.to_numpy(object), type=pa.large_string(), from_pandas=True)]
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None, None
    else:
        return None, None
    chunks = [c for c in chunked.chunks if len(c)] or [pa.array([], type=pa.large_string())]
    return chunks, memo


def _memo_for(chunked: pa.ChunkedArray) -> _Memo:
    """The memo of this very array object (identity, not equality), made if new."""
    with _memo_lock:
        _memos[:] = [m for m in _memos if m.array() is not None]
        for memo in _memos:
            if memo.array() is chunked:
                return memo
        memo = _Memo(weakref.ref(chunked))
        _memos.append(memo)
        del _memos[:-_MEMO_SIZE]
        return memo


def _packed(chunks: list[pa.Array], memo: _Memo | None) -> tuple[np.ndarray | None, int | None]:
    if memo is None:
        return _packed_keys(chunks)
    with memo.lock:
        if memo.packed is None:
            memo.packed = _packed_keys(chunks)
        return memo.packed


def _packed_keys(chunks: list[pa.Array]) -> tuple[np.ndarray | None, int | None]:
    """Each id's bytes as a big-endian uint64, zero-padded; None when that would not be exact.

    Exact (and order-keeping) when every id has at most 8 bytes and either all have the same length
    or none contains a NUL byte (so that zero padding cannot make two ids equal).

    Returns:
        (keys or None, the common length of all ids or None when lengths vary).
    """
    lengths = [np.diff(_offsets(c)) for c in chunks]
    longest = max(int(x.max(initial=0)) for x in lengths)
    shortest = min(int(x.min(initial=longest)) for x in lengths)
    if longest > _PACKED_BYTES:
        return None, None
    fixed = shortest == longest
    out = np.empty(sum(len(c) for c in chunks), dtype=np.uint64)
    start = 0
    for chunk, length in zip(chunks, lengths, strict=True):
        offsets, data = _offsets(chunk), _data(chunk)
        n = len(chunk)
        if fixed:
            block = data[offsets[0] : offsets[0] + n * longest].reshape(n, longest)
        else:
            used = data[offsets[0] : offsets[-1]]
            if used.size and not used.all():  # a NUL byte
                return None, None
            padded = np.concatenate((used, np.zeros(_PACKED_BYTES, dtype=np.uint8)))
            block = sliding_window_view(padded, _PACKED_BYTES)[offsets[:-1] - offsets[0]]
            block *= np.arange(_PACKED_BYTES) < length[:, None]
        if block.shape[1] < _PACKED_BYTES:
            words = np.zeros((n, _PACKED_BYTES), dtype=np.uint8)
            words[:, : block.shape[1]] = block
            block = words
        out[start : start + n] = np.ascontiguousarray(block).view(np.uint64).ravel()
        start += n
    out.byteswap(inplace=True)  # the first byte becomes the most significant: byte order kept
    return out, (longest if fixed else None)


def _unpack(keys: np.ndarray, width: int | None) -> pd.Index:
    """The ids packed in ``keys`` (inverse of :func:`_packed_keys`) as a str Index."""
    data = keys.astype(">u8").view(np.uint8).reshape(-1, _PACKED_BYTES)
    lengths = np.full(len(keys), width) if width is not None else (data != 0).sum(axis=1)
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    text = data[np.arange(_PACKED_BYTES) < lengths[:, None]]
    array = pa.LargeStringArray.from_buffers(
        len(keys), pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(text))
    )
    return pd.Index(pd.array(array, dtype="str"))


def _offsets(chunk: pa.Array) -> np.ndarray:
    dtype = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], dtype=dtype)
    return offsets[chunk.offset : chunk.offset + len(chunk) + 1].astype(np.int64, copy=False)


def _data(chunk: pa.Array) -> np.ndarray:
    buffer = chunk.buffers()[2]
    return np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.zeros(0, np.uint8)


def stable_hash(values: pd.Series) -> np.ndarray:
    """uint64 per text value, a function of the value alone (the same in any block, run or
    machine): its bytes as 8-byte little-endian words, word ``i`` times an odd constant, summed,
    then splitmix64's finaliser. Missing values get arbitrary keys. For splitting ids into
    parts (:mod:`clvflow.data.partition`), not for grouping: different text may collide."""
    chunks, _ = _arrow_chunks(values.astype("str") if values.dtype == object else values)
    if chunks is None:
        raise TypeError(f"stable_hash needs text, got {values.dtype}")
    out = np.empty(len(values), dtype=np.uint64)
    start = 0
    for chunk in chunks:
        offsets, data = _offsets(chunk), _data(chunk)
        lengths = np.diff(offsets)
        words = max(-(-int(lengths.max(initial=0)) // 8), 1)
        block = np.zeros((len(chunk), words * 8), dtype=np.uint8)
        width = int(lengths[0]) if len(lengths) else 0
        if (lengths == width).all():  # fixed width (the usual ids): one reshape
            block[:, :width] = data[offsets[0] : offsets[0] + len(chunk) * width].reshape(-1, width)
        else:
            column = np.arange(words * 8)
            inside = column[None, :] < lengths[:, None]
            block[inside] = data[(offsets[:-1, None] + column[None, :])[inside]]
        multipliers = _WORD_MULTIPLIERS[np.arange(words) % 8] + np.uint64(2) * np.arange(
            words, dtype=np.uint64
        )
        key = (block.view(np.uint64) * multipliers).sum(axis=1, dtype=np.uint64)
        key ^= key >> np.uint64(30)  # splitmix64's finaliser: every input bit moves every output
        key *= np.uint64(0xBF58476D1CE4E5B9)
        key ^= key >> np.uint64(27)
        key *= np.uint64(0x94D049BB133111EB)
        key ^= key >> np.uint64(31)
        out[start : start + len(chunk)] = key
        start += len(chunk)
    return out
