"""Issue 10 items 1 and 2 on real data: CDNOW as of 1998-07-01 (the embedded master log),
models for a 181- and a 90-day horizon fitted with the defaults."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest

from clvflow.data.ingest import load_cdnow
from clvflow.models.training import fit_model
from clvflow.scoring.scores import score_features
from clvflow.scoring.segments import WINBACK_P_ALIVE, add_segments

pytestmark = pytest.mark.slow

AS_OF = pd.Timestamp("1998-07-01")


@cache
def scores(horizon_days: int) -> pd.DataFrame:
    model, features = fit_model(load_cdnow(), AS_OF, horizon_days)
    return add_segments(score_features(model, features, AS_OF))


def test_value_at_risk_within_lifetime_value_and_no_long_gone_in_top_50() -> None:
    """Issue 10 item 2: on CDNOW (H 181) total value at risk <= total lifetime CLV (the total the
    report compares it with); the top-50 retention list has no customer with P(alive) < 5%;
    one-time buyers (half of CDNOW) are no longer alive for sure."""
    s = scores(181)
    assert s["value_at_risk"].sum() <= s["clv_lifetime"].sum()
    top = s.sort_values("retention_priority").head(50)
    assert top["p_alive"].min() >= WINBACK_P_ALIVE
    once = s["purchase_days"] == 1
    assert once.mean() > 0.5
    assert s.loc[once, "p_alive"].max() < 0.6  # BG/NBD said 1 for all of them


def test_lifetime_value_finite_discounted_and_close_across_horizons() -> None:
    """Issue 10 item 1: lifetime CLV on CDNOW is finite, at the stated 10% a year, and the same
    customer's value from the H=90 and the H=181 models is close: totals within 10%, median
    per-customer difference within 15%, rank correlation above 0.98 (measured 2026-11-29: 5.0%,
    7.9%, 0.994). Only the boosters' spend per purchase depends on the horizon."""
    long, short = scores(181).set_index("customer_id"), scores(90).set_index("customer_id")
    for s in (long, short):
        assert np.isfinite(s["clv_lifetime"]).all() and (s["clv_lifetime"] >= 0).all()
        assert (s["lifetime_discount_rate"] == 0.10).all()
    a, b = long["clv_lifetime"], short["clv_lifetime"].reindex(long.index)
    assert abs(b.sum() / a.sum() - 1) < 0.10
    buyers = a > 0
    assert ((b[buyers] / a[buyers] - 1).abs().median()) < 0.15
    assert a.corr(b, method="spearman") > 0.98
