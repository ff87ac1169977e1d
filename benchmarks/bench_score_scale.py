"""Scoring at scale (``make bench-score-scale``): ``clvflow score`` on millions of customers.

Run as ``python -m benchmarks.bench_score_scale [--sizes 1000000,2000000,5000000,10000000]
[--data-dir bench-data] [--parts K]``.

For each size a simulated log (:func:`clvflow.data.simulate.simulate`) is generated once in blocks
of ``BLOCK_CUSTOMERS`` customers (block ``b``: seed ``1000 x seed + b``, ids ``A0000001``,
``B0000001``, ... so that every customer is distinct) and appended block by block as Parquet row
groups to a file that is renamed into place when whole (cached in the data directory). The model
is ``make bench``'s scoring model (:func:`benchmarks.bench.prepare_model`, cached).

Each size is then scored as a user would, in a fresh process: ``clvflow score --model M
--transactions LOG --output scores.parquet --no-reasons`` (default as-of, automatic chunking
unless ``--parts`` is given). ``--no-reasons``: TreeSHAP reasons cost about 86 s per 100k
customers, so at millions they are skipped, as the README advises. Measured: wall seconds of the
command (interpreter start-up and imports included), the child's user + system CPU seconds and its
peak RSS (``wait4``, :func:`benchmarks.bench.run_child`). Run the big sizes alone
(``flock /tmp/clvflow-bigrun.lock ...`` on a shared machine), largest last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench import (
    SCORE_MODEL_CUSTOMERS,
    machine_summary,
    prepare_model,
    run_child,
)
from clvflow.data.partition import PART_ROWS

BLOCK_CUSTOMERS = 1_000_000
#: Target (issue "Training a million customers in minutes"): 20M customers (or 10M with the
#: curve) scored under this peak RSS.
RSS_MAX_GB = 16.0

# The child: the CLI as a user runs it, timed from before its imports.
_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from clvflow.cli.main import main
job = json.loads(sys.argv[1])
code = main(job["argv"])
seconds = time.perf_counter() - start
open(job["out"], "w").write(json.dumps({"seconds": seconds, "code": code}))
sys.exit(code)
"""


@dataclass
class Row:
    customers: int
    rows: int
    parts: str
    wall_s: float
    cpu_s: float
    peak_rss_gb: float


def prepare_log(n_customers: int, data_dir: Path, seed: int = 0) -> dict:
    """The cached simulated log of ``n_customers`` (made block by block if missing)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    stem = data_dir.resolve() / f"scale_{n_customers}_seed{seed}"
    path, meta_path = stem.with_suffix(".parquet"), stem.with_suffix(".json")
    if meta_path.exists() and path.exists():
        return json.loads(meta_path.read_text()) | {"path": str(path)}
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clvflow.data.simulate import simulate

    blocks = -(-n_customers // BLOCK_CUSTOMERS)
    if blocks > 26:
        raise ValueError(f"at most {26 * BLOCK_CUSTOMERS:,} customers (one id letter per block)")
    staged = path.with_name(path.name + ".tmp")
    rows = 0
    writer = None
    try:
        for b in range(blocks):
            size = min(BLOCK_CUSTOMERS, n_customers - b * BLOCK_CUSTOMERS)
            print(
                f"[bench] simulating block {b + 1}/{blocks} ({size:,} customers)", file=sys.stderr
            )
            tx = simulate(size, seed=1000 * seed + b, id_prefix=chr(ord("A") + b)).transactions
            table = pa.Table.from_pandas(tx, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(staged, table.schema)
            writer.write_table(table, row_group_size=1 << 20)
            rows += len(tx)
            del tx, table
    finally:
        if writer is not None:
            writer.close()
    os.replace(staged, path)  # written whole, then renamed: a killed run leaves no half log
    meta = {"customers": n_customers, "rows": rows, "seed": seed}
    meta_path.write_text(json.dumps(meta))
    return meta | {"path": str(path)}


def score_once(log: dict, model: str, parts: int | None) -> Row:
    """``clvflow score`` on the log in a fresh process: wall, CPU, peak RSS."""
    with tempfile.TemporaryDirectory(dir=Path(log["path"]).parent) as tmp:
        argv = ["score", "--model", model, "--transactions", log["path"], "--no-reasons"]
        argv += ["--output", str(Path(tmp) / "scores.parquet")]
        if parts is not None:
            argv += ["--parts", str(parts)]
        start = time.perf_counter()
        result, usage = run_child(sys.executable, {"step": "score", "argv": argv}, _SCRIPT)
        wall = time.perf_counter() - start
    return Row(
        log["customers"],
        log["rows"],
        "auto" if parts is None else str(parts),
        wall,
        usage["cpu"],
        usage["rss_gb"],
    )


def format_table(rows: list[Row]) -> str:
    head = (
        f"{'customers':>11} {'rows':>12} {'parts':>6} {'wall s':>8} {'CPU s':>8} "
        f"{'peak RSS GB':>11} {'GB / M cust':>11}  check"
    )
    lines = [head]
    for r in rows:
        check = "ok" if r.peak_rss_gb <= RSS_MAX_GB else f"FAIL (> {RSS_MAX_GB:g} GB)"
        lines.append(
            f"{r.customers:>11,} {r.rows:>12,} {r.parts:>6} {r.wall_s:>8.1f} {r.cpu_s:>8.1f} "
            f"{r.peak_rss_gb:>11.2f} {r.peak_rss_gb / (r.customers / 1e6):>11.3f}  {check}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_score_scale", description=__doc__
    )
    parser.add_argument("--sizes", default="1000000,2000000,5000000,10000000")
    parser.add_argument("--data-dir", default="bench-data", help="cache of simulated logs")
    parser.add_argument(
        "--parts",
        default="rows",
        help="clvflow score --parts: a number, 'auto' (the command's own choice) or 'rows' "
        "(default: one part per PART_ROWS rows, so that every size shows the chunked path)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    data_dir = Path(args.data_dir)
    model = prepare_model(
        data_dir, lambda m: print(m, file=sys.stderr, flush=True), SCORE_MODEL_CUSTOMERS
    )
    rows = []
    for n in sizes:
        log = prepare_log(n, data_dir, args.seed)
        print(
            f"[bench] scoring {n:,} customers ({log['rows']:,} rows)", file=sys.stderr, flush=True
        )
        parts = {"auto": None, "rows": -(-log["rows"] // PART_ROWS)}.get(args.parts)
        rows.append(
            score_once(
                log, model, int(args.parts) if parts is None and args.parts != "auto" else parts
            )
        )
        print(format_table(rows[-1:]).splitlines()[1], file=sys.stderr, flush=True)
    print(machine_summary())
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 1 if any(r.peak_rss_gb > RSS_MAX_GB for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
