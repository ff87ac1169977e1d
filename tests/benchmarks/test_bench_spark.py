"""benchmarks.bench_spark: its memory and CPU sampler on real child processes, its notes and
table by hand (the end-to-end run starts two JVMs per step: `make bench-spark`, not here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def test_tree_sampler_reports_the_python_driver_and_the_jvm_apart(tmp_path: Path) -> None:
    """Issue 12 item 3 (bench-spark): in local mode the driver JVM does Spark's work, so the
    Python driver's peak (this process) and the JVM's (children named java) are reported
    separately: a 300 MB child started as `java` counts in the JVM's peak, not the driver's."""
    java = tmp_path / "java"
    java.symlink_to(sys.executable)  # (the process's name is the file's: java)
    hold = "import time; x = bytearray(300_000_000); x[::4096] = b'1' * len(x[::4096]); time.sleep(1.5)"
    own = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    with TreeSampler(interval=0.05) as sampler:
        assert subprocess.Popen([str(java), "-c", hold]).wait() == 0
    assert sampler.peak_jvm > 300_000_000
    assert 0 < sampler.peak_python < own + 100_000_000  # (not the child's 300 MB)
    assert sampler.peak_bytes > sampler.peak_python + 300_000_000


def test_notes_and_table_compare_the_engines_per_step() -> None:
    """Issue 12 item 3 (bench-spark): Spark's CPU time as a multiple of the single machine's,
    and the note that Spark completed with its 2g driver where one machine needed more; the
    Python driver's and the JVM's peaks in their own columns; a failed step and a step not run
    show as such; no memory claim when Spark's whole tree took more than one machine."""
    rows = [
        Row(5_000_000, 94_000_000, "score", "local", 200.0, 190.0, 9.5, 9.5),
        Row(5_000_000, 94_000_000, "score", "spark", 500.0, 760.0, 3.1, 0.4, 2.6),
        Row(5_000_000, 94_000_000, "features", "local", 40.0, 39.0, 1.5, 1.5),
        Row(5_000_000, 94_000_000, "features", "spark", note="failed: OOM"),
        Row(5_000_000, 94_000_000, "train (50 trees)", "local", note="not run: above 1,000,000"),
        Row(5_000_000, 94_000_000, "train (50 trees)", "spark", 900.0, 1000.0, 3.0, 1.0, 2.1),
        Row(1_000_000, 18_000_000, "score", "local", 480.0, 380.0, 2.7, 2.7),
        Row(1_000_000, 18_000_000, "score", "spark", 850.0, 950.0, 6.3, 0.2, 2.7),
    ]
    _notes(rows[:6])
    _notes(rows[6:])  # (one machine's 2.7 GB is above the 2g driver, but Spark's tree took 6.3)
    assert rows[7].note == "2.5x the single machine's CPU"
    assert rows[1].note == (
        "4.0x the single machine's CPU; completed with a 2g driver where one machine peaked "
        "at 9.5 GB"
    )
    assert rows[3].note == "failed: OOM" and rows[5].note == ""
    table = format_table(rows).splitlines()
    assert table[0] == (
        "| customers | rows | step | engine | wall s | CPU s | peak GB | Python driver GB | "
        "JVM GB | note |"
    )
    assert table[3] == (
        "| 5,000,000 | 94,000,000 | score | Spark local[2], 2g | 500.0 | 760.0 | 3.10 | 0.40 | "
        "2.60 | 4.0x the single machine's CPU; completed with a 2g driver where one machine "
        "peaked at 9.5 GB |"
    )
    assert table[5].endswith("| - | - | - | - | - | failed: OOM |")
    assert table[6].endswith("| - | - | - | - | - | not run: above 1,000,000 |")
    assert set(STEPS) == {"features", "train", "score"} and all(
        set(engines) == {"local", "spark"} for engines in STEPS.values()
    )


def test_a_failed_step_is_noted_by_its_error_not_its_last_stack_line() -> None:
    """Issue 12: a Spark step that fails is noted by the exception's message (the 5M score's
    note once read only "at org.apache.spark.util.SparkErrorUtils...")."""
    from benchmarks.bench_spark import _failure

    output = (
        "bench step score failed:\n"
        "py4j.protocol.Py4JJavaError: An error occurred while calling o123.parquet.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 0 failed\n"
        "\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAG.scala:1)\n"
        "Caused by: java.lang.OutOfMemoryError: Java heap space\n"
        "\tat org.apache.spark.util.SparkErrorUtils.tryWithSafeFinally$(SparkErrorUtils.scala:83)\n"
    )
    assert _failure(output) == "Caused by: java.lang.OutOfMemoryError: Java heap space"
    assert _failure("killed\n") == "killed"
