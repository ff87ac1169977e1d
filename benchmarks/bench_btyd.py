"""Benchmark of the BTYD fits (``make bench-btyd``): BG/NBD + Gamma-Gamma on simulated summaries.

Run as ``python -m benchmarks.bench_btyd [--sizes 100000,1000000] [--data-dir bench-data]``.

For each size the simulated log of ``make bench`` (:func:`benchmarks.bench.prepare_data`, cached) is
summarised once as of its end (:func:`clvflow.features.build.build_features`, cached beside it as
Parquet, with the summary 30 days earlier for the warm start). Each step then fits BG/NBD (weeks)
+ Gamma-Gamma on the same summary in a fresh process, summary read and imports not timed:

- ``clvflow``: :func:`clvflow.models.btyd.fit_btyd` from its fixed starts (a cold fit).
- ``clvflow warm``: the same, warm-started from the fit 30 days earlier (a training snapshot's
  fit starting from the previous snapshot's; that earlier fit is not timed).
- ``clvflow numerical``: the fit as clvflow did it before analytic gradients (``numerical=True``:
  numerical gradients, every start, every customer).
- ``lifetimes``: lifetimes' ``BetaGeoFitter`` + ``GammaGammaFitter`` on the same rows, under the
  interpreter named by ``CLVFLOW_LIFETIMES_PYTHON`` (as for ``make bench``, see
  docs/benchmarks.md); without one the step is skipped.

Target (issue "Training a million customers in minutes", item 2): the ``clvflow`` fits take at most
as long as lifetimes'. Steps are interleaved across runs (median of 3 up to 100k customers, else 1)
so that a busy machine slows all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.bench import _run_worker, _write_text_atomic, machine_summary, prepare_data

if TYPE_CHECKING:
    import pandas as pd

    from clvflow.models.btyd import BtydFit

STEPS = ("clvflow", "clvflow warm", "clvflow numerical", "lifetimes")
#: The warm start comes from the summary this many days before the log's end.
WARM_FROM_DAYS = 30
#: Target: clvflow's fit within this multiple of lifetimes' time.
LIFETIMES_RATIO_MAX = 1.0


@dataclass
class Row:
    """One line of the table: one fit of one size."""

    customers: int
    histories: int  # distinct (x, t_x, T) the BG/NBD likelihood sums over
    step: str
    seconds: float | None
    params: dict[str, float] = field(default_factory=dict)
    check: str = ""
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_btyd", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="customers, comma-separated")
    parser.add_argument("--data-dir", default="bench-data", help="cache of simulated logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=None, help="runs per step (default 3 / 1)")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    rows = run_bench(sizes, Path(args.data_dir), seed=args.seed, runs=args.runs)
    print(machine_summary())
    print(format_table(rows))
    return 1 if any(r.check.startswith("FAIL") for r in rows) else 0


def run_bench(
    sizes: list[int],
    data_dir: Path,
    *,
    seed: int = 0,
    runs: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Prepare (or reuse) the summaries, time every step, and return the table rows."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    lifetimes = os.environ.get("CLVFLOW_LIFETIMES_PYTHON")
    table: list[Row] = []
    for n in sizes:
        log(f"[bench-btyd] {n:,} customers: preparing the summaries ...")
        data = prepare_data(n, data_dir, seed=seed)
        summary = _prepare_summary(data)
        steps = [s for s in STEPS if s != "lifetimes" or lifetimes]
        n_runs = runs or (3 if n <= 100_000 else 1)
        results: dict[str, list[dict]] = {s: [] for s in steps}
        for k in range(n_runs):
            for step in steps:
                log(f"[bench-btyd] {n:,} customers: {step} (run {k + 1}/{n_runs})")
                job = {"step": step, **summary}
                if step == "lifetimes":
                    assert lifetimes  # (a step only with an interpreter)
                    result, _ = _run_worker(lifetimes, job, script=_LIFETIMES_SCRIPT)
                else:
                    result, _ = _run_worker(sys.executable, job, script=_SCRIPT)
                results[step].append(result)
        rows = [_row(n, summary["histories"], step, results[step]) for step in steps]
        if not lifetimes:
            note = "not measured: set CLVFLOW_LIFETIMES_PYTHON (see docs/benchmarks.md)"
            rows.append(Row(n, summary["histories"], "lifetimes", None, note=note))
        _check(rows)
        table.extend(rows)
    return table


def _prepare_summary(data: dict) -> dict:
    """Paths of the cached summaries (as of the log's end and WARM_FROM_DAYS before), made if
    missing or older than the log; and the number of distinct BG/NBD histories."""
    log_path = Path(data["parquet"])
    stem = log_path.with_suffix("")
    paths = {"summary": f"{stem}_btyd.parquet", "earlier": f"{stem}_btyd_earlier.parquet"}
    meta_path = Path(f"{stem}_btyd.json")
    fresh = meta_path.exists() and meta_path.stat().st_mtime >= log_path.stat().st_mtime
    if not (fresh and all(map(os.path.exists, paths.values()))):
        job = {"step": "summary", "path": str(log_path), "as_of": data["as_of"], **paths}
        result, _ = _run_worker(sys.executable, job, script=_SCRIPT)
        _write_text_atomic(meta_path, json.dumps(result))
    return paths | json.loads(meta_path.read_text())


# Workers run as ``python -c`` scripts so that the lifetimes one imports nothing of clvflow.
_SCRIPT = """
import json, sys
from benchmarks.bench_btyd import worker_step
job = json.loads(sys.argv[1])
open(job["out"], "w").write(json.dumps(worker_step(job)))
"""

_LIFETIMES_SCRIPT = """
import json, sys, time
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
job = json.loads(sys.argv[1])
f = pd.read_parquet(job["summary"])
f = f[f["n_purchase_days"] > 0]
start = time.perf_counter()
bg = BetaGeoFitter().fit(f["frequency"], f["t_x_days"] / 7.0, f["T_days"] / 7.0)
rep = f[(f["frequency"] > 0) & (f["mean_repeat_spend"] > 0)]
gg = GammaGammaFitter().fit(rep["frequency"], rep["mean_repeat_spend"])
seconds = time.perf_counter() - start
params = {**bg.params_.to_dict(), **gg.params_.rename({"v": "gamma"}).to_dict()}
open(job["out"], "w").write(json.dumps({"seconds": seconds, "params": params}))
"""


def worker_step(job: dict) -> dict:
    """Child side of one step (clvflow's interpreter): the result as a JSON-able dict."""
    import pandas as pd

    from clvflow.models.btyd import fit_btyd

    if job["step"] == "summary":
        return _summarise(job)
    features = pd.read_parquet(job["summary"])
    init = fit_btyd(pd.read_parquet(job["earlier"])) if job["step"] == "clvflow warm" else None
    start = time.perf_counter()
    if job["step"] == "clvflow numerical":
        fit = _fit_numerical(features)
    else:
        fit = fit_btyd(features, init)
    seconds = time.perf_counter() - start
    bg, gg = fit.bgnbd, fit.gamma_gamma
    params = {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b}
    return {"seconds": seconds, "params": params | {"p": gg.p, "q": gg.q, "gamma": gg.gamma}}


def _fit_numerical(features: pd.DataFrame) -> BtydFit:
    """:func:`clvflow.models.btyd.fit_btyd` as it was before analytic gradients."""
    from clvflow.models.btyd import DAYS_PER_WEEK, BtydFit, fit_bgnbd, fit_gamma_gamma

    sub = features.loc[features["n_purchase_days"] > 0]
    x, m = sub["frequency"].to_numpy(float), sub["mean_repeat_spend"].to_numpy(float)
    t_x, t_end = sub["t_x_days"] / DAYS_PER_WEEK, sub["T_days"] / DAYS_PER_WEEK
    bg = fit_bgnbd(x, t_x, t_end, numerical=True)
    rows = (x > 0) & (m > 0)
    return BtydFit(bg, fit_gamma_gamma(x[rows], m[rows], numerical=True))


def _summarise(job: dict) -> dict:
    import pandas as pd

    from clvflow.data.ingest import load_transactions
    from clvflow.features.build import build_features

    as_of = pd.Timestamp(job["as_of"])
    tx, _ = load_transactions(job["path"], as_of=as_of)
    columns = ["customer_id", "n_purchase_days", "frequency", "t_x_days", "T_days"]
    columns += ["mean_repeat_spend", "total_spend"]
    for key, day in (("summary", as_of), ("earlier", as_of - pd.Timedelta(days=WARM_FROM_DAYS))):
        features = build_features(tx.loc[tx["timestamp"] < day], day)[columns]
        features.to_parquet(f"{job[key]}.tmp")  # written whole, then renamed
        os.replace(f"{job[key]}.tmp", job[key])
    buyers = features.loc[features["n_purchase_days"] > 0]
    histories = len(buyers[["frequency", "t_x_days", "T_days"]].drop_duplicates())
    return {"histories": histories}


def _row(n: int, histories: int, step: str, results: list[dict]) -> Row:
    seconds = statistics.median(r["seconds"] for r in results)
    note = f"median of {len(results)}" if len(results) > 1 else "1 run"
    if step == "lifetimes":
        note += f" ({os.environ.get('CLVFLOW_LIFETIMES_PYTHON')})"
    return Row(n, histories, step, seconds, results[0]["params"], note=note)


def _check(rows: list[Row]) -> None:
    """PASS/FAIL of the clvflow fits against lifetimes', and each fit's largest relative
    parameter difference from lifetimes' (or from the cold fit when lifetimes is missing)."""
    by_step = {r.step: r for r in rows}
    lifetimes = by_step.get("lifetimes")
    reference = lifetimes if lifetimes and lifetimes.seconds else by_step["clvflow"]
    for r in rows:
        if r is reference or not r.params:
            continue
        diff = max(abs(r.params[k] / reference.params[k] - 1) for k in r.params)
        r.note += f"; params within {diff:.1e} of the {reference.step} fit"
        if r.step == "clvflow numerical" or reference.step != "lifetimes":
            cold_seconds = by_step["clvflow"].seconds
            if r.step == "clvflow numerical" and cold_seconds:
                assert r.seconds is not None  # (every fit row is timed)
                speedup = r.seconds / cold_seconds
                r.note += f"; clvflow is {speedup:.1f}x faster"
            continue
        # (here reference is the lifetimes row, and it has a time)
        assert lifetimes is not None and lifetimes.seconds and r.seconds is not None
        ratio = r.seconds / lifetimes.seconds
        verdict = "PASS" if ratio <= LIFETIMES_RATIO_MAX else "FAIL"
        r.check = f"{verdict}: {ratio:.2f}x lifetimes (max {LIFETIMES_RATIO_MAX:g}x)"


def format_table(rows: list[Row]) -> str:
    """The table printed by ``make bench-btyd``."""
    names = ("r", "alpha", "a", "b", "p", "q", "gamma")
    head = ("customers", "histories", "step", "seconds", *names, "check", "note")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        params = [f"{r.params[k]:.4f}" if k in r.params else "-" for k in names]
        seconds = "-" if r.seconds is None else f"{r.seconds:.2f}"
        lines.append(
            (
                f"{r.customers:,}",
                f"{r.histories:,}",
                r.step,
                seconds,
                *params,
                r.check or "-",
                r.note,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        cells = [
            c.ljust(w) if i in (2, len(head) - 2, len(head) - 1) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
