"""The Spark feature table equals build_features: ids exactly, numbers to 1e-9 relative."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.data.ingest import load_cdnow
from clvflow.data.simulate import retail_like
from clvflow.features.build import FEATURE_COLUMNS, build_features
from clvflow.spark.features import build_features_spark, features_to_pandas, money_units
from tests.conftest import TINY_AS_OF, TINY_ROWS, make_tx


def assert_same_features(spark_table: pd.DataFrame, local: pd.DataFrame) -> None:
    """Same columns, same ids in the same order, every number equal to 1e-9 relative (NaN
    where the other has NaN)."""
    assert list(spark_table.columns) == ["customer_id", *FEATURE_COLUMNS]
    assert spark_table["customer_id"].tolist() == local["customer_id"].tolist()
    for c in FEATURE_COLUMNS:
        np.testing.assert_allclose(
            spark_table[c].to_numpy(), local[c].to_numpy(), rtol=1e-9, atol=0, err_msg=c
        )


def spark_features(spark, tx: pd.DataFrame, as_of) -> pd.DataFrame:
    return features_to_pandas(build_features_spark(spark.createDataFrame(tx), as_of))


def test_spark_features_equal_local_on_the_hand_built_log(spark) -> None:
    """Issue 12 item 1: returns on a purchase day, a returns-only customer, a zero amount and a
    row after as_of give the same table on both engines; two values checked by hand."""
    tx = make_tx(TINY_ROWS)
    table = spark_features(spark, tx, TINY_AS_OF)
    assert_same_features(table, build_features(tx, TINY_AS_OF))
    one = table.set_index("customer_id").loc["001"]
    # purchase days 2024-01-01 (15), 01-11 (20), 02-10 (30 - 5 = 25); as_of 2024-03-01
    assert one["frequency"] == 2.0 and one["mean_repeat_spend"] == 22.5
    assert one["t_x_days"] == 40.0 and one["recency_days"] == 20.0
    assert table["customer_id"].tolist() == ["001", "002", "003", "004"]


def test_spark_features_equal_local_on_cdnow(spark) -> None:
    """Issue 12 item 1: CDNOW (23,570 customers), as of the usual calibration cutoff."""
    tx = load_cdnow()
    table = spark_features(spark, tx, "1997-10-01")
    assert len(table) == 23_570
    assert_same_features(table, build_features(tx, "1997-10-01"))


def test_spark_features_equal_local_on_a_retail_log_with_cancellations(spark) -> None:
    """Issue 12 item 1: wholesale buyers, same-day (partial) cancellations, returns and zero
    amounts (simulate.retail_like), as of a date inside the log."""
    tx = retail_like(n_customers=400, seed=3).transactions.dropna(subset=["customer_id"])
    assert (tx["amount"] < 0).sum() > 20  # returns and cancellations are there
    as_of = tx["timestamp"].quantile(0.8, interpolation="lower").normalize()
    assert_same_features(spark_features(spark, tx, as_of), build_features(tx, as_of))


def test_money_units_round_half_away_from_zero_like_the_local_engine(spark) -> None:
    """Issue 12 item 1: the Spark rounding to 1/10,000 matches build.to_money_units on ties
    (x.5 units, where rint alone would round to even) and elsewhere."""
    from pyspark.sql import functions as F

    from clvflow.features.build import to_money_units

    amounts = [0.00015, 0.00025, -0.00025, 1.23445, 2.5, -0.3, 0.0, 1e-9, 12345.67891]
    expected = to_money_units(np.array(amounts)).tolist()
    rows = spark.createDataFrame([(a,) for a in amounts], "amount double")
    got = [r[0] for r in rows.select(money_units(F.col("amount"))).collect()]
    assert got == expected
    assert got[1:3] == [3, -3]  # 2.5 units: half away from zero (rint would give 2)
    assert got[4:6] == [25_000, -3_000]
