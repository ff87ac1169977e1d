"""Labels and stacked snapshots on Spark: :func:`clvflow.features.labels.build_labels` and the
rows of :func:`clvflow.features.snapshots.stack_snapshots` for given snapshot dates.

Which snapshot dates are usable (``snapshots.usable_snapshots``) is still decided on one machine;
the rows of each date (features joined with labels) are computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from clvflow.core.dates import DateLike, to_day
from clvflow.features.build import FEATURE_COLUMNS
from clvflow.features.labels import LABEL_COLUMNS, validate_horizon
from clvflow.spark.features import build_features_spark
from clvflow.spark.ingest import naive_instant

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame


def build_labels_spark(tx: DataFrame, as_of: DateLike, horizon_days: int) -> DataFrame:
    """``customer_id``, ``active`` (0/1), ``spend`` (>= 0) of every customer with a transaction
    before ``as_of``, over ``[as_of, as_of + horizon_days)``; same definitions as build_labels
    (active: a row with amount >= 0 in the window; spend: the window's net amount floored at 0)."""
    import pandas as pd
    from pyspark.sql import functions as F

    start = to_day(as_of)
    end = start + pd.Timedelta(days=validate_horizon(horizon_days))
    ts = F.col("timestamp").cast("timestamp_ntz")
    known = tx.where(ts < naive_instant(start)).select("customer_id").distinct()
    window = (
        tx.where((ts >= naive_instant(start)) & (ts < naive_instant(end)))
        .groupBy("customer_id")
        .agg(F.max("amount").alias("bought"), F.sum("amount").alias("net"))
    )
    return known.join(window, "customer_id", "left").select(
        "customer_id",
        F.coalesce(F.col("bought") >= 0, F.lit(False)).cast("long").alias("active"),
        F.greatest(F.coalesce(F.col("net"), F.lit(0.0)), F.lit(0.0)).alias("spend"),
    )


def stack_snapshots_spark(
    tx: DataFrame, cutoff: DateLike, horizon_days: int, dates: Sequence[DateLike]
) -> DataFrame:
    """Stacked ``snapshot_date``, ``customer_id``, features, ``active``, ``spend`` of each of
    ``dates`` (e.g. the used dates of ``snapshots.usable_snapshots``), from the rows before
    ``cutoff``; every label window must end by the cutoff.

    Raises:
        ValueError: a date whose label window ends after the cutoff.
    """
    import pandas as pd
    from pyspark.sql import functions as F

    cutoff_day = to_day(cutoff, "cutoff")
    horizon = pd.Timedelta(days=validate_horizon(horizon_days))
    late = [to_day(d).date().isoformat() for d in dates if to_day(d) + horizon > cutoff_day]
    if late:
        raise ValueError(
            f"snapshot date(s) {late}: the {horizon_days}-day label window ends after the cutoff "
            f"{cutoff_day.date()}"
        )
    past = tx.where(F.col("timestamp").cast("timestamp_ntz") < naive_instant(cutoff_day))
    parts = []
    for d in dates:
        day = to_day(d)
        rows = build_features_spark(past, day).join(
            build_labels_spark(past, day, horizon_days), "customer_id", "left"
        )
        parts.append(
            rows.select(
                naive_instant(day).alias("snapshot_date"),
                "customer_id",
                *FEATURE_COLUMNS,
                *LABEL_COLUMNS,
            )
        )
    if not parts:
        raise ValueError("no snapshot date given")
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def snapshots_to_pandas(rows: DataFrame) -> pd.DataFrame:
    """Stacked snapshot rows collected as ``stack_snapshots`` returns them: latest snapshot
    first, customers sorted within each, float64 features, int64 ``active``."""
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    table = rows.orderBy(F.col("snapshot_date").desc(), "customer_id").toPandas()
    out = pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(table["snapshot_date"]),
            "customer_id": table["customer_id"].astype("str"),
        }
    )
    for c in FEATURE_COLUMNS:
        out[c] = table[c].to_numpy("float64", na_value=np.nan)
    out["active"] = table["active"].astype("int64")
    out["spend"] = table["spend"].astype("float64")
    return out
