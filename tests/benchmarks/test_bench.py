"""benchmarks.bench: the machinery behind ``make bench`` runs end to end on a tiny log."""

from __future__ import annotations

import os
import sys

import pytest

from benchmarks import bench

# Stands in for lifetimes (which needs pandas < 2) so the lifetimes step's plumbing is tested too.
FAKE_LIFETIMES_UTILS = """
def summary_data_from_transaction_data(tx, customer_id_col, datetime_col, **kwargs):
    return tx.groupby(customer_id_col).size().to_frame("frequency")
"""


@pytest.fixture
def fake_lifetimes(tmp_path, monkeypatch):
    package = tmp_path / "fake" / "lifetimes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "utils.py").write_text(FAKE_LIFETIMES_UTILS)
    path = [str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    monkeypatch.setenv("CLVFLOW_LIFETIMES_PYTHON", sys.executable)


@pytest.mark.slow
def test_bench_runs_every_step_and_prints_the_table(tmp_path, fake_lifetimes):
    data_dir = tmp_path / "data"
    rows = bench.run_bench(
        [2000], data_dir, runs=1, lifetimes_sizes=(2000,), model_customers=1500, log=lambda _: None
    )

    steps = ["floor", "ingest", "features", "features (csv)", "score", "lifetimes"]
    assert [r.step for r in rows] == steps
    assert all(r.seconds > 0 and r.peak_rss_gb > 0 for r in rows)
    assert {r.rows for r in rows} == {bench.prepare_data(2000, data_dir)["rows"]}
    features = next(r for r in rows if r.step == "features")
    assert features.ratio_to_floor == pytest.approx(features.seconds / rows[0].seconds)
    assert features.check.startswith(("PASS", "FAIL")) and "lifetimes" in features.check
    score = next(r for r in rows if r.step == "score")
    assert score.check == "" and "x features" in score.note  # the target is set on 1M only
    big = bench.Row(1_000_000, 1, "score", 30.0, 2.0)
    feats = bench.Row(1_000_000, 1, "features", 10.0, 1.0)
    bench._check([bench.Row(1_000_000, 1, "floor", 5.0, 0.5), feats, big])
    assert big.check.startswith("FAIL: 3.0x features")
    table = bench.format_table(rows)
    assert all(step in table for step in bench.STEPS)
    assert "2,000" in table and "peak RSS GB" in table


def test_cached_log_is_reused(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    first = bench.prepare_data(300, data_dir)
    stamp = os.path.getmtime(first["parquet"])
    monkeypatch.setattr(bench, "_run_worker", lambda *a, **k: pytest.fail("regenerated"))
    again = bench.prepare_data(300, data_dir)
    assert again == first and os.path.getmtime(again["parquet"]) == stamp
    assert again["csv"] is not None and os.path.exists(again["csv"])


def test_recorded_lifetimes_figure_is_shown_without_an_interpreter(monkeypatch):
    monkeypatch.delenv("CLVFLOW_LIFETIMES_PYTHON", raising=False)
    row = bench._lifetimes_row(100_000, {"rows": 10, "parquet": "unused", "as_of": "2024-01-01"})
    assert row.seconds == bench.RECORDED_LIFETIMES[100_000]["seconds"]
    assert row.note.startswith("recorded 20")
    unmeasured = bench._lifetimes_row(7, {"rows": 10, "parquet": "unused", "as_of": "2024-01-01"})
    assert unmeasured.seconds is None and "CLVFLOW_LIFETIMES_PYTHON" in unmeasured.note


def test_a_failed_childs_error_line_survives_a_long_stack_trace() -> None:
    """Issue 12: a child's error message is kept even when its stack trace is longer than the
    tail shown (the 5M Spark score's Java message was cut off that way)."""
    from benchmarks.bench import _failure_text

    output = (
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "py4j.protocol.Py4JJavaError: An error occurred while calling o9.count.\n"
        "Caused by: org.apache.spark.memory.SparkOutOfMemoryError: Unable to acquire memory\n"
        + "\tat org.apache.spark.util.SparkErrorUtils.tryWithSafeFinally(X.scala:86)\n"
        * 200
    )
    text = _failure_text(output, tail=300)
    assert text.splitlines()[:2] == [
        "py4j.protocol.Py4JJavaError: An error occurred while calling o9.count.",
        "Caused by: org.apache.spark.memory.SparkOutOfMemoryError: Unable to acquire memory",
    ]
    assert text.endswith(output[-300:]) and "SparkErrorUtils" not in text.splitlines()[0]
    assert _failure_text("plain failure\n") == "plain failure\n"
