"""``clvflow score --parts K``: a file scored in customer-hash parts gives what one frame gives."""

import json
import logging

import numpy as np
import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.core.idcodes import stable_hash
from clvflow.features.build import build_features
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from clvflow.scoring.drift import reference_profile
from tests.model_fixture import small_log, small_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A bundle with a drift profile, and a messy CSV log: numeric ids, some written as
    '17.0', rows without an id, exact duplicates, returns, a typo year, rows to exclude."""
    root = tmp_path_factory.mktemp("parts")
    model, cutoff = small_model()
    tx = small_log()
    features = build_features(tx, cutoff)
    profile = reference_profile(features, ["recency_days", "spend_90d", "T_days"])
    manifest = build_manifest(model, cutoff=str(cutoff.date()), reference_profile=profile)
    write_bundle_files(model, root / "bundle", manifest)
    log = tx.loc[tx["timestamp"] < "2023-07-01"].reset_index(drop=True)
    log["customer_id"] = log["customer_id"].str.lstrip("C0")
    log["channel"] = np.where(np.arange(len(log)) % 50 == 0, "test", "web")
    log["timestamp"] = log["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    log["customer_id"] = log["customer_id"].astype(object)
    log.loc[log.index % 7 == 0, "customer_id"] = log["customer_id"] + ".0"  # float-formatted
    log.loc[log.index % 97 == 0, "customer_id"] = ""  # no id
    log.loc[5, "timestamp"] = "2999-01-01 00:00:00"  # a typo year: far from all other rows
    log = pd.concat([log, log.iloc[10:40]], ignore_index=True)  # exact duplicates
    assert (log["amount"] < 0).any()  # returns
    log.to_csv(root / "tx.csv", index=False)
    return root


def _score(files, out, parts, *extra):
    return main(
        [
            "score",
            "--model",
            str(files / "bundle"),
            "--transactions",
            str(files / "tx.csv"),
            "--output",
            str(out),
            "--parts",
            str(parts),
            "--exclude",
            "channel=test",
            "--quality-report",
            str(out.with_suffix(".quality.json")),
            "--drift-output",
            str(out.with_suffix(".drift.csv")),
            *extra,
        ]
    )


def _run(files, capsys, caplog, out, parts, *extra):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clvflow"):
        assert _score(files, out, parts, *extra) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("part ")]
    return capsys.readouterr().out, warnings, progress


@pytest.mark.parametrize("dedupe", [(), ("--drop-duplicates",)])
def test_scoring_in_parts_writes_what_one_frame_writes(files, capsys, caplog, dedupe):
    """Issue 11 item 4: a messy CSV (float-formatted ids, no ids, duplicates, returns, a far
    date, excluded rows) scored in 3 customer-hash parts: the same scores file (rows, order,
    every column but scored_at), data-quality report, drift table, printed tables, interval
    and warnings as in one frame; a progress line per part."""
    tag = "dedupe" if dedupe else "keep"
    one, parts = files / f"one-{tag}.csv", files / f"parts-{tag}.csv"
    printed_one, warned_one, progress_one = _run(files, capsys, caplog, one, 1, *dedupe)
    printed_parts, warned_parts, progress = _run(files, capsys, caplog, parts, 3, *dedupe)
    a, b = (pd.read_csv(p, dtype={"customer_id": str}) for p in (one, parts))
    pd.testing.assert_frame_equal(a.drop(columns="scored_at"), b.drop(columns="scored_at"))
    assert b["customer_id"].is_unique and len(b) > 1500
    first_lines = [p.read_text().splitlines()[:1] for p in (one, parts)]
    assert first_lines[0] == first_lines[1]  # the same header
    quality = [json.loads(p.with_suffix(".quality.json").read_text()) for p in (one, parts)]
    assert quality[0] == quality[1]
    q = quality[1]
    assert q["dropped_far_dates"] == 1 and q["dropped_missing_customer_id"] > 0
    assert q["customer_ids_float_formatted"] > 0 and q["duplicate_rows"] == 30
    assert q["dropped_excluded"] > 0 and q["returns"] > 0
    assert q["dropped_duplicates"] == (30 if dedupe else 0)
    assert any("line 7 (2999-01-01 00:00:00)" in n for n in q["notes"])  # data row 5: line 7
    drift = [pd.read_csv(p.with_suffix(".drift.csv")) for p in (one, parts)]
    pd.testing.assert_frame_equal(drift[0], drift[1])
    assert printed_one == printed_parts and "80% interval [" in printed_parts
    assert warned_one == warned_parts
    assert not progress_one
    assert [p.split(":")[0] for p in progress] == ["part 1/3", "part 2/3", "part 3/3"]


def test_cdnow_in_seven_tiny_parts_scores_every_customer_once_as_one_frame(files, tmp_path):
    """Issue 11 item 4: the CDNOW log in 7 parts (~3,400 customers each) scores its 23,570
    customers exactly once, each row equal to one frame's (Parquet, full precision)."""
    outs = [tmp_path / f"cdnow-{k}.parquet" for k in (1, 7)]
    for out, k in zip(outs, (1, 7), strict=True):
        argv = ["score", "--model", str(files / "bundle"), "--transactions", "cdnow"]
        assert main([*argv, "--output", str(out), "--parts", str(k), "--no-reasons"]) == 0
    a, b = (pd.read_parquet(p).drop(columns="scored_at") for p in outs)
    assert len(b) == 23_570 and b["customer_id"].is_unique
    assert b["customer_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(a, b)


def test_a_failing_part_leaves_no_output_and_names_the_line(files, tmp_path, capsys):
    """Issue 11 item 4: a bad amount in the last of 3 parts fails the run after the other
    parts were scored: exit 2, the message names the file, column and line; no scores file,
    no staging folder left, and the file that was already in the folder untouched."""
    log = pd.read_csv(files / "tx.csv", dtype=str, keep_default_na=False)
    cleaned = log["customer_id"].str.replace(r"\.0$", "", regex=True)
    last_part = (stable_hash(cleaned) % np.uint64(3)).astype(int) == 2
    row = int(np.flatnonzero(last_part & (cleaned != "").to_numpy())[3])
    log.loc[row, "amount"] = "12,50"
    bad = tmp_path / "bad.csv"
    log.to_csv(bad, index=False)
    keep = tmp_path / "keep.txt"
    keep.write_text("not clvflow's")
    out = tmp_path / "scores.csv"
    argv = ["score", "--model", str(files / "bundle"), "--transactions", str(bad)]
    assert main([*argv, "--output", str(out), "--parts", "3", "--no-reasons"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}, column 'amount'" in err and f"line {row + 2} ('12,50')" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "keep.txt"]
    assert keep.read_text() == "not clvflow's"


def test_parts_with_a_report_or_below_one_are_refused(files, tmp_path, capsys):
    """Issue 11 item 4: --report needs the whole table (refused with --parts 2); --parts 0."""
    argv = ["score", "--model", str(files / "bundle"), "--transactions", str(files / "tx.csv")]
    out = tmp_path / "s.csv"
    report = ["--report", str(tmp_path / "r")]
    assert main([*argv, "--output", str(out), "--parts", "2", *report]) == 2
    assert "--report needs the whole scores table" in capsys.readouterr().err
    assert main([*argv, "--output", str(out), "--parts", "0"]) == 2
    assert "--parts must be 1 or more" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
