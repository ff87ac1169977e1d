"""Customer-hash parts of a transactions file too large for one frame (chunked scoring).

One streaming pass over the file (blocks of ``BLOCK_ROWS`` rows, never the whole file in memory)
writes every row, as read, to one of ``parts`` Arrow files chosen by a stable hash of its
cleaned customer id: each customer's rows land in one part, so the per-customer rules of ingest
(exact duplicates, returns) hold part by part. The same pass gathers what only the whole file
knows: the far-date rule (:class:`~clvflow.data.ingest.DayCounts`), the first and last used day
(the default as-of date) and the layout of text timestamps. Each part is then cleaned by
:func:`clean_part` and the parts' reports merged by :func:`clvflow.data.ingest.merge_reports`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clvflow.core.dates import DateLike
from clvflow.core.errors import InputError
from clvflow.core.idcodes import stable_hash
from clvflow.data.datasets import CDNOW, is_embedded, read_cdnow_raw
from clvflow.data.ingest import (
    ColumnMap,
    DataQualityReport,
    DayCounts,
    FarDates,
    _is_csv,
    _unreadable,
    check_file,
    clean_transactions,
    csv_convert_options,
    no_rows_error,
    scan_block,
)
from clvflow.data.rowfilter import RowFilter, parse_row_filters

log = logging.getLogger(__name__)

#: Rows per block of the first pass.
BLOCK_ROWS = 1 << 20
#: Bytes of memory per row of a log scored in one frame (measured: ~0.094 GB per million rows
#: of a 3-column log, issue "Training a million customers in minutes").
BYTES_PER_ROW = 100
#: Share of the available memory one frame (or one part) may take.
MEMORY_SHARE = 0.5
#: Rows per part at most (about 0.8 GB of memory each while scored).
PART_ROWS = 8_000_000
#: Bytes per row of a CSV file, to estimate its rows from its size (gzip: times 4).
CSV_BYTES_PER_ROW = 40
#: The column of a part holding each row's position in the file.
ROW_COLUMN = "@row"
#: Parts are Arrow IPC files (written and read at memory speed), LZ4-compressed.
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")


@dataclass
class Partitioned:
    """A file split into customer-hash parts, with its whole-file facts."""

    source: str
    paths: list[Path]
    line_offset: int
    rows_read: int
    far: FarDates | None  # None with keep_far_dates
    first_day: pd.Timestamp  # the days of the first and last used row (id, not far)
    last_day: pd.Timestamp
    layout: str | None


def estimate_rows(source: str | Path) -> int:
    """Rows of a transactions file: exact for Parquet, from the size for CSV (0: unknown)."""
    if is_embedded(source):
        return 0
    path = Path(source)
    try:
        if not _is_csv(path):
            return int(pq.ParquetFile(path).metadata.num_rows)
        size = path.stat().st_size
    except (OSError, pa.ArrowInvalid):
        return 0  # (reading it says what is wrong)
    return size * (4 if path.name.lower().endswith(".gz") else 1) // CSV_BYTES_PER_ROW


def available_memory() -> int:
    """Bytes of memory available to a new process (MemAvailable; else the physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parts_needed(rows: int, memory: int) -> int:
    """How many parts a log of ``rows`` rows is scored in: 1 (one frame) when it fits
    ``MEMORY_SHARE`` of ``memory`` bytes, else enough for each part to fit it and to hold at
    most ``PART_ROWS`` rows."""
    budget = max(int(memory * MEMORY_SHARE), 1)
    if rows * BYTES_PER_ROW <= budget:
        return 1
    return max(-(-rows * BYTES_PER_ROW // budget), -(-rows // PART_ROWS))


def _blocks(
    source: str | Path, columns: ColumnMap, exclude: Sequence[RowFilter]
) -> tuple[str, int, Iterator[pa.Table]]:
    """(name, line of the first data row, blocks with the raw frame's column names)."""
    if is_embedded(source):
        table = pa.Table.from_pandas(read_cdnow_raw(), preserve_index=False)
        blocks = (pa.Table.from_batches([b]) for b in table.to_batches(BLOCK_ROWS))
        return "cdnow (embedded CDNOW master log)", 2, blocks
    path = Path(source)
    present = check_file(path, columns, exclude)
    wanted = columns.required()
    names = {col: logical for logical, col in wanted.items()}
    order = [*wanted.values(), *sorted(set(present) - set(wanted.values()))]

    def renamed(batch: pa.RecordBatch) -> pa.Table:
        table = pa.Table.from_batches([batch])
        return pa.table({names.get(c, f"__{c}"): table.column(c) for c in order})

    def read() -> Iterator[pa.Table]:
        try:
            if _is_csv(path):
                reader = pacsv.open_csv(
                    path,
                    read_options=pacsv.ReadOptions(block_size=64 << 20),
                    convert_options=csv_convert_options(present),
                )
                for batch in reader:
                    yield renamed(batch)
            else:
                for batch in pq.ParquetFile(path).iter_batches(BLOCK_ROWS):
                    yield renamed(batch)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _unreadable(path, exc) from None

    return str(path), (2 if _is_csv(path) else 1), read()


def partition_file(
    source: str | Path,
    folder: Path,
    parts: int,
    columns: ColumnMap | None = None,
    *,
    exclude: Sequence[RowFilter | str] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
) -> Partitioned:
    """Split a transactions file (or ``"cdnow"``) into ``parts`` customer-hash Arrow files in
    ``folder`` (rows with no id or excluded go to part 0), in one pass.

    Raises:
        InputError: as :func:`clvflow.data.ingest.load_transactions` does for the file, its ids
            and timestamps (the rows named are those of the first block with a problem).
    """
    try:
        rules = parse_row_filters(exclude)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    columns = ColumnMap(amount="amount") if is_embedded(source) else (columns or ColumnMap())
    name, line_offset, blocks = _blocks(source, columns, rules)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part-{k:04d}.arrow" for k in range(parts)]
    writers: list[pa.ipc.RecordBatchFileWriter | None] = [None] * parts
    counts, layouts = DayCounts(), []
    start = kept_rows = with_id = 0
    try:
        for table in blocks:
            n = table.num_rows
            raw = pd.DataFrame({c: table.column(c).to_pandas() for c in table.column_names})
            scan = scan_block(
                raw,
                np.arange(start, start + n),
                source=name,
                line_offset=line_offset,
                columns=columns,
                exclude=rules,
                date_format=date_format,
                dayfirst=dayfirst,
            )
            if scan.layout not in layouts:
                layouts.append(scan.layout)
            has_id = scan.ids.notna().to_numpy()
            counts.add(scan.stamps, has_id)
            kept_rows += len(scan.kept)
            with_id += int(has_id.sum())
            part = np.zeros(n, dtype=np.int64)
            hashes = stable_hash(scan.ids)
            part[scan.kept] = np.where(has_id, hashes % np.uint64(parts), 0)
            table = table.append_column(ROW_COLUMN, pa.array(np.arange(start, start + n)))
            for k in range(parts):
                rows = np.flatnonzero(part == k)
                if rows.size:
                    if writers[k] is None:
                        writers[k] = pa.ipc.new_file(paths[k], table.schema, options=_IPC)
                    writers[k].write_table(table.take(rows))  # type: ignore[union-attr]
            start += n
    finally:
        for writer in writers:
            if writer is not None:
                writer.close()
    if start == 0:
        raise InputError(f"{name}: no data rows (only a header). Export the transactions again.")
    if kept_rows == 0:
        raise no_rows_error(name, "excluded", "; ".join(r.describe() for r in rules))
    if with_id == 0:
        raise no_rows_error(name, "no id", columns.required()["customer_id"])
    if len(layouts) > 1:
        raise InputError(
            f"{name}, column {columns.required()['timestamp']!r}: parts of the file read with "
            f"different date layouts ({'; '.join(str(x) for x in layouts)}). Give the layout "
            "with --date-format (e.g. '%d/%m/%Y'), or use ISO dates like 2024-03-31."
        )
    far = None if keep_far_dates else FarDates(counts.far_cut(), columns.required()["timestamp"])
    days = counts.start + np.flatnonzero(counts.counts)
    if far is not None and far.cut is not None:
        days = days[~far.cut.mask(days.astype("datetime64[D]"))]
    first, last = (pd.Timestamp(np.datetime64(int(d), "D")) for d in (days.min(), days.max()))
    log.info("split %s into %d parts by customer (%s rows)", name, parts, f"{start:,}")
    return Partitioned(
        name,
        [p for p, w in zip(paths, writers, strict=True) if w is not None],
        line_offset,
        start,
        far,
        first,
        last,
        layouts[0],
    )


def clean_part(
    path: Path,
    split: Partitioned,
    columns: ColumnMap | None = None,
    *,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    exclude: Sequence[RowFilter | str] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
) -> tuple[pd.DataFrame, DataQualityReport]:
    """One part cleaned as :func:`clvflow.data.ingest.clean_transactions` cleans a file, under
    the whole file's far-date rule; messages name the rows' lines in the file."""
    with pa.ipc.open_file(path) as reader:
        table = reader.read_all()
    rows = table.column(ROW_COLUMN).to_numpy()
    table = table.drop_columns([ROW_COLUMN])
    raw = pd.DataFrame({c: table.column(c).to_pandas() for c in table.column_names}, copy=False)
    del table
    embedded = split.source.startswith(CDNOW)
    return clean_transactions(
        raw,
        source=split.source,
        as_of=as_of,
        drop_duplicates=drop_duplicates,
        line_offset=split.line_offset,
        columns=ColumnMap(amount="amount") if embedded else (columns or ColumnMap()),
        exclude=parse_row_filters(exclude),
        date_format=date_format,
        dayfirst=dayfirst,
        keep_far_dates=keep_far_dates,
        rows=rows,
        far=split.far,
    )
