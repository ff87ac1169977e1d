"""Flags shared by the commands that read a transactions file, and the reading itself."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clvflow.core.dates import DateLike
from clvflow.core.errors import InputError
from clvflow.data.files import Outputs
from clvflow.data.ingest import ColumnMap, DataQualityReport, load_transactions

if TYPE_CHECKING:  # (imported where used: the CLI starts quickly)
    import pandas as pd


log = logging.getLogger("clvflow")


def _exclude_text(text: str) -> str:
    """An --exclude value, checked (rules separated by ';'; blank: none) but kept as text."""
    from clvflow.data.rowfilter import parse_row_filters

    try:
        parse_row_filters([text])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


class _AppendRules(argparse.Action):
    """Collect --exclude values; a blank one (an unset MLproject parameter) adds nothing."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        texts = list(getattr(namespace, self.dest) or [])
        if values.strip():
            texts.append(values)
        setattr(namespace, self.dest, texts)


def add_transaction_args(p: argparse.ArgumentParser) -> None:
    """Flags that locate and map a transactions file (shared by every command that reads one)."""
    g = p.add_argument_group("transactions")
    g.add_argument(
        "--transactions",
        required=True,
        help="CSV (.csv, .csv.gz) or Parquet file of transactions, or 'cdnow' for the embedded data",
    )
    g.add_argument("--customer-col", default="customer_id", help="column with the customer id")
    g.add_argument("--timestamp-col", default="timestamp", help="column with the date/time")
    g.add_argument("--amount-col", default="amount", help="column with the amount (money)")
    g.add_argument("--quantity-col", default=None, help="quantity column (with --unit-price-col)")
    g.add_argument(
        "--unit-price-col", default=None, help="unit price column; amount = quantity x unit price"
    )
    g.add_argument(
        "--drop-duplicates", action="store_true", help="drop exact duplicate rows (default: keep)"
    )
    g.add_argument(
        "--exclude",
        action=_AppendRules,
        type=_exclude_text,
        default=[],
        metavar="RULE",
        help="drop rows by any input column, counted in the data-quality report: "
        "'COLUMN=VALUE[,VALUE...]' (exact text) or 'COLUMN^=PREFIX[,PREFIX...]' (starts with), "
        "e.g. 'StockCode=POST,M,BANK CHARGES' or 'InvoiceNo^=C'; repeatable, or several rules "
        "separated by ';'",
    )
    g.add_argument(
        "--date-format",
        default=None,
        help="layout of text dates, e.g. '%%d/%%m/%%Y %%H:%%M', or 'mixed' (each row's own); "
        "default: ISO, else one layout guessed from the first row",
    )
    g.add_argument(
        "--dayfirst", action="store_true", help="read dates like 03/04/2011 day first (3 April)"
    )
    g.add_argument(
        "--keep-far-dates",
        action="store_true",
        help="keep rows dated far from all others (a typo year like 2999; default: dropped and "
        "counted)",
    )
    g.add_argument("--quality-report", default=None, help="save the data-quality report (JSON)")


def column_map(args: argparse.Namespace) -> ColumnMap:
    if (args.quantity_col is None) != (args.unit_price_col is None):
        raise InputError("--quantity-col and --unit-price-col go together; give both or neither")
    return ColumnMap(
        customer_id=args.customer_col,
        timestamp=args.timestamp_col,
        amount=args.amount_col,
        quantity=args.quantity_col,
        unit_price=args.unit_price_col,
    )


def open_outputs(args: argparse.Namespace, *inputs: str | Path | None) -> Outputs:
    """The command's outputs (``--quality-report`` declared), checked against the transactions
    and ``inputs`` (:class:`clvflow.data.files.Outputs`; with ``--overwrite`` when the command has it)."""
    outputs = Outputs(
        overwrite=bool(getattr(args, "overwrite", False)), inputs=(args.transactions, *inputs)
    )
    outputs.file(args.quality_report or None, "--quality-report", (".json",))
    return outputs


def ingest_options(args: argparse.Namespace) -> dict[str, Any]:
    """The cleaning options the input flags give (the same on both engines)."""
    return {
        "drop_duplicates": args.drop_duplicates,
        "exclude": args.exclude or (),
        "date_format": args.date_format or None,
        "dayfirst": args.dayfirst,
        "keep_far_dates": args.keep_far_dates,
    }


def read_transactions(
    args: argparse.Namespace, as_of: DateLike | None = None, outputs: Outputs | None = None
) -> tuple[pd.DataFrame, DataQualityReport]:
    """Load the transactions named by the flags and log the data-quality table; stage the
    ``--quality-report`` in ``outputs`` (from :func:`open_outputs`)."""
    tx, report = load_transactions(
        args.transactions, column_map(args), as_of=as_of, **ingest_options(args)
    )
    show_quality(report, args, outputs)
    return tx, report


def show_quality(
    report: DataQualityReport, args: argparse.Namespace, outputs: Outputs | None
) -> None:
    """Log the data-quality table; stage the ``--quality-report`` in ``outputs``."""
    for line in report.to_table().splitlines():
        log.info(line)
    if args.quality_report:
        if outputs is None:
            raise TypeError("show_quality: --quality-report needs the command's outputs")
        outputs.write(Path(args.quality_report), report.save)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """``--engine local|spark`` and ``--spark-master`` (commands that run on Spark)."""
    g = p.add_argument_group("engine")
    g.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: this machine (default); spark: Apache Spark (pip install 'clvflow[spark]', "
        "Java 17; under spark-submit the session it starts)",
    )
    g.add_argument(
        "--spark-master",
        default=None,
        metavar="URL",
        help="Spark master with --engine spark, e.g. local[4] or spark://host:7077 (default: "
        "spark-submit's, else local[*])",
    )


def read_transactions_spark(
    args: argparse.Namespace, as_of: DateLike | None = None, outputs: Outputs | None = None
) -> tuple[Any, DataQualityReport]:
    """:func:`read_transactions` on Spark: a Spark transactions table and its report."""
    from clvflow.spark.ingest import load_transactions_spark
    from clvflow.spark.session import spark_session

    spark = spark_session(args.spark_master)
    tx, report = load_transactions_spark(
        spark, args.transactions, column_map(args), as_of=as_of, **ingest_options(args)
    )
    show_quality(report, args, outputs)
    return tx, report
