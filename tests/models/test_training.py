"""What train exports when no internal backtest can judge the boosters (CDNOW, counts only)."""

from __future__ import annotations

import pandas as pd
import pytest

from clvflow.data.ingest import load_cdnow
from clvflow.models.training import SnapshotSettings, internal_backtest_possible, unjudged_choice


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow()


@pytest.mark.parametrize(
    ("cutoff", "horizon_days", "history", "method"),
    [
        ("1997-08-01", 181, 31, "bgnbd"),  # 30 days of customers predicting 181: extrapolation
        ("1997-06-01", 90, 61, "bgnbd"),
        ("1997-07-01", 90, 91, "boosters"),
        ("1998-01-01", 181, 184, "boosters"),
        ("1997-04-01", 30, 60, "boosters"),
    ],
)
def test_unjudged_boosters_only_with_a_horizon_of_history(
    cdnow, cutoff, horizon_days, history, method
):
    day = pd.Timestamp(cutoff)
    past = cdnow.loc[cdnow["timestamp"] < day]
    snapshots = SnapshotSettings()
    assert not internal_backtest_possible(past, day, horizon_days, snapshots)[0]
    blend = unjudged_choice(past, day, horizon_days, snapshots)
    assert blend.method == method
    assert f" {history} days of history" in blend.reason


def test_internal_backtest_needs_two_horizons_and_a_month(cdnow):
    snapshots = SnapshotSettings()
    day = pd.Timestamp("1998-07-01")
    ok, why = internal_backtest_possible(cdnow.loc[cdnow["timestamp"] < day], day, 181, snapshots)
    assert ok and why == ""
    day = pd.Timestamp("1998-01-01")
    ok, why = internal_backtest_possible(cdnow.loc[cdnow["timestamp"] < day], day, 181, snapshots)
    assert not ok and "365 days before 1998-01-01, 393 needed" in why
