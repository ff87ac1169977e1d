"""Reading and cleaning a transactions file with Spark: the transactions table and the
data-quality counts of :func:`clvflow.data.ingest.load_transactions`, as Spark DataFrames.

What the Spark reader does as the single-machine one does: map the columns, read CSV as text,
strip ids, normalise float-formatted ids (``17850.0`` -> ``17850``, counted), drop rows without
an id, compute amount = quantity x unit price when mapped, count (or drop) exact duplicate rows
(equal in every column of the file), returns, zero amounts, rows on or after ``as_of``,
customers and customers with only returns. It applies the ``--exclude`` rules (counted rule
by rule), reads ``--date-format`` layouts with the single-machine parser (a pandas UDF: the same
function on every row) and drops far dates with the single-machine rule (rows counted per day on
Spark, the cut found on the driver by ``ingest.DayCounts``). Without ``--date-format``, text
timestamps must be ISO 8601 (the single-machine reader would guess a layout from the file's first
row, which Spark's partitions do not have): ``--dayfirst`` needs ``--date-format`` there. The
embedded ``cdnow`` data is read by the single-machine reader and handed to Spark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from clvflow.core.dates import DateLike, to_day
from clvflow.core.errors import InputError
from clvflow.data.datasets import is_embedded
from clvflow.data.ingest import (
    MAX_EXAMPLES,
    SUPPORTED_SUFFIXES,
    TX_COLUMNS,
    ColumnMap,
    DataQualityReport,
    DayCounts,
    far_note_text,
    layout_note,
    load_transactions,
    to_datetime_text,
)
from clvflow.data.rowfilter import RowFilter, parse_row_filters

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession
    from pyspark.sql.window import WindowSpec

#: Column of the Spark transactions table beside ``TX_COLUMNS``: the row's place in the file
#: (increasing in file order, not consecutive), so that collected rows can be put back in the
#: single-machine table's order (float sums such as the label spends depend on it).
ROW_COLUMN = "__clvflow_row"


def load_transactions_spark(
    spark: SparkSession,
    source: str | Path,
    columns: ColumnMap | None = None,
    *,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    exclude: Sequence[RowFilter | str] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
) -> tuple[DataFrame, DataQualityReport]:
    """Read and clean a CSV/Parquet file (or ``"cdnow"``) into a Spark transactions table
    (``customer_id`` text, ``timestamp`` naive, ``amount`` double, :data:`ROW_COLUMN`) and its
    data-quality report. The options are those of :func:`clvflow.data.ingest.load_transactions`.

    Raises:
        InputError: missing file or column, unsupported type, unparseable timestamps or amounts,
            ids with control characters, no row with an id, an --exclude rule on a missing
            column or dropping every row, ``dayfirst`` without ``date_format``.
    """
    try:
        rules = parse_row_filters(exclude)
    except ValueError as err:
        raise InputError(str(err)) from None
    options = {
        "as_of": as_of,
        "drop_duplicates": drop_duplicates,
        "exclude": rules,
        "date_format": date_format,
        "dayfirst": dayfirst,
        "keep_far_dates": keep_far_dates,
    }
    if is_embedded(source):
        tx, report = load_transactions(source, **options)  # type: ignore[arg-type]
        from pyspark.sql import functions as F

        frame = spark.createDataFrame(tx)
        return frame.withColumn(ROW_COLUMN, F.monotonically_increasing_id()), report
    columns = columns or ColumnMap()
    path = Path(source)
    raw = _read(spark, path, columns)
    return clean_transactions_spark(raw, source=str(path), columns=columns, **options)  # type: ignore[arg-type]


def _read(spark: SparkSession, path: Path, columns: ColumnMap) -> DataFrame:
    """The file as a Spark DataFrame (CSV: every column text), its mapped columns checked."""
    if not path.exists():
        raise InputError(
            f"{path}: file not found. Check the path (working directory: {Path.cwd()})."
        )
    name = path.name.lower()
    if not name.endswith(SUPPORTED_SUFFIXES):
        raise InputError(
            f"{path}: unsupported file type '{''.join(path.suffixes) or '(none)'}'. "
            f"Supported: {', '.join(SUPPORTED_SUFFIXES)}."
        )
    uri = path.absolute().as_uri()  # (a local or mounted file: not the cluster's default FS)
    if name.endswith((".csv", ".csv.gz")):
        raw = spark.read.option("header", True).option("inferSchema", False).csv(uri)
    else:
        raw = _read_parquet(spark, path, uri)
    present = raw.columns
    missing = [
        f"{col!r} (for {logical})"
        for logical, col in columns.required().items()
        if col not in present
    ]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}. Columns present: {present}. "
            "Map yours with --customer-col, --timestamp-col, --amount-col "
            "(or --quantity-col and --unit-price-col)."
        )
    return raw


def _read_parquet(spark: SparkSession, path: Path, uri: str) -> DataFrame:
    """A Parquet file or folder. Nanosecond timestamps (pandas' default when writing) are read
    as numbers (Spark's own reader refuses them; ``spark.sql.legacy.parquet.nanosAsLong`` is
    set on the session for it) and turned into microsecond timestamps, at UTC like the default
    engine: a time below the microsecond is dropped."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    from pyspark.sql import functions as F

    schema = ds.dataset(str(path), format="parquet").schema
    nanos = [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
    if nanos:
        spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    raw = spark.read.parquet(uri)
    for name in nanos:
        micros = F.floor(_col(name) / 1000)
        raw = raw.withColumn(name, F.timestamp_micros(micros).cast("timestamp_ntz"))
    return raw


def clean_transactions_spark(
    raw: DataFrame,
    *,
    source: str,
    columns: ColumnMap | None = None,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
    exclude: Sequence[RowFilter] = (),
    date_format: str | None = None,
    dayfirst: bool = False,
    keep_far_dates: bool = False,
) -> tuple[DataFrame, DataQualityReport]:
    """Clean a raw Spark DataFrame (input column names) as ``ingest.clean_transactions`` does,
    within the limits in the module docstring. The transactions table is cached (it is counted
    here and read again by the features)."""
    from pyspark.sql import functions as F

    columns = columns or ColumnMap()
    names = columns.required()
    if dayfirst and date_format is None:
        raise InputError(
            f"{source}: --dayfirst needs --date-format on the Spark engine (e.g. --date-format "
            "'%d/%m/%Y', or 'mixed' with --dayfirst): it cannot guess one layout from the "
            "file's first row as the default engine does."
        )
    rows_read = raw.count()
    if rows_read == 0:
        raise InputError(f"{source}: no data rows. Export the transactions again.")
    report = DataQualityReport(source=source, rows_read=rows_read)
    if exclude:
        raw = _apply_row_filters(raw, exclude, report)
    ids, float_formatted = _customer_ids(raw, names["customer_id"], source)
    timestamp = _timestamps(raw, names["timestamp"], source, date_format, dayfirst)
    if columns.uses_quantity_price:
        amount = _numbers(raw, names["quantity"], source) * _numbers(
            raw, names["unit_price"], source
        )
    else:
        amount = _numbers(raw, names["amount"], source)
    dup_key = "__clvflow_first"
    marked = raw.withColumn(ROW_COLUMN, F.monotonically_increasing_id()).withColumn(
        dup_key,
        F.row_number().over(_window_all(raw.columns)) == 1,
    )
    table = marked.select(
        ids.alias("customer_id"),
        timestamp.alias("timestamp"),
        amount.alias("amount"),
        float_formatted.alias("__float_id"),
        F.col(dup_key),
        F.col(ROW_COLUMN),
    ).cache()
    has_id = F.col("customer_id").isNotNull()
    far, far_note = F.lit(False), None
    if not keep_far_dates:
        far, far_note = _far_dates(table, report, names["timestamp"])
    used_row = has_id & ~far
    counts = _first(
        table.agg(
            F.sum((~has_id).cast("long")).alias("missing_id"),
            F.sum((used_row & ~F.col(dup_key)).cast("long")).alias("dups"),
            F.sum(F.col("__float_id").cast("long")).alias("float_ids"),
        )
    )
    report.dropped_missing_customer_id = int(counts["missing_id"] or 0)
    report.customer_ids_float_formatted = int(counts["float_ids"] or 0)
    if report.customer_ids_float_formatted:
        report.notes.append(
            f"{report.customer_ids_float_formatted:,} customer ids were float-formatted (e.g. "
            "'17850.0') and were normalised to integers ('17850')"
        )
    if date_format is not None:  # (in the order the default engine notes them)
        report.notes.append(layout_note(names["timestamp"], date_format, dayfirst))
    if far_note:
        report.notes.append(far_note)
    report.duplicate_rows = int(counts["dups"] or 0)
    used = table.where(used_row)
    if drop_duplicates:
        report.dropped_duplicates = report.duplicate_rows
        used = used.where(F.col(dup_key))
    tx = used.select(*TX_COLUMNS, ROW_COLUMN).cache()
    _summarise(tx, report, as_of)  # (computes tx: only then is the wider table let go)
    table.unpersist()
    if report.rows_used == 0:
        raise InputError(
            f"{source}: no row has a customer id in column {names['customer_id']!r}. "
            "Map the right column with --customer-col."
        )
    return tx, report


def _apply_row_filters(
    raw: DataFrame, rules: Sequence[RowFilter], report: DataQualityReport
) -> DataFrame:
    """``ingest._apply_row_filters`` on Spark: the rows no rule matches, each dropped row
    counted under the first rule that matches it."""
    from pyspark.sql import functions as F

    for rule in rules:
        if rule.column not in raw.columns:
            raise InputError(
                f"{report.source}: --exclude {rule.describe()!r} names column {rule.column!r}, "
                f"which the file does not have. Columns present: {raw.columns}. Column names "
                "are case-sensitive."
            )
    kept = F.lit(True)
    hits = []
    for i, rule in enumerate(rules):
        hit = _rule_hit(raw, rule) & kept
        hits.append(F.sum(hit.cast("long")).alias(f"rule{i}"))
        kept = kept & ~hit
    counts = _first(raw.agg(*hits))
    for i, rule in enumerate(rules):
        rows = int(counts[f"rule{i}"] or 0)
        report.excluded.append({"rule": rule.describe(), "rows": rows})
        if not rows:
            report.notes.append(f"--exclude {rule.describe()} dropped no row (check the values)")
    report.dropped_excluded = sum(e["rows"] for e in report.excluded)
    if report.dropped_excluded == report.rows_read:
        raise InputError(
            f"{report.source}: the --exclude rules drop every row "
            f"({'; '.join(e['rule'] for e in report.excluded)}). Check the rules."
        )
    return raw.where(kept)


def _rule_hit(raw: DataFrame, rule: RowFilter) -> Column:
    """Where ``rule`` matches (as ``RowFilter.matches``: values as text, whole floats without
    ``.0``, surrounding white space ignored, a missing value never matches)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType

    value = _col(rule.column)
    text = value.cast("string")
    if isinstance(raw.schema[rule.column].dataType, (DoubleType, FloatType)):
        whole = (value == F.floor(value)) & (F.abs(value) < 2.0**63)
        text = F.when(whole, value.cast("long").cast("string")).otherwise(text)
    text = F.regexp_replace(text, r"^\s+|\s+$", "")
    if rule.prefix:
        hit = F.lit(False)
        for prefix in rule.values:
            hit = hit | text.startswith(prefix)
    else:
        hit = text.isin(list(rule.values))
    return value.isNotNull() & F.coalesce(hit, F.lit(False))


def _far_dates(
    table: DataFrame, report: DataQualityReport, column: str
) -> tuple[Column, str | None]:
    """Where a row with an id is dated far from all others (``ingest.far_dates``'s rule on the
    rows per day, collected to the driver: one row per day), counted in ``report``, and the
    report's note on them (None when there are none)."""
    import numpy as np
    from pyspark.sql import functions as F

    from clvflow.spark.features import day_number

    day = day_number(F.col("timestamp"))
    per_day = (
        table.where(F.col("customer_id").isNotNull())
        .groupBy(day.alias("day"))
        .count()
        .orderBy("day")
        .collect()
    )
    if not per_day:
        return F.lit(False), None
    days = np.array([r["day"] for r in per_day], dtype=np.int64)
    counts = DayCounts(
        start=int(days[0]),
        counts=np.bincount(days - days[0], weights=[r["count"] for r in per_day]).astype(np.int64),
        first=np.datetime64(int(days[0]), "D"),
        last=np.datetime64(int(days[-1]), "D"),
    )
    cut = counts.far_cut()
    if cut is None or (cut.above is None and cut.below is None):
        return F.lit(False), None
    far = F.lit(False)
    if cut.above is not None:
        far = far | (day >= cut.above)
    if cut.below is not None:
        far = far | (day <= cut.below)
    far = F.col("customer_id").isNotNull() & far
    rows = table.where(far).select("timestamp").orderBy("timestamp")
    report.dropped_far_dates = rows.count()
    first = ", ".join(str(pd.Timestamp(r[0])) for r in rows.limit(MAX_EXAMPLES).collect())
    return far, far_note_text(report.dropped_far_dates, first, cut.bulk, column)


def naive_instant(day: pd.Timestamp) -> Column:
    """Midnight of ``day`` as a Spark TIMESTAMP_NTZ (from text: no time zone involved)."""
    from pyspark.sql import functions as F

    return F.lit(day.strftime("%Y-%m-%d %H:%M:%S")).cast("timestamp_ntz")


def _first(frame: DataFrame) -> Row:
    """The one row of an aggregate."""
    row = frame.first()
    if row is None:  # (an aggregate without grouping always has one row)
        raise AssertionError("aggregate returned no row")
    return row


def _window_all(names: list[str]) -> WindowSpec:
    """Rows equal in every column together (an exact-duplicate group), in file order (the first
    is the one kept when duplicates are dropped, as on one machine)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return Window.partitionBy(*[F.col(f"`{n}`") for n in names]).orderBy(ROW_COLUMN)


def _examples(frame: DataFrame, bad: Column, column: str) -> list[object]:
    return [r[0] for r in frame.where(bad).select(_col(column)).limit(MAX_EXAMPLES).collect()]


def _col(name: str) -> Column:
    """An input column by its name (dots and spaces included)."""
    from pyspark.sql import functions as F

    return F.col(f"`{name}`")


def _fail(raw: DataFrame, bad: Column, column: str, source: str, problem: str, fix: str) -> None:
    n_bad = raw.where(bad).count()
    if n_bad:
        shown = ", ".join(repr(v) for v in _examples(raw, bad, column))
        raise InputError(
            f"{source}, column {column!r}: {n_bad:,} row(s) {problem}; first: {shown}. {fix}"
        )


def _customer_ids(raw: DataFrame, column: str, source: str) -> tuple[Column, Column]:
    """(id as text, null when missing or blank; 1 where a float-formatted id was normalised)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DecimalType, DoubleType, FloatType

    kind = raw.schema[column].dataType
    value = _col(column)
    if isinstance(kind, (DoubleType, FloatType, DecimalType)):
        value = value.cast("double")
        _fail(
            raw,
            value.isNotNull() & ~(F.abs(value) < 2.0**53),
            column,
            source,
            "are floating-point ids too large to be exact (beyond 2^53 floats skip whole numbers)",
            "Store the customer ids as text or integers in the file, not as floats.",
        )
        integral = value.isNotNull() & (value == F.floor(value))
        text = F.when(integral, value.cast("long").cast("string")).otherwise(value.cast("string"))
        return text, integral
    text = F.trim(value.cast("string"))
    _fail(
        raw,
        text.rlike("[\\x00-\\x1f]"),
        column,
        source,
        "contain control characters (e.g. a NUL byte)",
        "Remove them from the ids (a damaged export?), or map the right column with "
        "--customer-col.",
    )
    text = F.when(F.length(text) > 0, text)
    float_like = F.coalesce(text.rlike("^-?[0-9]+\\.0+$"), F.lit(False))
    return F.when(float_like, F.regexp_replace(text, "\\.0+$", "")).otherwise(text), float_like


def _timestamps(
    raw: DataFrame, column: str, source: str, date_format: str | None, dayfirst: bool
) -> Column:
    """Naive timestamps (zoned values converted to UTC); text must be ISO 8601, or in
    ``date_format`` (read by the single-machine parser, row by row)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DateType, StringType, TimestampNTZType, TimestampType

    kind = raw.schema[column].dataType
    value = _col(column)
    if isinstance(kind, TimestampNTZType):
        return value
    if isinstance(kind, (TimestampType, DateType)):  # (the session time zone is UTC)
        return value.cast("timestamp").cast("timestamp_ntz")
    if not isinstance(kind, StringType):
        raise InputError(
            f"{source}, column {column!r}: holds {kind.simpleString()}, not dates; map the "
            "date column with --timestamp-col."
        )
    if date_format is not None:
        parsed = _text_dates(date_format, dayfirst)(F.trim(value))
        _fail(
            raw,
            (F.length(F.trim(value)) == 0) | value.isNull(),
            column,
            source,
            "have no timestamp",
            "Fill or remove these rows.",
        )
        _fail(
            raw,
            parsed.isNull(),
            column,
            source,
            f"do not match --date-format {date_format!r}",
            "Fix these rows, or give the layout of the column (e.g. '%d/%m/%Y %H:%M'; "
            "'mixed' reads each row's own).",
        )
        return parsed
    parsed = F.try_to_timestamp(F.trim(value)).cast("timestamp_ntz")
    _fail(
        raw,
        value.isNotNull() & parsed.isNull(),
        column,
        source,
        "are not ISO 8601 dates (e.g. 2011-12-09 or 2011-12-09 12:50:00)",
        "The Spark engine reads ISO dates only: convert them, or use the default engine with "
        "--date-format.",
    )
    return parsed


def _text_dates(date_format: str, dayfirst: bool) -> Callable[[Column], Column]:
    """A pandas UDF: text -> naive timestamp with ``ingest.to_datetime_text`` (null where the
    text does not fit)."""
    from pyspark.sql.functions import pandas_udf

    @pandas_udf("timestamp_ntz")  # type: ignore[call-overload]
    def parse(text: pd.Series) -> pd.Series:
        return to_datetime_text(text.astype("str"), date_format, dayfirst)

    return parse


def _numbers(raw: DataFrame, column: str, source: str) -> Column:
    """A numeric column as double (text parsed; empty or unparseable text is an error)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType

    value = _col(column)
    if isinstance(raw.schema[column].dataType, NumericType):
        number = value.cast("double")
    else:
        number = F.trim(value).try_cast("double")
    _fail(
        raw,
        number.isNull() | F.isnan(number) | (F.abs(number) == float("inf")),
        column,
        source,
        "are missing or not numbers",
        "Fix or remove those rows, or map the right column.",
    )
    return number


def _summarise(tx: DataFrame, report: DataQualityReport, as_of: DateLike | None) -> None:
    """The counts of ``ingest._summarise`` in one pass (plus one for the customers)."""
    from pyspark.sql import functions as F

    known = F.lit(True)
    if as_of is not None:
        day = to_day(as_of)
        report.as_of = day.date().isoformat()
        known = F.col("timestamp") < naive_instant(day)
    totals = _first(
        tx.agg(
            F.count(F.lit(1)).alias("rows"),
            F.sum((F.col("amount") < 0).cast("long")).alias("returns"),
            F.sum((F.col("amount") == 0).cast("long")).alias("zeros"),
            F.sum((~known).cast("long")).alias("after"),
            F.min("timestamp").alias("first"),
            F.max("timestamp").alias("last"),
        )
    )
    customers = _first(
        tx.where(known)
        .groupBy("customer_id")
        .agg(F.max((F.col("amount") >= 0).cast("int")).alias("buys"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum(1 - F.col("buys")).alias("only_returns"))
    )
    report.rows_used = int(totals["rows"])
    report.returns = int(totals["returns"] or 0)
    report.zero_amounts = int(totals["zeros"] or 0)
    report.rows_on_or_after_as_of = int(totals["after"] or 0) if as_of is not None else 0
    report.customers = int(customers["n"] or 0)
    report.customers_only_returns = int(customers["only_returns"] or 0)
    report.first_timestamp = str(pd.Timestamp(totals["first"]))
    report.last_timestamp = str(pd.Timestamp(totals["last"]))
