"""The Python front door (``import clvflow``): the README's notebook example run verbatim, hand-checked
ingest of DataFrames, clear errors, and exact equality with the CLI's functions and outputs."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

import clvflow
from clvflow.cli.main import main
from clvflow.data.ingest import ColumnMap
from clvflow.data.ingest import load_transactions as ingest_load
from clvflow.models.tables import evaluation_table
from clvflow.models.training import backtest as training_backtest
from clvflow.models.training import fit_model
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS
from tests.model_fixture import small_log

REPO = Path(__file__).resolve().parents[1]
SMALL = {"n_estimators": 40, "n_snapshots": 2, "snapshot_spacing_days": 30}  # model_fixture's
RENAMED = {"customer_id": "CustomerID", "timestamp": "InvoiceDate", "amount": "Revenue"}


def readme_python_block(heading: str) -> str:
    """The fenced python block under ``## heading`` in README.md."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^```python\n(.*?)^```$", section, re.M | re.S).group(1)


@cache
def fitted() -> clvflow.ClvModel:
    """The front-door model on the small simulated log, cutoff 2023-07-01."""
    return clvflow.ClvModel(horizon_days=90, **SMALL).fit(small_log(), cutoff="2023-07-01")


def test_readme_notebook_example_runs_verbatim_from_renamed_columns():
    """Issue 13 item 2: the README's notebook example runs, from a DataFrame with non-default
    column names to one score row per customer."""
    block = readme_python_block("From a notebook")
    # import + 5 statements (ruff formats README code blocks, so a long call spans lines)
    assert len(ast.parse(block).body) <= 6
    names: dict = {}
    exec(compile(block, "README.md", "exec"), names)
    orders, tx, model, scores = (names[k] for k in ("orders", "tx", "model", "scores"))
    assert list(orders.columns) == ["CustomerID", "InvoiceDate", "Revenue"]
    assert list(tx.columns) == ["customer_id", "timestamp", "amount"]
    last = tx["timestamp"].max().normalize()
    assert model.cutoff_ == last + pd.Timedelta(days=1)  # the CLI's default cutoff
    assert list(scores.columns[: len(SCORES_TABLE_COLUMNS)]) == SCORES_TABLE_COLUMNS
    assert scores["customer_id"].is_unique
    assert set(scores["customer_id"]) == set(tx["customer_id"])
    assert (scores["as_of"] == model.cutoff_).all() and (scores["horizon_days"] == 90).all()


def test_load_transactions_maps_a_dataframe_like_a_file(tmp_path):
    """Issue 13 item 2: load_transactions takes a DataFrame with keyword column names; the
    result is hand-checked and equal to ingest's for the same rows written to CSV."""
    raw = pd.DataFrame(
        {
            "Ref": ["a", "b", "c", "d"],
            "CustomerID": [17850.0, 17850.0, None, 12.0],  # float-formatted ids, one missing
            "InvoiceDate": [
                "2011-01-02 10:00",
                "2011-01-05 09:30",
                "2011-01-06 11:00",
                "2011-01-07 00:00",
            ],
            "Qty": [2, -1, 5, 3],
            "Price": [2.5, 2.5, 1.0, 10.0],
        }
    )
    before = raw.copy()
    tx, report = clvflow.load_transactions(
        raw,
        customer="CustomerID",
        timestamp="InvoiceDate",
        quantity="Qty",
        unit_price="Price",
        return_report=True,
    )
    expected = pd.DataFrame(
        {
            "customer_id": ["17850", "17850", "12"],
            "timestamp": pd.to_datetime(
                ["2011-01-02 10:00", "2011-01-05 09:30", "2011-01-07 00:00"]
            ),
            "amount": [5.0, -2.5, 30.0],
        }
    )
    pd.testing.assert_frame_equal(tx, expected, check_dtype=False, check_index_type=False)
    assert (report.rows_read, report.rows_used, report.dropped_missing_customer_id) == (4, 3, 1)
    pd.testing.assert_frame_equal(raw, before)  # the caller's frame is left as it was
    assert (report.returns, report.customers, report.customer_ids_float_formatted) == (1, 2, 3)
    path = tmp_path / "orders.csv"
    raw.to_csv(path, index=False)
    columns = ColumnMap("CustomerID", "InvoiceDate", None, "Qty", "Price")
    from_file, _ = ingest_load(path, columns)
    pd.testing.assert_frame_equal(
        clvflow.load_transactions(
            path, customer="CustomerID", timestamp="InvoiceDate", quantity="Qty", unit_price="Price"
        ),
        from_file,
    )
    pd.testing.assert_frame_equal(tx, from_file)


def test_unmapped_columns_raise_input_error_naming_columns_and_keyword(tmp_path):
    """Issue 13 item 2: an unmapped column is a clear InputError (columns present, keyword to
    pass), from load_transactions, fit and score alike; never a bare KeyError."""
    raw = small_log().head(50).rename(columns=RENAMED)
    with pytest.raises(clvflow.InputError) as caught:
        clvflow.load_transactions(raw, customer="CustomerID", amount="Revenue")
    message = str(caught.value)
    assert "missing column(s) 'timestamp' (pass timestamp=...)" in message
    assert "Columns present: ['CustomerID', 'InvoiceDate', 'Revenue']" in message
    with pytest.raises(clvflow.InputError, match=r"'customer_id' \(pass customer=\.\.\.\)"):
        clvflow.ClvModel(horizon_days=30).fit(raw)
    with pytest.raises(clvflow.InputError, match=r"Columns present: \['CustomerID'"):
        fitted().score(raw)
    path = tmp_path / "orders.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(clvflow.InputError, match=r"customer=\.\.\., timestamp=\.\.\., amount="):
        clvflow.load_transactions(path)
    with pytest.raises(clvflow.InputError, match="quantity= and unit_price= go together"):
        clvflow.load_transactions(raw, quantity="Revenue")
    # default names but not ingested (an extra column): ingested on the way in, not refused
    raw_default = small_log().assign(channel="web")
    as_of = "2023-07-01"
    pd.testing.assert_frame_equal(
        fitted().score(raw_default, as_of=as_of).drop(columns="scored_at"),
        fitted().score(small_log(), as_of=as_of).drop(columns="scored_at"),
    )
    with pytest.raises(AttributeError, match=r"not fitted: call \.fit\(tx\) first"):
        clvflow.ClvModel().score(small_log())


def test_fit_is_what_training_fits_and_score_is_what_the_cli_writes(tmp_path):
    """Issue 13 item 2: fit = training.fit_model(method='auto') (internal backtest + refit);
    save writes a bundle that `clvflow score` and clvflow.load_model read to the same table as
    model.score (scored_at aside; model_name is the bundle folder's name once saved)."""
    model = fitted()
    reference, features = fit_model(
        small_log(),
        "2023-07-01",
        90,
        params=model._settings().params,
        snapshots=model._settings().snapshots,
        method="auto",
    )
    pd.testing.assert_frame_equal(model.model_.predict(features), reference.predict(features))
    assert model.selection_.blend == reference.selection_.blend
    assert model.cutoff_ == pd.Timestamp("2023-07-01")

    folder = model.save(tmp_path / "bundle")
    assert (folder / "manifest.json").is_file()
    small_log().to_parquet(tmp_path / "tx.parquet")
    out = tmp_path / "scores.parquet"
    argv = ["score", "--model", folder, "--transactions", tmp_path / "tx.parquet"]
    assert main([str(a) for a in [*argv, "--as-of", "2023-07-01", "--output", out]]) == 0
    cli = pd.read_parquet(out).drop(columns="scored_at")
    loaded = clvflow.load_model(folder)
    assert loaded.cutoff_ == model.cutoff_ and loaded.source_ is not None
    from_bundle = loaded.score(small_log(), as_of="2023-07-01").drop(columns="scored_at")
    pd.testing.assert_frame_equal(from_bundle, cli)
    in_memory = model.score(small_log(), as_of="2023-07-01").drop(columns="scored_at")
    assert (in_memory["model_name"] == "").all() and (cli["model_name"] == "bundle").all()
    pd.testing.assert_frame_equal(
        in_memory.drop(columns="model_name"), cli.drop(columns="model_name")
    )


def test_backtest_is_trainings_backtest_table_per_cutoff():
    """Issue 13 item 2: clvflow.backtest gives, per cutoff, the table of
    training.backtest's metrics (what `clvflow backtest` prints)."""
    table = clvflow.backtest(small_log(), cutoffs=["2023-07-01"], horizon_days=90, **SMALL)
    settings = clvflow.ClvModel(90, **SMALL)._settings()
    result = training_backtest(
        small_log(), "2023-07-01", 90, params=settings.params, snapshots=settings.snapshots
    )
    expected = evaluation_table(result.metrics)
    assert list(table.index.names) == ["cutoff", "method"]
    pd.testing.assert_frame_equal(table.loc[pd.Timestamp("2023-07-01").date()], expected)
    with pytest.raises(ValueError, match="runs past the end of the data"):
        clvflow.backtest(small_log(), cutoffs=["2023-07-01", "2023-12-01"], horizon_days=90)


def test_import_clvflow_stays_light_and_simulate_is_the_function():
    """Issue 13 item 2: `import clvflow` loads neither pandas nor the front door; the names are
    re-exported with __all__, and clvflow.simulate is the simulator function."""
    code = (
        "import sys, clvflow\n"
        "print(sorted(m for m in ('pandas', 'xgboost', 'clvflow.api') if m in sys.modules))\n"
        "from clvflow.data.simulate import retail_like\n"
        "print(callable(clvflow.simulate), clvflow.simulate.__module__)\n"
        "print(' '.join(clvflow.__all__))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "[]",
        "True clvflow.data.simulate",
        "__version__ ClvModel InputError backtest load_cdnow load_model load_transactions simulate",
    ]


def test_fit_and_save_match_clvflow_train_export_dir(tmp_path, monkeypatch):
    """Issue 13 item 2: ClvModel(...).fit(load_transactions(path)).save(dir) writes what
    `clvflow train --export-dir` writes with the same settings (manifest less the MLflow run and
    registry fields), and both bundles score to the same table."""
    small_log().to_parquet(tmp_path / "tx.parquet")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    argv = ["train", "--transactions", tmp_path / "tx.parquet", "--horizon-days", 90]
    argv += ["--cutoff", "2023-07-01", "--n-estimators", 40, "--n-snapshots", 2]
    argv += ["--export-dir", tmp_path / "cli", "--experiment-name", "front-door"]
    assert main([str(a) for a in argv]) == 0

    tx = clvflow.load_transactions(tmp_path / "tx.parquet")
    model = clvflow.ClvModel(90, **SMALL).fit(tx, cutoff="2023-07-01")
    model.save(tmp_path / "front", data_name="tx")
    cli = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    front = json.loads((tmp_path / "front" / "manifest.json").read_text())
    assert set(cli) - set(front) == {"mlflow_run_id", "registered_model"}
    same = ["training_data_sha256", "reference_profile", "model_card", "exported_method", "files"]
    assert {k: front[k] for k in same} == {k: cli[k] for k in same}
    assert (cli["data_source"], front["data_source"]) == (str(tmp_path / "tx.parquet"), "tx")

    by_cli = clvflow.load_model(tmp_path / "cli").score(tx, as_of="2023-07-01")
    by_front = clvflow.load_model(tmp_path / "front").score(tx, as_of="2023-07-01")
    pd.testing.assert_frame_equal(
        by_front.drop(columns=["scored_at", "model_name", "model_version"]),
        by_cli.drop(columns=["scored_at", "model_name", "model_version"]),
    )
