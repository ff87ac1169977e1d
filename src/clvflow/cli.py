"""Command-line interface: ``clvflow <command>``. Parses flags, configures logging, calls the
library, and turns bad input into a clear message and a non-zero exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from clvflow.ingest import ColumnMap, InputError, load_transactions

log = logging.getLogger("clvflow")


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


def read_transactions(args: argparse.Namespace, as_of=None):
    """Load the transactions named by the flags and log the data-quality table."""
    tx, report = load_transactions(
        args.transactions, column_map(args), as_of=as_of, drop_duplicates=args.drop_duplicates
    )
    for line in report.to_table().splitlines():
        log.info(line)
    if args.quality_report:
        report.save(args.quality_report)
    return tx, report


def cmd_features(args: argparse.Namespace) -> int:
    from clvflow.features import build_features
    from clvflow.io import check_output_path, write_table
    from clvflow.timeutil import day_after, to_day

    out = check_output_path(args.output, overwrite=args.overwrite, inputs=(args.transactions,))
    as_of = to_day(args.as_of) if args.as_of else None
    tx, _ = read_transactions(args, as_of=as_of)
    as_of = as_of or day_after(tx["timestamp"].max())
    features = build_features(tx, as_of)
    write_table(features, out)
    log.info(
        "features as of %s: %d customers x %d columns -> %s", as_of.date(), *features.shape, out
    )
    print(features.describe().T[["mean", "50%", "max"]].to_string(float_format="{:,.2f}".format))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clvflow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="build the per-customer feature table as of a date")
    add_transaction_args(p)
    p.add_argument("--as-of", default=None, help="date YYYY-MM-DD (default: day after last row)")
    p.add_argument("--output", required=True, help="output .csv or .parquet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_features)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.func(args)
    except (InputError, ValueError) as exc:
        print(f"clvflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
