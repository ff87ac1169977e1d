"""Accuracy across seasons (``make bench-seasons``): does the model's level hold when the
predicted window falls in another season than the training windows?

Out-of-time backtests (docs/evaluation.md) of the model with and without the same-season level
correction (``ModelParams.seasonal_level``), next to BG/NBD x Gamma-Gamma and, on simulated
data, the oracle that knows each customer's latent state:

- a simulated log with annual seasonality (purchase intensity x 1 +/- 0.4, peak mid-December),
  two years of history before each of four cutoffs, one per quarter;
- the same log without seasonality at two cutoffs (the correction must not hurt there);
- CDNOW at 1998-04-01 (the one cutoff with data 52 weeks earlier), or the latest cutoff whose
  window fits in the data for longer horizons.

Run as ``python -m benchmarks.bench_seasons [--customers 20000] [--horizon-days 90]``; it prints one
table (about 7 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import pandas as pd

from clvflow.data.ingest import load_cdnow
from clvflow.data.simulate import simulate
from clvflow.evaluation.metrics import evaluate_predictions
from clvflow.models.clv import ModelParams
from clvflow.models.tables import TABLE_METRICS, format_evaluation_table
from clvflow.models.training import BASELINE_PREFIXES, backtest

SIM_START, SIM_CUTOFFS = "2021-01-01", ("2023-01-01", "2023-04-01", "2023-07-01", "2023-10-01")
SEASONAL_AMPLITUDE = 0.4


def _cells(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    return {col: metrics[f"{prefix}{name}"] for col, name in TABLE_METRICS.items()}


def compare(
    tx: pd.DataFrame, cutoff: str, horizon_days: int, data: str, truth: pd.DataFrame | None = None
) -> list[dict]:
    """Rows (data, cutoff, method, metrics) for one backtest origin."""
    plain = backtest(tx, cutoff, horizon_days, params=ModelParams(seasonal_level=False))
    seasonal = backtest(tx, cutoff, horizon_days)
    season = seasonal.model.level_.get("season")
    rows = [
        {"method": "BG/NBD × Gamma-Gamma", **_cells(plain.metrics, BASELINE_PREFIXES["bgnbd"])},
        {"method": "model, BG/NBD level", **_cells(plain.metrics)},
        {
            "method": "model, seasonal level"
            + (f" (ratio {season['spend_ratio']:.2f})" if season else " (no year-ago data)"),
            **_cells(seasonal.metrics),
        },
    ]
    if truth is not None:
        oracle = truth.rename(columns={"p_active_oracle": "p_active"})
        metrics = evaluate_predictions(
            plain.actuals, oracle[["customer_id", "p_active", "expected_spend"]]
        )
        rows.append({"method": "oracle (latent truth)", **_cells(metrics)})
    for row in rows:
        row.update(data=data, cutoff=cutoff)
    return rows


def run(customers: int, horizon_days: int) -> pd.DataFrame:
    rows: list[dict] = []
    cases = [(SEASONAL_AMPLITUDE, c) for c in SIM_CUTOFFS] + [(0.0, c) for c in SIM_CUTOFFS[1::2]]
    for amplitude, cutoff in cases:
        sim = simulate(
            customers,
            start=SIM_START,
            as_of=cutoff,
            horizon_days=horizon_days,
            seed=11,
            seasonal_amplitude=amplitude,
        )
        data = f"simulated, season ±{amplitude:.0%}" if amplitude else "simulated, no season"
        rows += compare(sim.transactions, cutoff, horizon_days, data, sim.truth)
        print(f"  done: {data}, {cutoff}", file=sys.stderr, flush=True)
    # CDNOW ends 1998-06-30: the latest cutoff whose window fits, at most 1998-04-01.
    cdnow_end = pd.Timestamp("1998-07-01") - pd.Timedelta(days=horizon_days)
    cdnow_cutoff = min(pd.Timestamp("1998-04-01"), cdnow_end).date().isoformat()
    rows += compare(load_cdnow(), cdnow_cutoff, horizon_days, "CDNOW")
    return pd.DataFrame(rows)[["data", "cutoff", "method", *TABLE_METRICS]]


def format_table(table: pd.DataFrame) -> str:
    return format_evaluation_table(table.set_index("data"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_seasons", description=__doc__)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--horizon-days", type=int, default=90)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    table = run(args.customers, args.horizon_days)
    print(
        f"Backtests, horizon {args.horizon_days} days; simulated logs of {args.customers:,} customers"
    )
    print(format_table(table))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
