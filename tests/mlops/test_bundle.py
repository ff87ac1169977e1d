"""Model bundles: manifest, checksums, atomic export, and the one loader's errors."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from clvflow.data.simulate import simulate
from clvflow.mlops import bundle
from clvflow.models.clv import ClvModel, ModelParams
from clvflow.models.training import SnapshotSettings, fit_model

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
    path = exported / "churn_booster.ubj"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"churn_booster\.ubj does not match its sha256"):
        bundle.load_bundle(exported)


class _Payload:
    """Unpickling this creates the folder ``path``: stands for any code a crafted pickle runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def _reseal(directory: Path, **updates) -> None:
    """Rewrite the manifest with correct sha256s for the folder's files as they are now (what an
    attacker who can write the folder can always do)."""
    manifest = json.loads((directory / bundle.MANIFEST).read_text())
    files = sorted(p.name for p in directory.iterdir() if p.name != bundle.MANIFEST)
    manifest["files"] = {name: bundle.sha256_file(directory / name) for name in files}
    manifest.update(updates)
    (directory / bundle.MANIFEST).write_text(json.dumps(manifest))


def test_crafted_pickle_with_matching_checksums_runs_no_code(fitted, tmp_path):
    """Issue 9 item 9: a bundle whose booster files are malicious pickles, listed with correct
    sha256s, is refused without opening them (no code runs)."""
    model, _ = fitted
    crafted = bundle.write_bundle_files(
        model, tmp_path / "crafted", bundle.build_manifest(model, cutoff=CUTOFF)
    )
    ran = tmp_path / "payload-ran"
    payload = pickle.dumps(_Payload(ran))
    pickle.loads(payload)  # the payload is live: unpickling it runs its code
    assert ran.is_dir()
    ran.rmdir()
    for booster in crafted.glob("*_booster.*"):
        booster.unlink()
    for name in ("churn_booster.joblib", "spend_booster.joblib"):
        (crafted / name).write_bytes(payload)
    _reseal(crafted)
    assert bundle.verify_bundle(crafted)  # the checksums match: they only catch accidents
    with pytest.raises(ValueError, match=r"pickled boosters \['churn_booster\.joblib'"):
        bundle.load_model(crafted)
    assert not ran.exists()


def test_older_pickled_bundle_is_refused_with_retrain_advice(fitted, tmp_path):
    """Issue 9 item 9: a genuine older bundle (joblib boosters, format 1) is refused, saying to
    retrain; there is no path left that unpickles it."""
    model, _ = fitted
    old = bundle.write_bundle_files(
        model, tmp_path / "old", bundle.build_manifest(model, cutoff=CUTOFF)
    )
    for booster in old.glob("*_booster.*"):
        booster.unlink()
    joblib.dump(model.churn_booster_, old / "churn_booster.joblib")
    joblib.dump(model.spend_booster_, old / "spend_booster.joblib")
    _reseal(old, format="clvflow-bundle/1")
    with pytest.raises(
        ValueError, match=r"clvflow-bundle/1 bundle .*pickled boosters.*retrain the model"
    ):
        bundle.load_model(old)
    with pytest.raises(ValueError, match=r"pickled boosters .*does not load pickles.*retrain"):
        ClvModel.load(old)  # the model folder alone is refused too


def test_saved_model_is_data_and_predicts_bit_identically(fitted, tmp_path):
    """Issue 9 item 9: the saved model is XGBoost UBJSON + JSON (no pickle), and the loaded model
    predicts exactly what the fitted model and the old pickled (joblib) boosters predict."""
    model, features = fitted
    written = model.save(tmp_path / "m")
    assert sorted(p.name for p in written) == [
        "churn_booster.ubj",
        "model.json",
        "spend_booster.ubj",
    ]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(p.name for p in written)
    for path in written:
        assert path.read_bytes()[:1] == b"{"  # UBJSON / JSON objects, not a pickle (b"\x80")
    loaded = ClvModel.load(tmp_path / "m")
    assert features.isna().any().any()  # missing gap features take XGBoost's missing branch
    expected = model.predict(features)
    got = loaded.predict(features)
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    pickled = ClvModel.load(tmp_path / "m")
    for name in ("churn", "spend"):
        path = tmp_path / f"{name}.joblib"
        joblib.dump(getattr(model, f"{name}_booster_"), path)  # the old save format
        setattr(pickled, f"{name}_booster_", joblib.load(path))
    old = pickled.predict(features)
    for column in ("p_active", "expected_spend_if_active", "expected_spend"):
        assert np.array_equal(got[column].to_numpy(), old[column].to_numpy())


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


def test_export_never_deletes_a_file_the_bundle_did_not_write(exported, fitted, tmp_path):
    """A user's file dropped into a bundle folder stops the next export instead of vanishing
    with the old bundle; the bundle there stays as it was."""
    (exported / "notes.txt").write_text("my notes")
    staged = bundle.write_bundle_files(
        fitted[0], tmp_path / "staged2", bundle.build_manifest(fitted[0], cutoff=CUTOFF)
    )
    with pytest.raises(
        ValueError,
        match=r"1 file\(s\) the bundle's manifest does not list "
        r"\(notes.txt\); replacing the bundle would delete them",
    ):
        bundle.export_bundle(staged, exported, mlflow_run_id="r3")
    assert (exported / "notes.txt").read_text() == "my notes"
    assert bundle.read_manifest(exported)["mlflow_run_id"] == "r1"


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


def test_booster_file_that_is_not_an_xgboost_model_is_refused(fitted, tmp_path):
    model, _ = fitted
    model.save(tmp_path / "m")
    (tmp_path / "m" / "spend_booster.ubj").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"spend_booster\.ubj: not an XGBoost model .*retrain"):
        ClvModel.load(tmp_path / "m")
