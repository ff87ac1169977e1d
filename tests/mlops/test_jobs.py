"""End to end: ``clvflow train`` / ``clvflow backtest`` against a temporary MLflow sqlite store on a
small simulated log (one training for the whole module; small boosters, two snapshots)."""

from __future__ import annotations

import contextlib
import io
import json
import os
from functools import partial
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.data.simulate import simulate
from clvflow.evaluation.metrics import METRIC_NAMES
from clvflow.features.build import build_features
from clvflow.mlops import bundle, tracking
from clvflow.models.clv import ModelParams
from clvflow.models.training import SnapshotSettings, fit_model
from clvflow.scoring.scores import SCORE_COLUMNS, score_features

pytestmark = pytest.mark.slow

NAME = "clvtest"
HORIZON = 90
# One XGBoost thread: with two on shared, busy cores OpenMP contention makes boosting ~20x slower.
FAST = ["--n-estimators", "20", "--n-snapshots", "2", "--n-jobs", "1"]
FAST += ["--horizon-days", str(HORIZON)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """Simulated log as parquet, one ``clvflow train`` run; yields what the tests inspect."""
    tmp = tmp_path_factory.mktemp("pipeline")
    tx = simulate(3000, seed=1).transactions
    path = tmp / "tx.parquet"
    tx.to_parquet(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        argv = ["train", "--transactions", str(path), *FAST, "--seed", "0"]
        argv += ["--export-dir", str(tmp / "bundle"), "--register-as", NAME]
        argv += ["--experiment-name", NAME]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(argv)
        client = mlflow.MlflowClient()
        runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
        yield {
            "rc": rc,
            "out": out.getvalue(),
            "tmp": tmp,
            "tx": tx,
            "path": path,
            "client": client,
            "run": runs[0],
        }


@pytest.fixture(scope="module")
def features(trained) -> pd.DataFrame:
    cutoff = pd.Timestamp(trained["run"].data.params["cutoff"])
    return build_features(trained["tx"], cutoff)


def test_train_succeeds_and_prints_the_evaluation_table(trained):
    assert trained["rc"] == 0
    run = trained["run"]
    assert run.info.status == "FINISHED"
    # unique run names: what was done, then the UTC time
    assert run.info.run_name.startswith(f"train tx h{HORIZON} cutoff {run.data.params['cutoff']} (")
    out = trained["out"]
    assert (
        "| method | gini_norm | top_decile | rmse | mae | agg_bias | roc_auc | pr_auc | brier |"
        in out
    )
    assert f"{NAME} version 1 (candidate, champion)" in out


def test_logged_params_metrics_and_dataset(trained):
    run = trained["run"]
    params, metrics = run.data.params, run.data.metrics
    for key in ("cutoff", "backtest_cutoff", "horizon_days", "seed", "n_estimators", "max_depth"):
        assert key in params
    assert params["n_estimators"] == "20" and params["n_snapshots"] == "2"
    assert params["n_jobs"] == "1" and params["min_child_weight"]  # all ModelParams fields
    assert params["data_source"] == str(trained["path"])
    assert params["lifetime_discount_rate"] == "0.1"  # issue 10 item 1: the lifetime's rate
    # Issue 11 item (a): the exported tree counts are the internal backtest's early stopping's
    assert params["n_trees_source"] == "internal backtest"
    assert metrics["n_trees_churn"] >= 1 and metrics["n_trees_spend"] >= 1
    for name in METRIC_NAMES:
        assert name in metrics or name == "spend_spearman"
        for prefix in ("baseline_bgnbd_", "baseline_historical_"):
            assert f"{prefix}{name}" in metrics or name == "spend_spearman"
    for count in ("n_customers_scored", "n_training_rows", "n_transactions", "promoted"):
        assert count in metrics
    for prefix in ("", "baseline_bgnbd_", "gain_vs_bgnbd_"):
        low = metrics[f"{prefix}spend_gini_norm_ci95_low"]
        assert low <= metrics[f"{prefix}spend_gini_norm_ci95_high"]
    assert metrics["spend_gini_norm_ci95_low"] <= metrics["spend_gini_norm"]
    assert metrics["spend_gini_norm"] <= metrics["spend_gini_norm_ci95_high"]
    for key in ("level_churn_logit_shift", "level_spend_factor"):
        assert key in metrics
    (dataset_input,) = run.inputs.dataset_inputs
    tags = {t.key: t.value for t in dataset_input.tags}
    assert tags["mlflow.data.context"] == "training"
    assert tags["sha256"] == params["data_sha256"] == run.data.tags["data_sha256"]


def test_logged_artifacts_and_models(trained):
    client, run_id = trained["client"], trained["run"].info.run_id
    local = Path(client.download_artifacts(run_id, "", str(trained["tmp"] / "artifacts")))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    for name in (
        "data_quality.json",
        "plots/gain_curve.png",
        "plots/reliability_curve.png",
        "plots/decile_table.png",
        "plots/feature_importance_churn.png",
        "plots/feature_importance_spend.png",
        "tables/decile_table.csv",
        "tables/decile_table.json",
        "tables/bootstrap_intervals.csv",
        "long_run.json",
    ):
        assert name in files
    long_run = json.loads((local / "long_run.json").read_text())
    assert long_run["model"] == "MBG/NBD" and set(long_run["params_weeks"]) >= {"r", "a", "b"}
    assert long_run["formula"].startswith("clv_lifetime = margin x DERT x spend per purchase")
    models = mlflow.search_logged_models(
        experiment_ids=[trained["run"].info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        output_format="list",
    )
    assert sorted(m.name for m in models) == ["churn", "clv_model", "spend"]
    assert str(trained["tmp"]) in trained["run"].info.artifact_uri  # beside the sqlite store


def test_registered_with_candidate_and_champion(trained):
    client, run_id = trained["client"], trained["run"].info.run_id
    for alias in ("candidate", "champion"):
        mv = client.get_model_version_by_alias(NAME, alias)
        assert (str(mv.version), mv.run_id) == ("1", run_id)
    assert trained["run"].data.tags["promoted"] == "true"


def test_champion_changes_only_for_a_better_gini(trained):
    client, run = trained["client"], trained["run"]
    uri = client.get_model_version(NAME, "1").source  # the logged clv_model (models:/m-...)
    gini = run.data.metrics["spend_gini_norm"]
    worse = tracking.register_candidate(uri, NAME, gini - 0.1)
    assert not worse.promoted and worse.previous_champion == "1"
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == worse.version
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "1"
    better = tracking.register_candidate(uri, NAME, gini + 0.1)
    assert better.promoted
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == better.version
    client.set_registered_model_alias(NAME, "champion", "1")  # restore for the other tests


def test_pyfunc_returns_scores_and_matches_the_bundle(trained, features):
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    cutoff = pd.Timestamp(trained["run"].data.params["cutoff"])
    scores = pyfunc.predict(features, params={"as_of": str(cutoff.date())})
    assert list(scores.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert scores["customer_id"].tolist() == features["customer_id"].tolist()
    assert (scores["as_of"] == cutoff).all()

    model, source = bundle.load_model(trained["tmp"] / "bundle")
    assert (source.name, source.version) == (NAME, "1")
    assert source.run_id == trained["run"].info.run_id
    assert source.manifest["training_data_sha256"] == trained["run"].data.params["data_sha256"]
    assert {"recency_days", "p_active"} <= set(source.manifest["reference_profile"])
    pd.testing.assert_frame_equal(scores, score_features(model, features, cutoff))

    half = pyfunc.predict(features, params={"as_of": str(cutoff.date()), "margin": 0.5})
    pd.testing.assert_series_equal(half["clv"], scores["clv"] * 0.5)
    # issue 10 item 1: lifetime value and its discount rate in the pyfunc output
    pd.testing.assert_series_equal(half["clv_lifetime"], scores["clv_lifetime"] * 0.5)
    assert (scores["lifetime_discount_rate"] == 0.1).all()


def test_pyfunc_output_and_training_run_carry_the_reasons(trained, features):
    """Issue 10 item 3: the pyfunc's output (and its logged signature) has the reason columns;
    the training run logged mean |SHAP| per input and booster (table and bar plots)."""
    from clvflow.scoring.reasons import REASON_COLUMNS, mean_abs_contributions

    uri = f"models:/{NAME}@champion"
    cutoff = pd.Timestamp(trained["run"].data.params["cutoff"])
    scores = mlflow.pyfunc.load_model(uri).predict(
        features.head(50), params={"as_of": str(cutoff.date())}
    )
    assert scores[REASON_COLUMNS].map(len).gt(0).all().all()
    outputs = mlflow.models.get_model_info(uri).signature.outputs.input_names()
    assert set(REASON_COLUMNS) <= set(outputs)

    client, run_id = trained["client"], trained["run"].info.run_id
    local = Path(client.download_artifacts(run_id, "", str(trained["tmp"] / "shap")))
    for name in ("plots/shap_importance_churn.png", "plots/shap_importance_spend.png"):
        assert (local / name).is_file()
    logged = pd.read_csv(local / "tables" / "shap_importance.csv")
    model, _ = bundle.load_model(trained["tmp"] / "bundle")
    expected = mean_abs_contributions(model, features)
    assert logged["feature"].tolist() == expected["feature"].tolist()
    assert logged["churn_mean_abs_shap"].tolist() == pytest.approx(
        expected["churn_mean_abs_shap"].tolist(), rel=1e-9
    )


def test_load_model_from_registry_and_run_uris(trained, features):
    run_id = trained["run"].info.run_id
    reference, _ = bundle.load_model(trained["tmp"] / "bundle")
    expected = reference.predict(features)
    for uri in (f"models:/{NAME}@champion", f"models:/{NAME}/1", f"runs:/{run_id}/clv_model"):
        model, source = bundle.load_model(uri)
        assert source.run_id == run_id
        pd.testing.assert_frame_equal(model.predict(features), expected)
    assert bundle.load_model(f"models:/{NAME}/1")[1].label == f"{NAME}/1"


def test_same_seed_trains_identical_model(trained, features):
    """A second training with the same seed (library, no MLflow) scores exactly alike."""
    cutoff = pd.Timestamp(trained["run"].data.params["cutoff"])
    again, _ = fit_model(
        trained["tx"],
        cutoff,
        HORIZON,
        params=ModelParams(n_estimators=20, seed=0, n_jobs=1),
        snapshots=SnapshotSettings(n_snapshots=2),
        method="auto",
    )
    model, _ = bundle.load_model(trained["tmp"] / "bundle")
    pd.testing.assert_frame_equal(again.predict(features), model.predict(features))


def test_backtest_command_prints_table_and_logs_a_run(trained, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained['tmp']}/mlflow.db")
    argv = ["backtest", "--transactions", str(trained["path"]), "--cutoff", "2024-02-01"]
    argv += [*FAST, "--n-estimators", "10", "--n-snapshots", "1"]
    argv += ["--experiment-name", f"{NAME}-backtest"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| method | gini_norm | top_decile | rmse | mae | agg_bias |" in out
    for row in ("| model |", "| BG/NBD × Gamma-Gamma |", "| historical |"):
        assert row in out
    assert "95% intervals" in out and "| model − BG/NBD | " in out
    client = trained["client"]
    (run,) = client.search_runs([client.get_experiment_by_name(f"{NAME}-backtest").experiment_id])
    assert run.info.run_name.startswith(f"backtest tx h{HORIZON} cutoff 2024-02-01 (")
    assert "baseline_bgnbd_spend_gini_norm" in run.data.metrics
    contexts = {
        {t.key: t.value for t in d.tags}["mlflow.data.context"] for d in run.inputs.dataset_inputs
    }
    assert contexts == {"training", "evaluation"}
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ  # no process-wide MLflow state left behind


def test_format_intervals_one_row_per_method():
    from clvflow.evaluation.metrics import BOOTSTRAP_METRICS
    from clvflow.models.tables import format_intervals

    rows = [
        {"method": m, "metric": k, "estimate": 0.5, "low": 0.25, "high": 0.75}
        for m in ("model", "bgnbd", "model - bgnbd")
        for k in BOOTSTRAP_METRICS
    ]
    lines = format_intervals(pd.DataFrame(rows)).splitlines()
    assert lines[0] == "| method | gini_norm | top_decile | rmse | agg_bias | roc_auc |"
    assert lines[2] == (
        "| model | 0.500 [0.250, 0.750] | 0.500 [0.250, 0.750] | 0.50 [0.25, 0.75] "
        "| +50.0% [+25.0%, +75.0%] | 0.500 [0.250, 0.750] |"
    )
    assert [line.split(" | ")[0] for line in lines[2:]] == [
        "| model",
        "| BG/NBD × Gamma-Gamma",
        "| model − BG/NBD",
    ]


def test_registry_version_says_data_cutoff_horizon_method_and_backtest(trained):
    mv = trained["client"].get_model_version(NAME, "1")
    assert mv.tags["data_name"] == "tx" and mv.tags["horizon_days"] == str(HORIZON)
    assert mv.tags["exported_method"] in {"boosters", "bgnbd", "blend"}
    cutoff = trained["run"].data.params["cutoff"]
    assert f"Trained on tx before {cutoff}, horizon {HORIZON} days. Exported method:" in (
        mv.description
    )
    assert "Internal backtest on [" in mv.description and "| model |" in mv.description
    tags = trained["run"].data.tags
    assert tags["internal_backtest"] == "yes" and tags["exported_method"]
    assert trained["run"].data.params["exported_method"] == mv.tags["exported_method"]


def test_new_data_never_becomes_a_version_of_another_data_sets_model(trained):
    tracking.check_registered_model(NAME, {"data_name": "tx", "horizon_days": HORIZON})
    with pytest.raises(ValueError, match="was trained with data_name 'tx' .this run: 'cdnow'"):
        tracking.check_registered_model(NAME, {"data_name": "cdnow", "horizon_days": HORIZON})
    with pytest.raises(ValueError, match="horizon_days '90' .this run: '30'"):
        tracking.check_registered_model(NAME, {"data_name": "tx", "horizon_days": 30})
    target = trained["tmp"] / "bundle"
    bundle.check_export_dir(target, {"data_name": "tx", "horizon_days": HORIZON})
    with pytest.raises(ValueError, match="refusing to overwrite another data set's"):
        bundle.check_export_dir(target, {"data_name": "cdnow", "horizon_days": HORIZON})


def test_default_registered_name_comes_from_the_data_and_horizon():
    from clvflow.mlops.settings import default_model_name

    assert default_model_name("cdnow", 181) == "clvflow-cdnow-h181"
    assert default_model_name("Online Retail II", 90) == "clvflow-Online-Retail-II-h90"


def test_a_model_that_loses_its_backtest_is_never_champion(trained):
    from clvflow.mlops.publish import promotion_verdict
    from clvflow.models.clv import BacktestResult, Selection
    from clvflow.models.selection import Blend

    def selection(gini: float, auc: float) -> Selection:
        metrics = {
            "spend_gini_norm": gini,
            "churn_roc_auc": auc,
            "baseline_bgnbd_spend_gini_norm": 0.70,
            "baseline_bgnbd_churn_roc_auc": 0.80,
        }
        result = BacktestResult(pd.Timestamp("2024-01-01"), 90, metrics, {}, None, None, 0)
        return Selection(Blend(1.0, 1.0, "forced"), result)

    assert promotion_verdict(selection(0.71, 0.80)) == (True, "")
    ok, why = promotion_verdict(selection(0.69, 0.81))
    assert not ok and why.startswith("loses to BG/NBD x Gamma-Gamma in the internal backtest")
    assert not promotion_verdict(selection(0.75, 0.79))[0]
    ok, why = promotion_verdict(Selection(Blend(), None, "history too short"))
    assert not ok and why == "no internal backtest (history too short)"

    # even with no champion at all, an ineligible model stays a candidate
    client = trained["client"]
    uri = client.get_model_version(NAME, "1").source
    reg = tracking.register_candidate(uri, f"{NAME}-fresh", 0.99, eligible=False, why_not=why)
    assert not reg.promoted and reg.decision == f"candidate only: {why}"
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(f"{NAME}-fresh", "champion")


def test_backtest_at_several_cutoffs_logs_child_runs_and_a_summary(trained, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained['tmp']}/mlflow.db")
    argv = ["backtest", "--transactions", str(trained["path"])]
    argv += ["--cutoffs", "2024-02-01:2024-03-01:1m", *FAST, "--n-estimators", "10"]
    argv += ["--experiment-name", f"{NAME}-multi"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("Backtest at 2024-0") == 2
    assert "Across 2 cutoffs: mean paired gain" in out
    assert "| metric | mean gain over BG/NBD | 95% interval | cutoffs with a gain |" in out
    client = trained["client"]
    runs = client.search_runs([client.get_experiment_by_name(f"{NAME}-multi").experiment_id])
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parent) == 1 and len(children) == 2
    assert {c.data.params["cutoff"] for c in children} == {"2024-02-01", "2024-03-01"}
    assert all(c.data.tags["mlflow.parentRunId"] == parent[0].info.run_id for c in children)
    metrics = parent[0].data.metrics
    low = metrics["mean_gain_vs_bgnbd_spend_gini_norm_ci95_low"]
    assert low <= metrics["mean_gain_vs_bgnbd_spend_gini_norm"]
    assert parent[0].data.params["cutoffs"] == "2024-02-01 2024-03-01"


def test_score_report_shows_the_model_and_its_backtest(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{trained['tmp']}/mlflow.db")
    argv = ["score", "--model", str(trained["tmp"] / "bundle"), "--transactions"]
    argv += [str(trained["path"]), "--output", str(tmp_path / "s.csv")]
    argv += ["--report", str(tmp_path / "report")]
    assert main(argv) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Model and its backtest" in page and f"Model {NAME}/1" in page
    assert "exported method: " in page and 'id="backtest"' in page
    assert "Internal backtest on [" in page
    # issue 10 item 6: the header names the registered model and quotes its backtest
    assert f'<dd id="header-model">{NAME} · version 1</dd>' in page
    assert '<dd id="header-backtest">spend Gini ' in page


def test_training_rows_are_the_rows_before_the_cutoff_checked_on_the_whole_log():
    """Issue 11 item 4: ``clvflow train`` checks the cutoff on the whole log, then keeps only the
    rows before the cutoff (the CLI drops the whole log: at a million customers the rest is GBs);
    a cutoff after the data or at its start is still refused."""
    from clvflow.data.ingest import load_cdnow
    from clvflow.mlops.jobs import training_rows
    from clvflow.mlops.settings import JobSettings

    tx = load_cdnow()  # 1997-01-01 .. 1998-06-30
    ts = tx["timestamp"]
    past, cutoff = training_rows(tx, JobSettings(HORIZON, cutoff=pd.Timestamp("1998-01-01")))
    assert cutoff == pd.Timestamp("1998-01-01")
    assert 0 < len(past) < len(tx)
    pd.testing.assert_frame_equal(past, tx.loc[ts < cutoff])
    past, cutoff = training_rows(tx, JobSettings(HORIZON))  # default: the day after the data
    assert cutoff == pd.Timestamp("1998-07-01")
    pd.testing.assert_frame_equal(past, tx)
    with pytest.raises(ValueError, match="after the end of the data"):
        training_rows(tx, JobSettings(HORIZON, cutoff=pd.Timestamp("1998-08-01")))
    with pytest.raises(ValueError, match="on or before the first transaction"):
        training_rows(tx, JobSettings(HORIZON, cutoff=pd.Timestamp("1997-01-01")))


def test_inputs_built_on_a_second_thread_give_the_model_built_in_line(trained, tmp_path):
    """Issue 11: with two threads ``clvflow train`` builds the internal backtest's and the
    refit's inputs on a second thread (beside the run's setup and the backtest's boosters) and
    fits the refit's boosters there (beside the backtest's judging and bootstrap). The
    exported boosters, every logged metric and the bootstrap intervals are those of a train
    that builds everything in line on one thread, bit for bit."""
    import threading

    from clvflow.core import cores
    from clvflow.mlops import jobs

    build, fit = jobs.booster_inputs, jobs.fit_boosters
    built_on: dict[str, list[str]] = {}
    fitted_on: dict[str, list[str]] = {}
    results = {}
    for mode in ("second thread", "in line"):
        names, fit_names = built_on.setdefault(mode, []), fitted_on.setdefault(mode, [])

        def recording(*args, _names=names, _call=build, **kwargs):
            _names.append(threading.current_thread().name)
            return _call(*args, **kwargs)

        store = tmp_path / mode.replace(" ", "-")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(jobs, "booster_inputs", recording)
            mp.setattr(jobs, "fit_boosters", partial(recording, _names=fit_names, _call=fit))
            if mode == "in line":
                mp.setattr(jobs, "beside", lambda threads: cores.beside(1))
            mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
            mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
            argv = ["train", "--transactions", str(trained["path"]), *FAST, "--seed", "0"]
            argv += ["--n-jobs", "2", "--export-dir", str(store / "bundle")]
            argv += ["--register-as", NAME, "--experiment-name", NAME]
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(argv) == 0
            client = mlflow.MlflowClient()
            (run,) = client.search_runs([client.get_experiment_by_name(NAME).experiment_id])
        results[mode] = (
            run.data.metrics,
            {f.name: f.read_bytes() for f in (store / "bundle").glob("*_booster.ubj")},
        )
    assert len(built_on["second thread"]) == 2  # the backtest's and the refit's
    assert all(name.startswith("clvflow-beside") for name in built_on["second thread"])
    assert built_on["in line"] == ["MainThread", "MainThread"]
    assert [name[:14] for name in fitted_on["second thread"]] == ["clvflow-beside"]  # the refit
    assert fitted_on["in line"] == ["MainThread"]
    (metrics, boosters), (want_metrics, want_boosters) = results.values()
    assert len(boosters) == 2 and boosters == want_boosters
    assert any(key.endswith("_ci95_low") for key in metrics) and metrics == want_metrics
