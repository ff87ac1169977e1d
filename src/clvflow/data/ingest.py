"""Ingest: read transaction files, map columns, validate, clean, and account for every row.

The output is a *transactions table*: a pandas DataFrame with the logical columns
``customer_id`` (str, exactly as written), ``timestamp`` (datetime64, timezone-naive; timezone-aware
inputs are converted to UTC first) and ``amount`` (float64; returns are negative). Rows dated on or
after an ``as_of`` date are kept (labels need them) but counted; features never see them.

Every input row is either in the output or counted, by reason, in the :class:`DataQualityReport`.
Opt-in row filters (:mod:`clvflow.data.rowfilter`, e.g. ``StockCode=POST,M`` or ``InvoiceNo^=C``) drop
rows by the value of any input column before anything else, and are counted rule by rule.
Rows dated far outside the rest (a typo year such as 2999 or 1911, see :func:`far_dates`) are
dropped and counted too, so that they cannot move the default as-of date.
Bad input raises :class:`InputError` naming the file, the column, the first offending rows and what
to do.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pandas.tseries.api import guess_datetime_format

from clvflow.core.dates import DateLike, to_day
from clvflow.core.errors import InputError
from clvflow.core.idcodes import count_codes, encode_ids, is_plain_text, packed_text_keys
from clvflow.core.steptimes import timed_step
from clvflow.data.datasets import CDNOW, is_embedded, read_cdnow_raw
from clvflow.data.duplicates import duplicated_rows
from clvflow.data.rowfilter import RowFilter, parse_row_filters
from clvflow.data.textparse import exact_numbers, iso_timestamps

log = logging.getLogger(__name__)

TX_COLUMNS = ["customer_id", "timestamp", "amount"]
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
MAX_EXAMPLES = 5
FAR_DATES_MIN_GAP_DAYS = 365  # see far_dates


@dataclass(frozen=True)
class ColumnMap:
    """Names of the input columns that hold each logical field.

    Either ``amount`` or both ``quantity`` and ``unit_price`` are used: when ``quantity`` and
    ``unit_price`` are given, amount = quantity x unit_price (invoice-line exports).
    """

    customer_id: str = "customer_id"
    timestamp: str = "timestamp"
    amount: str | None = "amount"
    quantity: str | None = None
    unit_price: str | None = None

    @property
    def uses_quantity_price(self) -> bool:
        return self.quantity is not None and self.unit_price is not None

    def required(self) -> dict[str, str]:
        """Logical name -> input column name, for the columns this map needs."""
        cols = {"customer_id": self.customer_id, "timestamp": self.timestamp}
        if self.uses_quantity_price:  # (both set: a check mypy does not see through)
            cols["quantity"] = self.quantity  # type: ignore[assignment]
            cols["unit_price"] = self.unit_price  # type: ignore[assignment]
        elif self.amount is not None:
            cols["amount"] = self.amount
        else:
            raise InputError(
                "no amount column: give --amount-col, or both --quantity-col and --unit-price-col"
            )
        return cols


@dataclass
class DataQualityReport:
    """What ingest did with each input row. Counts are rows unless the name says customers."""

    source: str
    rows_read: int = 0
    rows_used: int = 0
    dropped_excluded: int = 0
    excluded: list[dict] = field(default_factory=list)  # {"rule": description, "rows": count}
    dropped_missing_customer_id: int = 0
    dropped_far_dates: int = 0
    dropped_duplicates: int = 0
    duplicate_rows: int = 0
    returns: int = 0
    zero_amounts: int = 0
    rows_on_or_after_as_of: int = 0
    as_of: str | None = None
    customer_ids_float_formatted: int = 0
    customers: int = 0
    customers_only_returns: int = 0
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_table(self) -> str:
        """A short human-readable table."""
        labels = {
            "rows_read": "rows read",
            "rows_used": "rows used",
            "dropped_excluded": "dropped: --exclude rules",
            "dropped_missing_customer_id": "dropped: no customer id",
            "dropped_far_dates": "dropped: dates far from all others (see note)",
            "dropped_duplicates": "dropped: exact duplicates (--drop-duplicates)",
            "duplicate_rows": "exact duplicate rows found",
            "returns": "returns (negative amount, netted)",
            "zero_amounts": "zero amounts",
            "rows_on_or_after_as_of": f"rows on/after as-of {self.as_of} (not in features)",
            "customer_ids_float_formatted": "ids like '17850.0' normalised to '17850'",
            "customers": "customers",
            "customers_only_returns": "customers with only returns",
        }
        lines = [f"Data quality: {self.source}"]
        for key, label in labels.items():
            lines.append(f"  {label:<48} {getattr(self, key):>12,}")
            if key == "dropped_excluded":
                lines.extend(
                    f"    {'excluded by ' + e['rule']:<46} {e['rows']:>12,}" for e in self.excluded
                )
        lines.append(f"  {'time span':<48} {self.first_timestamp} .. {self.last_timestamp}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


@timed_step("i/o and logging")
def load_transactions(
    source: str | Path,
    columns: ColumnMap | None = None,
    *,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    exclude: Sequence[RowFilter | str] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Read and clean a transaction file (or the embedded dataset ``"cdnow"``).

    Args:
        source: path to ``.csv``, ``.csv.gz`` or ``.parquet``, or ``"cdnow"``.
        columns: input column names; defaults to the logical names.
        as_of: optional date; rows on or after it are counted in the report (kept in the table).
        drop_duplicates: drop exact duplicate rows instead of keeping them.
        exclude: row filters on any input column, as :class:`~clvflow.data.rowfilter.RowFilter` or
            text such as ``"StockCode=POST,M"`` / ``"InvoiceNo^=C"``; the rows they match are
            dropped first and counted per rule.
        date_format: layout of text timestamps (strftime, e.g. ``"%d/%m/%Y"``, or ``"mixed"``:
            each row's own); default: ISO, else one layout guessed from the first row.
        dayfirst: read day/month dates day first (``03/04/2011`` is 3 April).
        keep_far_dates: keep the rows :func:`far_dates` would drop.

    Returns:
        (transactions table, data-quality report).

    Raises:
        InputError: missing file, unsupported format, missing or duplicated columns (a filter's
            too), empty, damaged or non-UTF-8 file, unparseable, ambiguous or mixed-layout
            timestamps, bad ids or amounts, a malformed filter, or every row filtered.
    """
    try:
        rules = parse_row_filters(exclude)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if is_embedded(source):
        raw, name = read_cdnow_raw(), "cdnow (embedded CDNOW master log)"
        columns = ColumnMap(amount="amount")
        line_offset = 2
    else:
        columns = columns or ColumnMap()
        path = Path(source)
        raw, line_offset = read_raw(path, columns, rules), (2 if _is_csv(path) else 1)
        name = str(path)
    return clean_transactions(
        raw,
        source=name,
        as_of=as_of,
        drop_duplicates=drop_duplicates,
        line_offset=line_offset,
        columns=columns,
        exclude=rules,
        date_format=date_format,
        dayfirst=dayfirst,
        keep_far_dates=keep_far_dates,
    )


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def read_raw(path: Path, columns: ColumnMap, exclude: Sequence[RowFilter] = ()) -> pd.DataFrame:
    """Read a CSV/Parquet file: the mapped columns renamed to logical names, every other column
    ``X`` as ``__X``.

    CSV columns are read as text so that ids keep leading zeros and bad values can be reported.
    The columns of the ``exclude`` filters are checked to exist before the data is read.
    """
    present = check_file(path, columns, exclude)
    # All columns are read: "exact duplicate" means equal in every column of the file, not only
    # in the mapped ones (two invoice lines can share customer, time and amount).
    try:
        if _is_csv(path):
            table = pacsv.read_csv(path, convert_options=csv_convert_options(present))
        else:
            table = pq.read_table(path, pre_buffer=False)  # (pre-buffering: for remote stores)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from None
    frame = raw_frame(table, columns, present)
    if frame.empty:
        raise InputError(f"{path}: no data rows (only a header). Export the transactions again.")
    return frame


def csv_convert_options(present: list[str]) -> pacsv.ConvertOptions:
    """Every CSV column read as text (ids keep leading zeros; bad values can be reported)."""
    return pacsv.ConvertOptions(
        column_types=dict.fromkeys(present, pa.string()), strings_can_be_null=False
    )


def raw_frame(table: pa.Table, columns: ColumnMap, present: list[str]) -> pd.DataFrame:
    """The raw frame of (a block of) a file read by pyarrow: the mapped columns under their
    logical names, every other column ``X`` as ``__X``."""
    wanted = columns.required()
    data = {logical: table.column(col).to_pandas() for logical, col in wanted.items()}
    for extra in sorted(set(present) - set(wanted.values())):
        data[f"__{extra}"] = table.column(extra).to_pandas()
    return pd.DataFrame(data, copy=False)  # copy=False: no consolidating copy of 20M rows


def check_file(path: Path, columns: ColumnMap, exclude: Sequence[RowFilter] = ()) -> list[str]:
    """Check a transactions file before reading it (exists, supported, not empty, the mapped
    and the filters' columns present, no name twice); its column names."""
    if not path.exists():
        raise InputError(
            f"{path}: file not found. Check the path (working directory: {Path.cwd()})."
        )
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give a .csv, .csv.gz or .parquet file.")
    name = path.name.lower()
    if not name.endswith(SUPPORTED_SUFFIXES):
        raise InputError(
            f"{path}: unsupported file type '{''.join(path.suffixes) or '(none)'}'. "
            f"Supported: {', '.join(SUPPORTED_SUFFIXES)}. Convert the file, e.g. save it as CSV."
        )
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes). Export the transactions again.")
    wanted = columns.required()
    present = _column_names(path)
    repeated = sorted({col for col in present if present.count(col) > 1})
    if repeated:
        where = "header (line 1)" if _is_csv(path) else "schema"
        raise InputError(
            f"{path}: column name(s) {repeated} appear more than once in the {where}. "
            "Rename the columns so that each has its own name."
        )
    missing = [f"{col!r} (for {logical})" for logical, col in wanted.items() if col not in present]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}. Columns present: {present}. "
            "Map yours with --customer-col, --timestamp-col, --amount-col "
            "(or --quantity-col and --unit-price-col)."
        )
    for rule in exclude:
        if rule.column not in present:
            raise _missing_filter_column(str(path), rule, present)
    return present


def _column_names(path: Path) -> list[str]:
    if _is_csv(path):
        try:
            reader = pacsv.open_csv(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise _unreadable(path, exc) from None
        return reader.schema.names
    try:
        return pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read as Parquet ({exc}).") from exc


def _unreadable(path: Path, exc: Exception) -> InputError:
    """The error for a file pyarrow cannot read: damaged gzip data, text that is not UTF-8, or
    a malformed CSV/Parquet file."""
    if "UTF8" in str(exc) or "UTF-8" in str(exc):
        lines = ", ".join(f"line {n} ({text!r})" for n, text in _non_utf8_lines(path))
        return InputError(
            f"{path}: the text is not UTF-8; first: {lines or '(not found)'}. Save the file as "
            "UTF-8 (a spreadsheet's 'CSV UTF-8', or e.g. `iconv -f latin1 -t utf-8 in.csv > "
            "out.csv` for a Latin-1 file)."
        )
    if path.name.lower().endswith(".gz"):
        return InputError(
            f"{path}: the gzip data is truncated or damaged ({exc}). Copy or compress the file "
            "again (`gzip -t FILE` checks it)."
        )
    kind = "CSV" if _is_csv(path) else "Parquet"
    return InputError(f"{path}: cannot read as {kind} ({exc}). Export the transactions again.")


def _non_utf8_lines(path: Path) -> list[tuple[int, bytes]]:
    """The first lines (number, bytes) that are not valid UTF-8 (for the error message)."""
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    found: list[tuple[int, bytes]] = []
    try:
        with opener(path, "rb") as fh:
            for number, line in enumerate(fh, 1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    found.append((number, line.rstrip(b"\r\n")[:60]))
                    if len(found) == MAX_EXAMPLES:
                        break
    except OSError:  # damaged gzip data after the lines found
        pass
    return found


def clean_transactions(
    raw: pd.DataFrame,
    *,
    source: str,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    line_offset: int = 2,
    columns: ColumnMap | None = None,
    exclude: Sequence[RowFilter] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
    rows: np.ndarray | None = None,
    far: FarDates | None = None,
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Validate and clean a raw frame with logical column names.

    Args:
        raw: columns ``customer_id``, ``timestamp`` and ``amount`` or ``quantity`` + ``unit_price``
            (text or typed); other input columns ``X`` as ``__X``.
        source: file name used in messages and the report.
        as_of: optional date for the on/after count.
        drop_duplicates: drop exact duplicate rows.
        line_offset: line number of the first data row in the file (2 for a CSV with a header).
        columns: the input column names, for messages and the filters.
        exclude: row filters (input column names), applied first and counted per rule.
        date_format, dayfirst, keep_far_dates: as in :func:`load_transactions`.
        rows: a part of a file (:mod:`clvflow.data.partition`): each raw row's position in the
            file (for the lines in messages). The whole-file checks (every row excluded, no id
            anywhere) were made by the partitioner, so a part may come out empty.
        far: with ``rows``, the file's far-date rule (instead of the part's own); the far rows
            are counted there, and its note replaces the part's.

    Returns:
        (transactions table sorted as given, report).
    """
    columns = columns or ColumnMap()
    names = columns.required()
    report = DataQualityReport(source=source, rows_read=len(raw))
    if raw.empty:
        raise InputError(f"{source}: no data rows. Export the transactions again.")
    kept_rows = rows
    if exclude:
        raw, kept = _apply_row_filters(raw, exclude, names, report, whole=rows is None)
        if kept is not None:
            kept_rows = kept if rows is None else rows[kept]
    tx_columns = {"customer_id": "str", "timestamp": "datetime64[ns]", "amount": "float64"}
    if raw.empty:  # (a part whose rows were all excluded)
        return pd.DataFrame(columns=list(tx_columns)).astype(tx_columns), report

    ctx = _Context(source, line_offset, kept_rows)
    ids, n_float = normalise_customer_ids(raw["customer_id"], ctx.where(names["customer_id"]))
    report.customer_ids_float_formatted = n_float
    if n_float:
        report.notes.append(_float_ids_note(n_float))
    when = ctx.where(names["timestamp"])
    timestamps, layout = parse_timestamps(
        raw["timestamp"], when, date_format=date_format, dayfirst=dayfirst
    )
    if layout:
        report.notes.append(layout)
    if columns.uses_quantity_price:
        qty = parse_numbers(raw["quantity"], ctx.where(names["quantity"]))
        price = parse_numbers(raw["unit_price"], ctx.where(names["unit_price"]))
        amounts = qty * price
        amount_where = ctx.where(f"{names['quantity']} x {names['unit_price']}")
    else:
        amounts = parse_numbers(raw["amount"], ctx.where(names["amount"]))
        amount_where = ctx.where(names["amount"])
    check_amounts_add_up(amounts, amount_where)

    tx = pd.DataFrame({"customer_id": ids, "timestamp": timestamps, "amount": amounts}, copy=False)
    has_id = tx["customer_id"].notna().to_numpy()
    report.dropped_missing_customer_id = int((~has_id).sum())
    used = has_id
    if not keep_far_dates:
        if far is None:
            far_rows, bulk = far_dates(timestamps.to_numpy(), has_id)
        elif far.cut is None:
            far_rows, bulk = np.zeros(len(tx), dtype=bool), None
        else:
            far_rows, bulk = far.cut.mask(timestamps.to_numpy(), has_id), far.cut.bulk
        if far_rows.any():
            used = has_id & ~far_rows
            report.dropped_far_dates = int(far_rows.sum())
            if far is None:
                report.notes.append(_far_dates_note(far_rows, timestamps, bulk, when))
            else:
                far.rows += report.dropped_far_dates
                firsts = np.flatnonzero(far_rows)[:MAX_EXAMPLES]
                far.examples.extend((when.line(i), str(timestamps.iloc[i])) for i in firsts)
    packed_text_keys(raw["customer_id"])  # (shared by both threads below: computed once, first)
    with ThreadPoolExecutor(max_workers=1) as pool:
        duplicates = pool.submit(duplicated_rows, raw)  # runs beside the counts of the used rows
        if not drop_duplicates:
            tx = _used_rows(tx, used, source, names["customer_id"], whole=rows is None)
            _summarise(tx, report, as_of)
        dup = duplicates.result()
    report.duplicate_rows = int((dup & used).sum())
    if drop_duplicates:
        report.dropped_duplicates = report.duplicate_rows
        tx = _used_rows(tx, used & ~dup, source, names["customer_id"], whole=rows is None)
        _summarise(tx, report, as_of)
    report.rows_used = len(tx)
    return tx, report


@dataclass(frozen=True)
class ScannedBlock:
    """What a first pass over a block of a file needs (:func:`scan_block`)."""

    kept: np.ndarray  # positions in the block of the rows no --exclude rule drops
    ids: pd.Series  # their cleaned customer ids (NA: none)
    stamps: np.ndarray  # their timestamps
    layout: str | None  # how text timestamps were read (None: ISO or typed)


def scan_block(
    raw: pd.DataFrame,
    rows: np.ndarray,
    *,
    source: str,
    line_offset: int,
    columns: ColumnMap,
    exclude: Sequence[RowFilter] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
) -> ScannedBlock:
    """Cleaned customer ids and timestamps of a block of a raw file (``rows``: the positions in
    the file), as :func:`clean_transactions` makes them; bad ids or timestamps raise its errors."""
    names = columns.required()
    logical = {col: name for name, col in names.items()}
    keep = np.ones(len(raw), dtype=bool)
    for rule in exclude:
        keep &= ~rule.matches(raw[logical.get(rule.column, f"__{rule.column}")])
    kept = np.flatnonzero(keep)
    if len(kept) < len(raw):
        raw = raw.iloc[kept].reset_index(drop=True)
    ctx = _Context(source, line_offset, rows[kept])
    ids, _ = normalise_customer_ids(raw["customer_id"], ctx.where(names["customer_id"]))
    stamps, layout = parse_timestamps(
        raw["timestamp"],
        ctx.where(names["timestamp"]),
        date_format=date_format,
        dayfirst=dayfirst,
    )
    return ScannedBlock(kept, ids, stamps.to_numpy(), layout)


def no_rows_error(source: str, kind: str, detail: str) -> InputError:
    """The whole-file errors of :func:`clean_transactions`, for a file read in parts: ``kind``
    "excluded" (``detail``: the rules) or "no id" (``detail``: the id column)."""
    if kind == "excluded":
        return InputError(
            f"{source}: the --exclude rules drop every row ({detail}). Check the rules."
        )
    return InputError(
        f"{source}: no row has a customer id in column {detail!r}. "
        "Map the right column with --customer-col."
    )


def merge_reports(
    parts: Sequence[DataQualityReport],
    *,
    source: str,
    as_of: DateLike | None,
    layout: str | None,
    far: FarDates | None,
) -> DataQualityReport:
    """The report of a whole file from those of its parts (:mod:`clvflow.data.partition`: each
    customer's rows in one part): counts added up, the time span's ends, and the notes the
    whole file gets (``layout``: how its text timestamps were read; ``far``: its far dates)."""
    out = DataQualityReport(source=source)
    counted = [f for f in DataQualityReport.__dataclass_fields__ if f.startswith(_COUNTED)]
    for report in parts:
        for name in counted:
            setattr(out, name, getattr(out, name) + getattr(report, name))
    rules: dict[str, int] = {}
    for report in parts:
        for e in report.excluded:
            rules[e["rule"]] = rules.get(e["rule"], 0) + e["rows"]
    out.excluded = [{"rule": rule, "rows": rows} for rule, rows in rules.items()]
    if as_of is not None:
        out.as_of = to_day(as_of).date().isoformat()
    spans = [
        (pd.Timestamp(r.first_timestamp), pd.Timestamp(r.last_timestamp))
        for r in parts
        if r.first_timestamp not in (None, "NaT") and r.last_timestamp is not None
    ]
    if spans:
        out.first_timestamp = str(min(first for first, _ in spans))
        out.last_timestamp = str(max(last for _, last in spans))
    out.notes = [_no_row_note(rule) for rule, rows in rules.items() if not rows]
    if out.customer_ids_float_formatted:
        out.notes.append(_float_ids_note(out.customer_ids_float_formatted))
    if layout:
        out.notes.append(layout)
    far_note = far.note() if far is not None else None
    if far_note:
        out.notes.append(far_note)
    return out


#: Fields of :class:`DataQualityReport` that add up over the parts of a file.
_COUNTED = (
    "rows_",
    "dropped_",
    "duplicate_rows",
    "returns",
    "zero_amounts",
    "customer_ids_float",
    "customers",
)


def far_dates(
    stamps: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[np.datetime64, np.datetime64] | None]:
    """Rows dated far from all others: a typo year (2999 for 2011, 1911) or a placeholder date.

    The bulk of the dates is the 1st to 99th percentile of the rows' days (by rank, so in a small
    file all but the first and the last row). Going outwards from the bulk, the first gap between
    consecutive days with rows that is longer than a year and longer than the bulk itself cuts
    off every date beyond it. A growing or seasonal log has no such gap; a typo year leaves one.

    Args:
        stamps: datetime64 values.
        rows: optional boolean mask: only these rows are looked at (and can be far).

    Returns:
        (boolean mask of the far rows, the bulk's first and last day; None when no row can be
        far: fewer than 3 rows, or all within a year).
    """
    counts = DayCounts()
    counts.add(stamps, rows)
    cut = counts.far_cut()
    if cut is None:
        return np.zeros(len(stamps), dtype=bool), None
    return cut.mask(stamps, rows), cut.bulk


def _days(stamps: np.ndarray) -> np.ndarray:
    """Day numbers (since 1970-01-01, floored) of datetime64 values."""
    unit, _ = np.datetime_data(stamps.dtype)
    per_day = int(np.timedelta64(1, "D").astype(f"timedelta64[{unit}]").astype(np.int64))
    return stamps.view(np.int64) // per_day  # (numpy is far faster on int64 than on datetime64)


@dataclass
class DayCounts:
    """What :func:`far_dates` needs of a file, added up block by block: rows per day (of the
    rows it looks at) and the first and last timestamp of all rows."""

    start: int = 0  # the day of counts[0]
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first: np.datetime64 | None = None
    last: np.datetime64 | None = None

    def add(self, stamps: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Count a block of timestamps (only ``rows`` per day; all for the span)."""
        if not len(stamps):
            return
        lo, hi = stamps.min(), stamps.max()
        self.first = lo if self.first is None else min(self.first, lo)
        self.last = hi if self.last is None else max(self.last, hi)
        days = _days(stamps)
        if rows is not None:
            days = days[rows]
        if not days.size:
            return
        start = int(days.min()) if not self.counts.size else min(self.start, int(days.min()))
        block = np.bincount(days - start)
        size = max(len(block), self.start - start + len(self.counts))
        total = np.zeros(size, dtype=np.int64)
        total[: len(block)] += block
        total[self.start - start : self.start - start + len(self.counts)] += self.counts
        self.start, self.counts = start, total

    def far_cut(self) -> FarCut | None:
        """Where far dates begin (see :func:`far_dates`); None when no row can be far."""
        n = int(self.counts.sum())
        span = np.timedelta64(FAR_DATES_MIN_GAP_DAYS, "D")
        if n < 3 or self.first is None or self.last is None or self.last - self.first <= span:
            return None  # (too few rows for a bulk, or nothing can be that far)
        rank = np.cumsum(self.counts)
        lo, hi = (
            int(np.searchsorted(rank, k, side="right"))  # the day of the k-th row (0-based)
            for k in (int(np.ceil(0.01 * (n - 1))), int(np.floor(0.99 * (n - 1))))
        )
        gap = max(hi - lo, FAR_DATES_MIN_GAP_DAYS)
        dated = np.flatnonzero(self.counts)  # the days with a row, ascending
        after, before = dated[dated > hi], dated[dated < lo][::-1]
        cuts: list[int | None] = []
        for edge, tail in ((hi, after), (lo, before)):
            cut = np.flatnonzero(np.abs(np.diff(tail, prepend=edge)) > gap)
            cuts.append(self.start + int(tail[cut[0]]) if cut.size else None)
        bulk = (np.datetime64(self.start + lo, "D"), np.datetime64(self.start + hi, "D"))
        return FarCut(cuts[0], cuts[1], bulk)


@dataclass(frozen=True)
class FarCut:
    """Far dates: from day ``above`` on, up to day ``below`` (day numbers; None: none there)."""

    above: int | None
    below: int | None
    bulk: tuple[np.datetime64, np.datetime64]

    def mask(self, stamps: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The far rows among ``rows`` of ``stamps``."""
        days = _days(stamps)
        far = np.zeros(len(days), dtype=bool)
        if self.above is not None:
            far |= days >= self.above
        if self.below is not None:
            far |= days <= self.below
        return far if rows is None else far & rows


@dataclass
class FarDates:
    """The far-date rule of a whole file applied to its parts one by one: the cut (from the
    file's :class:`DayCounts`; None: no row is far), and the far rows met so far (their number
    and the first ``MAX_EXAMPLES`` as (line, timestamp) per part), for the one note."""

    cut: FarCut | None
    column: str = "timestamp"
    rows: int = 0
    examples: list[tuple[int, str]] = field(default_factory=list)

    def note(self) -> str | None:
        """The note of :func:`clean_transactions` for the whole file (None: no far row)."""
        if not self.rows or self.cut is None:
            return None
        first = sorted(self.examples)[:MAX_EXAMPLES]
        return far_note_text(self.rows, _at_lines(first), self.cut.bulk, self.column)


def _far_dates_note(
    far: np.ndarray,
    stamps: pd.Series,
    bulk: tuple[np.datetime64, np.datetime64] | None,
    where: _Where,
) -> str:
    rows = np.flatnonzero(far)
    # (bulk is None only when no date is far, and then there is no note)
    examples = [(where.line(i), str(stamps.iloc[i])) for i in rows[:MAX_EXAMPLES]]
    return far_note_text(len(rows), _at_lines(examples), bulk, where.column)  # type: ignore[arg-type]


def _at_lines(examples: list[tuple[int, str]]) -> str:
    """(line, timestamp) examples as the note lists them."""
    return ", ".join(f"line {line} ({stamp})" for line, stamp in examples)


def far_note_text(
    n: int, first: str, bulk: tuple[np.datetime64, np.datetime64], column: str
) -> str:
    """The report's note on ``n`` far rows (both engines); ``first``: the examples listed."""
    lo, hi = (pd.Timestamp(t).date() for t in bulk)
    return (
        f"{n:,} row(s) dropped, column {column!r} dated far from all other rows "
        f"(a gap of over a year, and over the {lo} .. {hi} span of the bulk, with no row in "
        f"between); first: {first}. Fix the dates, or pass --keep-far-dates to keep the rows"
    )


def check_amounts_add_up(amounts: pd.Series, where: _Where) -> None:
    """Refuse amounts too large to add up in float64 (sums or sums of squares would overflow)."""
    values = amounts.to_numpy()
    bad = ~np.isfinite(values)
    with np.errstate(over="ignore"):
        overflows = not bad.any() and not np.isfinite(np.square(values).sum())
    if overflows:
        limit = np.sqrt(np.finfo(np.float64).max / len(values))
        bad = np.abs(values) > limit
        if not bad.any():  # (the rounding of a sum very close to the limit)
            bad = np.abs(values) == np.abs(values).max()
    if bad.any():
        where.fail(
            bad,
            amounts,
            "are too large to add up (their sums overflow floating point)",
            "Check these values (a unit or export error?) and fix or remove the rows.",
        )


def _float_ids_note(n_float: int) -> str:
    return (
        f"{n_float:,} customer ids were float-formatted (e.g. '17850.0') and were normalised "
        "to integers ('17850')"
    )


def _no_row_note(rule: str) -> str:
    return f"--exclude {rule} dropped no row (check the values)"


def _apply_row_filters(
    raw: pd.DataFrame,
    rules: Sequence[RowFilter],
    names: dict[str, str],
    report: DataQualityReport,
    *,
    whole: bool = True,
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Drop the rows the rules match, counting each under the first rule that matches it
    (``whole``: the whole file, where a rule that drops nothing is noted and dropping every row
    is an error).

    Returns:
        (remaining rows, their positions in ``raw`` (None when none was dropped)).
    """
    logical = {col: name for name, col in names.items()}
    keep = np.ones(len(raw), dtype=bool)
    for rule in rules:
        key = logical.get(rule.column, f"__{rule.column}")
        if key not in raw.columns:
            present = [names.get(c, c.removeprefix("__")) for c in raw.columns]
            raise _missing_filter_column(report.source, rule, present)
        hit = rule.matches(raw[key]) & keep
        keep &= ~hit
        report.excluded.append({"rule": rule.describe(), "rows": int(hit.sum())})
        if not hit.any() and whole:
            report.notes.append(_no_row_note(rule.describe()))
    report.dropped_excluded = int(len(raw) - keep.sum())
    if keep.all():
        return raw, None
    if not keep.any() and whole:
        rules_text = "; ".join(e["rule"] for e in report.excluded)
        raise no_rows_error(report.source, "excluded", rules_text)
    return raw.loc[keep].reset_index(drop=True), np.flatnonzero(keep)


def _missing_filter_column(source: str, rule: RowFilter, present: list[str]) -> InputError:
    return InputError(
        f"{source}: --exclude {rule.describe()!r} names column {rule.column!r}, which the file "
        f"does not have. Columns present: {present}. Column names are case-sensitive."
    )


def _used_rows(
    tx: pd.DataFrame, keep: np.ndarray, source: str, id_column: str, *, whole: bool = True
) -> pd.DataFrame:
    if not keep.any() and whole:
        raise no_rows_error(source, "no id", id_column)
    if keep.all():  # (a copy of 20M rows is worth skipping)
        return tx
    return tx.loc[keep].reset_index(drop=True)


def _summarise(tx: pd.DataFrame, report: DataQualityReport, as_of: DateLike | None) -> None:
    amount = tx["amount"].to_numpy()
    report.returns = int((amount < 0).sum())
    report.zero_amounts = int((amount == 0).sum())
    known = np.ones(len(tx), dtype=bool)
    if as_of is not None:
        day = to_day(as_of)
        report.as_of = day.date().isoformat()
        known = (tx["timestamp"] < day).to_numpy()
        report.rows_on_or_after_as_of = int(len(tx) - known.sum())
    ids = encode_ids(tx["customer_id"], known)  # codes of the customers known at as_of
    purchases = count_codes(ids.codes, ids.n_ids, amount >= 0)
    report.customers = ids.n_ids
    report.customers_only_returns = int(np.count_nonzero(purchases == 0))
    report.first_timestamp = str(tx["timestamp"].min())
    report.last_timestamp = str(tx["timestamp"].max())


@dataclass(frozen=True)
class _Context:
    source: str
    line_offset: int
    rows: np.ndarray | None = None  # position in the file of each row (None: the identity)

    def where(self, column: str) -> _Where:
        return _Where(self.source, column, self.line_offset, self.rows)


@dataclass(frozen=True)
class _Where:
    source: str
    column: str
    line_offset: int
    rows: np.ndarray | None = None

    def line(self, i: int) -> int:
        return int(i if self.rows is None else self.rows[i]) + self.line_offset

    def fail(self, bad: np.ndarray, values: pd.Series, problem: str, fix: str) -> None:
        raise self.error(bad, values, problem, fix)

    def error(self, bad: np.ndarray, values: pd.Series, problem: str, fix: str) -> InputError:
        rows = np.flatnonzero(bad)
        examples = ", ".join(
            f"line {self.line(i)} ({_plain(values.iloc[i])!r})" for i in rows[:MAX_EXAMPLES]
        )
        return InputError(
            f"{self.source}, column {self.column!r}: {len(rows):,} row(s) {problem}; "
            f"first: {examples}. {fix}"
        )


def _plain(value: object) -> object:
    """A numpy scalar as the Python value (shown as 1e+20, not np.float64(1e+20))."""
    return value.item() if isinstance(value, np.generic) else value


def normalise_customer_ids(values: pd.Series, where: _Where) -> tuple[pd.Series, int]:
    """Customer ids as text exactly as written, with missing ids as NA.

    Whitespace is stripped; ``'00001'`` stays ``'00001'``; float-formatted integers from
    spreadsheet exports (``'17850.0'``, or a float column) become ``'17850'``.

    Returns:
        (ids as pandas string Series, number of float-formatted ids normalised).

    Raises:
        InputError: ids with control characters (e.g. a NUL byte), or float ids that are not
            exact (infinite, or whole numbers beyond 2^53, where floats skip integers).
    """
    if is_plain_text(values):  # the usual case: nothing to strip, blank or normalise
        return values, 0
    if pd.api.types.is_float_dtype(values):
        inexact = values.notna() & ~(np.abs(values) < 2.0**53)
        if inexact.any():
            where.fail(
                inexact.to_numpy(),
                values,
                "are floating-point ids too large to be exact (beyond 2^53 = 9007199254740992 "
                "floats skip whole numbers, so different ids can become one)",
                "Store the customer ids as text or integers in the file, not as floats.",
            )
        finite = values.notna()
        integral = finite & (values == np.floor(values))
        out = values.astype(object).where(finite, None)
        out[integral] = values[integral].astype("int64").astype(str)
        out[finite & ~integral] = values[finite & ~integral].astype(str)
        return out.astype("str").where(finite, None), int(integral.sum())
    text = values.astype("str") if not pd.api.types.is_string_dtype(values) else values
    text = text.str.strip()
    control = text.str.contains(r"[\x00-\x1f]", regex=True, na=False).to_numpy()
    if control.any():
        where.fail(
            control,
            values,
            "contain control characters (e.g. a NUL byte)",
            "Remove them from the ids (a damaged export?), or map the right column with "
            "--customer-col.",
        )
    text = text.where(text.str.len() > 0, None)
    float_like = text.str.fullmatch(r"-?\d+\.0+", na=False)
    n_float = int(float_like.sum())
    if n_float:
        text = text.where(~float_like, text.str.replace(r"\.0+$", "", regex=True))
    return text, n_float


def parse_timestamps(
    values: pd.Series, where: _Where, *, date_format: str | None = None, dayfirst: bool = False
) -> tuple[pd.Series, str | None]:
    """Parse timestamps to timezone-naive datetime64; aware values are converted to UTC first.

    Text is read with ``date_format`` when given (``"mixed"``: each row's own layout, day first
    with ``dayfirst``). Otherwise it must be ISO 8601 (any mix of its variants), or else all in
    one layout, guessed from the first row; when that layout has a day and a month, the order is
    the one that fits every row, ``dayfirst`` or, when both fit differently, an error.

    Returns:
        (timestamps, how non-ISO text was read (for the report's notes) or None).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values):
        missing = values.isna().to_numpy()
        if missing.any():
            where.fail(missing, values, "have no timestamp", "Fill or remove these rows.")
        return values, None
    fast = iso_timestamps(values) if date_format is None else None
    if fast is not None:
        return fast, None
    text = values.astype("str").str.strip()
    empty = (text.str.len() == 0).to_numpy() | text.isna().to_numpy()
    if empty.any():
        where.fail(empty, values, "have no timestamp", "Fill or remove these rows.")
    column = f"column {where.column!r}"
    if date_format is not None:
        parsed = to_datetime_text(text, date_format, dayfirst)
        failed = parsed.isna().to_numpy()
        if failed.any():
            where.fail(
                failed,
                values,
                f"do not match --date-format {date_format!r}",
                "Fix these rows, or give the layout of the column (e.g. '%d/%m/%Y %H:%M'; "
                "'mixed' reads each row's own).",
            )
        return parsed, layout_note(where.column, date_format, dayfirst)
    if to_datetime_text(text.iloc[:1], "ISO8601").notna().all():  # ISO: every row must be
        parsed = to_datetime_text(text, "ISO8601")
        failed = parsed.isna().to_numpy()
        if failed.any():
            raise _layout_error(where, values, text, failed, "ISO: YYYY-MM-DD ...", dayfirst)
        return parsed, None
    layouts = _day_month_layouts(text.iloc[0], dayfirst)
    if not layouts:
        where.fail(
            np.arange(len(text)) == 0,
            values,
            "have a date layout that cannot be recognised",
            "Give the layout with --date-format (e.g. '%d/%m/%y'), or use ISO dates like "
            "2024-03-31.",
        )
    only = " (the only day/month order that fits every row)"
    parsed = to_datetime_text(text, layouts[0])
    failed = parsed.isna().to_numpy()
    if not failed.any():
        how = " (--dayfirst)" if dayfirst else ""
        if len(layouts) == 2:  # the other order fits every row too iff every day is <= 12
            days, months = parsed.dt.day.to_numpy(), parsed.dt.month.to_numpy()
            if (days > 12).any():
                how = only
            elif (days != months).any():
                raise _ambiguous(where, values, parsed, layouts, int(np.argmax(days != months)))
        return parsed, f"{column} read with layout {layouts[0]!r}{how}"
    layout = layouts[0]
    if len(layouts) == 2:
        other = to_datetime_text(text, layouts[1])
        if other.notna().all():
            return other, f"{column} read with layout {layouts[1]!r}{only}"
        if other.notna().sum() > parsed.notna().sum():
            layout, failed = layouts[1], other.isna().to_numpy()
    raise _layout_error(where, values, text, failed, repr(layout), dayfirst)


def _ambiguous(
    where: _Where, values: pd.Series, parsed: pd.Series, layouts: list[str], i: int
) -> InputError:
    """The error for dates that read both month first and day first (``parsed``: as
    ``layouts[0]``), with row ``i`` as the example."""
    stamp = parsed.iloc[i]
    readings = [stamp.date(), stamp.replace(month=stamp.day, day=stamp.month).date()]
    if layouts[0].find("%d") < layouts[0].find("%m"):  # parsed day first
        layouts, readings = layouts[::-1], readings[::-1]
    md, dm = layouts
    return InputError(
        f"{where.source}, column {where.column!r}: the dates can be read month first ({md!r}) "
        f"or day first ({dm!r}) and no row tells which; e.g. line {where.line(i)} "
        f"({values.iloc[i]!r}): {readings[0]} or {readings[1]}. Pass --dayfirst if day first, "
        f"or --date-format {md!r} if month first."
    )


def layout_note(column: str, date_format: str, dayfirst: bool) -> str:
    """The report's note on how ``--date-format`` read a column of text timestamps."""
    if date_format == "mixed":
        order = "day first (--dayfirst)" if dayfirst else "month first"
        return f"column {column!r}: each row's date layout guessed on its own, {order}"
    return f"column {column!r} read with layout {date_format!r} (--date-format)"


def to_datetime_text(text: pd.Series, layout: str, dayfirst: bool = False) -> pd.Series:
    """Text -> naive datetime64 (aware values converted to UTC); NaT where it does not fit.

    ``"mixed"``: ISO rows as ISO (dayfirst would read 2011-03-01 as 3 January), others each in
    its own layout.
    """
    if layout != "mixed":
        return pd.to_datetime(text, errors="coerce", format=layout, utc=True).dt.tz_localize(None)
    parsed = to_datetime_text(text, "ISO8601")
    rest = parsed.isna().to_numpy()
    if rest.any():
        other = pd.to_datetime(
            text[rest], errors="coerce", format="mixed", dayfirst=dayfirst, utc=True
        )
        parsed[rest] = other.dt.tz_localize(None)
    return parsed


def _day_month_layouts(first: str, dayfirst: bool) -> list[str]:
    """The layouts to try, guessed from the first value: the guess, then the other day/month
    order when it has a day and a month not led by the year; only day first with ``dayfirst``.
    (Empty when no layout is recognised.)"""
    with warnings.catch_warnings():  # (pandas warns when it guesses day first; we check both)
        warnings.simplefilter("ignore", UserWarning)
        layout = guess_datetime_format(first)
    if layout is None:
        return []
    places = {code: layout.find(code) for code in ("%d", "%m", "%Y", "%y")}
    year = max(places["%Y"], places["%y"])
    if places["%d"] < 0 or places["%m"] < 0 or 0 <= year < min(places["%d"], places["%m"]):
        return [layout]
    swapped = layout.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
    if dayfirst:
        return [layout if places["%d"] < places["%m"] else swapped]
    return [layout, swapped]


def _layout_error(
    where: _Where,
    values: pd.Series,
    text: pd.Series,
    failed: np.ndarray,
    layout: str,
    dayfirst: bool,
) -> InputError:
    """The error for the rows that do not fit the layout: the rows that are no dates at all if
    any, else those that are dates in another layout."""
    rows = np.flatnonzero(failed)
    readable = to_datetime_text(text.iloc[rows], "mixed", dayfirst).notna().to_numpy()
    not_dates = np.zeros(len(text), dtype=bool)
    not_dates[rows[~readable]] = True
    if not_dates.any():
        return where.error(
            not_dates,
            values,
            "are not dates/times",
            "Use ISO dates like 2024-03-31 or 2024-03-31 14:05:00, or map the right column "
            "with --timestamp-col.",
        )
    return where.error(
        failed,
        values,
        f"are dates in another layout than the rest ({layout})",
        "Give every date in one layout (ISO like 2024-03-31 is best), or pass --date-format "
        "mixed to read each row's own layout (day before month with --dayfirst).",
    )


def parse_numbers(values: pd.Series, where: _Where) -> pd.Series:
    """Parse a numeric column to float64; missing or unparseable values are an error."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        floats = values.astype("float64")
        bad = ~np.isfinite(floats.to_numpy())
        if bad.any():
            where.fail(bad, values, "have no number", "Fill or remove these rows.")
        return floats
    numbers = exact_numbers(values)
    if numbers is None:
        text = values.astype("str").str.strip()
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~np.isfinite(numbers.to_numpy())
    if bad.any():
        where.fail(
            bad,
            values,
            "are not numbers",
            "Use plain numbers with a dot as decimal separator and no currency sign, "
            "or map the right column.",
        )
    return numbers


def load_cdnow() -> pd.DataFrame:
    """The CDNOW master log as a clean transactions table (customer_id, timestamp, amount)."""
    tx, _ = load_transactions(CDNOW)
    return tx
