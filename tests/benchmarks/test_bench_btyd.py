"""benchmarks.bench_btyd: the machinery behind ``make bench-btyd`` runs end to end on a tiny log."""

from __future__ import annotations

import os
import sys

import pytest
from benchmarks.bench_btyd import Row

from benchmarks import bench_btyd

# Stands in for lifetimes (not a dependency) so the lifetimes step's plumbing is tested too.
FAKE_LIFETIMES = """
import pandas as pd

class BetaGeoFitter:
    def fit(self, frequency, recency, T):
        self.params_ = pd.Series({"r": 1.0, "alpha": 2.0, "a": 3.0, "b": 4.0})
        return self

class GammaGammaFitter:
    def fit(self, frequency, monetary_value):
        self.params_ = pd.Series({"p": 5.0, "q": 6.0, "v": 7.0})
        return self
"""

PARAMS = {"r": 1.0, "alpha": 2.0, "a": 3.0, "b": 4.0, "p": 5.0, "q": 6.0, "gamma": 7.0}


@pytest.fixture
def fake_lifetimes(tmp_path, monkeypatch):
    package = tmp_path / "fake" / "lifetimes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_LIFETIMES)
    path = [str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    monkeypatch.setenv("CLVFLOW_LIFETIMES_PYTHON", sys.executable)


@pytest.mark.slow
def test_bench_btyd_runs_every_step_and_prints_the_table(tmp_path, fake_lifetimes):
    """Issue 11 item 2: `make bench-btyd` times clvflow's cold, warm and numerical fits and
    lifetimes' on one summary and prints them in one table."""
    rows = bench_btyd.run_bench([1500], tmp_path / "data", runs=1, log=lambda _: None)
    assert [r.step for r in rows] == list(bench_btyd.STEPS)
    assert all(r.seconds > 0 for r in rows)
    assert len({r.histories for r in rows}) == 1 and 0 < rows[0].histories <= 1500
    assert rows[-1].params == PARAMS
    cold, warm, numerical = rows[:3]
    assert cold.params["r"] == pytest.approx(numerical.params["r"], abs=5e-3)
    assert warm.params["r"] == pytest.approx(cold.params["r"], rel=1e-4)
    assert cold.check.startswith(("PASS", "FAIL")) and "x lifetimes" in cold.check
    assert numerical.check == "" and "clvflow is" in numerical.note
    table = bench_btyd.format_table(rows)
    assert all(step in table for step in bench_btyd.STEPS) and "1,500" in table


def test_check_compares_with_lifetimes() -> None:
    """Issue 11 item 2: the target is clvflow's time <= lifetimes' on the same summary."""
    lifetimes = Row(10, 5, "lifetimes", 4.0, dict(PARAMS))
    cold = Row(10, 5, "clvflow", 2.0, PARAMS | {"r": 1.1})
    warm = Row(10, 5, "clvflow warm", 5.0, dict(PARAMS))
    numerical = Row(10, 5, "clvflow numerical", 8.0, dict(PARAMS))
    bench_btyd._check([cold, warm, numerical, lifetimes])
    assert cold.check == "PASS: 0.50x lifetimes (max 1x)"
    assert cold.note == "; params within 1.0e-01 of the lifetimes fit"
    assert warm.check == "FAIL: 1.25x lifetimes (max 1x)"
    assert numerical.check == ""
    assert numerical.note == "; params within 0.0e+00 of the lifetimes fit; clvflow is 4.0x faster"
