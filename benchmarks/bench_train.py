"""Benchmark of ``clvflow train`` (``make bench-train``): time, CPU, memory and where they go.

Run as ``python -m benchmarks.bench_train [--sizes 100000,1000000] [--data-dir bench-data]
[--n-estimators N]``.

For each size the simulated log of ``make bench`` (:func:`benchmarks.bench.prepare_data`, cached)
is trained on as a user would: ``clvflow train --cutoff 2024-01-01 --horizon-days 90`` (internal
backtest, refit, MLflow logging into a fresh sqlite store, registration, bundle export) in a
fresh process. Measured there:

- ``train``: wall and CPU seconds of the command (reading the log included, interpreter start-up
  and imports not), the child's whole CPU (``wait4``) and its peak RSS.
- the split: exclusive wall / CPU seconds per kind of step, recorded by
  :mod:`clvflow.core.steptimes` inside that same run (BTYD fits, XGBoost, bootstrap, I/O and
  logging, ...; ``other`` is the rest of the command).

- ``xgboost: <phase> <kind>``: the run's booster fits (recorded around ``ClvModel._train``) by
  phase (the internal backtest's, then the refit's) and kind (early-stopping fit, final fit):
  the internal backtest judges its early-stopping boosters, the refit fits the final ones with
  the tree counts they found.

and two floors, each in its own fresh process:

- ``xgboost floor``: the two final boosters alone (churn and spend, the same parameters and the
  same number of trees as the trained model) on the same stacked matrix as the refit (built
  first, untimed); the note says whether they came out byte-identical to the exported ones.
- ``lower bound``: that floor plus the internal backtest's own boosters (timed inside the
  train, where the fits at its cutoff run beside them: a little above their time alone): an
  out-of-time internal backtest needs boosters fitted before its window, so no train that
  keeps one can fit less.
- ``btyd fit``: :func:`clvflow.baselines.fit_btyd` (cold) and lifetimes' ``BetaGeoFitter`` +
  ``GammaGammaFitter`` on the same summary as of the cutoff, as ``make bench-btyd`` does
  (lifetimes under ``CLVFLOW_LIFETIMES_PYTHON``; skipped without it).

Targets (issue "Training a million customers in minutes"), checked at 1M customers and more:
``train`` within 2.5x the XGBoost floor (wall) and under 6 GB peak RSS; at every size the BTYD
fit at most 1x lifetimes'. The machine's load average is printed with each step, since a shared
machine slows wall time; compare CPU seconds too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench import machine_summary, prepare_data, run_child
from benchmarks.bench_btyd import _LIFETIMES_SCRIPT as _BTYD_LIFETIMES_SCRIPT
from benchmarks.bench_btyd import _SCRIPT as _BTYD_SCRIPT
from benchmarks.bench_btyd import _prepare_summary

CUTOFF = "2024-01-01"
HORIZON_DAYS = 90
#: Targets: train within this multiple of the XGBoost floor, under this peak RSS (GB), from
#: this many customers; the BTYD fit within this multiple of lifetimes' (every size).
FLOOR_RATIO_MAX, RSS_MAX_GB, TARGET_FROM_CUSTOMERS = 2.5, 6.0, 1_000_000
BTYD_RATIO_MAX = 1.0
#: The split's kinds of step, in table order (clvflow.core.steptimes names); then ``other``.
SPLIT = (
    "btyd fits",
    "btyd predictions",
    "xgboost",
    "predict",
    "bootstrap",
    "evaluation",
    "features and labels",
    "i/o and logging",
)


@dataclass
class Row:
    """One line of the table."""

    customers: int
    step: str
    wall: float | None
    cpu: float | None = None
    peak_rss_gb: float | None = None
    share: str = ""  # of the train's wall time, or a ratio
    check: str = ""
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="customers, comma-separated")
    parser.add_argument("--data-dir", default="bench-data", help="cache of simulated logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-estimators", type=int, default=None, help="trees (default clvflow's)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    rows = run_bench(sizes, Path(args.data_dir), seed=args.seed, n_estimators=args.n_estimators)
    print(machine_summary())
    print(format_table(rows))
    if args.json:
        staged = Path(f"{args.json}.tmp")
        staged.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
        os.replace(staged, args.json)
    return 1 if any(r.check.startswith("FAIL") for r in rows) else 0


def run_bench(
    sizes: list[int],
    data_dir: Path,
    *,
    seed: int = 0,
    n_estimators: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Prepare (or reuse) the logs, run train and the floors per size, return the table rows."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    lifetimes = os.environ.get("CLVFLOW_LIFETIMES_PYTHON")
    table: list[Row] = []
    for n in sizes:
        log(f"[bench-train] {n:,} customers: preparing the simulated log ...")
        data = prepare_data(n, data_dir, seed=seed)
        job = {"path": data["parquet"], "n_estimators": n_estimators}
        with tempfile.TemporaryDirectory(prefix="clvflow-bench-train-") as tmp:
            log(f"[bench-train] {n:,} customers: clvflow train ({_load()})")
            train, usage = run_child(sys.executable, job | {"step": "train", "dir": tmp}, _SCRIPT)
            train |= {"child_cpu": usage["cpu"], "rss": usage["rss_gb"], "load": _load()}
            log(f"[bench-train] {n:,} customers: xgboost floor ({_load()})")
            floor_job = job | {"step": "xgboost floor", "trees": train["trees"]}
            floor, usage = run_child(
                sys.executable, floor_job | {"bundle": train["bundle"]}, _SCRIPT
            )
            floor |= {"rss": usage["rss_gb"], "load": _load()}
        log(f"[bench-train] {n:,} customers: btyd fits on the cutoff summary ({_load()})")
        summary = _prepare_summary(data)
        btyd, _ = run_child(sys.executable, summary | {"step": "clvflow"}, _BTYD_SCRIPT)
        ref = None
        if lifetimes:
            ref, _ = run_child(lifetimes, summary | {"step": "lifetimes"}, _BTYD_LIFETIMES_SCRIPT)
        rows = _rows(n, train, floor, btyd, ref)
        _check(rows)
        table.extend(rows)
    return table


def _load() -> str:
    """The 1-minute load average, as a note on what else was running."""
    return f"load {os.getloadavg()[0]:.1f}"


# Workers run as ``python -c`` scripts; they import clvflow first, as the CLI does.
_SCRIPT = """
import json, sys
from benchmarks.bench_train import worker_step
job = json.loads(sys.argv[1])
open(job["out"], "w").write(json.dumps(worker_step(job)))
"""


def worker_step(job: dict) -> dict:
    """Child side of one step: the result as a JSON-able dict."""
    if job["step"] == "train":
        return _train(job)
    return _xgboost_floor(job)


def _train(job: dict) -> dict:
    """``clvflow train`` on the log, timed, with the split recorded by clvflow.core.steptimes."""
    import mlflow  # noqa: F401  (imported before the clock starts, as the CLI's own imports)

    import clvflow.mlops.jobs  # (the train job: its internal backtest and refit are recorded)
    from clvflow.cli.main import main as clvflow_main
    from clvflow.core import steptimes

    tmp = Path(job["dir"])
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlflow.db'}"
    os.chdir(tmp)  # (MLflow's artifacts beside the store)
    bundle = tmp / "bundle"
    argv = ["train", "--transactions", job["path"], "--cutoff", CUTOFF]
    argv += ["--horizon-days", str(HORIZON_DAYS), "--export-dir", str(bundle)]
    if job.get("n_estimators"):
        argv += ["--n-estimators", str(job["n_estimators"])]
    steptimes.reset()
    calls = _record_booster_fits(clvflow.mlops.jobs)
    wall, cpu = time.perf_counter(), time.process_time()
    status = clvflow_main(argv)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if status != 0:
        raise RuntimeError(f"clvflow train exited {status}")
    model_json = next(bundle.rglob("model.json"))
    meta = json.loads(model_json.read_text())
    return {
        "wall": wall,
        "cpu": cpu,
        "split": steptimes.totals(),
        "trees": meta["n_trees"],
        "bundle": str(model_json.parent),
        "boosters": calls,
    }


def _record_booster_fits(jobs: Any) -> list[dict]:
    """Record every booster fit of the run (``ClvModel._train``): its phase (inside the train
    job's ``select_method``: the internal backtest; inside its ``fit_boosters``: the refit,
    which runs on the second thread), which booster, whether it early-stops, rows, trees, wall
    and CPU seconds (the process's: other steps may run beside a fit), in call order."""
    import threading

    from clvflow.models.clv import ClvModel

    calls: list[dict] = []
    where = threading.local()  # (the phase of this thread's current step)
    train = ClvModel._train

    def in_phase(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            where.phase = name
            try:
                return step(*args, **kwargs)
            finally:
                where.phase = None

        return run

    jobs.select_method = in_phase(PHASES[0], jobs.select_method)
    jobs.fit_boosters = in_phase(PHASES[1], jobs.fit_boosters)

    def recording(self, objective, stacked, y, margin, rows, valid, n_trees):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.process_time()
        booster, trees = train(self, objective, stacked, y, margin, rows, valid, n_trees)
        calls.append(
            {
                "phase": getattr(where, "phase", None) or "other",
                "booster": "churn" if objective["objective"] == "binary:logistic" else "spend",
                "early_stopping": valid is not None,
                "rows": len(rows),
                "trees": trees,
                "wall": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu,
            }
        )
        return booster, trees

    ClvModel._train = recording  # type: ignore[method-assign]
    return calls


#: The phases of a train's booster fits, in call order: the internal backtest's, then the refit's.
PHASES = ("backtest", "refit")
#: What runs beside each phase's fits (their CPU seconds, the process's, include it): the
#: fits at the cutoff (features, BTYD, MBG/NBD, season; about 10 s of one core at 1M), and
#: for the refit the internal backtest's judging.
WHERE = {
    "backtest": ", beside its cutoff's fits",
    "refit": ", beside its cutoff's fits and the judging: CPU with them",
    "other": "",
}


def _booster_rows(n: int, calls: list[dict]) -> list[Row]:
    """The train's booster fits by phase (backtest / refit) and kind (early stopping / final)."""
    groups: dict[tuple[str, bool], list[dict]] = {}
    for call in calls:
        groups.setdefault((call["phase"], call["early_stopping"]), []).append(call)
    rows = []
    for (phase, early), group in groups.items():
        kind = "early stopping" if early else "final"
        trees = "+".join(f"{c['trees']}" for c in group)
        rows_note = "/".join(f"{c['rows']:,}" for c in group)
        rows.append(
            Row(
                n,
                f"xgboost: {phase} {kind}",
                sum(c["wall"] for c in group),
                sum(c["cpu"] for c in group),
                note=f"churn/spend: {trees} trees, {rows_note} rows (inside train{WHERE[phase]})",
            )
        )
    return rows


def _xgboost_floor(job: dict) -> dict:
    """The final churn and spend boosters alone on the refit's stacked matrix (built first,
    untimed), with the trained model's parameters and tree counts."""
    import pandas as pd

    from clvflow.data.ingest import load_transactions
    from clvflow.features.snapshots import stack_snapshots
    from clvflow.models.clv import ClvModel, ModelParams
    from clvflow.models.training import SnapshotSettings

    cutoff = pd.Timestamp(CUTOFF)
    tx, _ = load_transactions(job["path"], as_of=cutoff)
    past = tx.loc[(tx["timestamp"] < cutoff).to_numpy()]
    snap = SnapshotSettings()  # clvflow train's defaults
    training_set, _ = stack_snapshots(
        past,
        cutoff,
        HORIZON_DAYS,
        n_snapshots=snap.n_snapshots,
        spacing_days=snap.spacing_days,
        rule=snap.rule,
    )
    del tx, past
    params = ModelParams()
    if job.get("n_estimators"):
        params.n_estimators = job["n_estimators"]
    model = ClvModel(HORIZON_DAYS, params)
    stacked = model.stack_inputs(training_set)
    del training_set
    everything = slice(0, len(stacked.rows))
    wall, cpu = time.perf_counter(), time.process_time()
    churn, _ = model._fit_churn(stacked, everything, None, job["trees"]["churn"])
    spend, _ = model._fit_spend(stacked, everything, None, job["trees"]["spend"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    exported = Path(job["bundle"])
    same = all(
        bytes(booster.save_raw("ubj")) == (exported / f"{name}_booster.ubj").read_bytes()
        for name, booster in (("churn", churn), ("spend", spend))
    )
    return {"wall": wall, "cpu": cpu, "rows": len(stacked.rows), "identical": same}


def _rows(n: int, train: dict, floor: dict, btyd: dict, ref: dict | None) -> list[Row]:
    wall = train["wall"]
    rows = [
        Row(
            n,
            "train",
            wall,
            train["cpu"],
            train["rss"],
            note=f"child CPU {train['child_cpu']:.0f} s with imports; {train['load']} after",
        )
    ]
    split = train["split"]
    kinds = [*SPLIT, *sorted(k for k in split if k not in SPLIT)]
    for kind in kinds:
        if kind in split:
            t = split[kind]
            share = f"{t['wall'] / wall:.0%}"
            rows.append(
                Row(n, f"  {kind}", t["wall"], t["cpu"], share=share, note=f"{t['calls']} calls")
            )
    other_wall = wall - sum(t["wall"] for t in split.values())
    other_cpu = train["cpu"] - sum(t["cpu"] for t in split.values())
    # (steps on two threads at once both count the time: then the kinds can add up to more)
    overlap = "below 0: steps ran on two threads at once" if other_wall < 0 else ""
    rows.append(
        Row(n, "  other", other_wall, other_cpu, share=f"{other_wall / wall:.0%}", note=overlap)
    )
    same = "byte-identical to the exported boosters" if floor["identical"] else "NOT identical"
    trees = train["trees"]
    note = (
        f"{floor['rows']:,} rows, {trees['churn']}+{trees['spend']} trees, {same}; {floor['load']}"
    )
    boosters = _booster_rows(n, train.get("boosters", []))
    rows.extend(boosters)
    rows.append(Row(n, "xgboost floor", floor["wall"], floor["cpu"], floor["rss"], note=note))
    backtest = [r for r in boosters if r.step.startswith("xgboost: backtest ")]
    if backtest:
        wall = floor["wall"] + sum(r.wall or 0.0 for r in backtest)
        cpu = floor["cpu"] + sum(r.cpu or 0.0 for r in backtest)
        rows.append(
            Row(
                n,
                "lower bound",
                wall,
                cpu,
                share=f"{cpu / floor['cpu']:.2f}x floor (CPU)",
                note="the floor + the internal backtest's boosters (the ones it judges): a train "
                "with an out-of-time internal backtest fits at least these",
            )
        )
    rows.append(Row(n, "btyd fit (clvflow)", btyd["seconds"], note="cold fit, cutoff summary"))
    if ref is None:
        note = "not measured: set CLVFLOW_LIFETIMES_PYTHON (see docs/benchmarks.md)"
        rows.append(Row(n, "btyd fit (lifetimes)", None, note=note))
    else:
        note = f"{os.environ.get('CLVFLOW_LIFETIMES_PYTHON')}"
        rows.append(Row(n, "btyd fit (lifetimes)", ref["seconds"], note=note))
    return rows


def _check(rows: list[Row]) -> None:
    """Ratios and PASS/FAIL against the targets (train vs floor and RSS from
    ``TARGET_FROM_CUSTOMERS``; the BTYD fit vs lifetimes at every size)."""
    by = {r.step: r for r in rows}
    train, floor = by["train"], by["xgboost floor"]
    assert train.wall and floor.wall and train.cpu and floor.cpu and train.peak_rss_gb
    ratio, cpu_ratio = train.wall / floor.wall, train.cpu / floor.cpu
    train.share = f"{ratio:.1f}x floor"
    text = f"{ratio:.1f}x floor (max {FLOOR_RATIO_MAX:g}x; CPU {cpu_ratio:.1f}x), "
    text += f"{train.peak_rss_gb:.1f} GB (max {RSS_MAX_GB:g})"
    if train.customers >= TARGET_FROM_CUSTOMERS:
        ok = ratio <= FLOOR_RATIO_MAX and train.peak_rss_gb <= RSS_MAX_GB
        train.check = f"{'PASS' if ok else 'FAIL'}: {text}"
    else:
        train.note = f"{text}; {train.note}"
    ours, theirs = by["btyd fit (clvflow)"], by["btyd fit (lifetimes)"]
    if ours.wall is not None and theirs.wall:
        ratio = ours.wall / theirs.wall
        verdict = "PASS" if ratio <= BTYD_RATIO_MAX else "FAIL"
        ours.share = f"{ratio:.2f}x lifetimes"
        ours.check = f"{verdict}: {ratio:.2f}x lifetimes (max {BTYD_RATIO_MAX:g}x)"
        fits = by.get("  btyd fits")
        if fits is not None and fits.wall is not None:
            ours.note += (
                f"; train's {fits.note} took {fits.wall / theirs.wall:.2f}x one lifetimes fit"
            )


def format_table(rows: list[Row]) -> str:
    """The Markdown table printed by ``make bench-train``."""
    head = ("customers", "step", "wall s", "CPU s", "peak RSS GB", "share / ratio", "check", "note")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = (
            f"{r.customers:,}",
            r.step.strip() if not r.step.startswith("  ") else f"- {r.step.strip()}",
            "-" if r.wall is None else f"{r.wall:.1f}",
            "-" if r.cpu is None else f"{r.cpu:.1f}",
            "-" if r.peak_rss_gb is None else f"{r.peak_rss_gb:.2f}",
            r.share or "-",
            r.check or "-",
            r.note or "-",
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
