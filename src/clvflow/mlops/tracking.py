"""MLflow side effects: where runs go, how they are named, params, figures, tables, registry.

Nothing here runs at import: the tracking URI is set by :func:`configure_tracking`, which the
pipelines call first. Default store: ``sqlite:///<project>/mlflow.db`` (absolute), where
``<project>`` is the checkout the package runs from (the current directory for an installed
package); ``MLFLOW_TRACKING_URI`` overrides it. Inside ``mlflow run`` (``MLFLOW_RUN_ID`` set) the
run and experiment already exist: they are resumed, never re-created (docs/mlflow.md).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import shlex
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "clvflow"
DEFAULT_MODEL_NAME = "clvflow"
CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
#: The backtest metric a candidate must beat to become champion.
PROMOTION_METRIC = "spend_gini_norm"


def project_root() -> Path:
    """The repository root when running from a checkout (src layout), else the current folder."""
    here = Path(__file__).resolve()
    root = here.parents[2]
    if (root / "pyproject.toml").is_file() and (root / "src" / "clvflow").is_dir():
        return root
    return Path.cwd().resolve()


def default_tracking_uri() -> str:
    """``sqlite:///<project>/mlflow.db`` with an absolute path."""
    return f"sqlite:///{(project_root() / 'mlflow.db').as_posix()}"


def configure_tracking() -> str:
    """Use ``MLFLOW_TRACKING_URI`` if set (MLflow reads it itself), else point MLflow at the
    project's sqlite store.

    Returns:
        The tracking URI in use.
    """
    import mlflow

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        mlflow.set_tracking_uri(default_tracking_uri())
    uri = mlflow.get_tracking_uri()
    log.info("MLflow tracking URI: %s", uri)
    return uri


def ensure_tracking() -> str:
    """Like :func:`configure_tracking`, but keep a URI the caller already set in this process."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set

    if is_tracking_uri_set():
        return mlflow.get_tracking_uri()
    return configure_tracking()


def inside_mlflow_run() -> bool:
    """True when launched by ``mlflow run`` (which created the run and passes its id)."""
    return "MLFLOW_RUN_ID" in os.environ


def artifact_location(tracking_uri: str, experiment_name: str) -> str | None:
    """For a sqlite store, ``<db folder>/mlruns/<experiment>`` (absolute), so artifacts sit next to
    the database whatever the current directory; None (MLflow's default) for other stores."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db = Path(tracking_uri.removeprefix("sqlite:///"))
    if not db.is_absolute():
        db = Path.cwd() / db
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment_name)
    return (db.parent / "mlruns" / slug).resolve().as_uri()


def experiment_id(experiment_name: str) -> str:
    """Id of the experiment, created if needed with its artifacts beside a sqlite store.

    Unlike ``mlflow.set_experiment`` this sets no process-wide state (active experiment,
    ``MLFLOW_EXPERIMENT_ID``), so library callers and tests stay independent.
    """
    import mlflow

    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_location(mlflow.get_tracking_uri(), experiment_name)
    log.info("creating MLflow experiment %r (artifacts: %s)", experiment_name, location)
    return mlflow.create_experiment(experiment_name, artifact_location=location)


@contextmanager
def tracked_run(experiment_name: str, run_name: str) -> Iterator[Any]:
    """Start (or, inside ``mlflow run``, resume) a run named ``run_name``.

    Yields:
        The active ``mlflow.ActiveRun``; it ends FINISHED, or FAILED on an exception.
    """
    import mlflow

    # Inside `mlflow run` the run exists (MLFLOW_RUN_ID): resume it, never pick an experiment.
    exp_id = None if inside_mlflow_run() else experiment_id(experiment_name)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
        mlflow.set_tag("mlflow.runName", run_name)  # the run mlflow run made has a random name
        log.info("MLflow run %s (%s)", run.info.run_id, run_name)
        yield run


def _param_text(value: Any) -> str:
    """How a param value is written (booleans lower-case, as MLproject users type them)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _unquoted(text: str) -> str:
    """A value as ``mlflow run`` logged it, without its shell quoting (``''`` -> empty)."""
    try:
        words = shlex.split(text)
    except ValueError:
        return text
    return words[0] if len(words) == 1 else text


def log_params_once(params: Mapping[str, Any]) -> None:
    """Log params; keys already set on the run (``mlflow run`` logs its ``-P`` values itself,
    shell-quoted) are not re-logged: a value spelled differently goes in ``<key>_resolved``."""
    import mlflow

    run = mlflow.active_run()
    assert run is not None, "log_params_once is called inside a run"
    existing = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    fresh: dict[str, str] = {}
    for key, value in params.items():
        text = _param_text(value)
        if key not in existing:
            fresh[key] = text
        elif _unquoted(existing[key]) != text and f"{key}_resolved" not in existing:
            fresh[f"{key}_resolved"] = text
    if fresh:
        mlflow.log_params(fresh)


def log_metrics_finite(metrics: Mapping[str, float]) -> None:
    """Log metrics, skipping NaN (e.g. Spearman of a constant prediction) with a debug line."""
    import mlflow

    finite = {}
    for key, value in metrics.items():
        if value is None or not math.isfinite(float(value)):
            log.debug("metric %s is %s: not logged", key, value)
            continue
        finite[key] = float(value)
    mlflow.log_metrics(finite)


def log_figure(fig: Any, artifact_file: str) -> None:
    """Log a matplotlib Figure as a PNG artifact (e.g. ``plots/gain_curve.png``)."""
    import mlflow

    mlflow.log_figure(fig, artifact_file)


def log_table(table: pd.DataFrame, artifact_stem: str) -> None:
    """Log a table as ``<stem>.csv`` and ``<stem>.json`` (records)."""
    import mlflow

    mlflow.log_text(table.to_csv(index=False), f"{artifact_stem}.csv")
    records = json.loads(table.to_json(orient="records", double_precision=15))
    attrs = cast(dict[str, Any], table.attrs)  # (clvflow sets only text keys)
    mlflow.log_dict({"rows": records, **dict(attrs)}, f"{artifact_stem}.json")


def transactions_sha256(tx: pd.DataFrame) -> str:
    """sha256 of a transactions table's content (column names, dtypes and every value, in row
    order); the same data read from CSV or Parquet hash alike."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in tx.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(tx, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def log_transactions_input(
    tx: pd.DataFrame, name: str, sha256: str, context: str = "training"
) -> None:
    """Record transactions as a dataset input of the run (content hash as tag)."""
    import mlflow

    # mlflow.data defines its from_* constructors in a loop at import: invisible to mypy
    # MLflow's own digest maps type() over every cell (minutes at millions of rows): the
    # content hash is computed already, its first 8 hex digits serve (MLflow digests are 8 long).
    dataset = mlflow.data.from_pandas(tx, name=name, digest=sha256[:8])  # type: ignore[attr-defined]
    # (schema is a cached_property: set, it is not inferred again from every row)
    dataset.__dict__["schema"] = dataset_schema(tx)
    mlflow.log_input(dataset, context=context, tags={"sha256": sha256})


#: Rows MLflow infers a logged table's column types from (:func:`dataset_schema`).
SCHEMA_SAMPLE_ROWS = 10_000


def dataset_schema(tx: pd.DataFrame) -> Any:
    """The schema MLflow infers for a table, without its per-value Python loops over every row
    (12 minutes for 15M transactions on the shared VM): column types from the first
    ``SCHEMA_SAMPLE_ROWS`` rows (the columns have one dtype each), ``required`` (no missing
    value) from every row, vectorised. None when MLflow cannot infer one."""
    import mlflow
    from mlflow.types import ColSpec, Schema

    sample = mlflow.data.from_pandas(tx.head(SCHEMA_SAMPLE_ROWS)).schema  # type: ignore[attr-defined]
    if sample is None:
        return None
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=not bool(tx[spec.name].isna().any()))
            for spec in sample.inputs
        ]
    )


# ---- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """Outcome of registering a candidate and the champion decision."""

    name: str
    version: str
    promoted: bool
    score: float
    previous_champion: str | None
    previous_score: float | None
    decision: str = ""  # why it was or was not promoted


def _champion(client: Any, name: str) -> tuple[str | None, float | None]:
    """(version, its run's promotion metric) of the current champion, or (None, None)."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None, None
    try:
        value = client.get_run(current.run_id).data.metrics.get(PROMOTION_METRIC)
    except MlflowException:
        value = None
    if value is None:
        log.warning(
            "champion %s v%s has no %s metric: any candidate replaces it",
            name,
            current.version,
            PROMOTION_METRIC,
        )
    return str(current.version), value


def registry_lock_path(tracking_uri: str) -> Path:
    """The lock file that serialises champion decisions on one tracking store: beside a sqlite
    database, else (another store) in the temporary folder, named by the store's URI."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///")).absolute()
        return db.with_name(f".{db.name}.clvflow-registry.lock")
    key = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"clvflow-registry-{key}.lock"


@contextmanager
def registry_lock() -> Iterator[None]:
    """Hold an exclusive ``flock`` on the tracking store's :func:`registry_lock_path` (released
    by the system if the process dies): concurrent registrations on this machine take turns."""
    import mlflow

    path = registry_lock_path(mlflow.get_tracking_uri())
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _point_candidate(client: Any, name: str, version: str) -> None:
    """Alias ``candidate`` on ``version`` unless a newer version already has it."""
    from mlflow.exceptions import MlflowException

    try:
        current = int(client.get_model_version_by_alias(name, CANDIDATE_ALIAS).version)
    except MlflowException:
        current = 0
    if int(version) > current:
        client.set_registered_model_alias(name, CANDIDATE_ALIAS, version)


def register_candidate(
    model_uri: str,
    name: str,
    score: float,
    *,
    eligible: bool = True,
    why_not: str = "",
    description: str = "",
    tags: Mapping[str, str] | None = None,
) -> Registration:
    """Register ``model_uri`` as a new version of ``name`` with alias ``candidate`` (and the
    given description and version tags), and give it alias ``champion`` when it is ``eligible``
    (see ``clvflow.mlops.publish.promotion_verdict``) and ``score`` (its backtest ``spend_gini_norm``) beats
    the champion's, or there is no champion. Reading the champion, comparing and moving the
    alias happen under :func:`registry_lock`, so of two concurrent registrations the better one
    ends champion."""
    import mlflow

    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, name, tags=dict(tags or {})).version
    if description:
        client.update_model_version(name, version, description=description)
    with registry_lock():  # read the champion, compare, set: one step for concurrent runs
        _point_candidate(client, name, str(version))
        previous, previous_score = _champion(client, name)
        beats = previous is None or previous_score is None or score > previous_score
        promoted = eligible and beats
        if promoted:
            client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    if promoted:
        decision = "champion: " + (
            "no champion before" if previous is None else f"beats v{previous}"
        )
    elif not eligible:
        decision = f"candidate only: {why_not}"
    else:
        decision = (
            f"candidate only: champion v{previous} has {PROMOTION_METRIC} {previous_score:.4f}"
        )
    log.info("registered %s v%s (%s %.4f): %s", name, version, PROMOTION_METRIC, score, decision)
    return Registration(name, str(version), promoted, score, previous, previous_score, decision)


def check_registered_model(name: str, identity: Mapping[str, Any]) -> None:
    """Raise ValueError when registered model ``name`` already holds versions trained on other
    data or for another horizon (version tags ``data_name`` / ``horizon_days``): a new data set
    must not become a new version of another one's model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return
    for v in versions:
        theirs = {k: v.tags.get(k) for k in identity}
        clash = {
            k: (theirs[k], str(identity[k]))
            for k in identity
            if theirs[k] not in (None, str(identity[k]))
        }
        if clash:
            what = ", ".join(f"{k} {old!r} (this run: {new!r})" for k, (old, new) in clash.items())
            raise ValueError(
                f"registered model {name!r} version {v.version} was trained with {what}; "
                "refusing to add a version for other data or another horizon. Leave out "
                "--register-as (the default name is derived from the data and horizon) or "
                "choose another name"
            )


@contextmanager
def child_run(run_name: str) -> Iterator[Any]:
    """A run nested in the active one (e.g. one cutoff of a multi-cutoff backtest)."""
    import mlflow

    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent else None  # else MLflow's default one
    with mlflow.start_run(experiment_id=experiment, run_name=run_name, nested=True) as run:
        mlflow.set_tag("mlflow.runName", run_name)
        log.info("MLflow child run %s (%s)", run.info.run_id, run_name)
        yield run
