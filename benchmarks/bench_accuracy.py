"""Accuracy across cutoffs, horizons and data sets (``make bench-accuracy``): the multi-cutoff
backtest of what ``clvflow train`` exports (each cutoff: the internal backtest chooses the method,
the refit is judged on the window after the cutoff), against BG/NBD x Gamma-Gamma, paired
bootstrap over customers (500 resamples).

- CDNOW: quarterly cutoffs from 1997-04-01 wherever the history and the data allow, horizons 30,
  90 and 181 days.
- A simulated retail log (:func:`clvflow.data.simulate.retail_like`, 18 months: wholesale buyers,
  same-day cancellations, Q4 peak, rows without id) and the plain simulator (BG/NBD world, ground
  truth known): quarterly cutoffs, horizon 90 days.

The bar: nowhere significantly below BG/NBD on gini or ROC AUC, i.e. the
upper end of the paired interval of the gain is >= 0 at every cutoff. Run as
``python -m benchmarks.bench_accuracy [--only cdnow|retail|sim]``; it prints one table per data set
and horizon and a summary (about 30 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from clvflow.data.ingest import load_transactions
from clvflow.data.simulate import retail_like, simulate
from clvflow.mlops.jobs import MultiBacktest, backtest_cutoffs
from clvflow.mlops.settings import JobOutcome, JobSettings
from clvflow.models.tables import format_summary

CDNOW_END = pd.Timestamp("1998-07-01")
CDNOW_CUTOFFS = tuple(pd.date_range("1997-04-01", "1998-04-01", freq="QS"))
#: ``--monthly``: every monthly cutoff of the robustness grid (make bench-robustness).
CDNOW_MONTHLY = tuple(pd.date_range("1997-04-01", "1998-06-01", freq="MS"))
RETAIL: dict[str, Any] = {"start": "2010-12-01", "as_of": "2012-03-01", "horizon_days": 90}
RETAIL_CUTOFFS = ("2011-06-01", "2011-09-01", "2011-12-01", "2012-03-01")
SIM: dict[str, Any] = {"start": "2021-01-01", "as_of": "2023-10-01", "horizon_days": 90}
SIM_CUTOFFS = ("2023-01-01", "2023-04-01", "2023-07-01", "2023-10-01")


def _gain(outcome: JobOutcome, metric: str) -> tuple[float, float, float]:
    iv = outcome.intervals
    assert iv is not None  # (a backtest's outcome)
    row = iv[(iv["method"] == "model - bgnbd") & (iv["metric"] == metric)]
    if row.empty:
        return float("nan"), float("nan"), float("nan")
    r = row.iloc[0]
    return float(r.estimate), float(r.low), float(r.high)


def format_rows(data: str, horizon_days: int, multi: MultiBacktest) -> str:
    lines = [
        f"\n{data}, H = {horizon_days} days",
        "| cutoff | exported | gini model | gini BG/NBD | gini gain [95% CI] | ROC AUC gain "
        "[95% CI] | top-decile gain [95% CI] | agg_bias | significantly worse? |",
        "|" + "---|" * 9,
    ]
    for o in multi.outcomes:
        t = o.table
        model = t.loc["model"]
        g, a, d = (
            _gain(o, m) for m in ("spend_gini_norm", "churn_roc_auc", "spend_top_decile_capture")
        )
        worse = [n for n, (_, _, high) in (("gini", g), ("ROC AUC", a)) if high < 0]
        selection = o.selection
        assert selection is not None  # (a backtest always selects)
        method = selection.blend.describe().split(" (")[0]
        if selection.blend.method == "blend":
            b = selection.blend
            method = f"blend {b.active_weight:.1f}/{b.spend_weight:.1f}"
        if selection.backtest is None:
            method += " (unjudged)"
        lines.append(
            f"| {o.cutoff.date()} | {method} | {model['gini_norm']:.3f} | "
            f"{t['gini_norm'].get('BG/NBD × Gamma-Gamma', float('nan')):.3f} | "
            f"{g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}] | {a[0]:+.3f} [{a[1]:+.3f}, {a[2]:+.3f}] | "
            f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] | {model['agg_bias']:+.1%} | "
            f"{', '.join(worse) or 'no'} |"
        )
    lines.append("")
    lines.append(format_summary(multi.summary))
    return "\n".join(lines)


def _settings(data: str, horizon_days: int) -> JobSettings:
    return JobSettings(horizon_days=horizon_days, data_name=data, experiment_name="accuracy")


def cdnow_cutoffs(horizon_days: int, monthly: bool = False) -> list[pd.Timestamp]:
    first = pd.Timestamp("1997-01-01")
    return [
        c
        for c in (CDNOW_MONTHLY if monthly else CDNOW_CUTOFFS)
        if (c - first).days > horizon_days + 30 and c + pd.Timedelta(days=horizon_days) <= CDNOW_END
    ]


def run(only: str | None, directory: Path, monthly: bool = False) -> list[str]:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    out = []
    if only in (None, "cdnow"):
        tx, report = load_transactions("cdnow")
        for h in (30, 90, 181):
            cutoffs = cdnow_cutoffs(h, monthly)
            multi = backtest_cutoffs(tx, report, _settings("cdnow", h), cutoffs)
            out.append(format_rows("CDNOW", h, multi))
            print(out[-1], flush=True)
    sims = {
        "retail": (
            "simulated retail log (18 months)",
            retail_like(4000, seed=1, **RETAIL),
            RETAIL_CUTOFFS,
        ),
        "sim": ("simulator (BG/NBD world)", simulate(20000, seed=11, **SIM), SIM_CUTOFFS),
    }
    for key, (label, sim, sim_cutoffs) in sims.items():
        if only not in (None, key):
            continue
        path = directory / f"{key}.parquet"
        sim.transactions.to_parquet(path)
        tx, report = load_transactions(str(path))
        multi = backtest_cutoffs(tx, report, _settings(key, 90), list(sim_cutoffs))
        out.append(format_rows(label, 90, multi))
        print(out[-1], flush=True)
    return out


#: Minimum history of a training snapshot compared by ``--snapshot-rule`` (days).
MIN_HISTORY_CHOICES = (1, 15, 31, 61)
#: (data, cutoff, horizon): cases where the earliest snapshots have little history.
SNAPSHOT_RULE_CASES = (
    ("cdnow", "1997-07-01", 90),
    ("cdnow", "1997-10-01", 90),
    ("cdnow", "1997-05-01", 30),
    ("sim", "2021-07-01", 90),
    ("sim", "2021-05-01", 30),
)


def snapshot_rule_study() -> str:
    """Backtests of the boosters alone with each minimum snapshot history: what the rule costs
    or buys where the earliest snapshots are young (a snapshot left out vs kept)."""
    from clvflow.features.snapshots import SnapshotRule
    from clvflow.models.training import SnapshotSettings, backtest

    data = {
        "cdnow": load_transactions("cdnow")[0],
        "sim": simulate(
            20000, seed=11, start="2021-01-01", as_of="2021-10-01", horizon_days=90
        ).transactions,
    }
    lines = [
        "| data | cutoff | H | min history (days) | snapshots used | gini | BG/NBD gini | "
        "ROC AUC | BG/NBD ROC AUC | agg_bias |",
        "|" + "---|" * 10,
    ]
    for name, cutoff, h in SNAPSHOT_RULE_CASES:
        for days in MIN_HISTORY_CHOICES:
            snaps = SnapshotSettings(rule=SnapshotRule(min_history_days=days))
            try:
                r = backtest(data[name], cutoff, h, snapshots=snaps, method="boosters")
            except ValueError as err:
                lines.append(f"| {name} | {cutoff} | {h} | {days} | refused: {err!s:.60} |||||| ")
                continue
            m, used = r.metrics, sum(c.used for c in r.snapshots)
            lines.append(
                f"| {name} | {cutoff} | {h} | {days} | {used} | {m['spend_gini_norm']:.3f} | "
                f"{m['baseline_bgnbd_spend_gini_norm']:.3f} | {m['churn_roc_auc']:.3f} | "
                f"{m['baseline_bgnbd_churn_roc_auc']:.3f} | {m['spend_agg_bias']:+.1%} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("cdnow", "retail", "sim"), default=None)
    parser.add_argument(
        "--monthly", action="store_true", help="CDNOW at every monthly cutoff, not quarterly"
    )
    parser.add_argument(
        "--snapshot-rule",
        action="store_true",
        help="instead: backtests of the boosters with minimum snapshot histories "
        f"{MIN_HISTORY_CHOICES} days",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    start = time.perf_counter()
    if args.snapshot_rule:
        print(snapshot_rule_study())
        print(f"\ntotal {time.perf_counter() - start:.0f} s")
        return 0
    with tempfile.TemporaryDirectory(prefix="clvflow-accuracy-") as tmp:
        run(args.only, Path(tmp), args.monthly)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
