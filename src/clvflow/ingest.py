"""Ingest: read transaction files, map columns, validate, clean, and account for every row.

The output is a *transactions table*: a pandas DataFrame with the logical columns
``customer_id`` (str, exactly as written), ``timestamp`` (datetime64, timezone-naive; timezone-aware
inputs are converted to UTC first) and ``amount`` (float64; returns are negative). Rows dated on or
after an ``as_of`` date are kept (labels need them) but counted; features never see them.

Every input row is either in the output or counted, by reason, in the :class:`DataQualityReport`.
Opt-in row filters (:mod:`clvflow.rowfilter`, e.g. ``StockCode=POST,M`` or ``InvoiceNo^=C``) drop
rows by the value of any input column before anything else, and are counted rule by rule.
Bad input raises :class:`InputError` naming the file, the column, the first offending rows and what
to do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clvflow.duplicates import duplicated_rows
from clvflow.idcodes import count_codes, encode_ids, is_plain_text, packed_text_keys
from clvflow.rowfilter import RowFilter, parse_row_filters
from clvflow.textparse import exact_numbers, iso_timestamps
from clvflow.timeutil import DateLike, to_day

log = logging.getLogger(__name__)

TX_COLUMNS = ["customer_id", "timestamp", "amount"]
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
MAX_EXAMPLES = 5


class InputError(ValueError):
    """Bad input data or settings; the message says where and what to do."""


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
        if self.uses_quantity_price:
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


def load_transactions(
    source: str | Path,
    columns: ColumnMap | None = None,
    *,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    exclude: Sequence[RowFilter | str] = (),
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Read and clean a transaction file (or the embedded dataset ``"cdnow"``).

    Args:
        source: path to ``.csv``, ``.csv.gz`` or ``.parquet``, or ``"cdnow"``.
        columns: input column names; defaults to the logical names.
        as_of: optional date; rows on or after it are counted in the report (kept in the table).
        drop_duplicates: drop exact duplicate rows instead of keeping them.
        exclude: row filters on any input column, as :class:`~clvflow.rowfilter.RowFilter` or
            text such as ``"StockCode=POST,M"`` / ``"InvoiceNo^=C"``; the rows they match are
            dropped first and counted per rule.

    Returns:
        (transactions table, data-quality report).

    Raises:
        InputError: missing file, unsupported format, missing columns (a filter's too), empty
            file, unparseable timestamps or amounts, a malformed filter, or every row filtered.
    """
    try:
        rules = parse_row_filters(exclude)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if str(source) == "cdnow":
        from clvflow.datasets import read_cdnow_raw

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
    )


def _is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def read_raw(path: Path, columns: ColumnMap, exclude: Sequence[RowFilter] = ()) -> pd.DataFrame:
    """Read a CSV/Parquet file: the mapped columns renamed to logical names, every other column
    ``X`` as ``__X``.

    CSV columns are read as text so that ids keep leading zeros and bad values can be reported.
    The columns of the ``exclude`` filters are checked to exist before the data is read.
    """
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
    # All columns are read: "exact duplicate" means equal in every column of the file, not only
    # in the mapped ones (two invoice lines can share customer, time and amount).
    if _is_csv(path):
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(present, pa.string()), strings_can_be_null=False
            ),
        )
    else:
        table = pq.read_table(path, pre_buffer=False)  # (pre-buffering: for remote stores)
    columns = {logical: table.column(col).to_pandas() for logical, col in wanted.items()}
    for extra in sorted(set(present) - set(wanted.values())):
        columns[f"__{extra}"] = table.column(extra).to_pandas()
    frame = pd.DataFrame(columns, copy=False)  # copy=False: no consolidating copy of 20M rows
    if frame.empty:
        raise InputError(f"{path}: no data rows (only a header). Export the transactions again.")
    return frame


def _column_names(path: Path) -> list[str]:
    if _is_csv(path):
        try:
            reader = pacsv.open_csv(path)
        except pa.ArrowInvalid as exc:
            raise InputError(f"{path}: cannot read as CSV ({exc}).") from exc
        return reader.schema.names
    try:
        return pq.read_schema(path).names
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: cannot read as Parquet ({exc}).") from exc


def clean_transactions(
    raw: pd.DataFrame,
    *,
    source: str,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    line_offset: int = 2,
    columns: ColumnMap | None = None,
    exclude: Sequence[RowFilter] = (),
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

    Returns:
        (transactions table sorted as given, report).
    """
    columns = columns or ColumnMap()
    names = columns.required()
    report = DataQualityReport(source=source, rows_read=len(raw))
    if raw.empty:
        raise InputError(f"{source}: no data rows. Export the transactions again.")
    kept_rows = None
    if exclude:
        raw, kept_rows = _apply_row_filters(raw, exclude, names, report)

    ids, n_float = normalise_customer_ids(raw["customer_id"])
    report.customer_ids_float_formatted = n_float
    if n_float:
        report.notes.append(
            f"{n_float:,} customer ids were float-formatted (e.g. '17850.0') and were normalised "
            "to integers ('17850')"
        )
    ctx = _Context(source, line_offset, kept_rows)
    timestamps = parse_timestamps(raw["timestamp"], ctx.where(names["timestamp"]))
    if columns.uses_quantity_price:
        qty = parse_numbers(raw["quantity"], ctx.where(names["quantity"]))
        price = parse_numbers(raw["unit_price"], ctx.where(names["unit_price"]))
        amounts = qty * price
    else:
        amounts = parse_numbers(raw["amount"], ctx.where(names["amount"]))

    tx = pd.DataFrame({"customer_id": ids, "timestamp": timestamps, "amount": amounts}, copy=False)
    has_id = tx["customer_id"].notna().to_numpy()
    report.dropped_missing_customer_id = int((~has_id).sum())
    packed_text_keys(raw["customer_id"])  # (shared by both threads below: computed once, first)
    with ThreadPoolExecutor(max_workers=1) as pool:
        duplicates = pool.submit(duplicated_rows, raw)  # runs beside the counts of the used rows
        if not drop_duplicates:
            tx = _used_rows(tx, has_id, source, names["customer_id"])
            _summarise(tx, report, as_of)
        dup = duplicates.result()
    report.duplicate_rows = int((dup & has_id).sum())
    if drop_duplicates:
        report.dropped_duplicates = report.duplicate_rows
        tx = _used_rows(tx, has_id & ~dup, source, names["customer_id"])
        _summarise(tx, report, as_of)
    report.rows_used = len(tx)
    return tx, report


def _apply_row_filters(
    raw: pd.DataFrame, rules: Sequence[RowFilter], names: dict[str, str], report: DataQualityReport
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Drop the rows the rules match, counting each under the first rule that matches it.

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
        if not hit.any():
            report.notes.append(f"--exclude {rule.describe()} dropped no row (check the values)")
    report.dropped_excluded = int(len(raw) - keep.sum())
    if keep.all():
        return raw, None
    if not keep.any():
        raise InputError(
            f"{report.source}: the --exclude rules drop every row "
            f"({'; '.join(e['rule'] for e in report.excluded)}). Check the rules."
        )
    return raw.loc[keep].reset_index(drop=True), np.flatnonzero(keep)


def _missing_filter_column(source: str, rule: RowFilter, present: list[str]) -> InputError:
    return InputError(
        f"{source}: --exclude {rule.describe()!r} names column {rule.column!r}, which the file "
        f"does not have. Columns present: {present}. Column names are case-sensitive."
    )


def _used_rows(tx: pd.DataFrame, keep: np.ndarray, source: str, id_column: str) -> pd.DataFrame:
    if not keep.any():
        raise InputError(
            f"{source}: no row has a customer id in column {id_column!r}. "
            "Map the right column with --customer-col."
        )
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
        rows = np.flatnonzero(bad)
        examples = ", ".join(
            f"line {self.line(i)} ({values.iloc[i]!r})" for i in rows[:MAX_EXAMPLES]
        )
        raise InputError(
            f"{self.source}, column {self.column!r}: {len(rows):,} row(s) {problem}; "
            f"first: {examples}. {fix}"
        )


def normalise_customer_ids(values: pd.Series) -> tuple[pd.Series, int]:
    """Customer ids as text exactly as written, with missing ids as NA.

    Whitespace is stripped; ``'00001'`` stays ``'00001'``; float-formatted integers from
    spreadsheet exports (``'17850.0'``, or a float column) become ``'17850'``.

    Returns:
        (ids as pandas string Series, number of float-formatted ids normalised).
    """
    if is_plain_text(values):  # the usual case: nothing to strip, blank or normalise
        return values, 0
    if pd.api.types.is_float_dtype(values):
        finite = values.notna()
        integral = finite & (values == np.floor(values))
        out = values.astype(object).where(finite, None)
        out[integral] = values[integral].astype("int64").astype(str)
        out[finite & ~integral] = values[finite & ~integral].astype(str)
        return out.astype("str").where(finite, None), int(integral.sum())
    text = values.astype("str") if not pd.api.types.is_string_dtype(values) else values
    text = text.str.strip()
    text = text.where(text.str.len() > 0, None)
    float_like = text.str.fullmatch(r"-?\d+\.0+", na=False)
    n_float = int(float_like.sum())
    if n_float:
        text = text.where(~float_like, text.str.replace(r"\.0+$", "", regex=True))
    return text, n_float


def parse_timestamps(values: pd.Series, where: _Where) -> pd.Series:
    """Parse timestamps to timezone-naive datetime64; aware values are converted to UTC first."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(values):
        missing = values.isna().to_numpy()
        if missing.any():
            where.fail(missing, values, "have no timestamp", "Fill or remove these rows.")
        return values
    fast = iso_timestamps(values)
    if fast is not None:
        return fast
    text = values.astype("str").str.strip()
    empty = (text.str.len() == 0).to_numpy() | text.isna().to_numpy()
    if empty.any():
        where.fail(empty, values, "have no timestamp", "Fill or remove these rows.")
    # utc=True: aware values are converted to UTC, naive ones are taken as they are.
    parsed = pd.to_datetime(text, errors="coerce", utc=True)
    failed = parsed.isna().to_numpy()
    if failed.any():  # formats vary between rows: parse the rest one by one
        parsed[failed] = pd.to_datetime(text[failed], errors="coerce", format="mixed", utc=True)
        failed = parsed.isna().to_numpy()
        if failed.any():
            where.fail(
                failed,
                values,
                "are not dates/times",
                "Use ISO dates like 2024-03-31 or 2024-03-31 14:05:00, or map the right column "
                "with --timestamp-col.",
            )
    parsed = parsed.dt.tz_localize(None)
    return parsed


def parse_numbers(values: pd.Series, where: _Where) -> pd.Series:
    """Parse a numeric column to float64; missing or unparseable values are an error."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
        bad = ~np.isfinite(numbers.to_numpy())
        if bad.any():
            where.fail(bad, values, "have no number", "Fill or remove these rows.")
        return numbers
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
