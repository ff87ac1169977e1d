"""Model bundles: a fitted :class:`ClvModel` on disk with a checksummed ``manifest.json``, and one
loader for every place a model can live (bundle folder, registry alias/version, run).

A bundle is the files of :meth:`ClvModel.save` (JSON and XGBoost UBJSON: data, no pickle) plus
``manifest.json`` (feature list, horizon, cutoff, training-data hash, package versions, creation
time, MLflow run id, and the sha256 of every other file). :func:`load_bundle` refuses a bundle whose
files do not match their checksums, and an older clvflow's bundle with pickled boosters without
opening them (checksums only catch accidents; a crafted pickle with a matching sha256 would run
code). The ``clv_model`` pyfunc carries the same bundle as its artifact, so a registry or run URI
loads through the same check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from clvflow.data.files import Staging, replace_folder
from clvflow.models.clv import RETRAIN, ClvModel

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Format 2: boosters in XGBoost's UBJSON, the rest JSON. Format 1 (pickled boosters) is refused.
BUNDLE_FORMAT = "clvflow-bundle/2"
PICKLED_BUNDLE_FORMAT = "clvflow-bundle/1"
#: The pyfunc model's artifact key under which the bundle travels.
PYFUNC_ARTIFACT = "bundle"
#: Distributions whose versions a bundle records (manifest key -> distribution name).
VERSIONED_PACKAGES = {
    "clvflow": "clvflow",
    "xgboost": "xgboost-cpu",
    "scikit-learn": "scikit-learn",
    "pandas": "pandas",
    "numpy": "numpy",
    "mlflow": "mlflow",
}
URI_HELP = (
    "give a bundle directory (with manifest.json), models:/NAME@ALIAS, models:/NAME/VERSION "
    "or runs:/RUN_ID/clv_model"
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a model depends on (None when not installed)."""
    out: dict[str, str | None] = {}
    for key, dist in VERSIONED_PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            fallback = "xgboost" if key == "xgboost" else None
            out[key] = metadata.version(fallback) if fallback else None
    return out


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory`` except the manifest, by relative posix path."""
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    return {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in files
        if p.relative_to(directory).as_posix() != MANIFEST
    }


def build_manifest(model: ClvModel, **fields: Any) -> dict[str, Any]:
    """Manifest contents (without checksums) for ``model``; ``fields`` add or override keys such
    as cutoff, training_data_sha256, mlflow_run_id."""
    return {
        "format": BUNDLE_FORMAT,
        "feature_columns": list(model.feature_columns_),
        "horizon_days": int(model.horizon_days),
        "n_trees": dict(model.n_trees_),
        "snapshots": list(model.snapshots_),
        "package_versions": package_versions(),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **fields,
    }


def write_bundle_files(model: ClvModel, directory: Path, manifest: dict[str, Any]) -> Path:
    """Save ``model`` into the empty or new ``directory`` and write its manifest (with checksums).

    Not atomic on its own: :func:`export_bundle` calls it on a temporary folder.
    """
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory)
    return _write_manifest(directory, manifest)


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    body = {k: v for k, v in manifest.items() if k != "files"}
    body["files"] = _checksums(directory)
    (directory / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=False) + "\n")
    return directory


def _files_not_in_manifest(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Relative paths of the files under ``directory`` that its manifest does not list."""
    listed = set(manifest.get("files") or {}) | {MANIFEST}
    return sorted(
        rel
        for p in directory.rglob("*")
        if p.is_file() and (rel := p.relative_to(directory).as_posix()) not in listed
    )


def check_export_dir(target: str | Path, identity: dict[str, Any] | None = None) -> Path:
    """Raise ValueError unless ``target`` is absent, an empty folder or a bundle (replaceable);
    with ``identity`` (e.g. data_name, horizon_days), also when the bundle there was trained on
    other data or for another horizon.

    Returns:
        The absolute path.
    """
    target = Path(target).resolve()
    if target.exists() and (
        not target.is_dir() or (any(target.iterdir()) and not (target / MANIFEST).exists())
    ):
        raise ValueError(
            f"{target}: exists and is not a clvflow model bundle; refusing to replace it, "
            "choose another --export-dir"
        )
    manifest: dict[str, Any] = {}
    if (target / MANIFEST).is_file():
        try:
            manifest = json.loads((target / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {}
        foreign = _files_not_in_manifest(target, manifest)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise ValueError(
                f"{target}: holds {len(foreign)} file(s) the bundle's manifest does not list "
                f"({shown}); replacing the bundle would delete them. Move them out of the folder "
                "or choose another --export-dir"
            )
    if identity and manifest:
        clash = {
            k: manifest[k]
            for k in identity
            if k in manifest and str(manifest[k]) != str(identity[k])
        }
        if clash:
            raise ValueError(
                f"{target}: holds a bundle trained with {clash} (this run: "
                f"{ {k: identity[k] for k in clash} }); refusing to overwrite another data set's "
                "or horizon's model, choose another --export-dir"
            )
    return target


def _replace_dir(staged: Path, target: Path, aside: Path) -> None:
    """Move ``staged`` to ``target``; an existing bundle there is replaced with no moment
    without a bundle (:func:`clvflow.data.files.replace_folder`), anything else kept."""
    check_export_dir(target)
    replace_folder(staged, target, aside)


def export_bundle(source: Path, target: str | Path, **manifest_updates: Any) -> Path:
    """Copy the bundle at ``source`` to ``target`` atomically, with ``manifest_updates`` merged
    into its manifest (e.g. the registered model version).

    The copy is staged in this run's staging folder beside ``target`` (:class:`clvflow.data.files.Staging`,
    which first removes the staging left by killed runs and puts back a bundle such a run had
    moved aside) and swapped in: ``target`` always holds a whole bundle, the old or the new.

    Returns:
        The bundle directory.
    """
    target = Path(target).resolve()
    _, manifest = load_bundle(source)
    with Staging() as staging:
        staged = staging.path(target)
        shutil.copytree(source, staged, ignore=shutil.ignore_patterns(MANIFEST))
        _write_manifest(staged, {**manifest, **manifest_updates})
        load_bundle(staged)  # never publish a bundle that does not load
        _replace_dir(staged, target, staging.aside(target))
    log.info("model bundle -> %s", target)
    return target


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a bundle folder.

    Raises:
        ValueError: no folder, no manifest, or a manifest that is not JSON.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{d}: no such bundle directory; {URI_HELP}")
    path = d / MANIFEST
    if not path.is_file():
        raise ValueError(f"{d}: not a clvflow model bundle (no {MANIFEST}); {URI_HELP}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: manifest is not valid JSON ({exc}); re-export the bundle"
        ) from exc
    if isinstance(manifest, dict) and manifest.get("format") == PICKLED_BUNDLE_FORMAT:
        raise ValueError(
            f"{d}: a {PICKLED_BUNDLE_FORMAT} bundle (an older clvflow's, with pickled boosters); "
            f"clvflow does not load pickles, since loading one can run any code: {RETRAIN}"
        )
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != BUNDLE_FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        raise ValueError(f"{path}: not a {BUNDLE_FORMAT} manifest; re-export the bundle")
    return manifest


def verify_bundle(directory: str | Path) -> dict[str, Any]:
    """Check every file against the manifest's sha256.

    Returns:
        The manifest.

    Raises:
        ValueError: naming the first missing, changed or unexpected file.
    """
    d = Path(directory)
    manifest = read_manifest(d)
    expected: dict[str, str] = manifest["files"]
    actual = _checksums(d)
    for name, digest in expected.items():
        if name not in actual:
            raise ValueError(f"{d}: bundle file {name} is missing; re-export the bundle")
        if actual[name] != digest:
            raise ValueError(
                f"{d}: bundle file {name} does not match its sha256 in {MANIFEST} "
                "(modified or corrupted); refusing to load it, re-export the bundle"
            )
    extra = sorted(set(actual) - set(expected))
    if extra:
        raise ValueError(
            f"{d}: unexpected file(s) {extra} not listed in {MANIFEST}; refusing to load the "
            "bundle, re-export it"
        )
    return manifest


def load_bundle(directory: str | Path) -> tuple[ClvModel, dict[str, Any]]:
    """Load a bundle folder after verifying its checksums.

    Returns:
        (model, manifest).

    Raises:
        ValueError: not a bundle, or a file does not match the manifest (the message names it).
    """
    manifest = verify_bundle(directory)
    model = ClvModel.load(directory)
    if list(model.feature_columns_) != manifest["feature_columns"]:
        raise ValueError(f"{directory}: model.json and {MANIFEST} disagree on the features")
    return model, manifest


# ---- one loader for bundle folders and MLflow URIs -----------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """Where a loaded model came from; ``label`` is what score tables record."""

    uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.name and self.version:
            return f"{self.name}/{self.version}"
        if self.run_id:
            return f"run {self.run_id}"
        return self.uri

    @property
    def cutoff(self) -> str | None:
        return self.manifest.get("cutoff")


def load_model(uri_or_dir: str | Path) -> tuple[ClvModel, ModelSource]:
    """Load a model from a bundle folder, ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
    ``runs:/RUN_ID/clv_model`` (checksums verified in every case).

    Returns:
        (model, source metadata: registered name/version, run id, manifest).

    Raises:
        ValueError: unknown form, or nothing found at that URI (the message says what to give).
    """
    text = str(uri_or_dir)
    if text.startswith("models:/"):
        name, version, run_id = _registry_version(text)
        model, manifest = _load_pyfunc_bundle(text)
        return model, ModelSource(text, name, version, run_id, manifest)
    if text.startswith("runs:/"):
        model, manifest = _load_pyfunc_bundle(text)
        run_id = text.removeprefix("runs:/").split("/", 1)[0]
        registered = manifest.get("registered_model") or {}
        return model, ModelSource(
            text, registered.get("name"), registered.get("version"), run_id, manifest
        )
    if "://" in text or text.startswith(("models:", "runs:")):
        raise ValueError(f"model {text!r}: unsupported URI; {URI_HELP}")
    model, manifest = load_bundle(text)
    registered = manifest.get("registered_model") or {}
    return model, ModelSource(
        str(Path(text).resolve()),
        registered.get("name"),
        registered.get("version"),
        manifest.get("mlflow_run_id"),
        manifest,
    )


def _registry_version(uri: str) -> tuple[str, str, str | None]:
    """(name, version, run id) for ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from clvflow.mlops.tracking import ensure_tracking

    ensure_tracking()
    ref = uri.removeprefix("models:/").strip("/")
    client = mlflow.MlflowClient()
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif ref.count("/") == 1:
            name, version = ref.split("/")
            mv = client.get_model_version(name, version)
        else:
            raise ValueError(f"model {uri!r}: malformed registry URI; {URI_HELP}")
    except MlflowException as exc:
        raise ValueError(
            f"model {uri!r} not found in the registry at {mlflow.get_tracking_uri()}: "
            f"{str(exc.message).rstrip('.')}. List versions in the MLflow UI, or {URI_HELP}"
        ) from exc
    return mv.name, str(mv.version), mv.run_id


def _load_pyfunc_bundle(uri: str) -> tuple[ClvModel, dict[str, Any]]:
    """Download the bundle artifact of a ``clv_model`` pyfunc and load it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from clvflow.mlops.tracking import ensure_tracking

    ensure_tracking()
    with tempfile.TemporaryDirectory(prefix="clvflow-model-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except (MlflowException, OSError) as exc:
            message = str(getattr(exc, "message", exc)).rstrip(".")
            raise ValueError(
                f"model {uri!r}: nothing found at {mlflow.get_tracking_uri()} ({message}); "
                f"{URI_HELP}"
            ) from exc
        return load_bundle(_pyfunc_artifact_dir(local, uri))  # read fully: tmp can go


def _pyfunc_artifact_dir(local: Path, uri: str) -> Path:
    """The bundle folder inside a downloaded pyfunc model (path recorded in its MLmodel)."""
    from mlflow.models import Model

    not_ours = f"model {uri!r} is not a clvflow clv_model pyfunc (no {PYFUNC_ARTIFACT!r} artifact)"
    if not (local / "MLmodel").is_file():
        raise ValueError(f"{not_ours}; {URI_HELP}")
    flavor = Model.load(str(local)).flavors.get("python_function", {})
    entry = (flavor.get("artifacts") or {}).get(PYFUNC_ARTIFACT)
    if not entry:
        raise ValueError(not_ours)
    return local / entry["path"]
