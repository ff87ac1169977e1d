"""Spark labels and stacked snapshots equal the single-machine ones."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.data.ingest import load_cdnow
from clvflow.data.simulate import retail_like
from clvflow.features.build import FEATURE_COLUMNS
from clvflow.features.labels import build_labels
from clvflow.features.snapshots import stack_snapshots
from clvflow.spark.snapshots import build_labels_spark, snapshots_to_pandas, stack_snapshots_spark
from tests.conftest import TINY_AS_OF, TINY_ROWS, make_tx


def spark_labels(spark, tx: pd.DataFrame, as_of, horizon: int) -> pd.DataFrame:
    table = build_labels_spark(spark.createDataFrame(tx), as_of, horizon)
    out = table.orderBy("customer_id").toPandas()
    out["customer_id"] = out["customer_id"].astype("str")
    return out


def assert_same_labels(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Ids and activity exactly; spend to 1e-9 relative (and 1e-9 absolute: a window's amounts
    summed in another order may cancel to 1e-15 instead of 0)."""
    assert got["customer_id"].tolist() == expected["customer_id"].tolist()
    assert got["active"].tolist() == expected["active"].tolist()
    np.testing.assert_allclose(got["spend"], expected["spend"], rtol=1e-9, atol=1e-9)


def test_spark_labels_equal_local_on_the_hand_built_log_and_cdnow(spark) -> None:
    """Issue 12 item 1: a return-only window (inactive, spend 0), a row at the window's end
    (not counted), a customer first seen after as_of (no label); and CDNOW's 90-day labels."""
    tx = make_tx(TINY_ROWS)
    got = spark_labels(spark, tx, TINY_AS_OF, 30)
    assert_same_labels(got, build_labels(tx, TINY_AS_OF, 30))
    assert got.to_dict("list") == {
        "customer_id": ["001", "002", "003", "004"],
        "active": [1, 0, 0, 0],
        "spend": [100.0, 0.0, 0.0, 0.0],
    }
    cdnow = load_cdnow()
    assert_same_labels(
        spark_labels(spark, cdnow, "1997-10-01", 90), build_labels(cdnow, "1997-10-01", 90)
    )


def test_spark_snapshots_equal_local_on_a_retail_log(spark) -> None:
    """Issue 12 item 1: three stacked snapshots (features + labels) of a log with returns and
    cancellations, latest first, on the dates the single-machine checks chose."""
    tx = retail_like(n_customers=300, seed=4).transactions.dropna(subset=["customer_id"])
    cutoff = "2011-11-01"
    rows, checks = stack_snapshots(tx, cutoff, 60, n_snapshots=3, spacing_days=45)
    used = [c.snapshot_date for c in checks if c.used]
    assert len(used) == 3
    got = snapshots_to_pandas(stack_snapshots_spark(spark.createDataFrame(tx), cutoff, 60, used))
    assert got["snapshot_date"].tolist() == rows["snapshot_date"].tolist()
    assert got["customer_id"].tolist() == rows["customer_id"].tolist()
    for c in FEATURE_COLUMNS:
        np.testing.assert_allclose(got[c], rows[c], rtol=1e-9, atol=0, err_msg=c)
    assert_same_labels(got, rows)
