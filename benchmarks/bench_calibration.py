"""Calibration of the uncertainty and BTYD columns (``make bench-calibration``).

Out-of-time backtests (docs/evaluation.md: the model ``train`` would export at the cutoff, data
before it only) on CDNOW and on the simulator (:func:`clvflow.data.simulate.simulate`, whose windows
are known), judged on ``[cutoff, cutoff + H)``:

1. Interval coverage: the share of customers whose actual spend lies in their ``[spend_p10,
   spend_p90]`` next to its nominal value (the model's own predicted content, above 80% because
   spend is 0 with probability ``1 - p_active``); the randomised-PIT coverage of the central 80%
   (nominal exactly 80%); the same interval of spend-if-active among the active; the interval
   on total spend and whether it holds the actual total.
2. Purchase counts and timing: ``expected_purchases`` and BG/NBD's ``bg_expected_purchases``
   against the purchase days in the window (per decile of each prediction: mean predicted vs
   mean actual), and the next-purchase date's median absolute error in days among the
   customers with a date who bought in the window.

Run as ``python -m benchmarks.bench_calibration [--quick]`` (about 5 minutes on 2 shared cores).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvflow.data.ingest import load_cdnow
from clvflow.data.simulate import simulate
from clvflow.evaluation.metrics import decile_table
from clvflow.features.build import build_features
from clvflow.models.btyd import btyd_predictions
from clvflow.models.purchases import window_purchases
from clvflow.models.training import backtest
from clvflow.models.uncertainty import SpendCalibration, interval_coverage, total_interval
from clvflow.scoring.scores import score_features

#: (data, cutoff, horizon) of the CDNOW backtests: the reference backtest of docs/evaluation.md
#: (no internal backtest: calibrated in-sample) and the latest 90-day cutoff (held out).
CDNOW_CASES = (("1998-01-01", 181), ("1998-04-01", 90))
#: The simulator's seeds, customers and window (two years of history, the default story).
SIM_SEEDS = (0, 1, 2)
SIM_CUSTOMERS, SIM_START, SIM_CUTOFF, SIM_HORIZON = 10_000, "2022-01-01", "2024-01-01", 180


@dataclass
class Case:
    """One backtest's scores merged with what happened in its window."""

    data: str
    cutoff: str
    horizon_days: int
    calibration: SpendCalibration
    frame: (
        pd.DataFrame
    )  # scores + active, spend, window_purchase_days, first_purchase_day, bg_count
    total: tuple[float, float]


def run_case(data: str, tx: pd.DataFrame, cutoff: str, horizon_days: int) -> Case:
    """Backtest at ``cutoff`` and score its customers with every column."""
    result = backtest(tx, cutoff, horizon_days)
    model = result.model
    day = pd.Timestamp(cutoff)
    features = build_features(tx.loc[(tx["timestamp"] < day).to_numpy()], day)
    scores = score_features(model, features, day)
    if model.btyd_ is None:
        scores["bg_count"] = np.nan
    else:
        btyd = btyd_predictions(model.btyd_, features, horizon_days)
        scores["bg_count"] = btyd["bg_expected_purchases"].to_numpy()
    frame = scores.merge(result.actuals, on="customer_id", validate="one_to_one").merge(
        window_purchases(tx, day, horizon_days), on="customer_id", validate="one_to_one"
    )
    cal = SpendCalibration.from_dict(model.spend_calibration_)
    assert cal is not None, "the backtest's model has no calibration"
    total = total_interval(
        cal, frame["p_active"].to_numpy(), frame["expected_spend_if_active"].to_numpy()
    )
    return Case(data, cutoff, horizon_days, cal, frame, total)


def coverage_of(case: Case) -> dict:
    """:func:`clvflow.models.uncertainty.interval_coverage` on the case's customers."""
    f = case.frame
    return interval_coverage(
        case.calibration,
        f["p_active"].to_numpy(),
        f["expected_spend_if_active"].to_numpy(),
        f["spend"].to_numpy(),
        f["active"].to_numpy(),
    )


def format_coverage(cases: list[tuple[Case, dict]]) -> str:
    """The interval coverage table (markdown)."""
    lines = [
        "| data | cutoff | H | calibrated on | customers | in [p10, p90]: empirical (nominal) "
        "| PIT central 80% | spend if active in [p10, p90] (active) | total spend [p10, p90] "
        "| actual total | total covered |",
        "|" + "---|" * 11,
    ]
    for case, c in cases:
        lo, hi = case.total
        actual = float(case.frame["spend"].sum())
        lines.append(
            f"| {case.data} | {case.cutoff} | {case.horizon_days} | {case.calibration.source} | "
            f"{int(c['n']):,} | {c['covered']:.1%} ({c['nominal']:.1%}) | {c['pit']:.1%} | "
            f"{c['active_covered']:.1%} ({int(c['active_n']):,}) | [{lo:,.0f}, {hi:,.0f}] | "
            f"{actual:,.0f} | {'yes' if lo <= actual <= hi else 'no'} |"
        )
    return "\n".join(lines)


def purchase_summary(case: Case) -> dict:
    """Purchase-count calibration and next-purchase error for one case."""
    f = case.frame
    actual = f["window_purchase_days"].to_numpy("float64")
    out: dict = {"actual": float(actual.mean())}
    for name, col in (("model", "expected_purchases"), ("bgnbd", "bg_count")):
        pred = f[col].to_numpy("float64")
        if np.isnan(pred).any():
            out[name] = None
            continue
        table = decile_table(actual, pred)
        out[name] = {"mean": float(pred.mean()), "mape": table.attrs["mape"], "table": table}
    dated = f["next_purchase_date"].notna().to_numpy()
    bought = f["first_purchase_day"].notna().to_numpy()
    predicted_day = (f["next_purchase_date"] - pd.Timestamp(case.cutoff)).dt.days.to_numpy()
    err = np.abs(predicted_day - f["first_purchase_day"].to_numpy())[dated & bought]
    out.update(
        buyers=int(bought.sum()),
        dated=int(dated.sum()),
        dated_buyers=int((dated & bought).sum()),
        median_abs_days=float(np.median(err)) if err.size else float("nan"),
        dated_bought=float(bought[dated].mean()) if dated.any() else float("nan"),
    )
    return out


def format_purchases(cases: list[Case]) -> str:
    """The purchase-count / next-purchase table and the per-decile tables (markdown)."""
    summaries = [purchase_summary(c) for c in cases]
    lines = [
        "| data | cutoff | H | actual purchase days / customer | expected_purchases (decile "
        "MAPE) | BG/NBD (decile MAPE) | buyers | with a date (of them buyers) | next purchase: "
        "median abs error, days |",
        "|" + "---|" * 9,
    ]
    for case, s in zip(cases, summaries, strict=True):
        m, b = s["model"], s["bgnbd"]
        bg = "–" if b is None else f"{b['mean']:.3f} ({b['mape']:.1%})"
        lines.append(
            f"| {case.data} | {case.cutoff} | {case.horizon_days} | {s['actual']:.3f} | "
            f"{m['mean']:.3f} ({m['mape']:.1%}) | {bg} | {s['buyers']:,} | {s['dated']:,} "
            f"({s['dated_bought']:.0%}) | {s['median_abs_days']:.0f} ({s['dated_buyers']:,} "
            "buyers) |"
        )
    for case, s in zip(cases, summaries, strict=True):
        m, b = s["model"], s["bgnbd"]
        lines += [
            "",
            f"Purchase days per decile, {case.data} {case.cutoff} H {case.horizon_days} "
            "(each prediction's own deciles, 1 = highest):",
            "",
            "| decile | expected_purchases | actual | BG/NBD | actual |",
            "|---|---|---|---|---|",
        ]
        for d in m["table"].index:
            row = m["table"].loc[d]
            bg = (
                "– | –"
                if b is None
                else (
                    f"{b['table'].loc[d, 'mean_pred']:.3f} | {b['table'].loc[d, 'mean_actual']:.3f}"
                )
            )
            lines.append(f"| {d} | {row['mean_pred']:.3f} | {row['mean_actual']:.3f} | {bg} |")
    return "\n".join(lines)


def cases(quick: bool) -> list[Case]:
    """Every backtest of the benchmark (``quick``: one small simulated case)."""
    out = []
    if quick:
        sim = simulate(3000, start="2022-06-01", as_of="2023-07-01", horizon_days=60, seed=5)
        return [run_case("simulator (quick)", sim.transactions, "2023-07-01", 60)]
    cdnow = load_cdnow()
    for cutoff, h in CDNOW_CASES:
        out.append(run_case("CDNOW", cdnow, cutoff, h))
        print(f"  done: CDNOW {cutoff} H {h}", file=sys.stderr, flush=True)
    for seed in SIM_SEEDS:
        sim = simulate(
            SIM_CUSTOMERS, start=SIM_START, as_of=SIM_CUTOFF, horizon_days=SIM_HORIZON, seed=seed
        )
        out.append(run_case(f"simulator seed {seed}", sim.transactions, SIM_CUTOFF, SIM_HORIZON))
        print(f"  done: simulator seed {seed}", file=sys.stderr, flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_calibration", description=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="one small simulated case")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    done = cases(args.quick)
    print("Interval coverage (10th-90th percentile per customer and of the total)")
    print(format_coverage([(c, coverage_of(c)) for c in done]))
    print()
    print("Purchase counts and next purchase date")
    print(format_purchases(done))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
