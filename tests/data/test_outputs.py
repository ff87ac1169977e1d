"""Outputs: one rule for every output flag, exclusive creation, staging that survives kill -9,
bundle replacement with no moment without a bundle, CSV cells safe for spreadsheets. Real files
and real processes throughout."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.data.files import (
    STAGING_PREFIX,
    Staging,
    escape_csv_cells,
    read_table,
    unescape_csv_cells,
    write_table,
)
from clvflow.features.build import build_features
from clvflow.mlops import bundle
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from clvflow.scoring.drift import reference_profile
from tests.model_fixture import small_log, small_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A bundle of the small model, with a reference profile (so scoring makes a drift table)."""
    root = tmp_path_factory.mktemp("model")
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    profile = reference_profile(features, ["recency_days", "spend_90d"])
    manifest = build_manifest(model, cutoff=str(cutoff.date()), reference_profile=profile)
    return write_bundle_files(model, root / "bundle", manifest)


@pytest.fixture
def tx_csv(tmp_path) -> Path:
    path = tmp_path / "tx.csv"
    small_log().to_csv(path, index=False)
    return path


def run(*argv) -> int:
    return main([str(a) for a in argv])


def _score_argv(model_dir: Path, tx: Path, *more) -> list[str]:
    return [
        "score",
        "--model",
        str(model_dir),
        "--transactions",
        str(tx),
        "--as-of",
        "2023-07-01",
        *map(str, more),
    ]


def _cli(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen(
        [sys.executable, "-m", "clvflow.cli.main", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---- item 2: one rule for every output flag -------------------------------------------------


def test_an_empty_required_output_path_is_a_clear_error(model_dir, tx_csv, capsys):
    """Issue 13 item 5: mypy found that `--output ""` (a required output) reached the writers as
    None: an AttributeError traceback (exit 1). Now exit 2 naming the flag, nothing written."""
    before = sorted(p.name for p in tx_csv.parent.iterdir())
    commands = [
        ["features", "--transactions", tx_csv, "--output", ""],
        [*_score_argv(model_dir, tx_csv, "--output", "")],
        ["trend", "--model", model_dir, "--transactions", tx_csv, "--as-of", "2020-03-01"]
        + ["--as-of", "2020-04-01", "--output", ""],
        ["report", "--scores", tx_csv, "--output", ""],
    ]
    for argv in commands:
        assert run(*argv) == 2
        err = capsys.readouterr().err
        assert f"clvflow {argv[0]}: error: --output: an empty path; give the " in err
    assert sorted(p.name for p in tx_csv.parent.iterdir()) == before


def test_quality_report_and_drift_output_follow_the_output_rule(model_dir, tx_csv, capsys):
    """Issue 9 item 2: --quality-report may not be an input, nor replace a file without
    --overwrite; --drift-output may not be an input even with --overwrite."""
    original = tx_csv.read_bytes()
    scores = tx_csv.parent / "s.csv"
    base = _score_argv(model_dir, tx_csv, "--output", scores)
    assert run(*base, "--quality-report", tx_csv, "--overwrite") == 2
    assert "--quality-report" in capsys.readouterr().err
    assert run(*base, "--drift-output", tx_csv, "--overwrite") == 2
    assert "--drift-output" in capsys.readouterr().err
    inside = model_dir / "q.json"
    assert run(*base, "--quality-report", inside) == 2  # nothing goes into the model bundle
    assert "is inside the input" in capsys.readouterr().err
    assert tx_csv.read_bytes() == original and not scores.exists() and not inside.exists()
    notes = tx_csv.parent / "notes.json"
    notes.write_text("keep me")
    assert run(*base, "--quality-report", notes) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert notes.read_text() == "keep me" and not scores.exists()
    assert run("features", "--transactions", tx_csv, "--output", tx_csv.parent / "f.csv",
               "--quality-report", notes) == 2  # fmt: skip
    assert notes.read_text() == "keep me"
    assert run(*base, "--quality-report", notes, "--overwrite") == 0
    assert json.loads(notes.read_text())["rows_read"] == len(small_log())
    assert sorted(p.name for p in tx_csv.parent.iterdir()) == ["notes.json", "s.csv", "tx.csv"]


def test_train_refuses_an_existing_quality_report_before_any_work(tx_csv, capsys, monkeypatch):
    """Issue 9 item 2: train's --quality-report follows the same rule (train and backtest have
    --overwrite for it)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tx_csv.parent}/mlflow.db")
    notes = tx_csv.parent / "q.json"
    notes.write_text("keep me")
    argv = ["--transactions", tx_csv, "--horizon-days", "90", "--quality-report", notes]
    assert run("train", *argv, "--export-dir", tx_csv.parent / "m") == 2
    assert "q.json: already exists; pass --overwrite" in capsys.readouterr().err
    assert run("backtest", *argv, "--cutoff", "2023-01-01") == 2
    assert notes.read_text() == "keep me"


def test_two_outputs_of_one_run_may_not_collide(model_dir, tx_csv, capsys):
    out = tx_csv.parent / "s.csv"
    argv = _score_argv(model_dir, tx_csv, "--output", out, "--drift-output", out)
    assert run(*argv) == 2
    assert "clashes with --output" in capsys.readouterr().err
    assert not out.exists()


# ---- item 4: exclusive creation -------------------------------------------------------------


def _open_fifo_for_writing(fifo: Path, proc: subprocess.Popen) -> int:
    """Wait until ``proc`` opens ``fifo`` to read (so it is past its output checks)."""
    end = time.monotonic() + 120
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader yet
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end, "the run never read its --cac-file"
            time.sleep(0.01)
            continue
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd


def test_two_score_runs_creating_one_output_one_refuses(model_dir, tx_csv):
    """Issue 9 item 4: two score runs both creating scores.csv, both past their checks before
    either writes (each waits on its --cac-file, a pipe this test feeds once both read it): one
    writes it, the other refuses with exit 2 (before: both succeeded, the last one winning)."""
    out = tx_csv.parent / "scores.csv"
    fifos = [tx_csv.parent / f"cac{i}.csv" for i in range(2)]
    cac = pd.DataFrame({"customer_id": small_log()["customer_id"].unique(), "cac": 10.0})
    procs = []
    for fifo in fifos:
        os.mkfifo(fifo)
        procs.append(_cli(*_score_argv(model_dir, tx_csv, "--output", out, "--cac-file", fifo)))
    fds = [_open_fifo_for_writing(fifo, proc) for fifo, proc in zip(fifos, procs, strict=True)]
    for fd in fds:
        with os.fdopen(fd, "w") as pipe:
            cac.to_csv(pipe, index=False)
    done = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in done) == [0, 2], done
    refused = next(err for code, err in done if code == 2)
    assert "scores.csv: was created or changed by another run" in refused
    assert len(read_table(out)) == read_table(out)["customer_id"].nunique() > 0
    assert sorted(p.name for p in tx_csv.parent.iterdir()) == [
        "cac0.csv", "cac1.csv", "scores.csv", "tx.csv"
    ]  # fmt: skip


# ---- item 5: kill -9 -------------------------------------------------------------------------


def _wait_for_file(root: Path, proc: subprocess.Popen, skip: set[str]) -> Path:
    """The first file (any depth, hidden included) with an output suffix that appears."""
    end = time.monotonic() + 120
    while time.monotonic() < end:
        try:
            for path in root.rglob("*"):
                if path.name not in skip and path.suffix in (".csv", ".tmp", ".html", ".png"):
                    return path
        except FileNotFoundError:  # a folder went away while listed
            pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.005)
    raise AssertionError("the run wrote nothing")


def test_score_killed_mid_run_publishes_nothing_and_the_rerun_works(model_dir, tx_csv):
    """Issue 9 item 5: kill -9 once the run has written its first output: no output (nor a
    hidden temporary file) is published, and the same command run again succeeds and leaves
    exactly its outputs (the dead run's staging folder is removed)."""
    folder = tx_csv.parent
    argv = _score_argv(model_dir, tx_csv, "--output", folder / "s.csv", "--drift-output",
                       folder / "d.csv", "--report", folder / "r")  # fmt: skip
    proc = _cli(*argv)
    first = _wait_for_file(folder, proc, {"tx.csv"})
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert first.parent != folder, f"{first.name} was published before the end of the run"
    assert not {"s.csv", "d.csv", "r"} & {p.name for p in folder.iterdir()}
    rerun = _cli(*argv)
    assert rerun.wait(timeout=120) == 0, rerun.stderr.read()
    assert sorted(p.name for p in folder.iterdir()) == ["d.csv", "r", "s.csv", "tx.csv"]
    assert (folder / "r" / "index.html").exists() and len(read_table(folder / "d.csv")) == 2


def test_bundle_export_killed_leaves_a_bundle_and_nothing_else(model_dir, tmp_path):
    """Issue 9 item 5: an export killed with kill -9 at any moment leaves a whole bundle at the
    target (old or new), and the next export removes what the dead one left."""
    target = tmp_path / "models" / "clv"
    bundle.export_bundle(model_dir, target, mlflow_run_id="r0")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    for wait in (0.05, 0.11, 0.17):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.export_loop", str(model_dir), str(target)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "1", proc.stderr.read()
        time.sleep(wait)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        bundle.load_bundle(target)  # whole, checksums and all
    bundle.export_bundle(model_dir, target, mlflow_run_id="next")
    assert [p.name for p in target.parent.iterdir()] == ["clv"]
    assert bundle.load_bundle(target)[1]["mlflow_run_id"] == "next"


def test_bundle_replacement_has_no_moment_without_a_bundle(model_dir, tmp_path):
    """Issue 9 item 5: while a bundle is exported over and over, its manifest is always there
    (the old code renamed the old bundle away before renaming the new one in)."""
    target = tmp_path / "clv"
    bundle.export_bundle(model_dir, target)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.export_loop", str(model_dir), str(target)],
        cwd=REPO,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "1", proc.stderr.read()
        manifest, missing, checks = target / bundle.MANIFEST, 0, 0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            checks += 1
            missing += not manifest.exists()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    exports = len(proc.stdout.read().split())
    assert exports >= 5 and checks > 1000
    assert missing == 0


def test_a_bundle_moved_aside_by_a_dead_run_is_put_back(tmp_path):
    """Issue 9 item 5: where the system cannot swap folders, replacing moves the old one into
    the run's staging folder first; if the run dies there, the next run puts it back."""
    dead = tmp_path / f"{STAGING_PREFIX}999999999-x"  # no such pid, no lock
    (dead / ".aside" / "clv").mkdir(parents=True)
    (dead / ".aside" / "clv" / "manifest.json").write_text("{}")
    (dead / "clv").mkdir()  # the new copy it was about to move in
    with Staging() as staging:
        staging.folder(tmp_path)
        assert (tmp_path / "clv" / "manifest.json").read_text() == "{}"
        assert not dead.exists()
        alive = staging.folder(tmp_path)
        with Staging() as other:
            other.folder(tmp_path)  # another run starting now leaves this live one alone
            assert alive.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["clv"]


# ---- item 8: CSV cells safe for spreadsheets ------------------------------------------------

TRICKY = ['=HYPERLINK("http://x")', "+33", "-5", "@SUM(A1)", "\tx", "'=x", "''", "'a", "ok"]


def test_csv_cells_that_start_a_formula_are_quoted_and_read_back_exactly(tmp_path):
    """Issue 9 item 8: a CSV text cell starting with = + - @ tab or CR gets a leading quote;
    Parquet keeps the raw value; reading our CSV back restores every id exactly."""
    df = pd.DataFrame({"customer_id": pd.Series(TRICKY, dtype="str"), "clv": -1.5})
    write_table(df, tmp_path / "t.csv")
    write_table(df, tmp_path / "t.parquet")
    cells = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False)["customer_id"]
    assert cells.tolist() == [
        "'=HYPERLINK(\"http://x\")", "'+33", "'-5", "'@SUM(A1)", "'\tx", "''=x", "'" "''", "'a",
        "ok",
    ]  # fmt: skip
    assert (tmp_path / "t.csv").read_text().splitlines()[1].endswith(",-1.5")  # numbers stay
    assert pd.read_parquet(tmp_path / "t.parquet")["customer_id"].tolist() == TRICKY
    back = read_table(tmp_path / "t.csv")
    assert back["customer_id"].tolist() == TRICKY and back["clv"].tolist() == [-1.5] * 9
    carriage = escape_csv_cells(pd.DataFrame({"id": ["\rx", "x\r"]}))["id"].tolist()
    assert carriage == ["'\rx", "x\r"]
    assert unescape_csv_cells(pd.DataFrame({"id": carriage}))["id"].tolist() == ["\rx", "x\r"]


def test_scored_csv_is_safe_and_the_report_reads_the_ids_back(model_dir, tmp_path):
    """Issue 9 item 8, end to end: customers with formula-like ids are scored to CSV with quoted
    cells; `clvflow report --scores` reading that CSV (with a CAC file keyed by the raw ids)
    finds every customer."""
    tx = small_log().copy()
    ids = sorted(tx["customer_id"].unique())[:4]
    rename = dict(zip(ids, ["=1+1", "-7", "+cmd|' /C calc'!A0", "@x"], strict=True))
    tx["customer_id"] = tx["customer_id"].replace(rename)
    tx.to_parquet(tmp_path / "tx.parquet")
    out = tmp_path / "s.csv"
    assert run(*_score_argv(model_dir, tmp_path / "tx.parquet", "--output", out)) == 0
    lines = out.read_text().splitlines()
    for raw in rename.values():
        assert sum(line.startswith("'" + raw.split("|")[0]) for line in lines) == 1, raw
        assert not any(line.startswith(raw.split("|")[0]) for line in lines)
    scores = read_table(out)
    assert set(rename.values()) <= set(scores["customer_id"])
    cac = tmp_path / "cac.parquet"
    pd.DataFrame({"customer_id": scores["customer_id"], "cac": 10.0}).to_parquet(cac)
    assert run("report", "--scores", out, "--cac-file", cac, "--output", tmp_path / "r") == 0
