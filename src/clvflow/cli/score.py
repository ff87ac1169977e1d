"""CLI commands that use a trained model: ``score``, ``trend`` and ``report``.

Every command declares its outputs in a :class:`clvflow.data.files.Outputs` before doing any work (never an
input, nothing existing replaced without ``--overwrite``), writes them into a staging folder and
moves them in together at the end, so a failed or killed run publishes nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from clvflow.core.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from clvflow.data.files import Outputs
    from clvflow.data.ingest import DataQualityReport
    from clvflow.mlops.bundle import ModelSource
    from clvflow.models.clv import ClvModel
    from clvflow.scoring.batch import ScoreResult

log = logging.getLogger("clvflow")


# ---- shared helpers -----------------------------------------------------------------------


def _economics_args(p: argparse.ArgumentParser, *, value: bool = True) -> None:
    """CAC flags, and with ``value`` the CLV flags (``report`` reads CLV already computed)."""
    g = p.add_argument_group("economics")
    if value:
        g.add_argument(
            "--margin", type=float, default=1.0, help="share of revenue kept, (0, 1] (default 1)"
        )
        g.add_argument(
            "--annual-discount-rate",
            type=float,
            default=0.0,
            help="yearly discount rate, e.g. 0.1 (default 0; lifetime CLV then uses 10%%)",
        )
    g.add_argument("--cac", type=float, default=None, help="acquisition cost per customer")
    g.add_argument(
        "--cac-file",
        default=None,
        help="CSV/Parquet with customer_id and either 'cac' or 'channel' (with --channel-cac)",
    )
    g.add_argument(
        "--channel-cac",
        default=None,
        help="CAC per channel for --cac-file's 'channel' column, e.g. 'email=12,paid_search=45'",
    )


def _read_table(path: str) -> pd.DataFrame:
    from clvflow.data.files import read_table

    return read_table(path)


def cac_from_args(args: argparse.Namespace) -> float | pd.Series | None:
    """CAC as one number, a per-customer Series (by customer_id), or None."""
    if args.cac is not None and args.cac_file:
        raise InputError("give --cac or --cac-file, not both")
    if args.cac is not None:
        if args.cac <= 0:
            raise InputError(f"--cac must be > 0, got {args.cac}")
        return float(args.cac)
    if not args.cac_file:
        if args.channel_cac:
            raise InputError("--channel-cac needs --cac-file with customer_id and channel columns")
        return None
    table = _read_table(args.cac_file)
    if "customer_id" not in table.columns:
        raise InputError(f"{args.cac_file}: needs a customer_id column; has {list(table.columns)}")
    table["customer_id"] = table["customer_id"].astype("str")
    if "cac" in table.columns:
        return table.set_index("customer_id")["cac"].astype("float64")
    if "channel" not in table.columns or not args.channel_cac:
        raise InputError(
            f"{args.cac_file}: needs a 'cac' column, or a 'channel' column together with "
            "--channel-cac 'channel=value,...'"
        )
    costs = {}
    for item in args.channel_cac.split(","):
        name, _, value = item.partition("=")
        try:
            costs[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"--channel-cac: {item!r} is not channel=number") from None
    unknown = sorted(set(table["channel"].astype("str")) - set(costs))
    if unknown:
        raise InputError(f"--channel-cac has no cost for channel(s) {unknown}")
    return table.set_index("customer_id")["channel"].astype("str").map(costs).astype("float64")


def _cac_for(scores: pd.DataFrame, cac: float | pd.Series | None) -> float | pd.Series | None:
    if isinstance(cac, pd.Series):
        missing = ~scores["customer_id"].isin(cac.index)
        if missing.any():
            first = scores.loc[missing, "customer_id"].head(5).tolist()
            raise InputError(
                f"--cac-file has no CAC for {int(missing.sum())} scored customer(s), e.g. {first}"
            )
        return cac.loc[~cac.index.duplicated()]
    return cac


def _report_folder(outputs: Outputs, path: str | None) -> Path | None:
    """Declare the ``--report`` folder: absent, empty, or (with --overwrite) a report clvflow
    wrote that holds nothing else (:func:`clvflow.scoring.report.check_report_dir`)."""
    from clvflow.scoring.report import check_report_dir

    return outputs.folder(path, "--report", check_report_dir)


def _currency(args: argparse.Namespace) -> str | None:
    """``--currency`` checked (a three-letter code) before any work; None without one."""
    from clvflow.scoring.report import check_currency

    try:
        return check_currency(args.currency)
    except ValueError as exc:
        raise InputError(f"--currency: {exc}") from None


def _currency_note(currency: str | None) -> None:
    """Say the unit of the money printed (the tables print plain numbers)."""
    print(f"money in {currency}" if currency else "money in the currency of the input amounts")


def _report_card(source: ModelSource) -> dict:
    """What the report's header and model section show about a loaded model: its card from the
    manifest plus name, version, training time and run (absent keys: not recorded)."""
    manifest = source.manifest
    card = dict(manifest.get("model_card") or {})
    card["model"] = source.label
    card["model_name"] = source.name or Path(str(source.uri)).name
    card["model_version"] = source.version or source.run_id or ""
    if manifest.get("created_at"):
        card["created_at"] = manifest["created_at"]
    return card


def _model_input(model: str) -> str | None:
    """The model as an input path to protect (a bundle folder; None for an MLflow URI)."""
    return None if ":/" in str(model) else str(model)


def _parse_what_if(items: list[str] | None) -> list[tuple[str, str, float]]:
    """'SEGMENT:POINTS' or 'value_tier=VIP:POINTS' -> (by, group, points)."""
    out = []
    for item in items or []:
        group, sep, points = item.rpartition(":")
        by, eq, name = group.partition("=")
        if not eq:
            by, name = "segment", group
        try:
            value = float(points)
        except ValueError:
            value = -1.0
        if not sep or not name or not 0 < value <= 100:
            raise InputError(
                f"--what-if {item!r}: use SEGMENT:POINTS (e.g. 'at risk:5') or "
                "value_tier=VIP:5, with 0 < POINTS <= 100"
            )
        out.append((by, name, value))
    return out


# ---- score ----------------------------------------------------------------------------------


def cmd_score(args: argparse.Namespace) -> int:
    if args.engine == "spark":
        return _score_spark(args)
    from clvflow.cli.args import open_outputs, read_transactions
    from clvflow.core.dates import to_day
    from clvflow.mlops.bundle import load_model
    from clvflow.scoring.batch import score_transactions
    from clvflow.scoring.economics import clv_cac_by_segment, what_if_churn_reduction
    from clvflow.scoring.report import build_report
    from clvflow.scoring.rounding import for_file
    from clvflow.scoring.value import check_economics

    with open_outputs(args, _model_input(args.model), args.cac_file) as outputs:
        out = outputs.required_file(args.output, "--output")
        drift_out = outputs.file(args.drift_output, "--drift-output")
        report_dir = _report_folder(outputs, args.report)
        check_economics(args.margin, args.annual_discount_rate)
        what_ifs = _parse_what_if(args.what_if)
        cac = cac_from_args(args)
        currency = _currency(args)
        as_of = to_day(args.as_of, "--as-of") if args.as_of else None

        model, source = load_model(args.model)
        log.info("model %s (horizon %d days)", source.label, model.horizon_days)
        scored_at = pd.Timestamp.now().floor("s")
        model_info = {
            "model_name": source.name or Path(str(source.uri)).name,
            "model_version": str(source.version or source.run_id or ""),
        }
        parts = _parts(args, report_dir)
        if parts > 1:
            result, write_scores = _score_in_parts(
                args,
                model,
                source,
                as_of,
                outputs,
                out,
                parts,
                model_info | {"scored_at": scored_at},
            )
        else:
            tx, _ = read_transactions(args, as_of=as_of, outputs=outputs)
            result = score_transactions(
                model,
                tx,
                as_of,
                model_name=model_info["model_name"],
                model_version=model_info["model_version"],
                scored_at=scored_at,
                **_scoring_options(args, source),
            )
            del tx

            def write_scores() -> None:
                outputs.write_table(for_file(result.scores, out), out)

        scores = result.scores
        cac = _cac_for(scores, cac)
        table = clv_cac_by_segment(scores, cac)
        _currency_note(currency)
        print(table.to_string(float_format="{:,.2f}".format))
        if result.clv_total_interval is not None:
            lo, hi = result.clv_total_interval
            print(
                f"total horizon CLV ({model.horizon_days} days): {scores['clv'].sum():,.2f}, "
                f"80% interval [{lo:,.2f}, {hi:,.2f}]"
            )
        for by, name, points in what_ifs:
            gain = what_if_churn_reduction(
                scores,
                name,
                points,
                by=by,
                margin=args.margin,
                annual_discount_rate=args.annual_discount_rate,
            )
            print(
                f"what-if: churn -{points:g} points in {by}={name!r} "
                f"({gain['customers_affected']:,} customers): horizon CLV "
                f"+{gain['clv_gain']:,.2f}, lifetime CLV +{gain['clv_lifetime_gain']:,.2f}"
            )
        if result.drift is not None and drift_out is not None:
            outputs.write_table(result.drift, drift_out)
        if report_dir is not None:
            build_report(
                scores,
                outputs.staged(report_dir),
                cac=cac,
                model_card=_report_card(source),
                currency=currency,
                clv_total_interval=result.clv_total_interval,
            )
        write_scores()
        outputs.commit()  # every output moves in together, after all were written
    if report_dir is not None:
        log.info("report -> %s", report_dir / "index.html")
    log.info("scores: %d customers as of %s -> %s", len(scores), result.as_of.date(), out)
    return 0


def _scoring_options(args: argparse.Namespace, source: ModelSource) -> dict[str, Any]:
    """The scoring settings the flags and the model's manifest give (one frame or parts)."""
    return {
        "margin": args.margin,
        "annual_discount_rate": args.annual_discount_rate,
        "reference_profile": source.manifest.get("reference_profile"),
        "psi_threshold": args.psi_threshold,
        "reference_as_of": source.manifest.get("cutoff"),
        "with_reasons": not args.no_reasons,
    }


def _parts(args: argparse.Namespace, report_dir: Path | None) -> int:
    """How many customer-hash parts to score the file in (1: one frame): ``--parts``, else
    as many as keep each part within half the available memory (one with ``--report``)."""
    from clvflow.data.datasets import is_embedded
    from clvflow.data.partition import available_memory, estimate_rows, parts_needed

    if args.parts is not None:
        if args.parts < 1:
            raise InputError(f"--parts must be 1 or more, got {args.parts}")
        if args.parts > 1 and report_dir is not None:
            raise InputError(
                "--report needs the whole scores table in memory, so it cannot be built in "
                "parts: score in one frame (--parts 1), or score without --report"
            )
        return int(args.parts)
    if report_dir is not None or is_embedded(args.transactions):
        return 1
    rows = estimate_rows(args.transactions)
    parts = parts_needed(rows, available_memory())
    if parts > 1:
        log.info(
            "about %s rows, more than half the available memory holds in one frame: scoring "
            "in %d parts by customer (--parts 1 scores in one frame)",
            f"{rows:,}",
            parts,
        )
    return parts


def _score_in_parts(
    args: argparse.Namespace,
    model: ClvModel,
    source: ModelSource,
    as_of: pd.Timestamp | None,
    outputs: Outputs,
    out: Path,
    parts: int,
    model_info: dict[str, object],
) -> tuple[ScoreResult, Callable[[], None]]:
    """Score the file in ``parts`` customer-hash parts (:mod:`clvflow.scoring.chunked`), the
    parts kept in this run's staging folder; the result (its scores: the population columns)
    and the function that writes the scores file."""
    import shutil

    from clvflow.cli.args import column_map, ingest_options, show_quality
    from clvflow.data.ingest import merge_reports
    from clvflow.data.partition import clean_part, partition_file
    from clvflow.scoring.chunked import score_parts, write_scores

    folder = outputs.staged(out).parent / "parts"
    columns = column_map(args)
    flags = ingest_options(args)
    drop_duplicates = flags.pop("drop_duplicates")
    split = partition_file(args.transactions, folder, parts, columns, **flags)

    def clean(path: Path) -> tuple[pd.DataFrame, DataQualityReport]:
        return clean_part(
            path, split, columns, as_of=as_of, drop_duplicates=drop_duplicates, **flags
        )

    result, paths, reports = score_parts(
        model,
        split,
        clean,
        folder,
        as_of,
        **_scoring_options(args, source),
    )
    report = merge_reports(
        reports, source=split.source, as_of=as_of, layout=split.layout, far=split.far
    )
    show_quality(report, args, outputs)

    def write() -> None:
        write_scores(result.scores, paths, outputs.staged(out), out, model_info)
        shutil.rmtree(folder)

    return result, write


#: score flags that need the whole scores table on the driver: not with --engine spark.
_DRIVER_ONLY_FLAGS = (
    ("report", "--report"),
    ("drift_output", "--drift-output"),
    ("what_if", "--what-if"),
    ("cac", "--cac"),
    ("cac_file", "--cac-file"),
    ("channel_cac", "--channel-cac"),
)


def _score_spark(args: argparse.Namespace) -> int:
    """``clvflow score --engine spark``: read, features, predictions and segments on Spark; the
    scores written as a folder of Parquet part files, staged beside the target and moved in
    whole at the end (:mod:`clvflow.spark.scoring`)."""
    from clvflow.cli.args import open_outputs, read_transactions_spark
    from clvflow.core.dates import to_day
    from clvflow.mlops.bundle import load_model
    from clvflow.scoring.value import check_economics
    from clvflow.spark.scoring import check_scores_dir, score_spark, write_scores_parquet

    given = [flag for attr, flag in _DRIVER_ONLY_FLAGS if getattr(args, attr, None)]
    if given:
        raise InputError(
            f"{', '.join(given)}: not supported with --engine spark yet (they need the whole "
            "scores table on one machine); score on Spark, then run `clvflow report --scores "
            "OUTPUT` where it fits, or use the default engine (--engine local)."
        )
    if "://" in args.output or not args.output.lower().endswith(".parquet"):
        raise InputError(
            f"--output {args.output}: with --engine spark the scores are a folder of Parquet "
            "files: give a local or shared-mount path ending in .parquet (e.g. "
            "out/scores.parquet, or /dbfs/... on Databricks), seen by the driver and every "
            "executor."
        )
    with open_outputs(args, _model_input(args.model)) as outputs:
        out = outputs.required_folder(args.output, "--output", check_scores_dir)
        check_economics(args.margin, args.annual_discount_rate)
        currency = _currency(args)
        as_of = to_day(args.as_of, "--as-of") if args.as_of else None
        model, source = load_model(args.model)
        log.info("model %s (horizon %d days), Spark engine", source.label, model.horizon_days)
        tx, _ = read_transactions_spark(args, as_of=as_of, outputs=outputs)
        result = score_spark(
            model,
            tx,
            as_of,
            model_name=source.name or Path(str(source.uri)).name,
            model_version=source.version or source.run_id or "",
            scored_at=pd.Timestamp.now().floor("s"),
            margin=args.margin,
            annual_discount_rate=args.annual_discount_rate,
            with_reasons=not args.no_reasons,
        )
        write_scores_parquet(result.scores, outputs.staged(out), result.customers)
        outputs.commit()  # the folder moves in whole, after every part file was written
    _currency_note(currency)
    line = f"total horizon CLV ({model.horizon_days} days): {result.clv_total:,.2f}"
    if result.clv_total_interval is not None:
        lo, hi = result.clv_total_interval
        line += f", 80% interval [{lo:,.2f}, {hi:,.2f}]"
    print(line)
    log.info("scores: %d customers as of %s -> %s", result.customers, result.as_of.date(), out)
    return 0


# ---- trend ----------------------------------------------------------------------------------


def cmd_trend(args: argparse.Namespace) -> int:
    from clvflow.cli.args import open_outputs, read_transactions
    from clvflow.core.dates import to_day
    from clvflow.mlops.bundle import load_model
    from clvflow.scoring.batch import score_transactions
    from clvflow.scoring.report import build_report, trend_figure, trend_table
    from clvflow.scoring.rounding import for_file

    with open_outputs(args, _model_input(args.model), args.cac_file) as outputs:
        out = outputs.required_file(args.output, "--output")
        plot = outputs.file(args.plot, "--plot", (".png",))
        report_dir = _report_folder(outputs, args.report)
        dates = sorted({to_day(d, "--as-of") for d in args.as_of})
        if len(dates) < 2:
            raise InputError("--as-of: give at least two dates for a trend")
        cac = cac_from_args(args)
        currency = _currency(args)
        model, source = load_model(args.model)
        tx, _ = read_transactions(args, outputs=outputs)
        season_window = model.season_window_start()
        if season_window is not None:
            log.info(
                "every date is scored at the model's one level (seasonally corrected for the "
                "window starting %s): the dates compare at that level, so no per-date season "
                "warning",
                season_window.date(),
            )
        tables = []
        for i, day in enumerate(dates, 1):
            log.info("trend %d/%d: scoring as of %s", i, len(dates), day.date())
            tables.append(
                score_transactions(
                    model,
                    tx,
                    day,
                    model_name=source.name or "",
                    model_version=source.version or source.run_id or "",
                    margin=args.margin,
                    annual_discount_rate=args.annual_discount_rate,
                    season_check=False,
                    # reasons only where the report shows them: its priority table, latest date
                    with_reasons=report_dir is not None and i == len(dates),
                ).scores
            )
        cacs = [_cac_for(t, cac) for t in tables]
        # (with a cac, no table's is None)
        trend = trend_table(
            tables, cast("list[float | pd.Series]", cacs) if cac is not None else None
        )
        _currency_note(currency)
        print(trend.to_string(float_format="{:,.3f}".format))
        if report_dir is not None:
            build_report(
                tables,
                outputs.staged(report_dir),
                cac=cacs[-1],
                model_card=_report_card(source),
                currency=currency,
            )
        if plot is not None:
            figure = trend_figure(trend, currency)
            outputs.write(plot, lambda tmp: figure.savefig(tmp, format="png", dpi=110))
        written = trend.reset_index() if trend.index.name else trend
        outputs.write_table(for_file(written, out), out)
        outputs.commit()
    return 0


# ---- report ---------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from clvflow.data.files import Outputs
    from clvflow.mlops.bundle import load_model
    from clvflow.scoring.report import build_report, check_report_dir

    inputs = (*args.scores, args.cac_file, _model_input(args.model) if args.model else None)
    with Outputs(overwrite=args.overwrite, inputs=inputs) as outputs:
        folder = outputs.required_folder(args.output, "--output", check_report_dir)
        currency = _currency(args)
        card = _report_card(load_model(args.model)[1]) if args.model else None
        tables = []
        for path in args.scores:
            t = _read_table(path)
            if "as_of" in t.columns:
                t["as_of"] = pd.to_datetime(t["as_of"])
            tables.append(t)
        cac = cac_from_args(args)
        cac = _cac_for(tables[-1], cac)
        build_report(
            tables if len(tables) > 1 else tables[0],
            outputs.staged(folder),
            cac=cac,
            top_n=args.top_n,
            model_card=card,
            currency=currency,
        )
        outputs.commit()
    page = folder / "index.html"
    log.info("report -> %s", page)
    print(page)
    return 0


def _currency_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--currency",
        default=None,
        metavar="CODE",
        help="currency code shown on every money figure of the report, e.g. GBP "
        "(default: none, plain numbers)",
    )


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``score``, ``trend`` and ``report`` on the main parser."""
    from clvflow.cli.args import add_engine_args, add_transaction_args
    from clvflow.scoring.drift import DEFAULT_PSI_THRESHOLD

    model_help = (
        "bundle folder (models/NAME), models:/NAME@ALIAS, models:/NAME/VERSION "
        "or runs:/RUN_ID/clv_model"
    )
    p = sub.add_parser("score", help="score every customer of a transactions file")
    p.add_argument("--model", required=True, help=model_help)
    add_transaction_args(p)
    p.add_argument("--as-of", default=None, help="scoring date (default: day after last row)")
    p.add_argument("--output", required=True, help="scores file (.csv or .parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--report", default=None, help="also write an HTML report into this folder")
    p.add_argument(
        "--what-if",
        action="append",
        help="CLV gain if churn fell by POINTS in a group: 'at risk:5' or 'value_tier=VIP:5'",
    )
    p.add_argument(
        "--psi-threshold",
        type=float,
        default=DEFAULT_PSI_THRESHOLD,
        help="warn when a feature's PSI vs training exceeds this",
    )
    p.add_argument("--drift-output", default=None, help="save the PSI table (.csv/.parquet)")
    p.add_argument(
        "--no-reasons",
        action="store_true",
        help="skip the reason columns (TreeSHAP, about 86 s per 100k customers: the slowest "
        "part of scoring; use it for millions of customers)",
    )
    p.add_argument(
        "--parts",
        type=int,
        default=None,
        metavar="K",
        help="score the file in K parts by customer (a hash of the id), each read, scored and "
        "written alone, for files too large for memory; same output as one frame. Default: "
        "as many as keep a part within half the available memory (1, one frame, for most "
        "files and with --report); a progress line per part",
    )
    _economics_args(p)
    _currency_arg(p)
    add_engine_args(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("trend", help="score at several as-of dates and tabulate CLV and risk")
    p.add_argument("--model", required=True, help=model_help)
    add_transaction_args(p)
    p.add_argument("--as-of", nargs="+", required=True, help="two or more dates YYYY-MM-DD")
    p.add_argument("--output", required=True, help="trend table (.csv or .parquet)")
    p.add_argument("--plot", default=None, help="trend plot PNG")
    p.add_argument("--report", default=None, help="HTML report folder with trends")
    p.add_argument("--overwrite", action="store_true")
    _economics_args(p)
    _currency_arg(p)
    p.set_defaults(func=cmd_trend)

    p = sub.add_parser("report", help="HTML report from one or more scores files")
    p.add_argument("--scores", nargs="+", required=True, help="scores file(s) from clvflow score")
    p.add_argument("--output", required=True, help="report folder")
    p.add_argument("--top-n", type=int, default=25, help="rows in the priorities table")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--model",
        default=None,
        help="the model that scored the files (bundle folder or MLflow URI): its name, version, "
        "training date and backtest go in the report's header",
    )
    _economics_args(p, value=False)  # CLV (margin, discount) was set by `clvflow score`
    _currency_arg(p)
    p.set_defaults(func=cmd_report)
