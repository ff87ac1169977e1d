"""Tests for clvflow.scoring.scores: the p_alive, lifetime, BTYD and interval columns of the
scores table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from clvflow.features.build import build_features
from clvflow.models.btyd import bgnbd_prob_alive, btyd_predictions
from clvflow.models.clv import MODEL_JSON, ClvModel
from clvflow.models.lifetime import mbgnbd_prob_alive
from clvflow.models.uncertainty import SpendCalibration, spend_quantiles
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS, score_features
from clvflow.scoring.value import horizon_clv
from tests.model_fixture import small_log, small_model


def test_p_alive_is_mbgnbd_p_alive_at_least_p_active() -> None:
    """Issue 10 item 2: p_alive = max(the model's MBG/NBD P(alive), p_active), computed here
    from the model's MBG/NBD parameters (weeks) and each customer's history."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    scores = score_features(model, features, cutoff)
    assert list(scores.columns) == SCORES_TABLE_COLUMNS
    assert SCORES_TABLE_COLUMNS[-10:-8] == ["p_alive", "lifetime_discount_rate"]
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


def test_scores_carry_expected_purchases_next_date_and_intervals() -> None:
    """Issue 10 items 4, 5: the new columns follow p_alive and are what their definitions give:
    expected_purchases = p_active x bg_expected / bg_p_active (at least 1 purchase given one);
    a next purchase date exactly when p_active >= 0.5, inside the window; spend_p10/p90 the
    mixture's quantiles, clv_p10/p90 the same valued like clv (margin 0.4, 10% a year)."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    scores = score_features(model, features, cutoff, margin=0.4, annual_discount_rate=0.1)
    assert SCORES_TABLE_COLUMNS[-8:-2] == [
        "expected_purchases",
        "next_purchase_date",
        "spend_p10",
        "spend_p90",
        "clv_p10",
        "clv_p90",
    ]
    p = scores["p_active"].to_numpy()
    btyd = btyd_predictions(model.btyd_, features, model.horizon_days)
    n, q = btyd["bg_expected_purchases"].to_numpy(), btyd["bg_p_active"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        given = np.maximum(np.where(q > 1e-12, n / q, 1.0), 1.0)  # no chance: 1 if they buy
    np.testing.assert_allclose(scores["expected_purchases"], p * given, rtol=1e-12)
    dated = scores["next_purchase_date"].notna().to_numpy()
    assert dated.any() and (dated == (p >= 0.5)).all()
    days = (scores.loc[dated, "next_purchase_date"] - cutoff).dt.days
    assert days.between(0, model.horizon_days - 1).all()
    cal = SpendCalibration.from_dict(model.spend_calibration_)
    s = scores["expected_spend_if_active"].to_numpy()
    np.testing.assert_allclose(scores["spend_p90"], spend_quantiles(cal, p, s, 0.9))
    assert (scores["spend_p10"] <= scores["spend_p90"]).all()
    assert ((scores["spend_p10"] > 0) == (p > 0.9)).all()  # below, p10 is in the mass at 0
    factor = horizon_clv(np.ones(1), horizon_days=90, margin=0.4, annual_discount_rate=0.1)[0]
    np.testing.assert_allclose(scores["clv_p90"], scores["spend_p90"] * factor)
    np.testing.assert_allclose(scores["clv_p10"], scores["spend_p10"] * factor)


def test_the_calibration_travels_with_the_saved_model(tmp_path) -> None:
    """Issue 10 item 4: the calibration is saved in model.json and loaded back (same
    intervals); a model.json written before it existed scores with empty (NaN) intervals."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    model.save(tmp_path / "m")
    again = ClvModel.load(tmp_path / "m")
    assert again.spend_calibration_ == model.spend_calibration_
    a, b = score_features(model, features, cutoff), score_features(again, features, cutoff)
    pd.testing.assert_frame_equal(a, b)
    meta = json.loads((tmp_path / "m" / MODEL_JSON).read_text())
    del meta["spend_calibration"]
    (tmp_path / "m" / MODEL_JSON).write_text(json.dumps(meta))
    old = score_features(ClvModel.load(tmp_path / "m"), features, cutoff)
    assert old[["spend_p10", "spend_p90", "clv_p10", "clv_p90"]].isna().all().all()
    others = [c for c in a.columns if c not in ("spend_p10", "spend_p90", "clv_p10", "clv_p90")]
    pd.testing.assert_frame_equal(old[others], a[others])


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
