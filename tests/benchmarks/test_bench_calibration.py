"""The calibration benchmark end to end on one small simulated backtest (`--quick`)."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.bench_calibration import cases, coverage_of, format_coverage, format_purchases


def test_quick_run_prints_both_tables_with_calibrated_coverage() -> None:
    """Issue 10 items 4, 5: one backtest on the simulator (calibrated on the held-out internal
    backtest window): the coverage row holds the PIT coverage within 3 points of 80% and the
    literal coverage within 3 points of its nominal; the purchase table has the ten deciles,
    whose predicted and actual means add up to the customers' totals."""
    [case] = cases(quick=True)
    assert case.calibration.source.endswith("held out")
    c = coverage_of(case)
    assert c["pit"] == pytest.approx(0.8, abs=0.03)
    assert c["covered"] == pytest.approx(c["nominal"], abs=0.03)
    assert c["nominal"] > 0.8  # the mass at 0 puts more than 80% inside [p10, p90]
    text = format_coverage([(case, c)])
    assert text.count("\n") == 2 and f"{c['pit']:.1%}" in text
    purchases = format_purchases([case])
    rows = [line for line in purchases.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 10
    predicted = np.mean([float(r.split("|")[2]) for r in rows])
    expected = case.frame["expected_purchases"].mean()
    assert predicted == pytest.approx(expected, abs=0.001)
