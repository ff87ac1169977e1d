"""A small fitted model on simulated data, shared by scoring tests (fits in a few seconds)."""

from __future__ import annotations

from functools import cache

import pandas as pd

from clvflow.data.simulate import simulate
from clvflow.models.clv import ModelParams
from clvflow.models.training import SnapshotSettings, fit_model

HORIZON_DAYS = 90


@cache
def small_log() -> pd.DataFrame:
    return simulate(
        2000, start="2022-01-01", as_of="2023-07-01", horizon_days=90, seed=7
    ).transactions


@cache
def seasonal_log() -> pd.DataFrame:
    """4,000 simulated customers, two years to 2023-01-01, with a seasonal swing (treat as
    read-only: it is shared)."""
    return simulate(
        4000,
        start="2021-01-01",
        as_of="2023-01-01",
        horizon_days=90,
        seed=9,
        seasonal_amplitude=0.4,
    ).transactions


@cache
def small_model():
    """(model, cutoff) fitted with data before 2023-07-01."""
    model, _ = fit_model(
        small_log(),
        "2023-07-01",
        HORIZON_DAYS,
        params=ModelParams(n_estimators=40, seed=0),
        snapshots=SnapshotSettings(n_snapshots=2, spacing_days=30),
    )
    return model, pd.Timestamp("2023-07-01")
