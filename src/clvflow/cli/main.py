"""Command-line interface: ``clvflow <command>``. Parses flags, configures logging, calls the
library, and turns bad input into a clear message and a non-zero exit code."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clvflow.core.errors import InputError

if TYPE_CHECKING:  # (imported where used: the CLI starts quickly)
    import pandas as pd

    from clvflow.data.files import Outputs
    from clvflow.data.ingest import DataQualityReport
    from clvflow.mlops.settings import JobOutcome, JobSettings
    from clvflow.models.clv import Selection
    from clvflow.models.training import BtydAt

from clvflow.cli.args import (
    add_engine_args,
    add_transaction_args,
    open_outputs,
    read_transactions,
    read_transactions_spark,
)

log = logging.getLogger("clvflow")


def cmd_features(args: argparse.Namespace) -> int:
    from clvflow.core.dates import default_as_of, to_day
    from clvflow.features.build import build_features

    with open_outputs(args) as outputs:
        out = outputs.required_file(args.output, "--output")
        as_of = to_day(args.as_of) if args.as_of else None
        if args.engine == "spark":
            features, as_of = _spark_features(args, as_of, outputs)
        else:
            tx, _ = read_transactions(args, as_of=as_of, outputs=outputs)
            as_of = as_of or default_as_of(tx)
            features = build_features(tx, as_of)
        outputs.write_table(features, out)
        outputs.commit()
    log.info(
        "features as of %s: %d customers x %d columns -> %s", as_of.date(), *features.shape, out
    )
    print(features.describe().T[["mean", "50%", "max"]].to_string(float_format="{:,.2f}".format))
    return 0


def _spark_features(
    args: argparse.Namespace, as_of: pd.Timestamp | None, outputs: Outputs
) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The feature table computed by Spark and collected to the driver (one row per customer;
    the transactions stay on the executors), and its as-of date."""
    import pandas as pd

    from clvflow.core.dates import day_after
    from clvflow.spark.features import build_features_spark, features_to_pandas

    tx, report = read_transactions_spark(args, as_of=as_of, outputs=outputs)
    as_of = as_of or day_after(pd.Timestamp(str(report.last_timestamp)))
    return features_to_pandas(build_features_spark(tx, as_of)), as_of


# ---- train / backtest ----------------------------------------------------------------------


def _typed(
    kind: str, convert: Callable[[str], Any], check: Callable[[Any], bool], rule: str
) -> Callable[[str], Any]:
    """An argparse type: ``convert`` the text, then require ``check`` (else say ``rule``)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except (TypeError, ValueError, KeyError, OverflowError):
            raise argparse.ArgumentTypeError(f"invalid {kind} value: {text!r} ({rule})") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"{text!r} is out of range ({rule})")
        return value

    parse.__name__ = kind
    return parse


def _whole(text: str) -> int:
    value = float(text)
    if value != int(value):
        raise ValueError(text)
    return int(value)


POSITIVE_INT = _typed("int", _whole, lambda v: v >= 1, "a whole number >= 1")
NON_NEGATIVE_INT = _typed("int", _whole, lambda v: v >= 0, "a whole number >= 0")
POSITIVE_FLOAT = _typed("float", float, lambda v: 0 < v < float("inf"), "a number > 0")
MARGIN = _typed("float", float, lambda v: 0 < v <= 1, "a share of revenue in (0, 1]")
DISCOUNT = _typed("float", float, lambda v: 0 <= v < 1, "a yearly rate in [0, 1), e.g. 0.1")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
BOOL = _typed("bool", lambda t: _BOOLS[t.strip().lower()], lambda v: True, "true or false")


def _optional_date(text: str) -> pd.Timestamp | None:
    """A date, or None for an empty value (MLproject passes unset parameters as '')."""
    from clvflow.core.dates import to_day

    if not text.strip():
        return None
    try:
        return to_day(text, "date")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_job_args(p: argparse.ArgumentParser, *, cutoff_help: str) -> None:
    """Flags shared by train and backtest (defaults from ModelParams / SnapshotSettings)."""
    from clvflow.models.clv import ModelParams
    from clvflow.models.training import SnapshotSettings

    mp, snap = ModelParams(), SnapshotSettings()
    add_transaction_args(p)
    p.add_argument(  # replaces the plain flag: MLproject passes booleans as values
        "--drop-duplicates",
        type=BOOL,
        nargs="?",
        const=True,
        default=False,
        help="drop exact duplicate rows (default: keep); also --drop-duplicates true/false",
    )
    p.add_argument(
        "--overwrite",
        type=BOOL,
        nargs="?",
        const=True,
        default=False,
        help="replace an existing --quality-report (default: refuse); also --overwrite true/false",
    )
    p.add_argument(
        "--cutoff",
        type=_optional_date,
        default=None,
        help=cutoff_help,
    )
    p.add_argument("--horizon-days", type=POSITIVE_INT, required=True, help="window length, days")
    p.add_argument("--experiment-name", default=None, help="MLflow experiment (default clvflow)")
    p.add_argument(
        "--seed",
        type=NON_NEGATIVE_INT,
        default=mp.seed,
        help="random seed: same data + seed = same model (default %(default)s)",
    )
    h = p.add_argument_group("model")
    h.add_argument(
        "--n-estimators",
        type=POSITIVE_INT,
        default=mp.n_estimators,
        help="most boosting rounds per booster; early stopping on the latest snapshot picks "
        "fewer (default %(default)s)",
    )
    h.add_argument(
        "--learning-rate",
        type=POSITIVE_FLOAT,
        default=mp.learning_rate,
        help="XGBoost step size per round (default %(default)s)",
    )
    h.add_argument(
        "--max-depth",
        type=POSITIVE_INT,
        default=mp.max_depth,
        help="depth of each XGBoost tree (default %(default)s)",
    )
    h.add_argument(
        "--n-jobs",
        type=NON_NEGATIVE_INT,
        default=0,
        help="threads for XGBoost, the bootstrap and the blend choice, and for building the "
        "refit's inputs beside the internal backtest (default 0: the cores this process may "
        f"use, here {mp.n_jobs}; XGBoost's threads wait passively, so a busy machine does not "
        "slow them down; 1: one thread throughout)",
    )
    h.add_argument(
        "--seasonal-level",
        type=BOOL,
        default=mp.seasonal_level,
        help="correct the BG/NBD level by its error in the same season a year earlier, when the "
        "history allows (default true)",
    )
    h.add_argument(
        "--n-snapshots",
        type=POSITIVE_INT,
        default=snap.n_snapshots,
        help=f"training snapshots (default {snap.n_snapshots}); those with less than "
        f"{snap.rule.min_history_days} days of history, {snap.rule.min_buyers} buyers or "
        f"{snap.rule.min_outcomes} active and inactive customers are dropped (logged)",
    )
    h.add_argument(
        "--snapshot-spacing-days",
        type=POSITIVE_INT,
        default=snap.spacing_days,
        help=f"days between snapshots (default {snap.spacing_days})",
    )
    h.add_argument(
        "--method",
        choices=METHOD_CHOICES,
        default="auto",
        help="what to export: auto (default) lets the internal backtest choose the boosters, "
        "BG/NBD x Gamma-Gamma or a blend of the two; boosters or bgnbd force one",
    )
    h.add_argument(
        "--margin",
        type=MARGIN,
        default=1.0,
        help="share of revenue kept, for CLV = expected spend x margin (default %(default)s)",
    )
    h.add_argument(
        "--annual-discount-rate",
        type=DISCOUNT,
        default=0.0,
        help="yearly discount rate for CLV, e.g. 0.1 (default %(default)s: none for the horizon; "
        "lifetime CLV then uses 10%%)",
    )
    add_engine_args(p)
    p.add_argument(
        "--spark-sample-customers",
        type=POSITIVE_INT,
        default=DEFAULT_SAMPLE_CUSTOMERS,
        metavar="N",
        help="with --engine spark: the boosters train on a sample of about N customers, "
        "stratified by purchase days, drawn by a hash of the seed and the id (BG/NBD x "
        "Gamma-Gamma and the data-quality counts use everyone; default %(default)s)",
    )


METHOD_CHOICES = ("auto", "boosters", "bgnbd")  # clvflow.models.training.METHODS
#: clvflow.spark.training.DEFAULT_SAMPLE_CUSTOMERS (not imported: the CLI starts without pyspark)
DEFAULT_SAMPLE_CUSTOMERS = 200_000


def _blank_to_none(args: argparse.Namespace, *names: str) -> None:
    for name in names:
        if getattr(args, name, None) == "":
            setattr(args, name, None)


def _job_settings(args: argparse.Namespace) -> JobSettings:
    """JobSettings from parsed flags (the flags as given are logged too)."""
    import os

    from clvflow.mlops.settings import JobSettings, data_name

    _blank_to_none(args, "quantity_col", "unit_price_col", "quality_report", "export_dir")
    skip = ("func", "command", "verbose", "experiment_name")  # the run's experiment says it
    flags = {k: v for k, v in vars(args).items() if k not in skip}
    register_as = getattr(args, "register_as", None) or None
    return JobSettings.from_options(
        args.horizon_days,
        n_estimators=args.n_estimators,
        learning_rate=args.learning_rate,
        max_depth=args.max_depth,
        n_jobs=args.n_jobs,
        seasonal_level=args.seasonal_level,
        seed=args.seed,
        n_snapshots=args.n_snapshots,
        snapshot_spacing_days=args.snapshot_spacing_days,
        cutoff=args.cutoff,
        margin=args.margin,
        annual_discount_rate=args.annual_discount_rate,
        experiment_name=args.experiment_name
        or os.environ.get("MLFLOW_EXPERIMENT_NAME")
        or "clvflow",
        data_name=data_name(args.transactions),
        register_as=register_as,
        method=args.method,
        export_dir=Path(args.export_dir) if getattr(args, "export_dir", None) else None,
        flag_params=flags,
        engine=args.engine,
    )


def _read_job_data(
    args: argparse.Namespace,
    settings: JobSettings,
    outputs: Outputs,
    as_of: pd.Timestamp | None,
    sample_at: pd.Timestamp | None,
) -> tuple[pd.DataFrame, DataQualityReport, JobSettings, BtydAt | None]:
    """The job's transactions, report, settings and full-data BTYD fitter. Local: the file.
    Spark: the whole file read and counted by Spark, the boosters' stratified customer sample
    (as of ``sample_at``, default the day after the last row) collected to the driver, the
    sample logged as params (:mod:`clvflow.spark.training`)."""
    import dataclasses

    import pandas as pd

    from clvflow.core.dates import day_after

    if args.engine != "spark":
        tx, report = read_transactions(args, as_of=as_of, outputs=outputs)
        return tx, report, settings, None
    from clvflow.spark.training import training_inputs_spark

    spark_tx, report = read_transactions_spark(args, as_of=as_of, outputs=outputs)
    day = sample_at or day_after(pd.Timestamp(str(report.last_timestamp)))
    tx, sample, btyd_at = training_inputs_spark(
        spark_tx, day, args.spark_sample_customers, settings.params.seed
    )
    log.info("Spark: the boosters train on %s", sample.describe())
    print(f"Spark engine: boosters trained on {sample.describe()}")
    settings = dataclasses.replace(
        settings,
        cutoff=settings.cutoff or (day if sample_at is None else None),
        engine_params=sample.params(),
    )
    return tx, report, settings, btyd_at


def _print_intervals(outcome: JobOutcome) -> None:
    from clvflow.mlops.settings import N_RESAMPLES
    from clvflow.models import tables

    assert outcome.intervals is not None  # (printed after a backtest only)
    print(
        f"\n95% intervals: bootstrap over customers ({N_RESAMPLES} resamples; the gain "
        "row is paired)"
    )
    print(tables.format_intervals(outcome.intervals))


def _print_selection(selection: Selection) -> None:
    print(f"\nexported method: {selection.blend.describe()}")
    if selection.backtest is None:
        print(f"  not backtested: {selection.reason}")
        print(f"  {selection.blend.reason}")
    else:
        print(f"  chosen on the internal backtest window: {selection.blend.reason}")


def cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd

    from clvflow.core.memory import release_free_memory
    from clvflow.mlops import jobs
    from clvflow.models import tables

    settings = _job_settings(args)
    with open_outputs(args) as outputs:
        tx, report, settings, btyd_at = _read_job_data(
            args, settings, outputs, settings.cutoff, settings.cutoff
        )
        past, cutoff = jobs.training_rows(tx, settings)
        del tx  # only the rows before the cutoff from here on (the rest: GBs at 1M customers)
        release_free_memory()
        outcome = jobs.train_before(past, cutoff, report, settings, btyd_at)
        outputs.commit()
    reg = outcome.registration
    assert outcome.selection is not None  # (train always selects)
    if outcome.selection.backtest is not None:
        start = (outcome.cutoff - pd.Timedelta(days=settings.horizon_days)).date()
        print(
            f"Internal backtest on [{start}, {outcome.cutoff.date()}) (the blend's weights are "
            "fitted on this window; `clvflow backtest` judges the exported model out of time):"
        )
        print(tables.format_evaluation_table(outcome.table))
        _print_intervals(outcome)
    _print_selection(outcome.selection)
    aliases = "candidate, champion" if reg.promoted else "candidate"
    print(f"model: {reg.name} version {reg.version} ({aliases}); MLflow run {outcome.run_id}")
    print(f"  {reg.decision}")
    print(f"bundle: {outcome.bundle_dir}")
    return 0


def _print_backtest(outcome: JobOutcome, horizon_days: int) -> None:
    from clvflow.models import tables

    assert outcome.selection is not None  # (a backtest always selects)
    start = outcome.cutoff.date()
    print(f"Backtest at {start}, window of {horizon_days} days from {start}:")
    print(tables.format_evaluation_table(outcome.table))
    _print_intervals(outcome)
    _print_selection(outcome.selection)


def parse_cutoffs(tokens: list[str]) -> list:
    """Dates, or ``START:STOP:STEP`` ranges (STOP included; STEP ``30d`` days or ``1m``
    months), e.g. ``1997-04-01:1998-07-01:1m``."""
    import pandas as pd

    from clvflow.core.dates import to_day

    days = []
    for token in tokens:
        if ":" not in token:
            days.append(to_day(token, "cutoff"))
            continue
        parts = token.split(":")
        step = parts[2].strip().lower() if len(parts) == 3 else ""
        if len(parts) != 3 or not step[:-1].isdigit() or step[-1] not in "dm" or int(step[:-1]) < 1:
            raise ValueError(
                f"--cutoffs {token!r}: use START:STOP:STEP with STEP like 30d (days) or 1m "
                "(months), e.g. 1997-04-01:1998-07-01:1m"
            )
        start, stop = to_day(parts[0], "cutoff"), to_day(parts[1], "cutoff")
        n = int(step[:-1])
        offset = pd.DateOffset(days=n) if step[-1] == "d" else pd.DateOffset(months=n)
        day = start
        while day <= stop:
            days.append(day)
            day = day + offset
    return sorted(set(days))


def cmd_backtest(args: argparse.Namespace) -> int:
    from clvflow.mlops import jobs
    from clvflow.models import tables

    if (args.cutoff is None) == (not args.cutoffs):
        raise ValueError("give --cutoff DATE or --cutoffs DATE [DATE ...] (one of the two)")
    settings = _job_settings(args)
    cutoffs = parse_cutoffs(args.cutoffs) if args.cutoffs else None
    with open_outputs(args) as outputs:
        tx, report, settings, btyd_at = _read_job_data(
            args,
            settings,
            outputs,
            None if cutoffs else settings.cutoff,
            max(cutoffs) if cutoffs else settings.cutoff,
        )
        if cutoffs is None:
            outcome = jobs.backtest(tx, report, settings, btyd_at)
        else:
            multi = jobs.backtest_cutoffs(tx, report, settings, cutoffs, btyd_at)
        outputs.commit()
    if cutoffs is None:
        _print_backtest(outcome, settings.horizon_days)
        print(f"MLflow run {outcome.run_id}")
        return 0
    for outcome in multi.outcomes:
        _print_backtest(outcome, settings.horizon_days)
        print(f"MLflow child run {outcome.run_id}\n")
    if not multi.summary.empty:
        print(
            f"Across {len(multi.outcomes)} cutoffs: mean paired gain of the model over BG/NBD x "
            "Gamma-Gamma (95% interval from the per-cutoff bootstraps)"
        )
        print(tables.format_summary(multi.summary))
    print(f"MLflow parent run {multi.run_id}")
    return 0


def add_job_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``train`` and ``backtest`` subcommands."""
    p = sub.add_parser(
        "train",
        help="backtest, fit, log to MLflow, register and export a model",
        conflict_handler="resolve",
    )
    _add_job_args(
        p,
        cutoff_help="date YYYY-MM-DD; only transactions before it are used (default: the day "
        "after the last transaction)",
    )
    p.add_argument(
        "--export-dir", default=None, help="bundle folder (default models/<registered name>/)"
    )
    p.add_argument(
        "--register-as",
        default=None,
        help="registered model name (default clvflow-<data>-h<horizon>, e.g. "
        "clvflow-cdnow-h181: one registered model per data set and horizon)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "backtest",
        help="out-of-time backtest of what train would export, at one or more cutoffs, vs "
        "baselines (printed and logged to MLflow)",
        conflict_handler="resolve",
    )
    _add_job_args(
        p,
        cutoff_help="date YYYY-MM-DD: train with the transactions before it, judge on the "
        "horizon after it (or --cutoffs)",
    )
    p.add_argument(
        "--cutoffs",
        nargs="+",
        default=None,
        help="several cutoffs instead of --cutoff: dates and/or START:STOP:STEP ranges (STEP "
        "30d or 1m), e.g. 1997-10-01:1998-01-01:1m; one child run per cutoff and a summary",
    )
    p.set_defaults(func=cmd_backtest)


DESCRIPTION = (
    "Customer lifetime value from purchase logs: train a model judged against BG/NBD x "
    "Gamma-Gamma and tracked in MLflow (train, backtest), score every customer of a "
    "transactions file (score, trend) and write an HTML report (report). "
    "`clvflow COMMAND --help` lists a command's flags; `--transactions cdnow` uses the "
    "embedded CDNOW data."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clvflow", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("features", help="build the per-customer feature table as of a date")
    add_transaction_args(p)
    p.add_argument("--as-of", default=None, help="date YYYY-MM-DD (default: day after last row)")
    p.add_argument("--output", required=True, help="output .csv or .parquet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_engine_args(p)
    p.set_defaults(func=cmd_features)

    add_job_parsers(sub)
    from clvflow.cli import score

    score.add_commands(sub)
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
