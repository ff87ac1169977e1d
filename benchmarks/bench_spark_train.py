"""Benchmark of training on Spark (``make bench-spark-train``): ``clvflow backtest`` on one
machine and with ``--engine spark`` on ``local[2]``, side by side.

Run as ``python -m benchmarks.bench_spark_train [--sizes 100000,1000000] [--sample-customers
25000] [--local-max 100000] [--n-estimators 50] [--data-dir bench-data]``.

For each size the simulated log of ``make bench`` (:func:`benchmarks.bench.prepare_data`,
cached) is backtested at 2024-01-01 with a 90-day horizon: the model ``clvflow train`` would
export there (internal backtest, refit) judged on the 90 days after, in a fresh process each,
into a fresh MLflow sqlite store:

- ``local``: the single-machine engine on the whole log (sizes up to ``--local-max``; above, the
  row says why it was not run);
- ``spark``: ``--engine spark --spark-master local[2]`` with ``spark.driver.memory=2g``, the
  boosters on a ``--spark-sample-customers`` sample, BG/NBD x Gamma-Gamma and the data-quality
  counts on everyone. Spark reads a copy of the Parquet log with microsecond timestamps (cached
  beside it: Spark does not read pandas' nanosecond Parquet timestamps).

Measured: wall seconds of the command (interpreter and JVM start included), CPU seconds of the
process tree (the Python driver and the JVM, sampled from ``/proc`` every 0.5 s), peak RSS of the
Python driver and of the JVM (same samples), the customers the boosters trained on, and the
backtest's headline metrics with their 95% bootstrap intervals (over the judged customers: the
sample's on Spark), read back from the run's MLflow store.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench import machine_summary, prepare_data

CUTOFF = "2024-01-01"
HORIZON_DAYS = 90
#: Metrics shown with their intervals (MLflow names; the intervals are ``<name>_ci95_low/high``).
SHOWN = {
    "spend_gini_norm": "gini_norm",
    "spend_top_decile_capture": "top_decile",
    "spend_agg_bias": "agg_bias",
    "churn_roc_auc": "roc_auc",
}
SPARK_DRIVER_MEMORY = "2g"


@dataclass
class Result:
    """One backtest run."""

    customers: int
    engine: str
    trained_on: int | None = None
    wall: float | None = None
    cpu: float | None = None
    driver_gb: float | None = None
    jvm_gb: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    note: str = ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--sample-customers", type=int, default=25_000)
    parser.add_argument("--local-max", type=int, default=100_000)
    parser.add_argument("--n-estimators", type=int, default=50)
    parser.add_argument("--data-dir", type=Path, default=Path("bench-data"))
    parser.add_argument(
        "--spark-dir", type=Path, default=Path("bench-data"), help="where the Spark copy goes"
    )
    args = parser.parse_args(argv)
    print(machine_summary(), flush=True)
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        data = prepare_data(n, args.data_dir)
        spark_path = spark_copy(Path(data["parquet"]), args.spark_dir)
        common = [
            "--cutoff",
            CUTOFF,
            "--horizon-days",
            str(HORIZON_DAYS),
            "--n-estimators",
            str(args.n_estimators),
        ]
        spark = [*common, "--engine", "spark", "--spark-master", "local[2]"]
        spark += ["--spark-sample-customers", str(args.sample_customers)]
        results.append(run(n, "spark", [str(spark_path), *spark]))
        print(format_table(results), flush=True)
        if n <= args.local_max:
            results.append(run(n, "local", [data["parquet"], *common]))
        else:
            results.append(
                Result(n, "local", note=f"not run: above --local-max {args.local_max:,}")
            )
        print(format_table(results), flush=True)
    print()
    print(format_table(results))
    return 0


def spark_copy(parquet: Path, spark_dir: Path) -> Path:
    """The log with microsecond timestamps, written once beside the other cached data."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spark_dir.mkdir(parents=True, exist_ok=True)
    target = spark_dir.resolve() / f"{parquet.stem}_us.parquet"
    if target.exists() and target.stat().st_mtime >= parquet.stat().st_mtime:
        return target
    table = pq.read_table(parquet)
    schema = pa.schema(
        [
            f.with_type(pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f
            for f in table.schema
        ]
    )
    staged = target.with_name(target.name + ".tmp")
    pq.write_table(table.cast(schema), staged)
    os.replace(staged, target)
    return target


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _sample(pid: int) -> tuple[float, float, str] | None:
    """(RSS GB, CPU seconds, command name) of one process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS")), 0)
    return rss * 1024 / 1e9, cpu, stat.split("(", 1)[1].split(")", 1)[0]


def run(n: int, engine: str, cli: list[str]) -> Result:
    """One ``clvflow backtest`` in a fresh process tree, measured (module docstring)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_SUBMIT_ARGS": f"--driver-memory {SPARK_DRIVER_MEMORY} pyspark-shell",
        }
        cmd = [sys.executable, "-m", "clvflow.cli.main", "backtest", "--transactions", *cli]
        cmd += ["--experiment-name", "bench"]
        print(f"[bench] {n:,} customers, {engine}: {' '.join(cmd[3:])}", flush=True)
        start = time.perf_counter()
        peak = {"python": 0.0, "java": 0.0}
        cpu: dict[int, float] = {}
        with open(Path(tmp) / "log", "w+") as log:
            child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            while child.poll() is None:
                for pid in _tree(child.pid):
                    got = _sample(pid)
                    if got is None:
                        continue
                    rss, seconds, name = got
                    kind = "java" if "java" in name else "python"
                    peak[kind] = max(peak[kind], rss)
                    cpu[pid] = seconds
                time.sleep(0.5)
            wall = time.perf_counter() - start
            if child.returncode != 0:
                log.seek(0)
                raise RuntimeError(f"{engine} backtest failed:\n{log.read()[-4000:]}")
            log.seek(0)
            trained = next(
                (line for line in log.read().splitlines() if "boosters trained on" in line), ""
            )
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        client = mlflow.MlflowClient()
        (run_,) = client.search_runs([client.get_experiment_by_name("bench").experiment_id])
        params, metrics = run_.data.params, run_.data.metrics
    on = int(params.get("sample_customers", metrics.get("n_customers_scored", 0)))
    print(f"[bench] done in {wall:.0f} s; {trained.strip()}", flush=True)
    return Result(
        n,
        engine,
        trained_on=on,
        wall=wall,
        cpu=sum(cpu.values()),
        driver_gb=peak["python"],
        jvm_gb=peak["java"] or None,
        metrics=metrics,
    )


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def format_table(results: list[Result]) -> str:
    """Markdown table, one row per run."""
    head = ["customers", "engine", "boosters trained on", "wall s", "CPU s"]
    head += ["driver peak GB", "JVM peak GB", *SHOWN.values(), "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r.customers:,}", r.engine, _fmt(r.trained_on, ",")]
        cells += [_fmt(r.wall, ".0f"), _fmt(r.cpu, ".0f")]
        cells += [_fmt(r.driver_gb, ".2f"), _fmt(r.jvm_gb, ".2f")]
        for name in SHOWN:
            if name in r.metrics:
                low, high = (r.metrics.get(f"{name}_ci95_{s}") for s in ("low", "high"))
                cells.append(f"{r.metrics[name]:.3f} [{_fmt(low, '.3f')}, {_fmt(high, '.3f')}]")
            else:
                cells.append("")
        cells.append(r.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
