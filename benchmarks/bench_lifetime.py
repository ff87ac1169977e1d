"""Lifetime-value backtest (``make bench-lifetime``): is the long run behind ``clv_lifetime``
right where it can be checked, and does lifetime value hold across horizons?

For each data set and each window length h (30, 90, 181 days), a model is fitted with the
defaults on the history before the cutoff for horizon h, and its predictions for the h days after
the cutoff are compared with what the customers spent there (docs/evaluation.md: net spend per
customer, floored at 0):

- ``model``: the model's own window prediction (expected_spend of the H = h model);
- ``long run``: the long-run model behind clv_lifetime over the same h days: MBG/NBD's expected
  purchase days x the model's spend per purchase (:mod:`clvflow.models.lifetime`), undiscounted;
- ``BG/NBD``: BG/NBD x Gamma-Gamma fitted on the same history.

Each cell is the predicted total with its bias against the actual total, and the Spearman rank
correlation with actual spend per customer. ``lifetime`` is the total clv_lifetime of the H = h
model (margin 1, 10% a year), ``vs H max`` the median per-customer difference from the longest
horizon's model. On simulated data (a BG/NBD x lognormal-spend log, :func:`clvflow.data.simulate.simulate`)
the truth of the long run is known: ``true lifetime`` is each customer's expected discounted
value given the latent state (alive, rate lambda, dropout p, mean order value m: alive x lambda
/ (delta + p lambda) x m x the simulator's net share of an order), with its rank correlation.

Data: CDNOW, cutoff 1998-01-01 (windows up to 1998-06-30, the end of the data) and a simulated
log of ``--customers`` customers (two years of history). Run as ``python -m
benchmarks.bench_lifetime [--customers 20000]``; it prints one table (about 8 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from clvflow.data.ingest import load_cdnow
from clvflow.data.simulate import simulate
from clvflow.evaluation.metrics import spend_metrics
from clvflow.features.labels import build_labels
from clvflow.models.btyd import DAYS_PER_WEEK, btyd_predictions
from clvflow.models.clv import ModelParams
from clvflow.models.lifetime import (
    DEFAULT_LIFETIME_DISCOUNT_RATE,
    mbgnbd_expected_purchases,
    spend_per_purchase,
)
from clvflow.models.training import fit_model
from clvflow.scoring.scores import purchases_if_active, score_features
from clvflow.scoring.value import DAYS_PER_YEAR

HORIZONS = (30, 90, 181)
CDNOW_CUTOFF = "1998-01-01"
SIM_START, SIM_CUTOFF, SIM_SEED = "2021-01-01", "2023-01-01", 5
METHODS = ("model", "long run", "BG/NBD")


def true_lifetime(truth: pd.DataFrame, window_days: int, annual_discount_rate: float) -> np.ndarray:
    """Each simulated customer's expected discounted lifetime value given the latent state
    (``truth`` of a simulation whose label window has ``window_days`` days)."""
    delta = np.log1p(annual_discount_rate) / DAYS_PER_YEAR  # per day, like the rates
    rate = truth["purchase_rate_per_day"].to_numpy()
    dropout = truth["dropout_prob"].to_numpy()
    order = truth["mean_order_value"].to_numpy()
    alive = truth["alive_at_as_of"].to_numpy(dtype=bool)
    # the simulator's expected share of an order kept after returns, the same for everyone:
    # its expected window spend / (expected window purchases x mean order value)
    purchases = -np.expm1(-rate * dropout * window_days) / dropout
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = truth["expected_spend"].to_numpy() / (purchases * order)
    share = float(np.median(shares[alive]))
    return np.where(alive, rate / (delta + dropout * rate), 0.0) * order * share


def horizon_rows(
    tx: pd.DataFrame,
    cutoff: str,
    horizons: Sequence[int],
    data: str,
    params: ModelParams | None = None,
    truth: pd.DataFrame | None = None,
    truth_window_days: int = 0,
) -> list[dict]:
    """One row per window length: totals, biases and rank correlations of each method, the
    lifetime total of that horizon's model and, with ``truth`` (of a simulation whose window
    has ``truth_window_days`` days), the true lifetime value."""
    rows, lifetimes = [], {}
    day = pd.Timestamp(cutoff)
    for h in horizons:
        model, features = fit_model(tx, day, h, params=params)
        scores = score_features(model, features, day)
        labels = build_labels(tx, day, h).set_index("customer_id")["spend"]
        actual = labels.reindex(scores["customer_id"]).fillna(0.0).to_numpy()
        assert model.long_run_ is not None and model.btyd_ is not None  # (fitted on real data)
        buyers = features["n_purchase_days"].to_numpy() > 0
        per_purchase = spend_per_purchase(
            scores["expected_spend_if_active"].to_numpy(), purchases_if_active(model, features)
        )
        long_run = np.zeros(len(features))
        sub = features.loc[buyers]
        long_run[buyers] = per_purchase[buyers] * mbgnbd_expected_purchases(
            model.long_run_,
            sub["frequency"].to_numpy("float64"),
            sub["t_x_days"].to_numpy("float64") / DAYS_PER_WEEK,
            sub["T_days"].to_numpy("float64") / DAYS_PER_WEEK,
            h / DAYS_PER_WEEK,
        )
        predictions = {
            "model": scores["expected_spend"].to_numpy(),
            "long run": long_run,
            "BG/NBD": btyd_predictions(model.btyd_, features, h)["bg_expected_spend"].to_numpy(),
        }
        row: dict = {"data": data, "window_days": h, "actual": float(actual.sum())}
        for name, pred in predictions.items():
            m = spend_metrics(actual, pred)
            row[name] = float(pred.sum())
            row[f"{name} bias"] = m["agg_bias"]
            row[f"{name} rho"] = m["spearman"]
        lifetime = scores.set_index("customer_id")["clv_lifetime"]
        lifetimes[h] = lifetime
        row["lifetime"] = float(lifetime.sum())
        if truth is not None:
            value = true_lifetime(truth, truth_window_days, DEFAULT_LIFETIME_DISCOUNT_RATE)
            true = pd.Series(value, index=truth["customer_id"]).reindex(lifetime.index)
            row["true lifetime"] = float(true.sum())
            row["lifetime rho"] = float(lifetime.corr(true, method="spearman"))
        rows.append(row)
    longest = lifetimes[max(horizons)]
    for row in rows:
        other = lifetimes[row["window_days"]].reindex(longest.index)
        positive = longest > 0
        row["vs H max"] = float((other[positive] / longest[positive] - 1).abs().median())
    return rows


def run(customers: int, horizons: Sequence[int] = HORIZONS) -> pd.DataFrame:
    rows = horizon_rows(load_cdnow(), CDNOW_CUTOFF, horizons, "CDNOW")
    print("  done: CDNOW", file=sys.stderr, flush=True)
    sim = simulate(
        customers,
        start=SIM_START,
        as_of=SIM_CUTOFF,
        horizon_days=max(horizons),
        seed=SIM_SEED,
    )
    rows += horizon_rows(
        sim.transactions,
        SIM_CUTOFF,
        horizons,
        "simulated",
        truth=sim.truth,
        truth_window_days=sim.horizon_days,
    )
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """Markdown: money as whole numbers, biases as signed percentages, correlations to 3."""

    def money(v: float) -> str:
        return f"{v:,.0f}"

    head = ["data", "window (days)", "actual"]
    head += [f"{m} (bias, ρ)" for m in METHODS]
    head += ["lifetime (10%/yr)", "vs H max"]
    sim = "true lifetime" in table
    if sim:
        head += ["true lifetime", "lifetime ρ"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in table.iterrows():
        cells = [str(r["data"]), str(int(r["window_days"])), money(r["actual"])]
        for m in METHODS:
            cells.append(f"{money(r[m])} ({r[f'{m} bias']:+.0%}, {r[f'{m} rho']:.3f})")
        cells += [money(r["lifetime"]), f"{r['vs H max']:.1%}"]
        if sim:
            has = pd.notna(r.get("true lifetime"))
            cells += [money(r["true lifetime"]), f"{r['lifetime rho']:.3f}"] if has else ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_lifetime", description=__doc__
    )
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    table = run(args.customers)
    print(
        f"Lifetime-value backtest: CDNOW from {CDNOW_CUTOFF}, a simulated log of "
        f"{args.customers:,} customers from {SIM_CUTOFF}; lifetime at "
        f"{DEFAULT_LIFETIME_DISCOUNT_RATE:.0%} a year, margin 1"
    )
    print(format_table(table))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
