"""Scoring on Spark: the scores table of :func:`clvflow.scoring.batch.score_transactions`, with
the transactions and the scores kept on the executors.

1. Features: :func:`clvflow.spark.features.build_features_spark`.
2. Per-customer columns: ``mapInPandas`` runs :func:`clvflow.scoring.scores.score_features` (the
   single-machine function, unchanged) on each Arrow batch of the feature table, with the model
   rebuilt on each Python worker from its saved files (shipped as bytes: JSON and XGBoost's own
   format, no pickled model), plus each customer's terms of the total-CLV interval.
3. Population columns (:func:`clvflow.scoring.segments.add_segments`: percentiles, tiers, RFM
   quintiles, priorities): Spark window functions over the compact columns they need, with the
   same ranks (``rank`` = pandas' ``method="min"``; average ranks from the tie counts; ties in
   priorities broken by ``customer_id``), joined back by ``customer_id``.
4. The total-CLV interval: sums over customers (:func:`clvflow.models.uncertainty.total_terms`),
   turned into the interval on the driver.

Nothing but one row of sums comes back to the driver. The equality with the single-machine
engine is tested in tests/spark/test_spark_scoring.py.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from clvflow.core.dates import DateLike, day_after, to_day
from clvflow.models.clv import ClvModel
from clvflow.models.uncertainty import (
    MIN_P_ACTIVE,
    SpendCalibration,
    clv_interval_from_sums,
    total_terms,
)
from clvflow.scoring.batch import MODEL_INFO_COLUMNS, season_mismatch
from clvflow.scoring.reasons import REASON_COLUMNS
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS, score_features
from clvflow.scoring.segments import (
    CHURN_RISK_HIGH,
    CHURN_RISK_MEDIUM,
    HIGH_TOP_PCT,
    MEDIUM_TOP_PCT,
    NEW_TENURE_DAYS,
    REQUIRED_COLUMNS,
    SEGMENT_COLUMNS,
    VALUE_TIERS,
    VIP_TOP_PCT,
    WINBACK_P_ALIVE,
)
from clvflow.spark.features import build_features_spark
from clvflow.spark.ingest import naive_instant

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

#: Columns of the scores table that are text and dates; every other one is a double, but
#: ``horizon_days`` (long) and the priorities (long).
_TEXT_COLUMNS = ("customer_id", *REASON_COLUMNS)
_DATE_COLUMNS = ("as_of", "next_purchase_date")
#: Per-customer terms of the total-CLV interval, dropped before the table is returned.
_TERMS = ("_total_mean", "_total_var")


@dataclass
class SparkScoreResult:
    """The scores table as a Spark DataFrame (cached: write it or use it, then ``unpersist``),
    and what is known about it on the driver."""

    scores: DataFrame
    as_of: pd.Timestamp
    customers: int
    clv_total: float
    #: 10th / 90th percentiles of the total horizon CLV (None: the model has no calibration)
    clv_total_interval: tuple[float, float] | None = None
    warnings: list[str] | None = None


def score_columns(with_reasons: bool) -> list[str]:
    """The scores table's columns in order (as ``clvflow score`` writes them)."""
    per_customer = [c for c in SCORES_TABLE_COLUMNS if with_reasons or c not in REASON_COLUMNS]
    return [*per_customer, *SEGMENT_COLUMNS, *MODEL_INFO_COLUMNS]


def _predictions_schema(with_reasons: bool) -> StructType:
    from pyspark.sql.types import (
        DoubleType,
        LongType,
        StringType,
        StructField,
        StructType,
        TimestampNTZType,
    )

    fields = []
    for c in [c for c in SCORES_TABLE_COLUMNS if with_reasons or c not in REASON_COLUMNS]:
        kind = (
            StringType()
            if c in _TEXT_COLUMNS
            else TimestampNTZType()
            if c in _DATE_COLUMNS
            else LongType()
            if c == "horizon_days"
            else DoubleType()
        )
        fields.append(StructField(c, kind, True))
    return StructType([*fields, *(StructField(t, DoubleType(), False) for t in _TERMS)])


# ---- the model on the executors ------------------------------------------------------------


def model_files(model: ClvModel) -> dict[str, bytes]:
    """The model's saved files (:meth:`ClvModel.save`: JSON and XGBoost UBJSON) as bytes, to ship
    to the executors as data."""
    with tempfile.TemporaryDirectory(prefix="clvflow-spark-model-") as tmp:
        return {p.name: p.read_bytes() for p in model.save(tmp)}


_LOADED: dict[str, ClvModel] = {}


def model_from_files(files: dict[str, bytes]) -> ClvModel:
    """:meth:`ClvModel.load` of :func:`model_files`' output, once per Python worker."""
    key = hashlib.sha256(b"".join(k.encode() + v for k, v in sorted(files.items()))).hexdigest()
    if key not in _LOADED:
        with tempfile.TemporaryDirectory(prefix="clvflow-spark-model-") as tmp:
            for name, data in files.items():
                (Path(tmp) / name).write_bytes(data)
            _LOADED.clear()  # (one model per worker at a time)
            _LOADED[key] = ClvModel.load(tmp)
    return _LOADED[key]


def _predict(
    files: dict[str, bytes],
    as_of: pd.Timestamp,
    margin: float,
    annual_discount_rate: float,
    with_reasons: bool,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The ``mapInPandas`` function: feature batches in, score_features' columns plus the
    interval terms out."""

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = model_from_files(files)
        cal = SpendCalibration.from_dict(getattr(model, "spend_calibration_", None))
        for batch in batches:
            if batch.empty:
                continue
            features = batch.reset_index(drop=True)
            features["customer_id"] = features["customer_id"].astype("str")
            scores = score_features(
                model,
                features,
                as_of,
                margin=margin,
                annual_discount_rate=annual_discount_rate,
                with_reasons=with_reasons,
            )
            p = scores["p_active"].to_numpy("float64")
            if cal is None:
                mean = var = np.zeros(len(scores))
            else:
                mean, var = total_terms(cal, p, scores["expected_spend_if_active"].to_numpy())
            scores["_total_mean"], scores["_total_var"] = mean, var
            yield scores

    return run


# ---- population columns ------------------------------------------------------------------


def add_segments_spark(scores: DataFrame, n: int) -> DataFrame:
    """:func:`clvflow.scoring.segments.add_segments` on a Spark scores table of ``n`` customers
    (unique ids, finite numbers: checked by :func:`score_spark`): ``SEGMENT_COLUMNS`` appended."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    def key(name: str) -> Column:  # (+ 0.0: -0.0 sorts and groups as 0.0, as in numpy)
        return F.col(name) + F.lit(0.0)

    def min_rank(column: Column) -> Column:  # pandas rank(method="min")
        return F.rank().over(Window.orderBy(column))

    def quintile(column: Column) -> Column:  # segments._quintile_score
        return F.ceil(F.lit(5.0) * min_rank(column) / F.lit(float(n)))

    compact = scores.select(*REQUIRED_COLUMNS)
    ties = F.count(F.lit(1)).over(Window.partitionBy(key("clv")))
    average_rank = min_rank(key("clv").asc()) + (ties - 1) / F.lit(2.0)
    percentile = F.lit(100.0) * average_rank / F.lit(float(n))
    has_net_spend = F.col("historical_clv") > 0
    p_churn = F.col("p_churn")
    risk = (
        F.when(p_churn >= CHURN_RISK_HIGH, "high")
        .when(p_churn >= CHURN_RISK_MEDIUM, "medium")
        .otherwise("low")
    )
    pct = F.col("clv_percentile")
    tier = (
        F.when(~has_net_spend, VALUE_TIERS[3])
        .when(pct > 100.0 - VIP_TOP_PCT, VALUE_TIERS[0])
        .when(pct > 100.0 - HIGH_TOP_PCT, VALUE_TIERS[1])
        .when(pct > 100.0 - MEDIUM_TOP_PCT, VALUE_TIERS[2])
        .otherwise(VALUE_TIERS[3])
    )
    r, f, m = F.col("_r"), F.col("_f"), F.col("_m")
    high_risk = F.col("churn_risk") == "high"
    segment = (
        F.when(F.col("tenure_days") < NEW_TENURE_DAYS, "new")
        .when((m == 5) & high_risk, "can't lose them")
        .when((r >= 4) & (f >= 4) & (m >= 4), "champions")
        .when((f >= 4) & (r >= 3), "loyal")
        .when(r >= 4, "potential loyalists")
        .when((f >= 3) | (m >= 4), "at risk")
        .when((r <= 2) & high_risk, "lost")
        .otherwise("hibernating")
    )
    winback = F.col("p_alive") < WINBACK_P_ALIVE
    group = F.when(winback, 2).when(has_net_spend, 0).otherwise(1)
    by_value = Window.orderBy(F.col("_group"), key("value_at_risk").desc(), F.col("customer_id"))
    by_spend = Window.orderBy(
        F.col("_alive"), key("historical_clv").desc(), F.col("customer_id")
    )  # (win-back targets first: 1..k)
    ranked = (
        compact.withColumn("clv_percentile", percentile)
        .withColumn("churn_risk", risk)
        .withColumn("_r", quintile(key("recency_days").desc()))
        .withColumn("_f", quintile(key("purchase_days").asc()))
        .withColumn("_m", quintile(key("historical_clv").asc()))
        .withColumn("value_tier", tier)
        .withColumn("segment", segment)
        .withColumn("value_at_risk", F.col("p_churn") * F.col("clv_lifetime"))
        .withColumn("_group", group)
        .withColumn("_alive", (~winback).cast("int"))
        .withColumn("retention_priority", F.row_number().over(by_value).cast("long"))
        .withColumn(
            "winback_priority",
            F.when(winback, F.row_number().over(by_spend)).otherwise(0).cast("long"),
        )
    )
    # (cached: the compact ranks are computed once, though writing sorted output reads the
    # join twice, once to sample its ranges; on disk only, see score_spark)
    segments = ranked.select("customer_id", *SEGMENT_COLUMNS).persist(StorageLevel.DISK_ONLY)
    return scores.join(segments, "customer_id", "inner")


# ---- the whole job -------------------------------------------------------------------------


def resolve_as_of_spark(tx: DataFrame, as_of: DateLike | None) -> pd.Timestamp:
    """:func:`clvflow.scoring.batch.resolve_as_of` on a Spark transactions table."""
    from pyspark.sql import functions as F

    span = tx.agg(F.min("timestamp").alias("first"), F.max("timestamp").alias("last")).first()
    if span is None or span["first"] is None:
        raise ValueError("the transactions table is empty: nothing to score")
    first = pd.Timestamp(span["first"])
    day = to_day(as_of, "as_of") if as_of is not None else day_after(pd.Timestamp(span["last"]))
    if day <= first:
        raise ValueError(
            f"as-of date {day.date()} is not after the first transaction ({first}): no customer "
            "is known before it. Use a later --as-of."
        )
    return day


def score_spark(
    model: ClvModel,
    tx: DataFrame,
    as_of: DateLike | None = None,
    *,
    model_name: str = "",
    model_version: str = "",
    scored_at: pd.Timestamp | None = None,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
    season_check: bool = True,
    with_reasons: bool = True,
) -> SparkScoreResult:
    """:func:`clvflow.scoring.batch.score_transactions` on a Spark transactions table (e.g. from
    :func:`clvflow.spark.ingest.load_transactions_spark`), without the drift check (PSI).

    Raises:
        ValueError: as-of on or before the first transaction, or a prediction that is NaN/inf
            or a probability outside [0, 1] (as ``add_segments`` raises).
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    day = resolve_as_of_spark(tx, as_of)
    features = build_features_spark(tx, day)
    run = _predict(model_files(model), day, margin, annual_discount_rate, with_reasons)
    # Cached on disk only: a cache kept in memory is unrolled in the task that computes it,
    # beside the feature aggregation's hash maps, and at 5M customers on a 2g local driver
    # that aggregation could no longer get memory to spill. (The features are read once.)
    predictions = features.mapInPandas(run, _predictions_schema(with_reasons)).persist(
        StorageLevel.DISK_ONLY
    )
    sums = _check_and_sum(predictions)
    n = int(sums["n"])
    log.info("predicted %d-day activity and spend for %d customers", model.horizon_days, n)
    scored = (
        add_segments_spark(predictions.drop(*_TERMS), n)
        if n
        else _empty_segments(predictions.drop(*_TERMS))
    )
    stamp = pd.Timestamp(scored_at).floor("us") if scored_at is not None else None
    scored = scored.select(
        *[c for c in scored.columns if c not in MODEL_INFO_COLUMNS],
        F.lit(model_name).alias("model_name"),
        F.lit(str(model_version)).alias("model_version"),
        (naive_instant(stamp) if stamp is not None else F.lit(None).cast("timestamp_ntz")).alias(
            "scored_at"
        ),
    ).select(*score_columns(with_reasons))
    cal = SpendCalibration.from_dict(getattr(model, "spend_calibration_", None))
    interval = None
    if cal is not None and n:
        interval = clv_interval_from_sums(
            cal,
            float(sums["mean"] or 0.0),
            float(sums["var"] or 0.0),
            spend=float(sums["spend"] or 0.0),
            clv=float(sums["clv"] or 0.0),
        )
    warnings = []
    note = season_mismatch(model, day) if season_check else None
    if note:
        warnings.append(note)
        log.warning(note)
    return SparkScoreResult(
        scores=scored,
        as_of=day,
        customers=n,
        clv_total=float(sums["clv"] or 0.0),
        clv_total_interval=interval,
        warnings=warnings,
    )


def _check_and_sum(predictions: DataFrame) -> dict:
    """One pass over the predictions: the customers, the sums behind the totals, and the
    checks of ``segments.check_scores`` (finite numbers, probabilities in [0, 1])."""
    from pyspark.sql import functions as F

    numeric = [c for c in REQUIRED_COLUMNS if c != "customer_id"]
    bad = {
        c: F.sum((F.isnan(c) | (F.abs(c) == float("inf")) | F.col(c).isNull()).cast("long"))
        for c in numeric
    }
    bad_p = {
        c: F.sum(((F.col(c) < 0) | (F.col(c) > 1)).cast("long"))
        for c in ("p_active", "p_churn", "p_alive")
    }
    row = predictions.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(F.col("p_active") >= MIN_P_ACTIVE, F.col("_total_var"))).alias("var"),
        F.sum("_total_mean").alias("mean"),
        F.sum("expected_spend").alias("spend"),
        F.sum("clv").alias("clv"),
        *[v.alias(f"bad_{c}") for c, v in bad.items()],
        *[v.alias(f"range_{c}") for c, v in bad_p.items()],
    ).first()
    assert row is not None  # (an aggregate has one row)
    sums = row.asDict()
    for c in numeric:
        if sums[f"bad_{c}"]:
            raise ValueError(f"column `{c}` has NaN/inf for {sums[f'bad_{c}']} rows")
    for c in bad_p:
        if sums[f"range_{c}"]:
            raise ValueError(f"column `{c}` must be in [0, 1]; {sums[f'range_{c}']} rows not")
    return sums


def _empty_segments(scores: DataFrame) -> DataFrame:
    from pyspark.sql import functions as F

    kinds = ("double", "string", "string", "string", "double", "long", "long")
    return scores.select(
        "*", *[F.lit(None).cast(k).alias(c) for c, k in zip(SEGMENT_COLUMNS, kinds, strict=True)]
    )


def scores_to_pandas(scores: DataFrame) -> pd.DataFrame:
    """The Spark scores table collected as the single-machine one: sorted by ``customer_id``."""
    return scores.orderBy("customer_id").toPandas()


# ---- writing -------------------------------------------------------------------------------

#: The marker listing the files of a scores folder clvflow wrote (``--overwrite`` replaces only
#: such a folder).
SCORES_MARKER = ".clvflow-scores.json"


def check_scores_dir(output_dir: Path, overwrite: bool) -> None:
    """FileExistsError unless the scores folder may be written: absent, empty, or (with
    ``overwrite``) a scores folder clvflow wrote holding nothing else."""
    from clvflow.data.files import check_owned_folder

    check_owned_folder(output_dir, overwrite, SCORES_MARKER, "a scores folder")


def write_scores_parquet(scores: DataFrame, folder: Path, customers: int) -> None:
    """Write the scores table as a folder of Parquet part files sorted by ``customer_id`` (part
    files in id order; ``pandas.read_parquet(folder)`` reads it whole), then the marker.
    ``folder`` is a staging path (:class:`clvflow.data.files.Outputs`): it is moved in by the
    commit only after every part was written and the rows counted.

    Raises:
        RuntimeError: the folder holds another number of rows than ``customers``.
    """
    from clvflow.data.files import write_folder_marker

    uri = folder.absolute().as_uri()
    scores.orderBy("customer_id").write.mode("errorifexists").parquet(uri)
    written = scores.sparkSession.read.parquet(uri).count()
    if written != customers:
        raise RuntimeError(f"{folder}: {written:,} rows written for {customers:,} customers")
    write_folder_marker(folder, SCORES_MARKER)
