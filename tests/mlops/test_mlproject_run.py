"""`mlflow run` of this project as a stranger types it: `.venv/bin/mlflow run .` with only
HOME and a system PATH (no .venv/bin, no `python`), against a temporary sqlite store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.model_fixture import small_log

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="module")
def project_run(tmp_path_factory) -> dict:
    """One `mlflow run` of the `main` entry point on a small simulated log, without -P cutoff."""
    tmp = tmp_path_factory.mktemp("mlproject")
    tx = small_log()
    tx_path = tmp / "tx.csv"
    tx.to_csv(tx_path, index=False)
    uri = f"sqlite:///{tmp}/mlflow.db"
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    params = {
        "transactions": tx_path,
        "horizon_days": 90,
        "n_estimators": 20,
        "n_snapshots": 2,
        "export_dir": tmp / "bundle",
        "register_as": "clvflow-small-h90",
    }
    argv = [str(mlflow_cli), "run", ".", "--env-manager", "local", "--experiment-name", "t"]
    for key, value in params.items():
        argv += ["-P", f"{key}={value}"]
    env = {
        "HOME": os.environ["HOME"],
        "PATH": CLEAN_PATH,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    return {"done": done, "runs": runs, "last_day": tx["timestamp"].max().normalize()}


def test_mlflow_run_needs_no_venv_on_path(project_run):
    """Issue 9 item 12: `.venv/bin/mlflow run .` works with .venv/bin off PATH (it failed with
    `python: command not found` / `No module named 'clvflow'` and left a FAILED run)."""
    done, runs = project_run["done"], project_run["runs"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r.info.status for r in runs] == ["FINISHED"]


def test_mlflow_run_logs_the_cutoff_it_used(project_run):
    """Issue 9 item 15: without -P cutoff the run logs the resolved cutoff (the day after the
    last transaction), not MLflow's rendering of an empty default ('')."""
    (run,) = project_run["runs"]
    want = (project_run["last_day"] + pd.Timedelta(days=1)).date()
    assert run.data.params["cutoff"] == str(want)
    assert "cutoff_resolved" not in run.data.params


def test_training_logs_progress_of_every_long_step(project_run):
    """Issue 9 item 13: a training run whose output is not a terminal logs each long step's
    progress (snapshots with their BTYD fits, boosting rounds, blend and bootstrap resamples)."""
    stderr = project_run["done"].stderr
    for step in (
        "training snapshots (features, labels, BTYD fits): 2/2 done",
        "churn booster rounds: ",
        "spend booster rounds: ",
        "blend weights on resamples: ",
        "bootstrap resamples: 500/500 done",
    ):
        assert f"INFO {step}" in stderr, step
