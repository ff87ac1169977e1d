"""`clvflow score --engine spark` equals `clvflow score`: ids exactly, numbers to 1e-9 relative,
text columns and dates exactly; the output folder is written atomically (staged, then moved in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.data.simulate import retail_like
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from clvflow.scoring.segments import add_segments
from clvflow.spark.scoring import SCORES_MARKER, add_segments_spark, score_columns
from tests.model_fixture import small_log, small_model

#: Columns that differ between two runs by design: the time each run scored.
RUN_COLUMNS = ["scored_at"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """The small model as a bundle, and a retail log with returns, same-day cancellations,
    exact duplicate rows and ids written both as ``17`` and as ``17.0`` (CSV)."""
    root = tmp_path_factory.mktemp("spark-score")
    model, cutoff = small_model()
    write_bundle_files(model, root / "bundle", build_manifest(model, cutoff=str(cutoff.date())))
    tx = retail_like(n_customers=300, seed=5).transactions.dropna(subset=["customer_id"])
    number = tx["customer_id"].str[1:].astype(int)
    tx["customer_id"] = np.where(
        np.arange(len(tx)) % 3 == 0, number.astype(str) + ".0", number.astype(str)
    )
    taken_back = pd.DataFrame(  # all taken back (net spend 0), only a return
        {
            "customer_id": ["9001", "9001", "9002.0"],
            "timestamp": pd.to_datetime(
                ["2011-03-01 10:00", "2011-03-01 12:00", "2011-04-01 09:00"]
            ),
            "amount": [50.0, -50.0, -20.0],
        }
    )
    tx = pd.concat([tx, tx.iloc[::40], taken_back], ignore_index=True)  # exact duplicates, kept
    tx.to_csv(root / "retail.csv", index=False)
    return root


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


def assert_same_scores(spark_table: pd.DataFrame, local: pd.DataFrame) -> None:
    """Same columns in the same order, same ids in the same order, numbers to 1e-9 relative,
    everything else exactly."""
    assert list(spark_table.columns) == list(local.columns)
    assert spark_table["customer_id"].tolist() == local["customer_id"].tolist()
    assert local["customer_id"].is_unique
    for c in local.columns:
        if c in RUN_COLUMNS:
            continue
        a, b = spark_table[c], local[c]
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_allclose(
                a.to_numpy("float64"), b.to_numpy("float64"), rtol=1e-9, atol=0, err_msg=c
            )
        elif pd.api.types.is_datetime64_any_dtype(b):
            assert pd.to_datetime(a).astype("datetime64[us]").equals(b.astype("datetime64[us]")), c
        else:
            assert a.astype("str").tolist() == b.astype("str").tolist(), c
            assert a.dtype.kind == b.dtype.kind, c


def score_both(files: Path, tmp: Path, *flags: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run `clvflow score` on both engines with ``flags``; (spark table, local table)."""
    local, spark = tmp / "local.parquet", tmp / "spark.parquet"
    assert run("score", "--model", files / "bundle", *flags, "--output", local) == 0
    argv = ("score", "--model", files / "bundle", *flags, "--output", spark, "--engine", "spark")
    assert run(*argv) == 0
    assert spark.is_dir() and (spark / SCORES_MARKER).is_file()
    return pd.read_parquet(spark), pd.read_parquet(local)


def test_spark_scores_equal_local_on_cdnow(spark, files, tmp_path, capsys) -> None:
    """Issue 12 item 3: every CDNOW customer known at 1997-10-01 scored once by Spark, with the
    single-machine scores (history, predictions, lifetime value, intervals, tiers, segments,
    priorities; reasons skipped here) and the same printed total-CLV interval."""
    got, want = score_both(
        files,
        tmp_path,
        "--transactions",
        "cdnow",
        "--as-of",
        "1997-10-01",
        "--margin",
        "0.3",
        "--annual-discount-rate",
        "0.08",
        "--no-reasons",
    )
    assert len(want) == 23_570
    assert_same_scores(got, want)
    assert list(got.columns) == score_columns(with_reasons=False)
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "80% interval" in ln]
    assert len(printed) == 2
    bounds = [
        [float(v.replace(",", "")) for v in ln.split("[")[1].rstrip("]").split(", ")]
        for ln in printed
    ]
    np.testing.assert_allclose(bounds[0], bounds[1], rtol=1e-9)
    assert got["scored_at"].notna().all() and got["model_name"].eq("bundle").all()


def test_spark_scores_equal_local_on_a_log_with_returns_duplicates_and_float_ids(
    spark, files, tmp_path
) -> None:
    """Issue 12 item 3: returns, same-day cancellations, exact duplicates (kept), ids written
    as 17.0 (normalised to 17), a customer whose order was cancelled in full and one with only
    a return give the same scores, reasons (TreeSHAP phrases) included."""
    got, want = score_both(files, tmp_path, "--transactions", files / "retail.csv")
    assert list(got.columns) == score_columns(with_reasons=True)
    assert not want["customer_id"].str.endswith(".0").any()
    taken_back = want.set_index("customer_id").loc[["9001", "9002"]]
    assert taken_back["value_tier"].tolist() == ["low", "low"]
    assert taken_back["p_active"].tolist()[1] == 0.0
    assert_same_scores(got, want)


def test_add_segments_spark_equals_add_segments_on_ties(spark) -> None:
    """Issue 12 item 3: percentiles with tied clv (average ranks), RFM quintiles with ties
    (lowest rank), priorities tied on value broken by id, win-back targets and a customer
    without net spend: the Spark window functions give add_segments' columns exactly."""
    table = pd.DataFrame(
        {
            "customer_id": ["b", "a", "d", "c", "e", "f"],
            "p_churn": [0.9, 0.2, 0.5, 0.9, 0.85, 0.99],
            "expected_spend_if_active": [10.0] * 6,
            "expected_spend": [1.0, 8.0, 5.0, 1.0, 1.5, 0.1],
            "clv": [5.0, 5.0, 9.0, 1.0, 5.0, 0.0],
            "clv_lifetime": [20.0, 20.0, 30.0, 20.0, 0.0, 3.0],
            "historical_clv": [100.0, 100.0, -5.0, 40.0, 40.0, 10.0],
            "purchase_days": [3.0, 3.0, 1.0, 2.0, 2.0, 1.0],
            "recency_days": [10.0, 10.0, 200.0, 30.0, 30.0, 400.0],
            "tenure_days": [300.0, 50.0, 400.0, 300.0, 300.0, 500.0],
            "p_alive": [0.9, 0.9, 0.5, 0.9, 0.04, 0.01],
        }
    )
    want = add_segments(table).sort_values("customer_id", ignore_index=True)
    got = (
        add_segments_spark(spark.createDataFrame(table), len(table))
        .orderBy("customer_id")
        .toPandas()
    )
    # hand-checked: clv 5.0 three times (ranks 3, 4, 5: average 4 of 6 -> 66.67)
    assert want.set_index("customer_id")["clv_percentile"]["a"] == pytest.approx(400 / 6)
    # value at risk b, c 18 (tie: id order), a 4; d has no net spend; e, f are win-back targets
    assert want.set_index("customer_id")["retention_priority"].to_dict() == {
        "a": 3, "b": 1, "c": 2, "d": 4, "e": 6, "f": 5
    }  # fmt: skip
    assert want.set_index("customer_id")["winback_priority"].to_dict() == {
        "a": 0, "b": 0, "c": 0, "d": 0, "e": 1, "f": 2
    }  # fmt: skip
    for c in want.columns:
        if pd.api.types.is_float_dtype(want[c]):
            np.testing.assert_array_equal(got[c].to_numpy("float64"), want[c].to_numpy(), c)
        else:
            assert got[c].tolist() == want[c].tolist(), c


def test_spark_output_rules_never_replace_what_clvflow_did_not_write(
    spark, files, tmp_path, capsys
) -> None:
    """Issue 12 item 3: an existing scores folder is kept without --overwrite (exit 2); with it,
    a folder clvflow wrote is replaced whole, a folder holding anything else is refused (exit
    2, untouched); no staging folder is left behind."""
    out = tmp_path / "scores.parquet"
    base = ("score", "--model", files / "bundle", "--transactions", files / "retail.csv")
    base += ("--no-reasons", "--engine", "spark", "--output", out)
    assert run(*base, "--as-of", "2011-06-01") == 0
    first = pd.read_parquet(out)
    assert run(*base) == 2
    assert "is not empty; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert run(*base, "--overwrite") == 0  # clvflow's own folder: replaced whole
    second = pd.read_parquet(out)
    assert len(second) > len(first)  # (as of the day after the last row: more customers)
    listed = json.loads((out / SCORES_MARKER).read_text())["files"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == sorted(
        [*listed, SCORES_MARKER]
    )

    foreign = tmp_path / "mine.parquet"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert run(*base[:-1], foreign, "--overwrite") == 2
    assert "did not write (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clvflow-staging-")]


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--what-if", "at risk:5"), "--what-if"),
        (("--cac", "20"), "--cac"),
        (("--report", "REPORT"), "--report"),
    ],
)
def test_spark_score_refuses_options_it_does_not_support(
    spark, files, tmp_path, capsys, flags, named
) -> None:
    """Issue 12 item 3: an option the Spark engine does not support exits 2 naming it (never a
    silent difference), and writes nothing."""
    flags = tuple(str(tmp_path / "report") if f == "REPORT" else f for f in flags)
    out = tmp_path / "scores.parquet"
    argv = ("score", "--model", files / "bundle", "--transactions", files / "retail.csv")
    assert run(*argv, *flags, "--engine", "spark", "--output", out) == 2
    err = capsys.readouterr().err
    assert named in err and "--engine spark" in err
    assert not out.exists()


def test_spark_score_wants_a_parquet_folder(spark, files, tmp_path, capsys) -> None:
    """Issue 12 item 3: a CSV output (one file, on one machine) is refused with exit 2."""
    argv = ("score", "--model", files / "bundle", "--transactions", files / "retail.csv")
    assert run(*argv, "--engine", "spark", "--output", tmp_path / "s.csv") == 2
    assert "folder of Parquet files" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_python_api_score_spark_equals_score(spark, files) -> None:
    """Issue 12 item 1: clvflow.load_model(...).score_spark(spark_tx) returns, as a Spark
    DataFrame, the table model.score(tx) returns (same customers once, same numbers)."""
    import clvflow
    from clvflow.spark.scoring import scores_to_pandas

    tx = small_log()
    tx = tx[tx["customer_id"].isin(sorted(tx["customer_id"].unique())[:150])]
    model = clvflow.load_model(files / "bundle")
    want = model.score(tx, "2023-07-01")
    got = model.score_spark(spark.createDataFrame(tx), "2023-07-01")
    assert_same_scores(scores_to_pandas(got), want)
    with pytest.raises(clvflow.InputError, match="lacks column"):
        model.score_spark(spark.createDataFrame(tx.rename(columns={"amount": "revenue"})))


def test_a_killed_spark_score_publishes_nothing_and_the_next_run_cleans_up(
    spark, files, tmp_path
) -> None:
    """Issue 12 item 3: `clvflow score --engine spark` killed with SIGKILL (with its JVM) while
    it writes leaves no scores folder, only its staging folder; the next run writing there
    removes that and publishes the whole folder."""
    import os
    import signal
    import subprocess
    import time

    out = tmp_path / "scores.parquet"
    argv = ["score", "--model", str(files / "bundle"), "--transactions", str(files / "retail.csv")]
    argv += [
        "--no-reasons",
        "--engine",
        "spark",
        "--spark-master",
        "local[1]",
        "--output",
        str(out),
    ]
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"}
    code = "import sys; from clvflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    child = subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    staged = []
    while not staged and child.poll() is None and time.monotonic() < deadline:
        staged = list(tmp_path.glob(".clvflow-staging-*/scores.parquet"))
        time.sleep(0.01)
    os.killpg(child.pid, signal.SIGKILL)  # the CLI and its JVM
    child.wait()
    assert staged, "the run ended before it wrote its staged scores"
    assert not out.exists()
    assert len(list(tmp_path.glob(".clvflow-staging-*"))) == 1  # the dead run's, left as is
    assert run(*argv) == 0  # in this process: the test session
    assert pd.read_parquet(out)["customer_id"].is_unique
    assert not list(tmp_path.glob(".clvflow-staging-*"))
