"""Run by tests/mlops/test_concurrency.py as a separate process: log a run with a backtest score; then,
for each round, wait for the round's go file, sleep DELAY seconds and register the run's model as
``NAME-<round>`` with clvflow.mlops.tracking.register_candidate (one JSON line per round).

Usage: python -m tests.registry_race STORE_DIR NAME SCORE GO_FILE DELAY ROUNDS
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(store: str, name: str, score: str, go: str, delay: str, rounds: str) -> None:
    import mlflow

    from clvflow.mlops import tracking

    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    with mlflow.start_run() as run:
        mlflow.log_metric(tracking.PROMOTION_METRIC, float(score))
        model = mlflow.initialize_logged_model(name="m", source_run_id=run.info.run_id)
        mlflow.finalize_logged_model(model.model_id, "READY")
    for i in range(int(rounds)):
        Path(f"{go}-{i}.ready-{score}").touch()
        give_up = time.monotonic() + 600  # (never poll forever if the test is gone)
        while not Path(f"{go}-{i}").exists():
            if time.monotonic() > give_up:
                sys.exit(f"no go file {go}-{i} after 10 min")
            time.sleep(0.001)
        time.sleep(float(delay))
        reg = tracking.register_candidate(f"models:/{model.model_id}", f"{name}-{i}", float(score))
        print(json.dumps({"version": reg.version, "promoted": reg.promoted}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
