"""BG/NBD and Gamma-Gamma fitted from sufficient statistics aggregated by Spark.

The likelihoods are sums over customers of terms that depend only on (x, t_x, T) for BG/NBD and
(x, m) for Gamma-Gamma, so Spark collapses the feature table to distinct histories with counts
(a groupBy) and the driver fits on those with the single-machine fitters
(:func:`clvflow.models.btyd.fit_bgnbd` / ``fit_gamma_gamma`` with ``counts``): the same
likelihood, summed in the same order, so the same fit as :func:`clvflow.models.btyd.fit_btyd`.
BG/NBD histories are few (whole days); Gamma-Gamma's mean spends are mostly distinct, so about
one row per repeat customer is collected for it (three numbers each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clvflow.models.btyd import DAYS_PER_WEEK, BtydFit, fit_bgnbd, fit_gamma_gamma

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def fit_btyd_spark(features: DataFrame, init: BtydFit | None = None) -> BtydFit:
    """:func:`clvflow.models.btyd.fit_btyd` on a Spark feature table (from
    :func:`clvflow.spark.features.build_features_spark`): BG/NBD on every customer with a
    purchase day, Gamma-Gamma on the repeat customers with positive ``mean_repeat_spend``."""
    from pyspark.sql import functions as F

    buyers = features.where(F.col("n_purchase_days") > 0)
    histories = (
        buyers.groupBy("frequency", "t_x_days", "T_days").count().toPandas()
    )  # (distinct (x, t_x, T): at most days x days x purchase counts, in practice far fewer)
    spends = (
        buyers.where((F.col("frequency") > 0) & (F.col("mean_repeat_spend") > 0))
        .groupBy("frequency", "mean_repeat_spend")
        .count()
        .toPandas()
    )
    bg = fit_bgnbd(
        histories["frequency"].to_numpy(float),
        histories["t_x_days"].to_numpy(float) / DAYS_PER_WEEK,
        histories["T_days"].to_numpy(float) / DAYS_PER_WEEK,
        None if init is None else init.bgnbd,
        counts=histories["count"].to_numpy(float),
    )
    gg = fit_gamma_gamma(
        spends["frequency"].to_numpy(float),
        spends["mean_repeat_spend"].to_numpy(float),
        None if init is None else init.gamma_gamma,
        counts=spends["count"].to_numpy(float),
    )
    return BtydFit(bg, gg)
