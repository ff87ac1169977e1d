"""Robustness grid (``make bench-robustness``): ``clvflow train`` with default settings on every
ordinary setting of CDNOW and of simulated retail logs, each in its own process, as a user runs it.

- CDNOW: every monthly cutoff 1997-04-01 .. 1998-07-01 and horizons of 30, 90 and 181 days.
- Simulated online-retail logs (:func:`clvflow.data.simulate.retail_like`: wholesale buyers with a
  heavy-tailed spend, same-day cancellations, a Q4 peak, a fifth of the rows without a customer
  id) with 3, 6, 9 and 12 months of history before the cutoff, horizons 30, 90 and 181 days.

The rule checked: training succeeds (exit 0) whenever the history before the cutoff spans more
than ``horizon + 30`` days, and otherwise exits 2 with a message; never a traceback. Each row says
what was exported and how it was registered (a model whose history allows no internal backtest is
registered as candidate only).

Run as ``python -m benchmarks.bench_robustness [--quick]``; it prints one table (about 40 minutes
on 2 cores; ``--quick`` runs a handful of cases with small boosters).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

CDNOW_FIRST_DAY = pd.Timestamp("1997-01-01")
CDNOW_CUTOFFS = tuple(pd.date_range("1997-04-01", "1998-07-01", freq="MS"))
HORIZONS = (30, 90, 181)
SIM_START = pd.Timestamp("2010-12-01")
SIM_MONTHS = (3, 6, 9, 12)
SIM_CUSTOMERS = 4000
#: A few cases on both sides of the rule, for the test suite (small boosters).
QUICK = (("cdnow", "1997-05-01", 90), ("cdnow", "1997-05-01", 30), ("retail 3m", None, 30))
QUICK_ARGS = ("--n-estimators", "20", "--n-snapshots", "2")


@dataclass
class Case:
    data: str  # "cdnow" or "retail <m>m"
    path: str  # what --transactions gets
    cutoff: pd.Timestamp
    horizon_days: int
    first_day: pd.Timestamp

    @property
    def history_days(self) -> int:
        return (self.cutoff - self.first_day).days

    @property
    def should_train(self) -> bool:
        return self.history_days > self.horizon_days + 30


@dataclass
class Outcome:
    case: Case
    exit_code: int
    seconds: float
    method: str
    registered: str
    note: str

    @property
    def as_expected(self) -> bool:
        want = 0 if self.case.should_train else 2
        return self.exit_code == want and "Traceback" not in self.note


def retail_log(months: int, directory: Path) -> tuple[str, pd.Timestamp]:
    """A simulated retail log with ``months`` of history before its cutoff, as Parquet; returns
    (path, cutoff). The log runs on past the cutoff (as a year-long file would)."""
    from clvflow.data.simulate import retail_like

    cutoff = SIM_START + pd.DateOffset(months=months)
    path = directory / f"retail_{months}m.parquet"
    if not path.exists():
        sim = retail_like(
            SIM_CUSTOMERS, seed=months, start=SIM_START.date(), as_of=cutoff.date(), horizon_days=30
        )
        sim.transactions.to_parquet(path)
    return str(path), cutoff


def cases(directory: Path, quick: bool = False) -> list[Case]:
    out = []
    for cutoff in CDNOW_CUTOFFS:
        for h in HORIZONS:
            out.append(Case("cdnow", "cdnow", cutoff, h, CDNOW_FIRST_DAY))
    for months in SIM_MONTHS:
        if quick and months != 3:
            continue
        path, cutoff = retail_log(months, directory)
        for h in HORIZONS:
            out.append(Case(f"retail {months}m", path, cutoff, h, SIM_START))
    if quick:
        wanted = {(d, None if c is None else pd.Timestamp(c), h) for d, c, h in QUICK}
        out = [
            c
            for c in out
            if (c.data, c.cutoff, c.horizon_days) in wanted
            or (c.data, None, c.horizon_days) in wanted
        ]
    return out


def run_case(case: Case, directory: Path, extra: Sequence[str] = ()) -> Outcome:
    """``clvflow train`` on one case in a fresh process against a private MLflow store."""
    slug = f"{case.data.replace(' ', '')}-{case.cutoff.date()}-h{case.horizon_days}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{directory / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    env.pop("MLFLOW_RUN_ID", None)
    argv = [sys.executable, "-m", "clvflow.cli.main", "train", "--transactions", case.path]
    argv += ["--cutoff", str(case.cutoff.date()), "--horizon-days", str(case.horizon_days)]
    argv += ["--export-dir", str(directory / "bundles" / slug), "--experiment-name", "grid"]
    argv += list(extra)
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    out, err = done.stdout, done.stderr
    method = _first(r"exported method: (.+)", out)
    registered = _first(r"model: \S+ version \d+ \(([^)]*)\)", out)
    note = ""
    if "Traceback" in err:
        note = "Traceback: " + err.strip().splitlines()[-1]
    elif done.returncode != 0:
        note = _first(r"error: (.+)", err)[:110]
    elif "not backtested" in out:
        note = "no internal backtest: history too short"
    return Outcome(case, done.returncode, seconds, method, registered, note)


def _first(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(1).strip() if match else ""


def format_table(outcomes: list[Outcome]) -> str:
    lines = [
        "| data | cutoff | H | history days | expected | exit | as expected | exported | "
        "registered as | seconds | note |",
        "|" + "---|" * 11,
    ]
    for o in outcomes:
        c = o.case
        method = o.method.split(" (")[0]
        lines.append(
            f"| {c.data} | {c.cutoff.date()} | {c.horizon_days} | {c.history_days} | "
            f"{'train' if c.should_train else 'exit 2'} | {o.exit_code} | "
            f"{'yes' if o.as_expected else '**NO**'} | {method} | {o.registered} | "
            f"{o.seconds:.0f} | {o.note} |"
        )
    ok = sum(o.as_expected for o in outcomes)
    lines.append(
        f"\n{ok} of {len(outcomes)} cases as expected; tracebacks: "
        f"{sum('Traceback' in o.note for o in outcomes)}"
    )
    return "\n".join(lines)


def run(quick: bool = False, directory: Path | None = None) -> list[Outcome]:
    with tempfile.TemporaryDirectory(prefix="clvflow-grid-") as tmp:
        work = Path(directory or tmp)
        work.mkdir(parents=True, exist_ok=True)
        outcomes = []
        grid = cases(work, quick)
        for i, case in enumerate(grid, 1):
            outcome = run_case(case, work, QUICK_ARGS if quick else ())
            print(
                f"[{i}/{len(grid)}] {case.data} {case.cutoff.date()} h{case.horizon_days}: "
                f"exit {outcome.exit_code} in {outcome.seconds:.0f} s {outcome.note}",
                file=sys.stderr,
                flush=True,
            )
            outcomes.append(outcome)
        return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few cases, small boosters")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    outcomes = run(args.quick)
    print(format_table(outcomes))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0 if all(o.as_expected for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
