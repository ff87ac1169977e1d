import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clvflow.scoring.batch import resolve_as_of, score_transactions
from clvflow.scoring.drift import psi, reference_profile
from clvflow.scoring.scores import SCORE_COLUMNS
from tests.model_fixture import HORIZON_DAYS, small_log, small_model


@pytest.fixture(scope="module")
def scored():
    model, cutoff = small_model()
    return score_transactions(model, small_log(), cutoff, model_name="m", model_version="3")


def test_scores_table_contract_and_invariants(scored):
    s = scored.scores
    assert list(s.columns[: len(SCORE_COLUMNS)]) == SCORE_COLUMNS
    assert (s["horizon_days"] == HORIZON_DAYS).all()
    np.testing.assert_allclose(s["p_churn"], 1 - s["p_active"], rtol=0, atol=1e-15)
    np.testing.assert_allclose(
        s["expected_spend"], s["p_active"] * s["expected_spend_if_active"], rtol=1e-12
    )
    np.testing.assert_allclose(s["clv"], s["expected_spend"], rtol=1e-12)  # margin 1, no discount
    assert ((s["p_active"] >= 0) & (s["p_active"] <= 1)).all()
    assert (s["expected_spend"] >= 0).all()
    assert set(s["model_name"]) == {"m"} and set(s["model_version"]) == {"3"}


def test_every_known_customer_exactly_once(scored):
    tx = small_log()
    known = set(tx.loc[tx["timestamp"] < scored.as_of, "customer_id"])
    assert scored.scores["customer_id"].is_unique
    assert set(scored.scores["customer_id"]) == known


def test_ranks_consistent_with_values(scored):
    s = scored.scores.sort_values("retention_priority")
    assert list(s["retention_priority"]) == list(range(1, len(s) + 1))
    # customers still alive with net spend to date come first, then alive without net spend,
    # then win-back targets (p_alive < 5%), each group by value at risk
    gone = (s["p_alive"] < 0.05).to_numpy()
    group = np.where(gone, 2, np.where(s["historical_clv"] > 0, 0, 1))
    assert (np.diff(group) >= 0).all() and gone.any()
    for g in range(3):
        assert (np.diff(s.loc[group == g, "value_at_risk"].to_numpy()) <= 1e-12).all()
    by_clv = scored.scores.sort_values("clv")
    assert (np.diff(by_clv["clv_percentile"].to_numpy()) >= 0).all()


def test_future_rows_do_not_change_scores():
    model, cutoff = small_model()
    tx = small_log()
    full = score_transactions(model, tx, cutoff).scores
    cut = score_transactions(model, tx[tx["timestamp"] < cutoff], cutoff).scores
    pd.testing.assert_frame_equal(full, cut)


def test_margin_and_discount_scale_clv():
    model, cutoff = small_model()
    s = score_transactions(model, small_log(), cutoff, margin=0.3, annual_discount_rate=0.1).scores
    factor = 0.3 / 1.1 ** (HORIZON_DAYS / 2 / 365.25)
    np.testing.assert_allclose(s["clv"], s["expected_spend"] * factor, rtol=1e-12)


def test_as_of_before_the_data_is_refused():
    with pytest.raises(ValueError, match=r"as-of date 2000-01-01 is not after the first"):
        resolve_as_of(small_log(), "2000-01-01")


def test_drift_warning_on_shifted_population():
    model, cutoff = small_model()
    tx = small_log()
    base = score_transactions(model, tx, cutoff).scores
    from clvflow.features.build import build_features

    profile = reference_profile(build_features(tx, cutoff), ["recency_days", "spend_90d"])
    same = score_transactions(model, tx, cutoff, reference_profile=profile)
    assert same.drift is not None and not same.drift["drifted"].any()
    later = score_transactions(model, tx, cutoff + pd.Timedelta(days=85), reference_profile=profile)
    assert later.drift.set_index("column").loc["recency_days", "psi"] > 0.0
    assert len(base) > 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.001, 1), min_size=3, max_size=3))
def test_psi_zero_for_identical_and_positive_otherwise(w):
    shares = np.asarray(w) / sum(w)
    assert psi(shares, shares) == 0.0
    other = np.roll(shares, 1)
    assert psi(shares, other) >= 0.0
