"""Concurrent runs with real processes: two registrations against one sqlite store, two score
runs creating the same output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _start(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _wait_for(paths: list[Path], procs: list[subprocess.Popen], timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"helper process ended early: {proc.stderr.read().decode()[-2000:]}")
        assert time.monotonic() < end, "helper processes never got ready"
        time.sleep(0.01)


def test_concurrent_registrations_leave_the_better_model_champion(tmp_path):
    """Issue 9 item 4: promotion is compare-and-set. In each of 3 rounds the better model (0.9)
    registers and the worse (0.5) 30 ms later, while the first is between reading the champion
    and setting it: without a lock both saw no champion and the worse one, set last, ended
    champion; with it the better one always ends champion."""
    import mlflow

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_registered_models()  # create the database first (not part of the race)
    go, rounds = tmp_path / "go", 3
    procs = [
        _start("-m", "tests.registry_race", str(tmp_path), "race", score, str(go), wait, "3")
        for score, wait in (("0.9", "0"), ("0.5", "0.03"))
    ]
    outputs = []
    try:
        for i in range(rounds):
            _wait_for([Path(f"{go}-{i}.ready-0.9"), Path(f"{go}-{i}.ready-0.5")], procs)
            Path(f"{go}-{i}").touch()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
            outputs.append([json.loads(line) for line in out.decode().splitlines()[-rounds:]])
    finally:
        for proc in procs:  # (a failed wait left them polling for their go file forever)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for i, (better, worse) in enumerate(zip(*outputs, strict=True)):
        champion = client.get_model_version_by_alias(f"race-{i}", "champion").version
        candidate = client.get_model_version_by_alias(f"race-{i}", "candidate").version
        assert (str(champion), better["promoted"]) == (better["version"], True), i
        assert str(candidate) == "2"  # the newer version, whichever process registered it
        assert {better["version"], worse["version"]} == {"1", "2"}
