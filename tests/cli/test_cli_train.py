"""``clvflow train`` / ``clvflow backtest``: impossible settings exit 2 with a clear message before
any MLflow run exists; flags are validated; MLproject wiring matches the CLI."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from clvflow.cli.main import build_parser, main
from tests.conftest import make_tx

REPO = Path(__file__).resolve().parents[2]
ENTRY_COMMANDS = {"main": "train", "backtest": "backtest"}


@pytest.fixture
def log_csv(tmp_path: Path, monkeypatch) -> Path:
    """100 days of history, 2024-01-01 .. 2024-04-09; MLflow pointed at a temporary store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    days = [*pd.date_range("2024-01-01", "2024-04-09", freq="3D"), pd.Timestamp("2024-04-09")]
    rows = [(f"c{i % 7}", str(day.date()), 10.0) for i, day in enumerate(days)]
    path = tmp_path / "tx.csv"
    make_tx(rows).to_csv(path, index=False)
    return path


def _fails(capsys, argv: list[str], match: str) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert match in err, err
    return err


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["train", "--horizon-days", "75"], "horizon_days=75 is too long for the history"),
        (["train", "--horizon-days", "10"], "dropped, fewer than 50 buyers"),
        (["train", "--horizon-days", "10", "--cutoff", "2023-06-01"], "on or before the first"),
        (["train", "--horizon-days", "10", "--cutoff", "2025-01-01"], "after the end of the data"),
        (
            ["backtest", "--horizon-days", "30", "--cutoff", "2024-04-01"],
            "runs past the end of the data",
        ),
        (["backtest", "--horizon-days", "40", "--cutoff", "2024-02-01"], "too long for the hist"),
        (["backtest", "--horizon-days", "10", "--cutoff", "2023-12-01"], "on or before the first"),
    ],
)
def test_impossible_settings_exit_2_before_any_run(argv, match, log_csv, capsys):
    err = _fails(capsys, [*argv, "--transactions", log_csv], match)
    assert err.startswith(f"clvflow {argv[0]}: error: ")
    assert not (log_csv.parent / "mlflow.db").exists()  # nothing logged for a refused job


def test_export_dir_holding_other_files_is_refused_before_training(log_csv, capsys):
    other = log_csv.parent / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    argv = ["train", "--transactions", log_csv, "--horizon-days", "10", "--export-dir", other]
    _fails(capsys, argv, "is not a clvflow model bundle; refusing to replace it")
    assert not (log_csv.parent / "mlflow.db").exists()


def test_horizon_message_says_what_fits(log_csv, capsys):
    err = _fails(capsys, ["train", "--transactions", log_csv, "--horizon-days", "75"], "span")
    assert "span 100 days (from 2024-01-01)" in err and "--horizon-days 69 or less" in err
    assert "on or after 2024-04-16" in err  # 75-day window + 31 days of history


@pytest.mark.parametrize(
    ("flag", "value", "match"),
    [
        ("--horizon-days", "abc", "argument --horizon-days: invalid int value: 'abc'"),
        ("--horizon-days", "0", "'0' is out of range (a whole number >= 1)"),
        ("--horizon-days", "1.5", "invalid int value: '1.5'"),
        ("--horizon-days", "inf", "invalid int value: 'inf'"),
        ("--n-estimators", "-3", "'-3' is out of range"),
        ("--learning-rate", "fast", "invalid float value: 'fast'"),
        ("--margin", "1.5", "a share of revenue in (0, 1]"),
        ("--annual-discount-rate", "1", "a yearly rate in [0, 1)"),
        ("--cutoff", "1998-13-01", "'1998-13-01' is not a date"),
        ("--drop-duplicates", "maybe", "invalid bool value: 'maybe'"),
    ],
)
def test_bad_flag_values_exit_2(flag, value, match, capsys):
    argv = ["train", "--transactions", "cdnow", "--horizon-days", "30", flag, value]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_backtest_requires_a_cutoff_or_cutoffs(capsys):
    assert main(["backtest", "--transactions", "cdnow", "--horizon-days", "30"]) == 2
    assert "give --cutoff DATE or --cutoffs DATE [DATE ...]" in capsys.readouterr().err
    argv = ["backtest", "--transactions", "cdnow", "--horizon-days", "30"]
    argv += ["--cutoff", "1998-01-01", "--cutoffs", "1998-02-01"]
    assert main(argv) == 2


def test_cutoff_ranges():
    from clvflow.cli.main import parse_cutoffs

    days = parse_cutoffs(["1997-04-01:1997-07-01:1m", "1997-05-01", "1998-01-01"])
    assert [d.date().isoformat() for d in days] == [
        "1997-04-01",
        "1997-05-01",
        "1997-06-01",
        "1997-07-01",
        "1998-01-01",
    ]
    assert len(parse_cutoffs(["2024-01-01:2024-01-31:10d"])) == 4
    with pytest.raises(ValueError, match="START:STOP:STEP"):
        parse_cutoffs(["2024-01-01:2024-02-01:2w"])


def test_blank_values_mean_not_given():
    args = build_parser().parse_args(
        ["train", "--transactions", "x", "--horizon-days", "7", "--cutoff", ""]
        + ["--drop-duplicates", "false"]
    )
    assert args.cutoff is None and args.drop_duplicates is False
    args = build_parser().parse_args(
        ["train", "--transactions", "x", "--horizon-days", "7", "--drop-duplicates"]
    )
    assert args.drop_duplicates is True


def _mlproject() -> dict:
    return yaml.safe_load((REPO / "MLproject").read_text())


@pytest.mark.parametrize("entry", sorted(ENTRY_COMMANDS))
def test_mlproject_defaults_parse_like_the_cli_defaults(entry):
    """The command MLflow builds from the defaults parses, and gives the CLI's own defaults."""
    spec = _mlproject()["entry_points"][entry]
    params = spec["parameters"]
    values = {k: shlex.quote(str(v["default"])) for k, v in params.items()}
    words = shlex.split(spec["command"].format(**values))
    script = f"training/{'train' if entry == 'main' else 'backtest'}.py"
    assert words[:3] == ["sh", "training/python.sh", script]
    parser = build_parser()
    from_project = vars(parser.parse_args([ENTRY_COMMANDS[entry], *words[3:]]))
    required = ["--transactions", "cdnow", "--horizon-days", "181"]
    if entry == "backtest":
        required += ["--cutoff", "1998-01-01"]
    from_cli = vars(parser.parse_args([ENTRY_COMMANDS[entry], *required]))
    for name in params:
        got, want = from_project[name], from_cli[name]
        assert (None if got == "" else got) == want, name
    assert set(params) <= set(from_cli), "MLproject parameter without a CLI flag"


def test_entry_script_is_wiring_to_the_cli():
    done = subprocess.run(
        [sys.executable, "training/train.py", "--transactions", "cdnow", "--horizon-days", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert "clvflow train: error: argument --horizon-days: invalid int value: 'x'" in done.stderr
