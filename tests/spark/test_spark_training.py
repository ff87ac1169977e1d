"""``clvflow train | backtest --engine spark``: the stratified customer sample, a full-cover Spark
train equal to the single-machine one, a sampled backtest within the single-machine bootstrap
noise, and the engine logged on every run."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.data.ingest import load_transactions
from clvflow.data.simulate import simulate
from clvflow.evaluation.metrics import BOOTSTRAP_METRICS
from clvflow.spark.features import (
    build_features_spark,
    customer_days,
    day_number_of,
    features_from_days,
    features_to_pandas,
)
from clvflow.spark.ingest import load_transactions_spark
from clvflow.spark.training import (
    CustomerSample,
    collect_transactions,
    full_data_btyd,
    sample_customers_spark,
)
from tests.conftest import make_tx

HORIZON = 90
FAST = ["--n-estimators", "20", "--n-snapshots", "2", "--n-jobs", "1", "--seed", "0"]
FAST += ["--horizon-days", str(HORIZON)]


def _band_log() -> pd.DataFrame:
    """12 customers before 2024-03-01 by purchase days: r0, r1 returns only (band 0); a0-a3 one
    day (band 1); b0-b3 two days (2-3); c0, c1 five days (4-7); late0 only after the cutoff."""
    rows = [(f"r{i}", "2024-01-05", -5.0) for i in range(2)]
    rows += [(f"a{i}", "2024-01-10", 10.0) for i in range(4)]
    rows += [(f"b{i}", d, 10.0) for i in range(4) for d in ("2024-01-10", "2024-02-10")]
    rows += [(f"c{i}", f"2024-01-{d:02d}", 10.0) for i in range(2) for d in (1, 3, 5, 7, 9)]
    rows += [("c0", "2024-01-09", 3.0), ("late0", "2024-03-02", 10.0)]
    return make_tx(rows)


def _sample(spark, n: int, seed: int) -> tuple[set[str], CustomerSample]:
    ids, sample = sample_customers_spark(spark.createDataFrame(_band_log()), "2024-03-01", n, seed)
    return {r[0] for r in ids.collect()}, sample


def test_customer_sample_is_proportional_per_band_and_fixed_by_the_seed(spark) -> None:
    """Issue 12 item 2: half of 12 customers = half of each purchase-day band (1 of 2, 2 of 4,
    2 of 4, 1 of 2), the same customers for the same seed; everyone when N covers them."""
    ids, sample = _sample(spark, 6, seed=0)
    assert sample.customers == 12 and sample.sampled == 6 == len(ids)
    assert sample.bands == {
        "0": (2, 1),
        "1": (4, 2),
        "2-3": (4, 2),
        "4-7": (2, 1),
        "8-15": (0, 0),
        "16+": (0, 0),
    }
    assert sum(i.startswith("r") for i in ids) == 1 and sum(i.startswith("a") for i in ids) == 2
    assert sum(i.startswith("b") for i in ids) == 2 and sum(i.startswith("c") for i in ids) == 1
    assert "late0" not in ids  # (no transaction before the cutoff: not in the population)
    again, _ = _sample(spark, 6, seed=0)
    assert again == ids
    others = [_sample(spark, 6, seed=s)[0] for s in (1, 2, 3)]
    assert any(o != ids for o in others)  # the seed draws the customers
    everyone, full = _sample(spark, 50, seed=0)
    assert full.covers_everyone and full.fraction == 1.0 and len(everyone) == 12
    assert full.params() == {
        "sample_customers": 12,
        "sample_fraction": 1.0,
        "population_customers": 12,
    }


@pytest.fixture(scope="module")
def sim_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 simulated customers as CSV (read alike by both engines)."""
    path = tmp_path_factory.mktemp("spark-train") / "sim.csv"
    simulate(2000, seed=1).transactions.to_csv(path, index=False)
    return path


def test_collected_spark_transactions_are_the_local_table_row_for_row(spark, sim_csv) -> None:
    """Issue 12 item 2: the whole Spark table collected to the driver is load_transactions'
    table, in the file's row order (float sums over rows, e.g. label spends, depend on it)."""
    spark_tx, _ = load_transactions_spark(spark, sim_csv)
    local, _ = load_transactions(sim_csv)
    got = collect_transactions(spark_tx)
    pd.testing.assert_frame_equal(got, local, check_dtype=False, check_exact=True)
    assert list(got.dtypes.astype(str)) == ["str", "datetime64[us]", "float64"]


def test_one_customer_days_table_serves_the_cutoff_and_the_earlier_btyd_fits(
    spark, sim_csv
) -> None:
    """Issue 12 item 2: the Spark train shuffles the transactions into customer-days once, at
    the cutoff: the features as of an earlier day built from that table equal those built from
    the transactions, and so do the full-data BG/NBD x Gamma-Gamma fits at the cutoff and at
    the internal backtest's cutoff; a day after the kept table's is built from the
    transactions."""
    tx, _ = load_transactions_spark(spark, sim_csv)
    cutoff, earlier, later = (pd.Timestamp(d) for d in ("2023-10-01", "2023-07-03", "2023-12-01"))
    days, cutoff_day = customer_days(tx, cutoff)
    assert cutoff_day == day_number_of(cutoff) == 19631  # (2023-10-01: days since 1970-01-01)
    days = days.cache()
    want = features_to_pandas(build_features_spark(tx, earlier))
    got = features_to_pandas(features_from_days(days, day_number_of(earlier)))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    # the fitter given the kept table does not read its transactions up to the cutoff: here
    # they are another customer's alone, yet the fits are the whole log's
    other = tx.where(tx.customer_id == got.customer_id.iloc[0])
    kept, whole, few = (
        full_data_btyd(other, (days, cutoff_day)),
        full_data_btyd(tx),
        full_data_btyd(other),
    )
    for day in (cutoff, earlier):
        assert kept(day, None) == whole(day, None)
    assert kept(later, None) == few(later, None) != whole(later, None)
    days.unpersist()


def _run(argv: list[str], tmp: Path, experiment: str) -> tuple[str, mlflow.entities.Run]:
    """One CLI job against the store in ``tmp``: (stdout, its MLflow run)."""
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        mp.delenv("MLFLOW_RUN_ID", raising=False)
        mp.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        with contextlib.redirect_stdout(out):
            assert main([*argv, "--experiment-name", experiment]) == 0
        client = mlflow.MlflowClient()
        (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return out.getvalue(), run


#: Params that say how the data were read, not what was fitted.
ENGINE_PARAMS = {"engine", "sample_customers", "sample_fraction", "population_customers"}


def test_full_cover_spark_train_equals_the_single_machine_train(spark, sim_csv, tmp_path) -> None:
    """Issue 12 items 1, 2: a Spark train whose sample covers every customer logs the same
    metrics (internal backtest, intervals, level, counts) and model params as the local train,
    registers and exports a clv_model the same way, and differs only in its engine params."""
    base = ["train", "--transactions", str(sim_csv), *FAST, "--register-as", "sim"]
    _, local = _run([*base, "--export-dir", str(tmp_path / "local")], tmp_path, "local")
    out, on_spark = _run(
        [*base, "--export-dir", str(tmp_path / "spark"), "--engine", "spark"], tmp_path, "spark"
    )
    assert "Spark engine: boosters trained on 2,000 of 2,000 customers (100.00%" in out
    assert "sim version 2" in out  # (registered like the local run's model, version 1)
    assert local.data.params["engine"] == "local"
    assert on_spark.data.params["engine"] == "spark"
    assert on_spark.data.params["sample_customers"] == "2000"
    assert on_spark.data.params["sample_fraction"] == "1.0"
    local_metrics, spark_metrics = dict(local.data.metrics), dict(on_spark.data.metrics)
    # the same model, so the same gini: not better than the local champion, not promoted
    assert (local_metrics.pop("promoted"), spark_metrics.pop("promoted")) == (1.0, 0.0)
    assert local_metrics == spark_metrics
    skip = ENGINE_PARAMS | {"data_sha256", "export_dir", "spark_master", "spark_sample_customers"}
    same = {k: v for k, v in local.data.params.items() if k not in skip}
    assert same == {k: v for k, v in on_spark.data.params.items() if k not in skip}
    local_model = (tmp_path / "local" / "model.json").read_text()
    assert local_model == (tmp_path / "spark" / "model.json").read_text()  # (BTYD, level, ...)


#: The backtest metrics with bootstrap intervals, compared between the engines.
HEADLINE = BOOTSTRAP_METRICS


def test_sampled_spark_backtest_is_within_the_single_machine_bootstrap_noise(
    spark, sim_csv, tmp_path
) -> None:
    """Issue 12 item 2 (acceptance): a backtest whose boosters trained on a 1,000-customer
    sample (half; BG/NBD on everyone), judged on that sample, brackets the single-machine
    backtest's metrics within its 95% bootstrap intervals; the run says its sample size."""
    base = ["backtest", "--transactions", str(sim_csv), *FAST, "--cutoff", "2024-01-01"]
    _, local = _run(base, tmp_path, "local-bt")
    out, sampled = _run(
        [*base, "--engine", "spark", "--spark-sample-customers", "1000"], tmp_path, "spark-bt"
    )
    assert "boosters trained on 1,000 of 2,000 customers (50.00%" in out
    assert sampled.data.params["sample_customers"] == "1000"
    assert sampled.data.params["sample_fraction"] == "0.5"
    assert local.data.params["engine"] == "local"
    for name in HEADLINE:  # (the sample's intervals: bootstrap over its 1,000 customers)
        low = sampled.data.metrics[f"{name}_ci95_low"]
        high = sampled.data.metrics[f"{name}_ci95_high"]
        assert low <= local.data.metrics[name] <= high, (name, low, high)
    assert sampled.data.metrics[HEADLINE[0]] != local.data.metrics[HEADLINE[0]]  # (a sample)
