"""Training on Spark: a stratified customer sample for the boosters, BG/NBD x Gamma-Gamma on
everyone.

``clvflow train | backtest --engine spark`` reads and cleans the whole file with Spark (the
data-quality counts are the full data's), then:

- draws :func:`sample_customers_spark`: a per-customer sample stratified by purchase-day band
  (before the cutoff), the same fraction in every band (proportional allocation), customers
  chosen in each band by a hash of the seed and their id: same data + seed, same sample;
- collects the sampled customers' cleaned transactions to the driver
  (:func:`collect_transactions`, the single-machine table) and runs the single-machine training
  code on them unchanged: snapshots, per-snapshot BTYD inputs, boosters, internal backtest;
- fits BG/NBD x Gamma-Gamma at each cutoff the model uses for scoring (the cutoff and the
  internal backtest's) on every customer from Spark-collapsed histories
  (:func:`full_data_btyd`, :func:`clvflow.spark.btyd.fit_btyd_spark`), with the warm start the
  single-machine code would use.

Why uniform inclusion: every customer has the same chance to be drawn, so the sample's means
and ratios estimate the population's without weights: the level anchor (mean P(active) and the
ratio of BG/NBD's total to the boosters' total) and the internal backtest's metrics are those of
the population, up to sampling noise that the bootstrap intervals (over the sampled customers)
state. Stratifying only fixes each band's share at the population's (less noise in the heavy
buyers). When the sample covers every customer, the collected table is the whole data and the
BTYD fits are the local ones: the same model as a single-machine train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from clvflow.core.dates import DateLike, to_day
from clvflow.data.ingest import TX_COLUMNS
from clvflow.models.btyd import BtydFit
from clvflow.models.training import BtydAt
from clvflow.spark.btyd import fit_btyd_spark
from clvflow.spark.features import (
    build_features_spark,
    customer_days,
    day_number_of,
    features_from_days,
)
from clvflow.spark.ingest import ROW_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame

#: Default customers in the sample (``--spark-sample-customers``): the boosters' training set
#: fits one driver (about 0.3 GB of stacked rows per 100k customers and snapshot).
DEFAULT_SAMPLE_CUSTOMERS = 200_000
#: Lower edges of the purchase-day bands the sample is stratified by: 0 (returns only), 1,
#: 2-3, 4-7, 8-15, 16 or more purchase days before the cutoff.
BAND_EDGES = (0, 1, 2, 4, 8, 16)


@dataclass(frozen=True)
class CustomerSample:
    """What :func:`sample_customers_spark` drew: customers with a transaction before the
    cutoff, those sampled, and per band ``(customers, sampled)``."""

    customers: int
    sampled: int
    bands: dict[str, tuple[int, int]]
    seed: int

    @property
    def fraction(self) -> float:
        return self.sampled / self.customers if self.customers else 1.0

    @property
    def covers_everyone(self) -> bool:
        return self.sampled == self.customers

    def params(self) -> dict[str, object]:
        """MLflow params: the sample's size and fraction, and the population's size."""
        return {
            "sample_customers": self.sampled,
            "sample_fraction": round(self.fraction, 6),
            "population_customers": self.customers,
        }

    def describe(self) -> str:
        bands = ", ".join(f"{b}: {s:,}/{n:,}" for b, (n, s) in self.bands.items())
        return (
            f"{self.sampled:,} of {self.customers:,} customers ({100 * self.fraction:.2f}%; "
            f"sampled/customers by purchase days {bands})"
        )


def band_names() -> list[str]:
    """``0``, ``1``, ``2-3``, ..., ``16+``: the bands of :data:`BAND_EDGES`."""
    names = []
    for lo, hi in zip(BAND_EDGES, (*BAND_EDGES[1:], None), strict=True):
        names.append(f"{lo}+" if hi is None else str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}")
    return names


def _band(purchase_days: Column) -> Column:
    from pyspark.sql import functions as F

    names = band_names()
    out = F.lit(names[-1])
    for edge, name in reversed(list(zip(BAND_EDGES[1:], names[:-1], strict=True))):
        out = F.when(purchase_days < edge, F.lit(name)).otherwise(out)
    return out


def sample_customers_spark(
    tx: DataFrame, cutoff: DateLike, n_customers: int, seed: int
) -> tuple[DataFrame, CustomerSample]:
    """``customer_id`` of a stratified sample of about ``n_customers`` of the customers with a
    transaction before ``cutoff`` (all of them when there are no more), and its description.

    In each purchase-day band the customers are ordered by ``xxhash64(seed, customer_id)``
    (then the id) and the first ``round(band size x fraction)`` kept, fraction = n_customers /
    customers: the same data and seed draw the same customers, on any cluster.

    Raises:
        ValueError: ``n_customers`` < 1.
    """
    days, _ = customer_days(tx, cutoff)
    return _sample_from_days(days, n_customers, seed)


def _sample_from_days(
    days: DataFrame, n_customers: int, seed: int
) -> tuple[DataFrame, CustomerSample]:
    """:func:`sample_customers_spark` from the customer-days before the cutoff."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if n_customers < 1:
        raise ValueError(f"the sample needs at least one customer, got {n_customers}")
    customers = (
        days.groupBy("customer_id")
        .agg(F.sum("has_buy").alias("purchase_days"))
        .select("customer_id", _band(F.col("purchase_days")).alias("band"))
        .cache()
    )
    sizes = {r["band"]: int(r["count"]) for r in customers.groupBy("band").count().collect()}
    total = sum(sizes.values())
    fraction = min(1.0, n_customers / total) if total else 1.0
    keep = {b: n if fraction >= 1.0 else int(round(n * fraction)) for b, n in sizes.items()}
    order = Window.partitionBy("band").orderBy(
        F.xxhash64(F.lit(seed), F.col("customer_id")), "customer_id"
    )
    quota = F.create_map(*[v for b, k in keep.items() for v in (F.lit(b), F.lit(k))])
    chosen = (
        customers.withColumn("_rank", F.row_number().over(order))
        .where(F.col("_rank") <= quota[F.col("band")])
        .select("customer_id")
        .cache()
    )
    sampled = chosen.count()
    customers.unpersist()
    bands = {b: (sizes.get(b, 0), keep.get(b, 0)) for b in band_names()}
    return chosen, CustomerSample(total, sampled, bands, seed)


def collect_transactions(tx: DataFrame, customers: DataFrame | None = None) -> pd.DataFrame:
    """The Spark transactions of ``customers`` (all when None) as the single-machine table
    (``customer_id`` text, ``timestamp`` naive, ``amount`` float64), rows in file order
    (:data:`clvflow.spark.ingest.ROW_COLUMN`): the whole table is the single-machine one."""
    import pandas as pd
    from pyspark.sql import functions as F

    rows = tx if customers is None else tx.join(F.broadcast(customers), "customer_id")
    table = rows.orderBy(ROW_COLUMN).select(*TX_COLUMNS).toPandas()
    return pd.DataFrame(
        {
            "customer_id": table["customer_id"].astype("str"),
            "timestamp": pd.to_datetime(table["timestamp"]),
            "amount": table["amount"].astype("float64"),
        }
    )


def full_data_btyd(tx: DataFrame, days: tuple[DataFrame, int] | None = None) -> BtydAt:
    """BG/NBD x Gamma-Gamma on every customer of ``tx`` as of a day (features and collapsed
    histories by Spark; the fit on the driver, warm-started from ``init``). ``days``: the
    customer-days of ``tx`` (:func:`customer_days`) and the day number they end before, kept by
    the caller: fits as of that day or earlier start from them instead of from ``tx``."""

    def fit(day: pd.Timestamp, init: BtydFit | None) -> BtydFit:
        as_of_day = day_number_of(day)
        if days is not None and as_of_day <= days[1]:
            features = features_from_days(days[0], as_of_day)
        else:
            features = build_features_spark(tx, to_day(day))
        features = features.cache()  # (read twice by the fit)
        try:
            return fit_btyd_spark(features, init)
        finally:
            features.unpersist()

    return fit


def training_inputs_spark(
    tx: DataFrame, cutoff: DateLike, n_customers: int, seed: int
) -> tuple[pd.DataFrame, CustomerSample, BtydAt | None]:
    """What the single-machine training code needs from a Spark transactions table: the sampled
    customers' transactions on the driver, the sample, and the full-data BTYD fitter (None when
    the sample covers every customer: the local fits are then the full data's).

    The customer-days before ``cutoff`` are built once and kept (cached: memory, then local
    disk) for the sample and the fitter's full-data features at the cutoff and the internal
    backtest's: one shuffle of the transactions instead of three."""
    days, cutoff_day = customer_days(tx, cutoff)
    days = days.cache()
    ids, sample = _sample_from_days(days, n_customers, seed)
    if sample.covers_everyone:
        ids.unpersist()
        days.unpersist()
        return collect_transactions(tx), sample, None
    local = collect_transactions(tx, ids)
    ids.unpersist()
    return local, sample, full_data_btyd(tx, (days, cutoff_day))
