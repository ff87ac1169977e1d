"""Benchmark of XGBoost threading on a busy machine (``make bench-threads``).

Run as ``python -m benchmarks.bench_threads [--customers 10000] [--runs 3] [--quick]``.

The simulated log of ``make bench`` (:func:`benchmarks.bench.prepare_data`, cached in
``bench-data/``) is stacked once into training snapshots as ``clvflow train`` does (cached beside
it as Parquet). Each run then fits the boosters on that same stacked matrix in a fresh process
(:meth:`clvflow.models.clv.ClvModel.fit`: the per-snapshot BTYD inputs and the four XGBoost fits; a
whole ``clvflow train`` on 10k customers takes minutes per run, too slow to pair), reading and
imports not timed. Settings, interleaved run by run so that a changing load hits all alike:

- ``default``: clvflow's default (``OMP_WAIT_POLICY`` unset, so clvflow sets ``passive``;
  ``n_jobs`` = the cores the process may use).
- ``n-jobs 1``: ``--n-jobs 1`` (passive wait).
- ``old default``: ``OMP_WAIT_POLICY=active`` in the child's environment (kept by clvflow) and
  ``n_jobs`` 2, XGBoost's spin-waiting default as clvflow ran before.

Each setting runs with a CPU-bound burner process (``while True: pass``) running, then without
(for information). Wall and CPU seconds of the fit are measured in the child; the child's total
CPU (``getrusage`` via ``wait4``, imports and reading included) is reported too.

Target (issue 11, item 1): with the burner, default / ``n-jobs 1`` wall time (median of the paired
per-run ratios) at most 1.0. The run-to-run noise (the spread of the ``n-jobs 1`` wall times,
max / min - 1) is printed; no tolerance is applied.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench import SIMULATION_AS_OF, machine_summary, prepare_data, run_child

HORIZON_DAYS = 90
#: Setting -> (OMP_WAIT_POLICY in the child's environment, None = unset; n_jobs, 0 = default).
SETTINGS: dict[str, tuple[str | None, int]] = {
    "default": (None, 0),
    "n-jobs 1": (None, 1),
    "old default": ("active", 2),
}
#: Target: default wall time within this multiple of ``--n-jobs 1``'s, under load.
RATIO_MAX = 1.0
BURNER = "while True: pass"


@dataclass
class Row:
    """One line of the table: one setting under one load."""

    load: str  # "burner" or "idle"
    setting: str
    wait_policy: str  # as the child saw it after importing clvflow
    n_jobs: int  # as the child's model used it
    wall: list[float]
    cpu: list[float]
    cpu_total: list[float]
    check: str = ""
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_threads", description=__doc__)
    parser.add_argument(
        "--customers", type=int, default=None, help="simulated customers (default 10,000)"
    )
    parser.add_argument("--runs", type=int, default=3, help="paired runs per load")
    parser.add_argument("--n-estimators", type=int, default=None, help="trees (default clvflow's)")
    parser.add_argument("--data-dir", default="bench-data", help="cache of simulated logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="tiny run: 1,000 customers, 1 run, 50 trees"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.customers, args.runs = args.customers or 1_000, 1
        args.n_estimators = args.n_estimators or 50
    args.customers = args.customers or 10_000
    rows = run_bench(
        args.customers,
        Path(args.data_dir),
        runs=args.runs,
        n_estimators=args.n_estimators,
        seed=args.seed,
    )
    print(machine_summary())
    print(format_table(rows))
    return 1 if any(r.check.startswith("FAIL") for r in rows) else 0


def run_bench(
    customers: int,
    data_dir: Path,
    *,
    runs: int = 3,
    n_estimators: int | None = None,
    seed: int = 0,
    loads: tuple[str, ...] = ("burner", "idle"),
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Prepare (or reuse) the stacked matrix, run every setting under every load, return rows."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    log(f"[bench-threads] {customers:,} customers: preparing the stacked snapshots ...")
    stacked = _prepare_stacked(prepare_data(customers, data_dir, seed=seed))
    table: list[Row] = []
    for load in loads:
        results: dict[str, list[dict]] = {s: [] for s in SETTINGS}
        burner = _start_burner() if load == "burner" else None
        try:
            for k in range(runs):
                # Rotate the order each run so no setting always follows another.
                order = list(SETTINGS)[k % len(SETTINGS) :] + list(SETTINGS)[: k % len(SETTINGS)]
                for setting in order:
                    log(f"[bench-threads] {load}: {setting} (run {k + 1}/{runs})")
                    job = {"step": "fit", **stacked, "n_estimators": n_estimators}
                    results[setting].append(_run(job, *SETTINGS[setting]))
        finally:
            if burner is not None:
                burner.kill()
                burner.wait()
        rows = [_row(load, s, results[s]) for s in SETTINGS]
        _check(rows, enforce=load == "burner")
        table.extend(rows)
    return table


def _start_burner() -> subprocess.Popen:
    """A CPU-bound child (one core busy) as another user's job would be; the caller kills it."""
    return subprocess.Popen([sys.executable, "-c", BURNER])


def _prepare_stacked(data: dict) -> dict:
    """Paths of the cached stacked snapshots and cutoff features, made if missing or stale."""
    log_path = Path(data["parquet"])
    stem = log_path.with_suffix("")
    paths = {"training_set": f"{stem}_stacked.parquet", "features": f"{stem}_cutoff.parquet"}
    fresh = all(
        os.path.exists(p) and os.stat(p).st_mtime >= log_path.stat().st_mtime
        for p in paths.values()
    )
    if not fresh:
        job = {"step": "stack", "path": str(log_path), "as_of": data["as_of"], **paths}
        _run(job, None, 0)
    return paths


def _run(job: dict, wait_policy: str | None, n_jobs: int) -> dict:
    """One job in a fresh child with the given environment; its result plus ``cpu_total``
    (user + system seconds of the child, from ``wait4``)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if wait_policy is not None:
        env["OMP_WAIT_POLICY"] = wait_policy
    result, usage = run_child(sys.executable, {**job, "n_jobs": n_jobs}, _SCRIPT, env=env)
    return result | {"cpu_total": usage["cpu"]}


# clvflow is imported first (as the CLI does), before anything loads xgboost.
_SCRIPT = """
import json, sys
from benchmarks.bench_threads import worker_step
job = json.loads(sys.argv[1])
open(job["out"], "w").write(json.dumps(worker_step(job)))
"""


def worker_step(job: dict) -> dict:
    """Child side: stack the snapshots once, or time one booster fit."""
    import pandas as pd

    from clvflow.models.clv import ClvModel, ModelParams

    if job["step"] == "stack":
        return _stack(job)
    training_set = pd.read_parquet(job["training_set"])
    features = pd.read_parquet(job["features"])
    params = ModelParams() if not job["n_jobs"] else ModelParams(n_jobs=job["n_jobs"])
    if job.get("n_estimators"):
        params.n_estimators = job["n_estimators"]
    import xgboost  # noqa: F401  (loaded before the clock starts)

    wall, cpu = time.perf_counter(), time.process_time()
    ClvModel(HORIZON_DAYS, params).fit(training_set, features)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "wall": wall,
        "cpu": cpu,
        "wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "n_jobs": params.n_jobs,
    }


def _stack(job: dict) -> dict:
    import pandas as pd

    from clvflow.data.ingest import load_transactions
    from clvflow.features.build import build_features
    from clvflow.features.snapshots import stack_snapshots

    cutoff = pd.Timestamp(job["as_of"] or SIMULATION_AS_OF)
    tx, _ = load_transactions(job["path"], as_of=cutoff)
    past = tx.loc[(tx["timestamp"] < cutoff).to_numpy()]
    training_set, _ = stack_snapshots(past, cutoff, HORIZON_DAYS)
    for key, frame in (("training_set", training_set), ("features", build_features(past, cutoff))):
        staged = f"{job[key]}.tmp"  # written whole, then renamed: a killed run leaves no half file
        frame.to_parquet(staged)
        os.replace(staged, job[key])
    return {"rows": len(training_set)}


def _row(load: str, setting: str, results: list[dict]) -> Row:
    first = results[0]
    return Row(
        load,
        setting,
        first["wait_policy"] or "(unset)",
        first["n_jobs"],
        [r["wall"] for r in results],
        [r["cpu"] for r in results],
        [r["cpu_total"] for r in results],
    )


def _check(rows: list[Row], *, enforce: bool) -> None:
    """Paired ratios to ``n-jobs 1`` (run k against run k); PASS/FAIL of the default under load."""
    by = {r.setting: r for r in rows}
    one = by["n-jobs 1"]
    noise = max(one.wall) / min(one.wall) - 1
    one.note = f"noise (max/min-1 of wall) {noise:.0%}"
    for r in rows:
        if r is one:
            continue
        ratios = [a / b for a, b in zip(r.wall, one.wall, strict=True)]
        ratio = statistics.median(ratios)
        r.note = f"{ratio:.2f}x n-jobs 1 wall (runs: {', '.join(f'{x:.2f}' for x in ratios)})"
        cpu = statistics.median(r.cpu) / statistics.median(one.cpu)
        r.note += f"; {cpu:.2f}x its CPU"
        if enforce and r.setting == "default":
            verdict = "PASS" if ratio <= RATIO_MAX else "FAIL"
            r.check = f"{verdict}: {ratio:.2f}x (max {RATIO_MAX:g}x)"


def format_table(rows: list[Row]) -> str:
    """The Markdown table printed by ``make bench-threads``."""
    head = (
        "load",
        "setting",
        "OMP_WAIT_POLICY",
        "n_jobs",
        "runs",
        "wall s (median)",
        "CPU s (median)",
        "child CPU s (median)",
        "wall s per run",
        "check",
        "note",
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = (
            r.load,
            r.setting,
            r.wait_policy,
            str(r.n_jobs),
            str(len(r.wall)),
            f"{statistics.median(r.wall):.2f}",
            f"{statistics.median(r.cpu):.2f}",
            f"{statistics.median(r.cpu_total):.2f}",
            ", ".join(f"{w:.2f}" for w in r.wall),
            r.check or "-",
            r.note or "-",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
