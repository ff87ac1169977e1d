"""MLflow-native serving: `mlflow models serve` answers the README's curl request with scores.

Real parts: a sqlite tracking store, a logged `clv_model` pyfunc, the `mlflow` CLI serving it on
localhost, and `curl` sending the feature table that `clvflow features` writes.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clvflow.bundle import build_manifest, write_bundle_files
from clvflow.cli import main
from clvflow.pyfunc_model import log_clv_model
from clvflow.scoring import SCORE_COLUMNS
from tests.model_fixture import small_log, small_model

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_and_curl_feature_table(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model, cutoff = small_model()
    tx_path = tmp_path / "tx.parquet"
    small_log().to_parquet(tx_path)
    # the helper that turns a transactions file into the pyfunc's input
    features_path = tmp_path / "features.csv"
    assert (
        main(
            [
                "features",
                "--transactions",
                str(tx_path),
                "--as-of",
                "2023-07-01",
                "--output",
                str(features_path),
            ]
        )
        == 0
    )
    features = pd.read_csv(features_path, dtype={"customer_id": str})
    bundle_dir = write_bundle_files(
        model, tmp_path / "bundle", build_manifest(model, cutoff=str(cutoff.date()))
    )
    exp = mlflow.create_experiment("serve", artifact_location=str(tmp_path / "artifacts"))
    with mlflow.start_run(experiment_id=exp) as run:
        log_clv_model(bundle_dir, features, margin=1.0, annual_discount_rate=0.0)
    model_uri = f"runs:/{run.info.run_id}/clv_model"

    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            ping = subprocess.run(
                ["curl", "-sf", f"http://127.0.0.1:{port}/ping"], capture_output=True
            )
            if ping.returncode == 0:
                break
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            time.sleep(1)
        else:
            pytest.fail("mlflow models serve did not answer /ping within 120 s")
        rows = features.head(5)
        body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        (tmp_path / "body.json").write_text(json.dumps(body))
        assert shutil.which("curl"), "curl is needed for the README example"
        answer = subprocess.run(
            [
                "curl",
                "-sf",
                "-X",
                "POST",
                f"http://127.0.0.1:{port}/invocations",
                "-H",
                "Content-Type: application/json",
                "--data",
                f"@{tmp_path / 'body.json'}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        scores = pd.DataFrame(json.loads(answer.stdout)["predictions"])
        assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
        assert scores["customer_id"].tolist() == rows["customer_id"].tolist()
        assert ((scores["p_active"] >= 0) & (scores["p_active"] <= 1)).all()
    finally:
        server.terminate()
        server.wait(timeout=30)
