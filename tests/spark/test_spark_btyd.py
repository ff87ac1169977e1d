"""BG/NBD + Gamma-Gamma fitted from Spark's collapsed histories equal the single-machine fit."""

from __future__ import annotations

import numpy as np

from clvflow.data.ingest import load_cdnow
from clvflow.features.build import build_features
from clvflow.models.btyd import fit_btyd
from clvflow.spark.btyd import fit_btyd_spark
from clvflow.spark.features import build_features_spark


def test_btyd_fit_from_spark_histories_equals_the_local_fit_on_cdnow(spark) -> None:
    """Issue 12 item 2: (x, t_x, T) and (x, m) collapsed by a Spark groupBy, fitted on the
    driver: every parameter and log-likelihood equal fit_btyd's to 1e-9 relative."""
    tx = load_cdnow()
    local = fit_btyd(build_features(tx, "1997-10-01"))
    got = fit_btyd_spark(build_features_spark(spark.createDataFrame(tx), "1997-10-01"))
    for model in ("bgnbd", "gamma_gamma"):
        expected, actual = getattr(local, model), getattr(got, model)
        np.testing.assert_allclose(
            list(vars(actual).values()), list(vars(expected).values()), rtol=1e-9, err_msg=model
        )
