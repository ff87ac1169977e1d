"""Single machine vs Spark ``local[2]`` (``make bench-spark``): wall time, CPU time and peak
memory of each step on simulated logs, each step in a fresh process.

Run as ``python -m benchmarks.bench_spark [--sizes 1000000,5000000] [--steps features,train,score]
[--n-estimators 50] [--local-train-max 1000000] [--local-max N] [--data-dir bench-data]``.

Logs: :func:`clvflow.data.simulate.simulate` in chunks of ``CHUNK_CUSTOMERS`` customers (seeds
``seed``, ``seed + 1``, ...; ids prefixed by the chunk), appended to one Parquet file and cached in
the data directory as ``spark_sim_<customers>_seed<seed>.parquet`` (written whole, then renamed):
memory stays bounded whatever the size. The scoring model is the one ``make bench`` trains once
(:func:`benchmarks.bench.prepare_model`, 20k customers, H 180).

Steps (one function each in ``STEPS``, per engine; a new step is one more entry):

- ``features``: read the Parquet log, clean it, build the feature table as of 2024-01-01 and
  write it as Parquet (local: ``load_transactions`` + ``build_features``; Spark:
  ``load_transactions_spark`` + ``build_features_spark``, written by the executors).
- ``train``: ``clvflow train --cutoff 2024-01-01 --horizon-days 90 --n-estimators N`` (default
  ``N_ESTIMATORS``, printed in the table) into a fresh MLflow sqlite store, vs the same with
  ``--engine spark`` (the boosters on the default ``--spark-sample-customers`` sample, BG/NBD x
  Gamma-Gamma on everyone). The single machine runs it up to ``--local-train-max`` customers
  (default 1M: its 1M train already peaks near 7 GB); above, the row says it was not run.
- ``score``: the whole ``clvflow score`` path (read, features, predictions with reasons,
  segments, Parquet): :func:`clvflow.scoring.batch.score_transactions` vs
  :func:`clvflow.spark.scoring.score_spark` + ``write_scores_parquet``.

Spark runs on ``local[2]`` with ``spark.driver.memory`` = ``DRIVER_MEMORY`` (2g) and clvflow's
session defaults otherwise (:func:`clvflow.spark.session.spark_session`: 8 shuffle partitions on
``local[2]``): in local mode the driver JVM also runs the executors, so its heap bounds what
Spark may hold. Memory: the peak of the summed RSS of the step's whole process tree (the Python
process, the JVM and Spark's Python workers), and separately the peak RSS of the Python driver
(the step's own process) and of the JVM, sampled every ``SAMPLE_SECONDS``; CPU time is summed
over the same tree. Timings exclude interpreter start-up and imports, and include the Spark
session's start.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench import (
    SCORE_MODEL_CUSTOMERS,
    SIMULATION_AS_OF,
    _simulator_version,
    _write_text_atomic,
    machine_summary,
    prepare_model,
    run_child,
)

SIZES = (1_000_000, 5_000_000)
CHUNK_CUSTOMERS = 500_000
MASTER = "local[2]"
DRIVER_MEMORY = "2g"
SAMPLE_SECONDS = 0.25
#: Trees per booster of the ``train`` step (``--n-estimators``; clvflow's default is 400).
N_ESTIMATORS = 50
HORIZON_DAYS = 90
#: Largest log the single machine trains on (``--local-train-max``).
LOCAL_TRAIN_MAX = 1_000_000
#: Settings of the benchmark's Spark sessions (the rest: clvflow's and Spark's defaults).
SPARK_CONFIG = {
    "spark.driver.memory": DRIVER_MEMORY,
    "spark.ui.showConsoleProgress": "false",
}


@dataclass
class Row:
    customers: int
    rows: int
    step: str
    engine: str
    wall: float | None = None
    cpu: float | None = None
    peak_gb: float | None = None
    python_gb: float | None = None
    jvm_gb: float | None = None
    note: str = ""


# ---- the steps (child side) -----------------------------------------------------------------


def features_local(job: dict) -> None:
    from clvflow.data.files import write_table
    from clvflow.data.ingest import load_transactions
    from clvflow.features.build import build_features

    tx, _ = load_transactions(job["path"], as_of=job["as_of"])
    write_table(build_features(tx, job["as_of"]), Path(job["tmp"]) / "features.parquet")


def features_spark(job: dict) -> None:
    from clvflow.spark.features import build_features_spark
    from clvflow.spark.ingest import load_transactions_spark

    spark = _session()
    tx, _ = load_transactions_spark(spark, job["path"], as_of=job["as_of"])
    out = (Path(job["tmp"]) / "features.parquet").as_uri()
    build_features_spark(tx, job["as_of"]).write.parquet(out)


def score_local(job: dict) -> None:
    from clvflow.data.files import write_table
    from clvflow.data.ingest import load_transactions
    from clvflow.mlops.bundle import load_model
    from clvflow.scoring.batch import score_transactions

    model, _ = load_model(job["model"])
    tx, _ = load_transactions(job["path"], as_of=job["as_of"])
    scores = score_transactions(model, tx, job["as_of"]).scores
    write_table(scores, Path(job["tmp"]) / "scores.parquet")


def score_spark(job: dict) -> None:
    from clvflow.mlops.bundle import load_model
    from clvflow.spark.ingest import load_transactions_spark
    from clvflow.spark.scoring import score_spark as score
    from clvflow.spark.scoring import write_scores_parquet

    model, _ = load_model(job["model"])
    spark = _session()
    tx, _ = load_transactions_spark(spark, job["path"], as_of=job["as_of"])
    result = score(model, tx, job["as_of"])
    write_scores_parquet(result.scores, Path(job["tmp"]) / "scores.parquet", result.customers)


def _train(job: dict, engine: list[str]) -> None:
    """``clvflow train`` in this process, into a fresh MLflow store in the step's folder."""
    from clvflow.cli.main import main

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{job['tmp']}/mlflow.db"
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    args = ["train", "--transactions", job["path"], "--cutoff", job["as_of"]]
    args += ["--horizon-days", str(HORIZON_DAYS), "--n-estimators", str(job["n_estimators"])]
    args += ["--export-dir", str(Path(job["tmp"]) / "bundle"), "--experiment-name", "bench"]
    code = main([*args, *engine])
    if code != 0:
        raise RuntimeError(f"clvflow train exited {code}")


def train_local(job: dict) -> None:
    _train(job, [])


def train_spark(job: dict) -> None:
    _session()  # (the CLI's spark_session() returns this one: the 2g driver)
    _train(job, ["--engine", "spark", "--spark-master", MASTER])


#: step -> {engine: function(job)}; each runs in its own process, timed as a whole.
STEPS: dict[str, dict[str, Callable[[dict], None]]] = {
    "features": {"local": features_local, "spark": features_spark},
    "train": {"local": train_local, "spark": train_spark},
    "score": {"local": score_local, "spark": score_spark},
}
ENGINES = ("local", "spark")


def _session():  # (a SparkSession; pyspark is imported lazily)
    from clvflow.spark.session import spark_session

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return spark_session(MASTER, SPARK_CONFIG, app_name="clvflow-bench")


class TreeSampler:
    """Peak summed RSS and total CPU seconds of this process and all its descendants, sampled
    from /proc in a background thread (Linux)."""

    def __init__(self, interval: float = SAMPLE_SECONDS) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self.peak_python = 0  # (this process: the Python driver)
        self.peak_jvm = 0  # (the java processes of the tree: Spark's driver JVM)
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
        found, todo = [], [os.getpid()]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def sample(self) -> None:
        total = jvm = 0
        for pid in self._tree():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
            name, fields = stat.split("(", 1)[1].rsplit(")", 1)
            fields = fields.split()
            rss = rss_pages * self._page
            total += rss
            if pid == os.getpid():
                self.peak_python = max(self.peak_python, rss)
            elif "java" in name:
                jvm += rss
            self._cpu[pid] = (int(fields[11]) + int(fields[12])) / self._tick  # utime + stime
        self.peak_bytes = max(self.peak_bytes, total)
        self.peak_jvm = max(self.peak_jvm, jvm)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        self.sample()
        self._start_cpu = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()

    @property
    def cpu_seconds(self) -> float:
        return sum(v - self._start_cpu.get(pid, 0.0) for pid, v in self._cpu.items())


def worker(job_text: str) -> int:
    """Child side: run one (step, engine), write wall, CPU and peak memory to job["out"]."""
    job = json.loads(job_text)
    step = STEPS[job["step"]][job["engine"]]
    if job["engine"] == "spark":
        import pyspark.sql  # noqa: F401  (imported before the clock starts)
    import pandas  # noqa: F401
    import xgboost  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="clvflow-bench-spark-") as tmp:
        job["tmp"] = tmp
        with TreeSampler() as sampler:
            start = time.perf_counter()
            step(job)
            wall = time.perf_counter() - start
        result = {
            "wall": wall,
            "cpu": sampler.cpu_seconds,
            "peak_gb": sampler.peak_bytes / 1e9,
            "python_gb": sampler.peak_python / 1e9,
            "jvm_gb": sampler.peak_jvm / 1e9 if job["engine"] == "spark" else None,
        }
    Path(job["out"]).write_text(json.dumps(result))
    return 0


_WORKER_SCRIPT = (
    "import sys; from benchmarks.bench_spark import worker; sys.exit(worker(sys.argv[1]))"
)


# ---- the parent ------------------------------------------------------------------------------


def prepare_log(n_customers: int, data_dir: Path, *, seed: int = 0) -> dict:
    """The cached chunked log (made if missing or stale): ``parquet`` path, ``rows``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = data_dir.resolve() / f"spark_sim_{n_customers}_seed{seed}"
    parquet, meta_path = stem.with_suffix(".parquet"), stem.with_suffix(".json")
    want = {"customers": n_customers, "seed": seed, "simulator": _simulator_version()}
    want |= {"chunk": CHUNK_CUSTOMERS, "as_of": SIMULATION_AS_OF}
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not (all(meta.get(k) == v for k, v in want.items()) and parquet.exists()):
        meta = want | {"rows": _generate(n_customers, seed, parquet)}
        _write_text_atomic(meta_path, json.dumps(meta, indent=2))
    return meta | {"parquet": str(parquet)}


def _generate(n_customers: int, seed: int, parquet: Path) -> int:
    """Simulate chunk by chunk into ``parquet`` (written as ``.tmp``, then renamed), timestamps
    in microseconds."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clvflow.data.simulate import simulate

    staged = parquet.with_name(parquet.name + ".tmp")
    rows, writer = 0, None
    try:
        for k, first in enumerate(range(0, n_customers, CHUNK_CUSTOMERS)):
            size = min(CHUNK_CUSTOMERS, n_customers - first)
            tx = simulate(size, seed=seed + k, id_prefix=f"C{k}-").transactions
            table = pa.Table.from_pandas(tx, preserve_index=False)
            if writer is None:
                # microsecond timestamps, as Spark writes them (it cannot read nanoseconds)
                writer = pq.ParquetWriter(staged, table.schema, coerce_timestamps="us")
            writer.write_table(table)
            rows += len(tx)
            del tx, table
    finally:
        if writer is not None:
            writer.close()
    os.replace(staged, parquet)
    return rows


def run_bench(
    sizes: list[int],
    data_dir: Path,
    *,
    steps: tuple[str, ...] = tuple(STEPS),
    seed: int = 0,
    model_customers: int = SCORE_MODEL_CUSTOMERS,
    n_estimators: int = N_ESTIMATORS,
    local_train_max: int = LOCAL_TRAIN_MAX,
    local_max: int | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every (size, step, engine) in its own process; the table rows."""
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    model = prepare_model(data_dir, log, model_customers) if "score" in steps else None
    rows = []
    for n in sizes:
        log(f"[bench-spark] {n:,} customers: preparing the simulated log ...")
        data = prepare_log(n, data_dir, seed=seed)
        first = len(rows)
        for step in steps:
            for engine in ENGINES:
                label = f"train ({n_estimators} trees)" if step == "train" else step
                row = Row(n, data["rows"], label, engine)
                rows.append(row)
                if step == "train" and engine == "local" and n > local_train_max:
                    row.note = f"not run: above --local-train-max {local_train_max:,}"
                    continue
                if engine == "local" and local_max is not None and n > local_max:
                    row.note = f"not run: above --local-max {local_max:,}"
                    continue
                log(f"[bench-spark] {n:,} customers: {step} on {engine}")
                job = {"step": step, "engine": engine, "path": data["parquet"]}
                job |= {"as_of": SIMULATION_AS_OF, "model": model, "n_estimators": n_estimators}
                try:
                    result, _ = run_child(sys.executable, job, _WORKER_SCRIPT)
                except RuntimeError as err:
                    row.note = f"failed: {_failure(str(err))}"
                    log(f"[bench-spark] {n:,} customers: {step} on {engine} failed:\n{err}")
                else:
                    row.wall, row.cpu, row.peak_gb = (
                        result["wall"],
                        result["cpu"],
                        result["peak_gb"],
                    )
                    row.python_gb, row.jvm_gb = result["python_gb"], result["jvm_gb"]
                log(f"[bench-spark] {n:,} customers: {step} on {engine}: {row}")
        _notes(rows[first:])
    return rows


def _failure(output: str) -> str:
    """The line of a failed child's output that says what failed: the last exception or error
    message (a Java or Python one), not the last line of its stack trace."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    causes = [
        line
        for line in lines
        if not line.startswith(("at ", "File ")) and ("Error" in line or "Exception" in line)
    ]
    return (causes[-1] if causes else lines[-1] if lines else "no output")[:160]


def _notes(rows: list[Row]) -> None:
    """Per step: Spark's CPU time as a multiple of the single machine's, and whether the single
    machine needed more memory than Spark's driver was given and than Spark's whole process
    tree took (in local mode the JVM's overhead and the Python workers come on top of the
    heap: no claim when Spark took more in all)."""
    limit_gb = float(DRIVER_MEMORY.rstrip("g")) * 2**30 / 1e9
    by = {(r.step, r.engine): r for r in rows}
    for step in {r.step for r in rows}:
        local, spark = by.get((step, "local")), by.get((step, "spark"))
        if local is None or spark is None or spark.cpu is None:
            continue
        notes = [spark.note] if spark.note else []
        if local.cpu:
            notes.append(f"{spark.cpu / local.cpu:.1f}x the single machine's CPU")
        if (
            local.peak_gb is not None
            and local.peak_gb > limit_gb
            and (spark.peak_gb is None or local.peak_gb > spark.peak_gb)
        ):
            notes.append(
                f"completed with a {DRIVER_MEMORY} driver where one machine peaked at "
                f"{local.peak_gb:.1f} GB"
            )
        spark.note = "; ".join(notes)


def format_table(rows: list[Row]) -> str:
    """The table printed by ``make bench-spark`` (Markdown, as quoted in the README)."""
    head = (
        "| customers | rows | step | engine | wall s | CPU s | peak GB | Python driver GB | "
        "JVM GB | note |"
    )
    lines = [head, "|---:|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:

        def num(v: float | None, digits: int) -> str:
            return "-" if v is None else f"{v:,.{digits}f}"

        engine = "single machine" if r.engine == "local" else f"Spark {MASTER}, {DRIVER_MEMORY}"
        lines.append(
            f"| {r.customers:,} | {r.rows:,} | {r.step} | {engine} | {num(r.wall, 1)} | "
            f"{num(r.cpu, 1)} | {num(r.peak_gb, 2)} | {num(r.python_gb, 2)} | "
            f"{num(r.jvm_gb, 2)} | {r.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_spark", description=__doc__)
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="customers, comma-separated"
    )
    parser.add_argument("--steps", default=",".join(STEPS), help="steps, comma-separated")
    parser.add_argument("--data-dir", default="bench-data", help="cache of simulated logs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--n-estimators", type=int, default=N_ESTIMATORS, help="trees of the train step"
    )
    parser.add_argument(
        "--local-train-max",
        type=int,
        default=LOCAL_TRAIN_MAX,
        help="largest log the single machine trains on",
    )
    parser.add_argument(
        "--local-max",
        type=int,
        default=None,
        help="largest log the single machine runs any step on (default: no limit)",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    steps = tuple(s.strip() for s in args.steps.split(",") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; choose from {list(STEPS)}")
    rows = run_bench(
        sizes,
        Path(args.data_dir),
        steps=steps,
        seed=args.seed,
        n_estimators=args.n_estimators,
        local_train_max=args.local_train_max,
        local_max=args.local_max,
    )
    print(machine_summary())
    print(f"Spark: master {MASTER}, spark.driver.memory={DRIVER_MEMORY}")
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    return 1 if any(r.note.startswith("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
