"""Tracking helpers: where the store is, nothing set at import, params logged once, data hash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clvflow.mlops import tracking
from tests.conftest import make_tx

REPO = Path(__file__).resolve().parents[2]


def test_default_store_is_the_checkouts_absolute_sqlite_db():
    assert tracking.project_root() == REPO
    assert tracking.default_tracking_uri() == f"sqlite:///{REPO}/mlflow.db"
    assert tracking.default_tracking_uri().startswith("sqlite:////")  # absolute path


def test_environment_variable_wins(monkeypatch, tmp_path):
    uri = f"sqlite:///{tmp_path}/other.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.configure_tracking() == uri


def test_import_sets_nothing():
    code = (
        "import clvflow.mlops.tracking, clvflow.mlops.jobs, clvflow.mlops.bundle, clvflow.cli.main\n"
        "from mlflow.tracking._tracking_service.utils import is_tracking_uri_set\n"
        "import os\n"
        "assert not is_tracking_uri_set()\n"
        "assert 'MLFLOW_EXPERIMENT_ID' not in os.environ\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MLFLOW_")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


def test_artifacts_go_beside_a_sqlite_store(tmp_path):
    location = tracking.artifact_location(f"sqlite:///{tmp_path}/mlflow.db", "my exp")
    assert location == (tmp_path / "mlruns" / "my_exp").as_uri()
    assert tracking.artifact_location("http://127.0.0.1:5000", "x") is None


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    """One temporary sqlite store for the module (creating one takes seconds)."""
    tmp = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        yield tmp


def test_params_already_on_the_run_are_not_relogged(store):
    with tracking.tracked_run("t", "params test") as run:
        mlflow.log_params({"learning_rate": ".1", "cutoff": "''", "seed": "0", "qr": "''"})
        tracking.log_params_once(  # the first four as mlflow run logged them (shell-quoted)
            {"learning_rate": 0.1, "cutoff": "1998-07-01", "seed": 0, "qr": None, "calibrate": True}
        )
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["learning_rate"] == ".1" and params["learning_rate_resolved"] == "0.1"
    assert params["cutoff_resolved"] == "1998-07-01"
    assert "seed_resolved" not in params and "qr_resolved" not in params
    assert params["calibrate"] == "true"
    assert mlflow.get_run(run.info.run_id).info.run_name == "params test"
    assert run.info.artifact_uri.startswith((store / "mlruns" / "t").as_uri())


def test_transactions_hash_is_a_content_hash():
    tx = make_tx([("a", "2024-01-01", 10.0), ("b", "2024-01-02", 5.0)])
    digest = tracking.transactions_sha256(tx)
    assert len(digest) == 64
    assert tracking.transactions_sha256(tx.copy()) == digest
    changed = tx.assign(amount=[10.0, 5.01])
    assert tracking.transactions_sha256(changed) != digest
    assert tracking.transactions_sha256(tx.iloc[::-1].reset_index(drop=True)) != digest


def test_non_finite_metrics_are_skipped(store):
    with tracking.tracked_run("t", "metrics") as run:
        tracking.log_metrics_finite(
            {"spend_spearman": float("nan"), "x": float("inf"), "churn_roc_auc": 0.8}
        )
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    assert metrics == {"churn_roc_auc": 0.8}


def test_tables_are_logged_as_csv_and_json(store):
    table = pd.DataFrame({"decile": [1, 2], "mean_pred": [3.0, 1.0]})
    table.attrs["mape"] = 0.25
    with tracking.tracked_run("t", "tables") as run:
        tracking.log_table(table, "tables/deciles")
    data = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/tables/deciles.json")
    assert data == {"rows": [{"decile": 1, "mean_pred": 3.0}, {"decile": 2, "mean_pred": 1.0}],
                    "mape": 0.25}  # fmt: skip
    csv = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/tables/deciles.csv")
    assert csv.splitlines()[0] == "decile,mean_pred"


def test_logged_dataset_schema_and_digest_without_a_pass_over_every_value(store, monkeypatch):
    """Issue 11 item 3 (input hashed once): the dataset input gets MLflow's own schema, column
    types from the first rows and `required` from all rows (here a missing amount and id
    beyond the sample make them optional, as MLflow's full inference says), and the content
    hash clvflow computed as its digest instead of MLflow's pass over every cell."""
    from mlflow.types.utils import _infer_schema

    tx = make_tx([("a", "2024-01-01", 1.0), ("b", "2024-01-02", 2.0), ("c", "2024-01-03", 3.0)])
    tx.loc[2, "amount"] = float("nan")
    tx.loc[2, "customer_id"] = None
    monkeypatch.setattr(tracking, "SCHEMA_SAMPLE_ROWS", 2)  # rows 0-1: nothing missing there
    schema = tracking.dataset_schema(tx)
    assert schema.to_dict() == _infer_schema(tx).to_dict()
    assert [c["required"] for c in schema.to_dict()] == [False, True, False]
    sha = tracking.transactions_sha256(tx)
    with tracking.tracked_run("t", "dataset") as run:
        tracking.log_transactions_input(tx, "tiny", sha)
    (logged,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert logged.dataset.digest == sha[:8]
    assert json.loads(logged.dataset.schema)["mlflow_colspec"] == schema.to_dict()
    assert json.loads(logged.dataset.profile) == {"num_rows": 3, "num_elements": 9}
