"""The score / trend / report commands end to end on a bundle (real files, no MLflow server)."""

import json
import shutil

import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.features.build import build_features
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from clvflow.scoring.drift import reference_profile
from tests.model_fixture import small_log, small_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    model, cutoff = small_model()
    tx = small_log()
    tx.to_parquet(root / "tx.parquet")
    features = build_features(tx, cutoff)
    profile = reference_profile(features, ["recency_days", "spend_90d"])
    manifest = build_manifest(model, cutoff=str(cutoff.date()), reference_profile=profile)
    write_bundle_files(model, root / "bundle", manifest)
    return root


def run(*argv):
    return main([str(a) for a in argv])


def test_score_writes_every_known_customer_once_and_a_report(files, capsys):
    out = files / "scores.parquet"
    rc = run(
        "score",
        "--model",
        files / "bundle",
        "--transactions",
        files / "tx.parquet",
        "--as-of",
        "2023-07-01",
        "--output",
        out,
        "--report",
        files / "report",
        "--cac",
        "20",
        "--what-if",
        "at risk:5",
    )
    assert rc == 0
    scores = pd.read_parquet(out)
    tx = small_log()
    known = set(tx.loc[tx["timestamp"] < pd.Timestamp("2023-07-01"), "customer_id"])
    assert scores["customer_id"].is_unique and set(scores["customer_id"]) == known
    assert (files / "report" / "index.html").exists()
    printed = capsys.readouterr().out
    assert "clv_cac_ratio" in printed and "what-if: churn -5 points in segment='at risk'" in printed


def test_full_file_and_file_cut_at_as_of_score_identically(files):
    tx = small_log()
    tx[tx["timestamp"] < pd.Timestamp("2023-07-01")].to_csv(files / "cut.csv", index=False)
    a, b = files / "a.csv", files / "b.csv"
    assert (
        run(
            "score",
            "--model",
            files / "bundle",
            "--transactions",
            files / "tx.parquet",
            "--as-of",
            "2023-07-01",
            "--output",
            a,
        )
        == 0
    )
    assert (
        run(
            "score",
            "--model",
            files / "bundle",
            "--transactions",
            files / "cut.csv",
            "--as-of",
            "2023-07-01",
            "--output",
            b,
        )
        == 0
    )
    cols = lambda df: df.drop(columns=["scored_at"])  # noqa: E731
    pd.testing.assert_frame_equal(
        cols(pd.read_csv(a, dtype={"customer_id": str})),
        cols(pd.read_csv(b, dtype={"customer_id": str})),
    )


def _bad(files, capsys, *argv, match):
    out = files / "never.csv"
    rc = run("score", "--output", out, *argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert match in err, err
    assert not out.exists()
    assert not list(files.glob(".never.csv.*"))


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--transactions", "nope.csv"], "nope.csv: file not found"),
        (["--customer-col", "cust"], "missing column(s) 'cust'"),
        (["--as-of", "2000-01-01"], "as-of date 2000-01-01 is not after the first"),
        (["--as-of", "yesterday"], "is not a date"),
        (["--margin", "1.5"], "margin must be in (0, 1]"),
        (["--what-if", "at risk"], "use SEGMENT:POINTS"),
    ],
)
def test_bad_input_exits_2_and_leaves_no_output(files, capsys, argv, match):
    base = {"--model": files / "bundle", "--transactions": files / "tx.parquet"}
    for flag in argv[::2]:
        base.pop(flag, None)
    args = [x for kv in base.items() for x in kv] + argv
    _bad(files, capsys, *args, match=match)


def test_tampered_bundle_and_wrong_uri_are_refused(files, capsys):
    tampered = files / "tampered"
    shutil.copytree(files / "bundle", tampered)
    meta = json.loads((tampered / "model.json").read_text())
    meta["horizon_days"] = 7
    (tampered / "model.json").write_text(json.dumps(meta))
    tx = ["--transactions", files / "tx.parquet"]
    _bad(files, capsys, "--model", tampered, *tx, match="model.json does not match its sha256")
    _bad(files, capsys, "--model", files / "nobundle", *tx, match="no such bundle directory")
    _bad(files, capsys, "--model", "s3://x/y", *tx, match="unsupported URI")


def test_refuses_to_overwrite_without_flag_and_never_the_input(files, capsys):
    out = files / "exists.csv"
    out.write_text("keep me")
    rc = run(
        "score",
        "--model",
        files / "bundle",
        "--transactions",
        files / "tx.parquet",
        "--output",
        out,
    )
    assert rc == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    tx_csv = files / "in.csv"
    small_log().head(50).to_csv(tx_csv, index=False)
    rc = run(
        "score",
        "--model",
        files / "bundle",
        "--transactions",
        tx_csv,
        "--output",
        tx_csv,
        "--overwrite",
    )
    assert rc == 2 and "is an input file" in capsys.readouterr().err


def test_trend_and_report_commands(files, capsys):
    trend = files / "trend.csv"
    rc = run(
        "trend",
        "--model",
        files / "bundle",
        "--transactions",
        files / "tx.parquet",
        "--as-of",
        "2023-05-01",
        "2023-06-01",
        "2023-07-01",
        "--output",
        trend,
        "--plot",
        files / "trend.png",
    )
    assert rc == 0
    table = pd.read_csv(trend)
    assert len(table) == 3 and {"clv_total", "p_churn_mean"} <= set(table.columns)
    assert (files / "trend.png").stat().st_size > 1000
    s1, s2 = files / "s1.parquet", files / "s2.parquet"
    for day, out in (("2023-06-01", s1), ("2023-07-01", s2)):
        assert (
            run(
                "score",
                "--model",
                files / "bundle",
                "--transactions",
                files / "tx.parquet",
                "--as-of",
                day,
                "--output",
                out,
            )
            == 0
        )
    assert run("report", "--scores", s1, s2, "--output", files / "rep2") == 0
    html = (files / "rep2" / "index.html").read_text()
    assert "2023-07-01" in html
