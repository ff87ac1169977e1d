"""The feature table of :func:`clvflow.features.build.build_features`, computed by Spark.

Same definitions, same arithmetic, step for step (docs/architecture.md, Contract 2): money is
rounded to integer units of 1/10,000 (half away from zero) and summed exactly as longs; rows
collapse into customer-days; per-customer sums, windows, first/last purchase days and gaps are
aggregates over them; the derived columns repeat ``build._derive``'s formulas in float64. Tests
(tests/spark/test_spark_features.py) hold the two engines equal: ids exactly, numbers to 1e-9.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clvflow.core.dates import DateLike, to_day
from clvflow.features.build import (
    _PREV_WINDOW_DAYS,
    FEATURE_COLUMNS,
    MONEY_UNITS,
    RECENT_WINDOWS_DAYS,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame

_EPOCH = "1970-01-01"


def day_number(timestamp: Column) -> Column:
    """Days since 1970-01-01 of the calendar day of a (naive) timestamp."""
    from pyspark.sql import functions as F

    return F.datediff(F.to_date(timestamp), F.lit(_EPOCH).cast("date"))


def money_units(amount: Column) -> Column:
    """Amount as a long multiple of 1/10,000, rounded half away from zero (``to_money_units``)."""
    from pyspark.sql import functions as F

    scaled = amount * MONEY_UNITS
    nearest = F.rint(scaled)  # ties to even, like numpy's rint: move the ties away from zero
    tie = F.abs(scaled - nearest) == 0.5
    away = F.when(scaled > 0, F.floor(scaled) + 1).otherwise(F.ceil(scaled) - 1)
    return F.when(tie, away).otherwise(nearest).cast("long")


def customer_days(tx: DataFrame, as_of: DateLike) -> tuple[DataFrame, int]:
    """One row per customer-day before ``as_of``: ``customer_id``, ``day``, ``buy`` / ``ret``
    (units bought / returned), ``has_buy`` / ``has_ret`` (0/1); and as_of's day number."""
    from pyspark.sql import functions as F

    as_of_day = day_number_of(as_of)
    rows = (
        tx.select(
            F.col("customer_id").cast("string").alias("customer_id"),
            day_number(F.col("timestamp")).alias("day"),
            F.col("amount").cast("double").alias("amount"),
        )
        .where(F.col("day") < as_of_day)
        .withColumn("units", money_units(F.col("amount")))
        .withColumn("is_buy", (F.col("amount") >= 0).cast("int"))
    )
    days = rows.groupBy("customer_id", "day").agg(
        F.sum(F.when(F.col("is_buy") == 1, F.col("units")).otherwise(F.lit(0).cast("long"))).alias(
            "buy"
        ),
        F.sum("units").alias("net"),
        F.max("is_buy").alias("has_buy"),
        F.max(1 - F.col("is_buy")).alias("has_ret"),
    )
    return days.withColumn("ret", F.col("buy") - F.col("net")).drop("net"), as_of_day


def day_number_of(day: DateLike) -> int:
    """Days since 1970-01-01 of ``day``'s calendar day (:func:`day_number` on the driver)."""
    import pandas as pd

    return (to_day(day).normalize() - pd.Timestamp(_EPOCH)).days


def build_features_spark(tx: DataFrame, as_of: DateLike) -> DataFrame:
    """The feature table as a Spark DataFrame: ``customer_id`` then ``FEATURE_COLUMNS`` (double),
    one row per customer with a transaction before ``as_of``, in no particular order (sort or
    :func:`features_to_pandas`). Undefined gap features are null (NaN once in pandas).

    Args:
        tx: transactions (``customer_id``, ``timestamp`` naive, ``amount``), e.g. from
            :func:`clvflow.spark.ingest.load_transactions_spark`.
        as_of: only rows dated before this day are used.
    """
    cd, as_of_day = customer_days(tx, as_of)
    return features_from_days(cd, as_of_day)


def features_from_days(cd: DataFrame, as_of_day: int) -> DataFrame:
    """:func:`build_features_spark` from the customer-days of :func:`customer_days`: rows dated
    on or after ``as_of_day`` (a day number) are left out, so one customer-days table as of a
    later day serves every earlier one (the Spark train builds it once for its cutoffs)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    cd = cd.where(F.col("day") < as_of_day)
    zero = F.lit(0).cast("long")

    def in_last(days: int) -> Column:
        return F.col("day") >= as_of_day - days

    older, newer = (as_of_day - d for d in _PREV_WINDOW_DAYS)
    net = F.col("buy") - F.col("ret")
    per_customer = cd.groupBy("customer_id").agg(
        F.min("day").alias("first_day"),
        F.sum("has_buy").cast("long").alias("n_purchase_days"),
        F.sum("buy").alias("gross_spend"),
        F.sum("ret").alias("return_amount"),
        F.sum("has_ret").cast("long").alias("n_return_days"),
        *[
            F.sum(F.when(in_last(w), F.col("has_buy")).otherwise(0))
            .cast("long")
            .alias(f"purchase_days_{w}d")
            for w in RECENT_WINDOWS_DAYS
        ],
        *[
            F.sum(F.when(in_last(w), net).otherwise(zero)).alias(f"spend_{w}d")
            for w in RECENT_WINDOWS_DAYS
        ],
        F.sum(F.when((F.col("day") >= older) & (F.col("day") < newer), net).otherwise(zero)).alias(
            "spend_prev_180d"
        ),
    )
    by_day = Window.partitionBy("customer_id").orderBy("day")
    purchase_days = (
        cd.where(F.col("has_buy") == 1)
        .withColumn("spend", F.greatest(net, zero))
        .withColumn("gap", F.col("day") - F.lag("day").over(by_day))
    )
    per_buyer = purchase_days.groupBy("customer_id").agg(
        F.min("day").alias("fp"),
        F.max("day").alias("lp"),
        F.sum("spend").alias("purchase_spend"),
        F.min_by("spend", "day").alias("first_purchase_spend"),
        F.max_by("spend", "day").alias("last_purchase_spend"),
        F.max("spend").alias("max_spend_per_day"),
        F.count("gap").alias("n_gaps"),
        F.sum(F.col("gap") * F.col("gap")).alias("gap_sq_sum"),
        F.max("gap").alias("gap_max_days"),
        F.max_by("gap", "day").alias("gap_last_days"),
    )
    agg = per_customer.join(per_buyer, "customer_id", "left")
    return _derive(agg, as_of_day)


def _derive(agg: DataFrame, as_of_day: int) -> DataFrame:
    """``build._derive`` on Spark columns (same formulas, same float64 order of operations)."""
    from pyspark.sql import functions as F

    def money(name: str) -> Column:
        return F.coalesce(F.col(name), F.lit(0)).cast("double") / MONEY_UNITS

    def number(name: str) -> Column:
        return F.col(name).cast("double")

    def ratio(num: Column, den: Column) -> Column:  # (num / den where den != 0: no ANSI error)
        return F.when(den != 0, num / den)

    n = number("n_purchase_days")
    has_buy = n > 0
    tenure = (F.lit(as_of_day) - F.col("first_day")).cast("double")
    since_fp = F.when(has_buy, (F.lit(as_of_day) - F.col("fp")).cast("double")).otherwise(tenure)
    since_lp = F.when(has_buy, (F.lit(as_of_day) - F.col("lp")).cast("double")).otherwise(tenure)
    frequency = F.greatest(n - 1, F.lit(0.0))
    gross, returns = money("gross_spend"), money("return_amount")
    net_days, first_spend = money("purchase_spend"), money("first_purchase_spend")
    recent, prev = money("spend_180d"), money("spend_prev_180d")
    denom = F.abs(recent) + F.abs(prev)
    repeat = F.col("n_gaps") > 0  # two purchase days or more: gap statistics defined
    n_gaps = F.when(repeat, number("n_gaps"))
    mean_gap = F.when(repeat, (F.col("lp") - F.col("fp")).cast("double") / n_gaps)
    f = {
        "recency_days": since_lp,
        "tenure_days": tenure,
        "n_purchase_days": n,
        "frequency": frequency,
        "t_x_days": since_fp - since_lp,
        "T_days": since_fp - 1,
        "mean_repeat_spend": F.when(frequency > 0, (net_days - first_spend) / frequency).otherwise(
            0.0
        ),
        "total_spend": gross - returns,
        "gross_spend": gross,
        "mean_spend_per_day": F.when(has_buy, net_days / n).otherwise(0.0),
        "max_spend_per_day": money("max_spend_per_day"),
        "first_purchase_spend": first_spend,
        "last_purchase_spend": money("last_purchase_spend"),
        **{f"purchase_days_{w}d": number(f"purchase_days_{w}d") for w in RECENT_WINDOWS_DAYS},
        **{f"spend_{w}d": money(f"spend_{w}d") for w in RECENT_WINDOWS_DAYS},
        "spend_prev_180d": prev,
        "spend_trend": F.when(denom > 0, (recent - prev) / denom).otherwise(0.0),
        "purchase_days_per_30d": 30.0 * n / F.greatest(since_fp, F.lit(1.0)),
        "gap_mean_days": mean_gap,
        "gap_std_days": F.when(  # (greatest skips nulls: keep the undefined ones null)
            repeat,
            F.sqrt(F.greatest(number("gap_sq_sum") / n_gaps - mean_gap * mean_gap, F.lit(0.0))),
        ),
        "gap_max_days": F.when(repeat, number("gap_max_days")),
        "gap_last_days": F.when(repeat, number("gap_last_days")),
        "recency_over_gap_mean": ratio(since_lp, mean_gap),
        "return_amount": returns,
        "n_return_days": number("n_return_days"),
        "returns_share": F.when(gross > 0, returns / gross).otherwise(
            F.when(returns > 0, 1.0).otherwise(0.0)
        ),
    }
    return agg.select(
        F.col("customer_id"), *[f[c].cast("double").alias(c) for c in FEATURE_COLUMNS]
    )


def features_to_pandas(features: DataFrame) -> pd.DataFrame:
    """The Spark feature table collected to the driver as ``build_features`` returns it: sorted
    by ``customer_id`` (text), float64 columns, NaN for undefined gap features."""
    import numpy as np
    import pandas as pd

    table = features.orderBy("customer_id").toPandas()
    out = pd.DataFrame(
        {c: table[c].to_numpy("float64", na_value=np.nan) for c in FEATURE_COLUMNS}, copy=False
    )
    out.insert(0, "customer_id", table["customer_id"].astype("str"))
    return out
