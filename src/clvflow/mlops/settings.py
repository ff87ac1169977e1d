"""What a train or backtest job is asked to do (``JobSettings``) and what it gives back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clvflow.core.cores import available_cores
from clvflow.core.dates import DateLike, default_as_of, to_day
from clvflow.data.datasets import CDNOW, is_embedded
from clvflow.mlops.tracking import DEFAULT_EXPERIMENT, DEFAULT_MODEL_NAME
from clvflow.models.clv import ModelParams, Selection
from clvflow.models.training import SnapshotSettings

#: Bootstrap resamples of every backtest's intervals.
N_RESAMPLES = 500


@dataclass(frozen=True)
class JobSettings:
    """Settings shared by train and backtest. ``cutoff`` None (train only): the day after the
    last transaction. ``flag_params``: the CLI flags as given, logged under their own names."""

    horizon_days: int
    cutoff: pd.Timestamp | None = None
    params: ModelParams = field(default_factory=ModelParams)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    margin: float = 1.0
    annual_discount_rate: float = 0.0
    experiment_name: str = DEFAULT_EXPERIMENT
    data_name: str = "transactions"
    register_as: str | None = None  # None: default_model_name(data_name, horizon_days)
    export_dir: Path | None = None
    method: str = "auto"  # training.METHODS
    flag_params: dict[str, Any] = field(default_factory=dict)
    engine: str = "local"  # local | spark (logged as the param ``engine`` on every run)
    engine_params: dict[str, Any] = field(default_factory=dict)  # e.g. the Spark sample's size

    @classmethod
    def from_options(
        cls,
        horizon_days: int,
        *,
        n_estimators: int,
        learning_rate: float,
        max_depth: int,
        n_jobs: int | None,
        seasonal_level: bool,
        seed: int,
        n_snapshots: int,
        snapshot_spacing_days: int,
        **job: Any,
    ) -> JobSettings:
        """Settings from flat options, as the CLI and the notebook API take them; ``n_jobs``
        None or 0 means every core this process may use. ``job``: the other fields."""
        params = ModelParams(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            max_depth=max_depth,
            n_jobs=n_jobs or available_cores(),
            seasonal_level=seasonal_level,
            seed=seed,
        )
        snapshots = SnapshotSettings(n_snapshots=n_snapshots, spacing_days=snapshot_spacing_days)
        return cls(horizon_days=horizon_days, params=params, snapshots=snapshots, **job)


@dataclass
class JobOutcome:
    """What a job produced (for the CLI to print and tests to check)."""

    run_id: str
    cutoff: pd.Timestamp
    metrics: dict[str, float]
    table: pd.DataFrame
    intervals: pd.DataFrame | None = None  # paired bootstrap of the backtest (backtest_intervals)
    registration: Any = None  # tracking.Registration (train only)
    bundle_dir: Path | None = None
    model_uri: str | None = None
    selection: Selection | None = None


def data_name(source: str) -> str:
    """Short name of a data source for run names: ``cdnow`` or the file name without suffixes."""
    if is_embedded(source):
        return CDNOW
    name = Path(source).name
    return name.split(".", 1)[0] or name


def resolve_cutoff(tx: pd.DataFrame, cutoff: DateLike | None) -> pd.Timestamp:
    """The given cutoff as a day, or the day after the last transaction."""
    if cutoff is None:
        return default_as_of(tx)
    return to_day(cutoff, "cutoff")


def default_model_name(data: str, horizon_days: int) -> str:
    """Registered-model name for a data source and horizon, e.g. ``clvflow-cdnow-h181``: one
    registered model per data set and horizon, so champions are only compared like for like."""
    slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in data).strip("-") or "data"
    return f"{DEFAULT_MODEL_NAME}-{slug}-h{horizon_days}"
