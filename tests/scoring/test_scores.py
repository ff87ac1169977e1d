"""Tests for clvflow.scoring.scores: the p_alive and lifetime columns of the scores table."""

from __future__ import annotations

import numpy as np

from clvflow.features.build import build_features
from clvflow.models.lifetime import mbgnbd_prob_alive
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS, score_features
from tests.model_fixture import small_log, small_model


def test_p_alive_is_mbgnbd_p_alive_at_least_p_active() -> None:
    """Issue 10 item 2: p_alive = max(the model's MBG/NBD P(alive), p_active), computed here
    from the model's MBG/NBD parameters (weeks) and each customer's history."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    scores = score_features(model, features, cutoff)
    assert list(scores.columns) == SCORES_TABLE_COLUMNS
    assert SCORES_TABLE_COLUMNS[-2:] == ["p_alive", "lifetime_discount_rate"]
    x = features["frequency"].to_numpy("float64")
    mbg = mbgnbd_prob_alive(
        model.long_run_,
        x,
        features["t_x_days"].to_numpy("float64") / 7.0,
        features["T_days"].to_numpy("float64") / 7.0,
    )
    p_active = scores["p_active"].to_numpy()
    np.testing.assert_allclose(scores["p_alive"], np.maximum(mbg, p_active), rtol=1e-12)
    # one-time buyers are no longer alive for sure (BG/NBD's 1): they fade with time
    once = x == 0
    assert (mbg[once] < 1.0).all()
    old = features["T_days"].to_numpy() > 300
    assert mbg[once & old].max() < mbg[once & ~old].min()
    assert (scores["p_alive"] < 0.05).any()
    assert (scores["p_alive"] >= p_active).all()


def test_lifetime_value_is_discounted_dert_times_spend_per_purchase() -> None:
    """Issue 10 item 1: clv_lifetime = DERT (MBG/NBD, 10% a year by default) x the model's
    spend per purchase; a higher discount rate lowers it, and the rate is in the table."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    default = score_features(model, features, cutoff)
    assert (default["lifetime_discount_rate"] == 0.10).all()
    steep = score_features(model, features, cutoff, annual_discount_rate=0.3, margin=0.5)
    assert (steep["lifetime_discount_rate"] == 0.3).all()
    buyers = features["n_purchase_days"].to_numpy() > 0
    assert np.isfinite(default["clv_lifetime"]).all()
    assert (steep.loc[buyers, "clv_lifetime"] < 0.5 * default.loc[buyers, "clv_lifetime"]).all()
    # no cap: the lifetime multiple of the window is not bounded by a retention of 0.95
    ratio = default["clv_lifetime"].sum() / default["clv"].sum()
    assert 1.0 < ratio < 100.0


def test_model_saved_without_long_run_scores_window_value_with_a_warning(tmp_path, caplog) -> None:
    """Issue 10 item 1: a model saved before the long-run model (no "long_run" in model.json)
    still loads; its p_alive is BG/NBD's and its lifetime value is the horizon's clv, said in a
    warning rather than extrapolated silently."""
    import json
    import logging

    from clvflow.models.btyd import bgnbd_prob_alive
    from clvflow.models.clv import MODEL_JSON, ClvModel

    model, cutoff = small_model()
    model.save(tmp_path)
    meta = json.loads((tmp_path / MODEL_JSON).read_text())
    del meta["long_run"]
    (tmp_path / MODEL_JSON).write_text(json.dumps(meta))
    old = ClvModel.load(tmp_path)
    assert old.long_run_ is None
    features = build_features(small_log(), cutoff)
    with caplog.at_level(logging.WARNING, logger="clvflow.scoring.scores"):
        scores = score_features(old, features, cutoff)
    assert "no long-run model" in caplog.text
    np.testing.assert_array_equal(scores["clv_lifetime"], scores["clv"])
    bg = bgnbd_prob_alive(
        old.btyd_.bgnbd,
        features["frequency"].to_numpy("float64"),
        features["t_x_days"].to_numpy("float64") / 7.0,
        features["T_days"].to_numpy("float64") / 7.0,
    )
    np.testing.assert_allclose(scores["p_alive"], np.maximum(bg, scores["p_active"]))
