"""The robustness grid's small version: ``clvflow train`` in its own process on both sides of
the history rule (CDNOW and a 3-month simulated retail log); exit 0 or exit 2, no traceback."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks import bench_robustness

pytestmark = pytest.mark.slow


def test_quick_grid_trains_or_refuses_as_the_rule_says(tmp_path):
    outcomes = bench_robustness.run(quick=True, directory=tmp_path)
    got = {(o.case.data, o.case.horizon_days): (o.case.should_train, o.exit_code) for o in outcomes}
    assert got == {
        ("cdnow", 30): (True, 0),  # 120 days of history > 30 + 30
        ("cdnow", 90): (False, 2),  # 120 days <= 90 + 30
        ("retail 3m", 30): (True, 0),  # a young shop with wholesale buyers and cancellations
    }
    assert all(o.as_expected for o in outcomes)
    refused = next(o for o in outcomes if o.exit_code == 2)
    assert refused.note.startswith("horizon_days=90 is too long for the history")
    young = next(o for o in outcomes if o.case.data == "retail 3m")
    assert young.registered == "candidate"  # no internal backtest: never champion
    table = bench_robustness.format_table(outcomes)
    assert "3 of 3 cases as expected; tracebacks: 0" in table


def test_the_expectation_is_history_beyond_horizon_plus_30_days():
    case = bench_robustness.Case(
        "cdnow", "cdnow", pd.Timestamp("1997-08-01"), 181, bench_robustness.CDNOW_FIRST_DAY
    )
    assert case.history_days == 212 and case.should_train
    case.horizon_days = 182
    assert not case.should_train
