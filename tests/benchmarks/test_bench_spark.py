"""benchmarks.bench_spark: its memory and CPU sampler on real child processes, its notes and
table by hand (the end-to-end run starts two JVMs per step: `make bench-spark`, not here)."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.bench_spark import STEPS, Row, TreeSampler, _notes, format_table


def test_tree_sampler_counts_the_memory_and_cpu_of_child_processes() -> None:
    """Issue 12 item 3 (bench-spark): the peak is the summed RSS of the whole process tree (in
    local mode the JVM and Spark's Python workers are children of the step's process) and
    the CPU time includes theirs."""
    hold = "import time; x = bytearray(300_000_000); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5)"
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass"
    with TreeSampler(interval=0.05) as sampler:
        children = [subprocess.Popen([sys.executable, "-c", code]) for code in (hold, burn)]
        for child in children:
            assert child.wait() == 0
    assert sampler.peak_bytes > 300_000_000  # the child's 300 MB, on top of this process
    assert sampler.cpu_seconds >= 0.8  # the burner's second, sampled every 0.05 s


def test_notes_and_table_compare_the_engines_per_step() -> None:
    """Issue 12 item 3 (bench-spark): Spark's time as a multiple of the single machine's, and
    the note that Spark completed with its 2g driver where one machine needed more; a failed
    step shows as such."""
    rows = [
        Row(5_000_000, 94_000_000, "score", "local", 200.0, 190.0, 9.5),
        Row(5_000_000, 94_000_000, "score", "spark", 500.0, 800.0, 3.1),
        Row(5_000_000, 94_000_000, "features", "local", 40.0, 39.0, 1.5),
        Row(5_000_000, 94_000_000, "features", "spark", None, None, None, "failed: OOM"),
    ]
    _notes(rows)
    assert rows[1].note == (
        "2.5x the single machine's time; completed with a 2g driver where one machine peaked "
        "at 9.5 GB"
    )
    assert rows[3].note == "failed: OOM"
    table = format_table(rows).splitlines()
    assert table[0] == "| customers | rows | step | engine | wall s | CPU s | peak GB | note |"
    assert table[3] == (
        "| 5,000,000 | 94,000,000 | score | Spark local[2], 2g | 500.0 | 800.0 | 3.10 | "
        "2.5x the single machine's time; completed with a 2g driver where one machine peaked "
        "at 9.5 GB |"
    )
    assert table[5].endswith("| - | - | - | failed: OOM |")
    assert set(STEPS) >= {"features", "score"} and all(
        set(engines) == {"local", "spark"} for engines in STEPS.values()
    )
