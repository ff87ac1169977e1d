"""Benchmark of ingest + features (``make bench``): simulated logs, timed steps, one table.

Run as ``python -m benchmarks.bench [--sizes 100000,1000000] [--data-dir bench-data]``.

For each size (number of simulated customers) the log is generated once and cached as Parquet (and
as CSV up to ``CSV_MAX_CUSTOMERS``) in the data directory, keyed by size, seed and the simulator's
source. Each step then runs in a fresh Python process, so its peak RSS is its own:

- ``floor``: one DuckDB group-by scan of the Parquet log (count, sum and max per customer), fetched
  to pandas: about the least any per-customer computation over the file can cost.
- ``ingest``: :func:`clvflow.data.ingest.load_transactions` on the Parquet log.
- ``features``: ``load_transactions`` + :func:`clvflow.features.build.build_features`, the whole
  user-visible path from the Parquet file (``features (csv)``: the same from the CSV file).
- ``lifetimes``: lifetimes' ``summary_data_from_transaction_data`` on the same log, read time
  excluded. lifetimes is no dependency of clvflow, so it runs under the interpreter named by
  ``CLVFLOW_LIFETIMES_PYTHON`` (any Python with lifetimes and pyarrow, see docs/benchmarks.md);
  without one the figure recorded in ``RECORDED_LIFETIMES`` is shown, marked as such.

Timings exclude interpreter start-up and imports. Sizes up to ``CSV_MAX_CUSTOMERS`` report the
median of 3 runs, larger ones a single run (override with ``--runs``); steps are interleaved
across runs so that a busy machine slows all of them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SIMULATION_AS_OF = "2024-01-01"  # simulate()'s default as_of; features are computed as of it
CSV_MAX_CUSTOMERS = 100_000
LIFETIMES_SIZES = (100_000,)
#: Targets (issue "make bench"): features within 4x the floor on the 1M-customer log, under 6 GB;
#: the 100k log, read included, at least 4x faster than lifetimes alone.
FLOOR_RATIO_MAX, FLOOR_RATIO_FROM_CUSTOMERS = 4.0, 1_000_000
RSS_MAX_GB = 6.0
LIFETIMES_SPEEDUP_MIN = 4.0
#: Target (issue "batch scoring"): scoring end to end within 2.5x the features step, under 8 GB.
SCORE_RATIO_MAX, SCORE_RSS_MAX_GB = 2.5, 8.0
SCORE_MODEL_CUSTOMERS, SCORE_HORIZON_DAYS = 20_000, 180
#: lifetimes measured for real (see docs/benchmarks.md), shown when no lifetimes interpreter is set.
RECORDED_LIFETIMES: dict[int, dict[str, Any]] = {
    100_000: {
        "seconds": 2.87,
        "date": "2026-11-25",
        "how": (
            "median of 5 runs on the 100k log; venv with lifetimes 0.11.3 and the project's pandas "
            "3.1.1, numpy 2.4.6, scipy 1.17.1, pyarrow 25.0.1; 2 cores, AMD EPYC"
        ),
    },
}

STEPS = ("floor", "ingest", "features", "features (csv)", "score", "lifetimes")


@dataclass
class Row:
    """One line of the table."""

    customers: int
    rows: int
    step: str
    seconds: float | None
    peak_rss_gb: float | None
    ratio_to_floor: float | None = None
    check: str = ""
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__)
    parser.add_argument("--sizes", default="100000,1000000", help="customers, comma-separated")
    parser.add_argument("--data-dir", default="bench-data", help="cache of simulated logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=None, help="runs per step (default 3 / 1)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(json.loads(args.worker))
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    rows = run_bench(sizes, Path(args.data_dir), seed=args.seed, runs=args.runs)
    print(machine_summary())
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    return 1 if any(r.check.startswith("FAIL") for r in rows) else 0


def run_bench(
    sizes: list[int],
    data_dir: Path,
    *,
    seed: int = 0,
    runs: int | None = None,
    lifetimes_sizes: tuple[int, ...] = LIFETIMES_SIZES,
    model_customers: int = SCORE_MODEL_CUSTOMERS,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Generate (or reuse) the logs, time every step, and return the table rows.

    Progress goes to ``log`` (default: stderr), so that stdout holds only the table.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    table: list[Row] = []
    for n in sizes:
        log(f"[bench] {n:,} customers: preparing the simulated log ...")
        data = prepare_data(n, data_dir, seed=seed)
        data["model"] = prepare_model(data_dir, log, model_customers)
        steps = ["floor", "ingest", "features"]
        if data.get("csv"):
            steps.append("features (csv)")
        steps.append("score")
        n_runs = runs or (3 if n <= CSV_MAX_CUSTOMERS else 1)
        samples: dict[str, list[tuple[float, float]]] = {s: [] for s in steps}
        for k in range(n_runs):
            for step in steps:
                log(f"[bench] {n:,} customers: {step} (run {k + 1}/{n_runs})")
                samples[step].append(_run_step(step, data))
        rows = [_summary_row(n, data["rows"], step, samples[step]) for step in steps]
        if n in lifetimes_sizes:
            log(f"[bench] {n:,} customers: lifetimes")
            rows.append(_lifetimes_row(n, data))
        _check(rows)
        table.extend(rows)
    return table


def prepare_data(n_customers: int, data_dir: Path, *, seed: int = 0) -> dict:
    """The cached simulated log (Parquet, and CSV for small sizes), made if missing or stale.

    Returns:
        ``customers``, ``rows``, ``as_of``, and the absolute paths ``parquet`` and ``csv`` (None
        above ``CSV_MAX_CUSTOMERS``).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = data_dir.resolve() / f"sim_{n_customers}_seed{seed}"
    files = {"parquet": stem.with_suffix(".parquet"), "csv": stem.with_suffix(".csv")}
    if n_customers > CSV_MAX_CUSTOMERS:
        del files["csv"]
    meta_path = stem.with_suffix(".json")
    want = {"customers": n_customers, "seed": seed, "simulator": _simulator_version()}
    want |= {"csv": "csv" in files, "as_of": SIMULATION_AS_OF}
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not (
        all(meta.get(k) == v for k, v in want.items()) and all(map(Path.exists, files.values()))
    ):
        job = {"step": "generate", "customers": n_customers, "seed": seed, "stem": str(stem)}
        result, _ = _run_worker(sys.executable, job | {"csv": want["csv"]})
        meta = want | {"rows": result["rows"]}
        _write_text_atomic(meta_path, json.dumps(meta, indent=2))
    return meta | {
        "parquet": str(files["parquet"]),
        "csv": str(files["csv"]) if want["csv"] else None,
    }


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``path`` whole, then rename: a killed run leaves no half-written cache file."""
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(text)
    os.replace(staged, path)


def prepare_model(data_dir: Path, log: Callable[[str], None], n_customers: int) -> str:
    """A model bundle for the score step (trained once on its own simulated log, then cached)."""
    bundle = data_dir.resolve() / f"model_{n_customers}_h{SCORE_HORIZON_DAYS}"
    if not (bundle / "manifest.json").exists():
        log(f"[bench] training the scoring model on {n_customers:,} customers ...")
        job = {"step": "train", "bundle": str(bundle), "customers": n_customers}
        _run_worker(sys.executable, job)
    return str(bundle)


def _simulator_version() -> str:
    """Hash of simulate.py, so that a changed simulator invalidates the cached logs."""
    from clvflow.data import simulate as module

    assert module.__file__ is not None  # (a module from a file)
    return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()[:16]


def _run_step(step: str, data: dict) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one step in a fresh process."""
    path = data["csv"] if step == "features (csv)" else data["parquet"]
    job = {"step": step.split()[0], "path": path, "as_of": data["as_of"]}
    job |= {"model": data.get("model")}
    result, rss_gb = _run_worker(sys.executable, job)
    return result["seconds"], rss_gb


def _run_worker(python: str, job: dict, script: str | None = None) -> tuple[dict, float]:
    """Run one job in a child process; return its JSON result and its peak RSS (GB)."""
    result, usage = run_child(python, job, script)
    return result, usage["rss_gb"]


def run_child(
    python: str, job: dict, script: str | None = None, env: dict[str, str] | None = None
) -> tuple[dict, dict[str, float]]:
    """Run one job in a child process (``script`` via ``-c``, else this module's worker), with
    ``env`` as its environment (None: this process's).

    Returns:
        (its JSON result, ``{"rss_gb": peak RSS, "cpu": user + system seconds}`` of the child).
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        job = {**job, "out": str(out)}
        if script is None:
            cmd = [python, "-m", "benchmarks.bench", "--worker", json.dumps(job)]
        else:
            cmd = [python, "-c", script, json.dumps(job)]
        with open(Path(tmp) / "log", "w+") as log:
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0 or not out.exists():
                log.seek(0)
                raise RuntimeError(f"bench step {job['step']} failed:\n{_failure_text(log.read())}")
        # ru_maxrss is in KiB on Linux (bytes on macOS)
        rss_bytes = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        cpu = usage.ru_utime + usage.ru_stime
        return json.loads(out.read_text()), {"rss_gb": rss_bytes / 1e9, "cpu": cpu}


def _failure_text(output: str, tail: int = 3000) -> str:
    """What to show of a failed child's output: its error lines (exceptions and errors, not stack
    frames: a long Java stack trace would push the JVM's message out of the tail), then the last
    ``tail`` characters."""
    errors = [
        line.strip()
        for line in output.splitlines()
        if ("Error" in line or "Exception" in line)
        and not line.strip().startswith(("at ", "File "))
    ]
    head = "\n".join(dict.fromkeys(errors[:20]))  # (first ones, each once)
    return (f"{head}\n...\n" if head else "") + output[-tail:]


def _worker(job: dict) -> int:
    """Child side: do one step, write {"seconds": ...} (or generation facts) to job["out"]."""
    step = job["step"]
    if step == "generate":
        result = _generate(job["customers"], job["seed"], Path(job["stem"]), job["csv"])
    elif step == "floor":
        import duckdb
        import pandas  # noqa: F401  (imported before the clock starts, as for the other steps)

        sql = (
            "SELECT customer_id, count(*), sum(amount), max(timestamp) "
            "FROM read_parquet($path) GROUP BY 1"
        )
        con = duckdb.connect()
        con.execute("SELECT 1 AS warm_up").df()  # DuckDB's lazy set-up of the pandas export
        start = time.perf_counter()
        con.execute(sql, {"path": job["path"]}).df()
        result = {"seconds": time.perf_counter() - start}
    elif step in ("ingest", "features"):
        from clvflow.data.ingest import load_transactions
        from clvflow.features.build import build_features

        start = time.perf_counter()
        tx, _ = load_transactions(job["path"], as_of=job["as_of"])
        if step == "features":
            build_features(tx, job["as_of"])
        result = {"seconds": time.perf_counter() - start}
    elif step == "score":
        result = {"seconds": _score(job)}
    elif step == "train":
        _train_model(Path(job["bundle"]), job["customers"])
        result = {}
    else:
        raise ValueError(f"unknown bench step {step!r}")
    Path(job["out"]).write_text(json.dumps(result))
    return 0


def _score(job: dict) -> float:
    """Seconds for read + features + predict + segments + write Parquet (model loaded first)."""
    from clvflow.data.files import write_table
    from clvflow.data.ingest import load_transactions
    from clvflow.mlops.bundle import load_model
    from clvflow.scoring.batch import score_transactions

    model, _ = load_model(job["model"])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tx, _ = load_transactions(job["path"], as_of=job["as_of"])
        scores = score_transactions(model, tx, job["as_of"]).scores
        write_table(scores, Path(tmp) / "scores.parquet")
        return time.perf_counter() - start


def _train_model(bundle: Path, n_customers: int) -> None:
    from clvflow.data.simulate import simulate
    from clvflow.mlops.bundle import build_manifest, write_bundle_files
    from clvflow.models.training import fit_model

    tx = simulate(n_customers, seed=12345).transactions
    model, _ = fit_model(tx, SIMULATION_AS_OF, SCORE_HORIZON_DAYS)
    staged = bundle.with_name(bundle.name + ".tmp")
    write_bundle_files(model, staged, build_manifest(model, cutoff=SIMULATION_AS_OF))
    staged.rename(bundle)


def _generate(n_customers: int, seed: int, stem: Path, csv: bool) -> dict:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from clvflow.data.simulate import simulate

    tx = simulate(n_customers, seed=seed).transactions
    table = pa.Table.from_pandas(tx, preserve_index=False)
    # each file written whole, then renamed: a killed run leaves no half-written log
    parquet = stem.with_suffix(".parquet")
    pq.write_table(table, f"{parquet}.tmp")
    os.replace(f"{parquet}.tmp", parquet)
    if csv:  # seconds resolution, as an export would write it
        text = table.set_column(1, "timestamp", table["timestamp"].cast(pa.timestamp("s")))
        pacsv.write_csv(text, f"{stem}.csv.tmp")
        os.replace(f"{stem}.csv.tmp", stem.with_suffix(".csv"))
    return {"rows": len(tx)}


# lifetimes runs in another interpreter (without clvflow), so this script imports nothing of it.
_LIFETIMES_SCRIPT = """
import json, sys, time
import pandas as pd
from lifetimes.utils import summary_data_from_transaction_data
job = json.loads(sys.argv[1])
tx = pd.read_parquet(job["path"])
end = pd.Timestamp(job["as_of"]) - pd.Timedelta(days=1)  # as_of is exclusive
start = time.perf_counter()
summary_data_from_transaction_data(
    tx, "customer_id", "timestamp", monetary_value_col="amount", observation_period_end=end,
    freq="D",
)
seconds = time.perf_counter() - start
open(job["out"], "w").write(json.dumps({"seconds": seconds}))
"""


def _lifetimes_row(n_customers: int, data: dict) -> Row:
    python = os.environ.get("CLVFLOW_LIFETIMES_PYTHON")
    if python:
        seconds, rss = _run_worker(
            python, {"step": "lifetimes", "path": data["parquet"], "as_of": data["as_of"]},
            script=_LIFETIMES_SCRIPT,
        )  # fmt: skip
        note = f"measured now ({python})"
        return Row(n_customers, data["rows"], "lifetimes", seconds["seconds"], rss, note=note)
    recorded = RECORDED_LIFETIMES.get(n_customers, {})
    if recorded.get("seconds") is None:
        note = "not measured: set CLVFLOW_LIFETIMES_PYTHON (see docs/benchmarks.md)"
        return Row(n_customers, data["rows"], "lifetimes", None, None, note=note)
    note = f"recorded {recorded['date']} (docs/benchmarks.md)"
    return Row(n_customers, data["rows"], "lifetimes", recorded["seconds"], None, note=note)


def _summary_row(n: int, n_rows: int, step: str, samples: list[tuple[float, float]]) -> Row:
    seconds = statistics.median(s for s, _ in samples)
    note = f"median of {len(samples)}" if len(samples) > 1 else "1 run"
    return Row(n, n_rows, step, seconds, max(r for _, r in samples), note=note)


def _check(rows: list[Row]) -> None:
    """Fill ratio_to_floor and the checks of one size's rows against the targets.

    PASS/FAIL only for the targets (features from Parquet); the CSV path gets its speed-up over
    lifetimes as a note.
    """
    by_step = {r.step: r for r in rows}
    floor = by_step["floor"].seconds
    assert floor is not None  # (only the lifetimes row may lack a time)
    for r in rows:
        if r.seconds is not None and r.step != "lifetimes":
            r.ratio_to_floor = r.seconds / floor
    lifetimes = by_step.get("lifetimes")
    lifetimes_seconds = lifetimes.seconds if lifetimes is not None else None
    for r in rows:
        seconds, rss = r.seconds, r.peak_rss_gb
        if r.step == "features (csv)" and lifetimes_seconds is not None:
            assert seconds is not None  # (only the lifetimes row may lack a time)
            r.note += f"; {lifetimes_seconds / seconds:.1f}x faster than lifetimes"
        if r.step == "score" and seconds is not None:
            features_seconds = by_step["features"].seconds
            assert features_seconds is not None and rss is not None  # (measured steps)
            ratio = seconds / features_seconds
            ok = ratio <= SCORE_RATIO_MAX and rss < SCORE_RSS_MAX_GB
            if r.customers < FLOOR_RATIO_FROM_CUSTOMERS:  # the target is set on the 1M log
                r.note += f"; {ratio:.1f}x features"
                continue
            r.check = (
                f"{'PASS' if ok else 'FAIL'}: {ratio:.1f}x features (max {SCORE_RATIO_MAX:g}x), "
                f"{rss:.1f} GB (max {SCORE_RSS_MAX_GB:g})"
            )
        if r.step != "features":
            continue
        ratio_to_floor = r.ratio_to_floor
        assert seconds is not None and rss is not None and ratio_to_floor is not None
        checks = []
        if r.customers >= FLOOR_RATIO_FROM_CUSTOMERS:
            ok = ratio_to_floor <= FLOOR_RATIO_MAX
            checks.append((ok, f"{ratio_to_floor:.1f}x floor (max {FLOOR_RATIO_MAX:g}x)"))
        checks.append((rss < RSS_MAX_GB, f"{rss:.1f} GB (max {RSS_MAX_GB:g})"))
        if lifetimes_seconds is not None:
            speedup = lifetimes_seconds / seconds
            text = f"{speedup:.1f}x faster than lifetimes (min {LIFETIMES_SPEEDUP_MIN:g}x)"
            checks.append((speedup >= LIFETIMES_SPEEDUP_MIN, text))
        verdict = "PASS" if all(ok for ok, _ in checks) else "FAIL"
        r.check = f"{verdict}: " + ", ".join(text for _, text in checks)


def format_table(rows: list[Row]) -> str:
    """The table printed by ``make bench``."""
    head = ("customers", "rows", "step", "seconds", "x floor", "peak RSS GB", "check", "note")
    lines = [head]
    for r in rows:
        lines.append(
            (
                f"{r.customers:,}",
                f"{r.rows:,}",
                r.step,
                "-" if r.seconds is None else f"{r.seconds:.2f}",
                "-" if r.ratio_to_floor is None else f"{r.ratio_to_floor:.2f}",
                "-" if r.peak_rss_gb is None else f"{r.peak_rss_gb:.2f}",
                r.check or "-",
                r.note,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    right = {0, 1, 3, 4, 5}
    out = []
    for k, line in enumerate(lines):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def machine_summary() -> str:
    """One line: date, cores, memory, CPU model (what the numbers were measured on)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return (
        f"clvflow bench {time.strftime('%Y-%m-%d %H:%M')}: {os.cpu_count()} cores, "
        f"{mem_gb:.0f} GiB RAM, {model}, Python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    sys.exit(main())
