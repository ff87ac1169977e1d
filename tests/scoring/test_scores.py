"""Tests for clvflow.scoring.scores: the p_alive, BTYD and interval columns of the scores
table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from clvflow.features.build import build_features
from clvflow.models.btyd import bgnbd_prob_alive, btyd_predictions
from clvflow.models.clv import MODEL_JSON, ClvModel
from clvflow.models.uncertainty import SpendCalibration, spend_quantiles
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS, score_features
from clvflow.scoring.value import horizon_clv
from tests.model_fixture import small_log, small_model


def test_p_alive_is_bgnbd_p_alive_at_least_p_active() -> None:
    """Issue 10 item 2: p_alive = max(the model's BG/NBD P(alive), p_active), computed here
    from the model's BG/NBD parameters (weeks) and each customer's history."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    scores = score_features(model, features, cutoff)
    assert list(scores.columns) == SCORES_TABLE_COLUMNS
    x = features["frequency"].to_numpy("float64")
    bg = bgnbd_prob_alive(
        model.btyd_.bgnbd,
        x,
        features["t_x_days"].to_numpy("float64") / 7.0,
        features["T_days"].to_numpy("float64") / 7.0,
    )
    p_active = scores["p_active"].to_numpy()
    np.testing.assert_allclose(scores["p_alive"], np.maximum(bg, p_active), rtol=1e-12)
    # one-time buyers are alive for sure under BG/NBD; some repeat buyers are most likely gone
    assert (scores.loc[x == 0, "p_alive"] == 1.0).all()
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
