"""Tests for clvflow.scoring.scores: the p_alive column of the scores table."""

from __future__ import annotations

import numpy as np

from clvflow.features.build import build_features
from clvflow.models.btyd import bgnbd_prob_alive
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS, score_features
from tests.model_fixture import small_log, small_model


def test_p_alive_is_bgnbd_p_alive_at_least_p_active() -> None:
    """Issue 10 item 2: p_alive = max(the model's BG/NBD P(alive), p_active), computed here
    from the model's BG/NBD parameters (weeks) and each customer's history."""
    model, cutoff = small_model()
    features = build_features(small_log(), cutoff)
    scores = score_features(model, features, cutoff)
    assert list(scores.columns) == SCORES_TABLE_COLUMNS
    assert SCORES_TABLE_COLUMNS[-1] == "p_alive"
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
