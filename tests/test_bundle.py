"""Model bundles: manifest, checksums, atomic export, and the one loader's errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from clvflow import bundle
from clvflow.models import ClvModel, ModelParams
from clvflow.simulate import simulate
from clvflow.training import SnapshotSettings, fit_model

CUTOFF = "2024-03-01"


@pytest.fixture(scope="module")
def fitted() -> tuple[ClvModel, pd.DataFrame]:
    tx = simulate(600, seed=2).transactions
    return fit_model(
        tx,
        CUTOFF,
        60,
        params=ModelParams(n_estimators=5, n_jobs=1),
        snapshots=SnapshotSettings(2, 30),
    )


@pytest.fixture
def exported(fitted, tmp_path: Path) -> Path:
    model, _ = fitted
    staged = bundle.write_bundle_files(
        model,
        tmp_path / "staged",
        bundle.build_manifest(model, cutoff=CUTOFF, training_data_sha256="ab" * 32),
    )
    return bundle.export_bundle(staged, tmp_path / "models" / "clv", mlflow_run_id="r1")


def test_manifest_describes_the_model(exported, fitted):
    model, _ = fitted
    manifest = json.loads((exported / bundle.MANIFEST).read_text())
    assert manifest["feature_columns"] == model.feature_columns_
    assert manifest["horizon_days"] == 60 and manifest["cutoff"] == CUTOFF
    assert manifest["training_data_sha256"] == "ab" * 32 and manifest["mlflow_run_id"] == "r1"
    assert set(manifest["package_versions"]) == {
        "clvflow",
        "xgboost",
        "scikit-learn",
        "pandas",
        "numpy",
        "mlflow",
    }
    assert manifest["created_at"]
    files = {p.name for p in exported.iterdir()} - {bundle.MANIFEST}
    assert set(manifest["files"]) == files
    for name, digest in manifest["files"].items():
        assert bundle.sha256_file(exported / name) == digest


def test_bundle_loads_and_predicts_like_the_model(exported, fitted):
    model, features = fitted
    loaded, source = bundle.load_model(exported)
    pd.testing.assert_frame_equal(loaded.predict(features), model.predict(features))
    assert source.run_id == "r1" and source.cutoff == CUTOFF
    assert source.uri == str(exported)


def test_tampered_file_is_refused_naming_it(exported):
    path = exported / "churn_booster.joblib"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"churn_booster\.joblib does not match its sha256"):
        bundle.load_bundle(exported)


def test_missing_and_unexpected_files_are_refused(exported):
    (exported / "model.json").unlink()
    with pytest.raises(ValueError, match=r"model\.json is missing"):
        bundle.load_bundle(exported)


def test_unexpected_file_is_refused(exported):
    (exported / "extra.pkl").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unexpected file\(s\) \['extra\.pkl'\]"):
        bundle.load_model(exported)


def test_export_replaces_a_bundle_but_not_other_folders(exported, tmp_path):
    again = bundle.export_bundle(exported, exported, mlflow_run_id="r2")
    assert bundle.load_bundle(again)[1]["mlflow_run_id"] == "r2"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a clvflow model bundle; refusing"):
        bundle.export_bundle(exported, other)
    assert (other / "todo.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.rglob(".*tmp-*")]  # no temporary folders left


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("does/not/exist", "no such bundle directory"),
        ("s3://bucket/model", "unsupported URI"),
        ("models:nope", "unsupported URI"),
    ],
)
def test_wrong_location_errors(given, message):
    with pytest.raises(ValueError, match=message):
        bundle.load_model(given)


def test_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(ValueError, match="not a clvflow model bundle"):
        bundle.load_model(tmp_path)


def test_unknown_mlflow_uris_error_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    for uri, message in [
        ("models:/nope@champion", "Registered Model with name=nope not found"),
        ("models:/nope/3", "not found in the registry"),
        ("models:/a/b/c", "malformed registry URI"),
        ("runs:/0123456789abcdef/clv_model", "Run with id=0123456789abcdef not found"),
    ]:
        with pytest.raises(ValueError, match=rf"model '{uri}'.*{message}.*models:/NAME@ALIAS"):
            bundle.load_model(uri)
