"""MLflow-native serving: `mlflow models serve` answers the README's curl request with scores, and
bad requests with a short error.

Real parts: a sqlite tracking store, a logged `clv_model` pyfunc, the `mlflow` CLI serving it on
localhost (one server for the module), and `curl` sending the feature table that `clvflow
features` writes.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from clvflow.mlops.pyfunc import log_clv_model
from clvflow.scoring.scores import SCORE_COLUMNS, score_features
from tests.model_fixture import small_log, small_model

pytestmark = pytest.mark.slow

CUTOFF = "2023-07-01"  # the model's training cutoff
AS_OF = "2023-08-15"  # the features are built for another date


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A logged clv_model served on localhost, and the feature table as of AS_OF."""
    tmp = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{tmp}/mlflow.db"
    model, cutoff = small_model()
    assert str(cutoff.date()) == CUTOFF
    tx_path = tmp / "tx.parquet"
    small_log().to_parquet(tx_path)
    # the helper that turns a transactions file into the pyfunc's input
    features_path = tmp / "features.csv"
    argv = ["features", "--transactions", str(tx_path), "--as-of", AS_OF]
    assert main([*argv, "--output", str(features_path)]) == 0
    features = pd.read_csv(features_path, dtype={"customer_id": str})
    bundle_dir = write_bundle_files(model, tmp / "bundle", build_manifest(model, cutoff=CUTOFF))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        exp = mlflow.create_experiment("serve", artifact_location=str(tmp / "artifacts"))
        with mlflow.start_run(experiment_id=exp) as run:
            log_clv_model(bundle_dir, features, margin=1.0, annual_discount_rate=0.0)
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    model_uri = f"runs:/{run.info.run_id}/clv_model"
    server = subprocess.Popen(
        [mlflow_cli, "models", "serve", "-m", model_uri, "--env-manager", "local"]
        + ["-h", "127.0.0.1", "-p", str(port)],
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
        yield {"port": port, "features": features, "model": model, "tmp": tmp}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _body(rows: pd.DataFrame, params: dict | None) -> dict:
    body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    return body if params is None else {**body, "params": params}


def _post(port: int, body: dict) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of one /invocations request."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _assert_short_error(status: int, answer: dict, reason: str) -> None:
    """A 400 whose message ends with ``reason``: no stack trace, only MLflow's input preview
    before it."""
    assert status == 400, answer
    assert "stack_trace" not in answer and "Traceback" not in json.dumps(answer)
    assert answer["message"].endswith(reason), answer["message"]
    assert len(answer["message"]) < 1500


def test_serve_and_curl_feature_table(served):
    """The README's request: features built for AS_OF, sent with that as_of, scored for it."""
    rows = served["features"].head(5)
    body_path = served["tmp"] / "body.json"
    body_path.write_text(json.dumps(_body(rows, {"as_of": AS_OF})))
    assert shutil.which("curl"), "curl is needed for the README example"
    answer = subprocess.run(
        ["curl", "-sf", "-X", "POST", f"http://127.0.0.1:{served['port']}/invocations"]
        + ["-H", "Content-Type: application/json", "--data", f"@{body_path}"],
        capture_output=True,
        text=True,
        check=True,
    )
    scores = pd.DataFrame(json.loads(answer.stdout)["predictions"])
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert scores["customer_id"].tolist() == rows["customer_id"].tolist()
    assert (scores["as_of"] == f"{AS_OF}T00:00:00").all()
    # the same rows as the server parsed them, scored in this process
    local = score_features(served["model"], _sent_rows(body_path), pd.Timestamp(AS_OF))
    assert scores["p_active"].tolist() == pytest.approx(local["p_active"].tolist(), rel=1e-12)


def _sent_rows(body_path: Path) -> pd.DataFrame:
    split = json.loads(body_path.read_text())["dataframe_split"]
    rows = pd.DataFrame(split["data"], columns=split["columns"])
    return rows.astype({c: "float64" for c in split["columns"] if c != "customer_id"})


def test_served_model_requires_as_of(served):
    """Issue 9 item 10: without params.as_of the server refuses (400, short message) instead of
    stamping the training cutoff on features built for another date."""
    status, answer = _post(served["port"], _body(served["features"].head(2), None))
    _assert_short_error(
        status,
        answer,
        'params: "as_of" is required: the date the features were built for (`clvflow features '
        '--as-of`), e.g. "params": {"as_of": "1998-07-01"}; this model was trained with cutoff '
        f"{CUTOFF}",
    )


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"as_of": "2023-13-45"}, "params: as_of: '2023-13-45' is not a date; use YYYY-MM-DD"),
        (
            {"as_of": AS_OF, "margin": -1.0},
            "margin must be in (0, 1] (a share of revenue), got -1.0",
        ),
        (
            {"as_of": AS_OF, "annual_discount_rate": 1.5},
            "annual_discount_rate must be in [0, 1) (e.g. 0.1 for 10%), got 1.5",
        ),
    ],
)
def test_bad_params_give_a_short_error(served, params, reason):
    """Issue 9 item 10: bad params return 400 with one short message, no stack trace."""
    status, answer = _post(served["port"], _body(served["features"].head(2), params))
    _assert_short_error(status, answer, reason)


def test_impossible_features_are_refused(served):
    """Issue 9 item 10: impossible feature values (recency -1e308, recency > tenure) are refused
    with the rule, the row and its customer id, not scored."""
    rows = served["features"].head(3).copy()
    rows.loc[0, "recency_days"] = -1e308
    rows.loc[1, "recency_days"] = rows.loc[1, "tenure_days"] + 1
    status, answer = _post(served["port"], _body(rows, {"as_of": AS_OF}))
    first, second = rows["customer_id"].iloc[0], rows["customer_id"].iloc[1]
    assert status == 400, answer
    message = answer["message"]
    assert "stack_trace" not in answer and "Traceback" not in message
    assert (
        f"recency_days must be >= 1 (as_of is after the last day): row(s) 0 ('{first}')" in message
    )
    assert f"recency_days must be <= tenure_days: row(s) 1 ('{second}')" in message
    assert message.endswith(
        "build the table with `clvflow features` (clvflow.features.build.build_features)"
    )
