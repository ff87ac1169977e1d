"""Reading and cleaning a transactions file with Spark: the transactions table and the
data-quality counts of :func:`clvflow.data.ingest.load_transactions`, as Spark DataFrames.

What the Spark reader does as the single-machine one does: map the columns, read CSV as text,
strip ids, normalise float-formatted ids (``17850.0`` -> ``17850``, counted), drop rows without
an id, compute amount = quantity x unit price when mapped, count (or drop) exact duplicate rows
(equal in every column of the file), returns, zero amounts, rows on or after ``as_of``,
customers and customers with only returns. What it does not do yet (a clear InputError or a note
in the report): ``--exclude`` rules, ``--date-format`` / ``--dayfirst`` (text timestamps must be
ISO 8601) and the far-dates check (rows are kept, as with ``--keep-far-dates``). The embedded
``cdnow`` data is read by the single-machine reader and handed to Spark.
"""

from __future__ import annotations

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
    load_transactions,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession
    from pyspark.sql.window import WindowSpec

#: Column of the Spark transactions table beside ``TX_COLUMNS``: the row's place in the file
#: (increasing in file order, not consecutive), so that collected rows can be put back in the
#: single-machine table's order (float sums such as the label spends depend on it).
ROW_COLUMN = "__clvflow_row"

#: The note the report carries on the Spark engine (no far-dates check there yet).
FAR_DATES_NOTE = "far-dates check not run on the Spark engine: every dated row is kept"


def load_transactions_spark(
    spark: SparkSession,
    source: str | Path,
    columns: ColumnMap | None = None,
    *,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
) -> tuple[DataFrame, DataQualityReport]:
    """Read and clean a CSV/Parquet file (or ``"cdnow"``) into a Spark transactions table
    (``customer_id`` text, ``timestamp`` naive, ``amount`` double, :data:`ROW_COLUMN`) and its
    data-quality report.

    Raises:
        InputError: missing file or column, unsupported type, unparseable timestamps or amounts,
            ids with control characters, no row with an id.
    """
    if is_embedded(source):
        tx, report = load_transactions(source, as_of=as_of, drop_duplicates=drop_duplicates)
        from pyspark.sql import functions as F

        frame = spark.createDataFrame(tx)
        return frame.withColumn(ROW_COLUMN, F.monotonically_increasing_id()), report
    columns = columns or ColumnMap()
    path = Path(source)
    raw = _read(spark, path, columns)
    return clean_transactions_spark(
        raw, source=str(path), columns=columns, as_of=as_of, drop_duplicates=drop_duplicates
    )


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
    if name.endswith((".csv", ".csv.gz")):
        raw = spark.read.option("header", True).option("inferSchema", False).csv(str(path))
    else:
        raw = spark.read.parquet(str(path))
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


def clean_transactions_spark(
    raw: DataFrame,
    *,
    source: str,
    columns: ColumnMap | None = None,
    as_of: DateLike | None = None,
    drop_duplicates: bool = False,
) -> tuple[DataFrame, DataQualityReport]:
    """Clean a raw Spark DataFrame (input column names) as ``ingest.clean_transactions`` does,
    within the limits in the module docstring. The transactions table is cached (it is counted
    here and read again by the features)."""
    from pyspark.sql import functions as F

    columns = columns or ColumnMap()
    names = columns.required()
    rows_read = raw.count()
    if rows_read == 0:
        raise InputError(f"{source}: no data rows. Export the transactions again.")
    ids, float_formatted = _customer_ids(raw, names["customer_id"], source)
    timestamp = _timestamps(raw, names["timestamp"], source)
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
    counts = _first(
        table.agg(
            F.sum(F.col("customer_id").isNull().cast("long")).alias("missing_id"),
            F.sum((F.col("customer_id").isNotNull() & ~F.col(dup_key)).cast("long")).alias("dups"),
            F.sum(F.col("__float_id").cast("long")).alias("float_ids"),
        )
    )
    report = DataQualityReport(source=source, rows_read=rows_read)
    report.dropped_missing_customer_id = int(counts["missing_id"] or 0)
    report.customer_ids_float_formatted = int(counts["float_ids"] or 0)
    if report.customer_ids_float_formatted:
        report.notes.append(
            f"{report.customer_ids_float_formatted:,} customer ids were float-formatted (e.g. "
            "'17850.0') and were normalised to integers ('17850')"
        )
    report.duplicate_rows = int(counts["dups"] or 0)
    used = table.where(F.col("customer_id").isNotNull())
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
    report.notes.append(FAR_DATES_NOTE)
    return tx, report


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


def _timestamps(raw: DataFrame, column: str, source: str) -> Column:
    """Naive timestamps (zoned values converted to UTC); text must be ISO 8601."""
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
