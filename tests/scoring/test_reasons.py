"""Tests for clvflow.scoring.reasons: TreeSHAP contributions per booster and the reasons built from them."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from clvflow.features.build import build_features
from clvflow.models.selection import Blend
from clvflow.scoring import reasons
from clvflow.scoring.reasons import REASON_COLUMNS, booster_contributions, reason_text, top_inputs
from clvflow.scoring.scores import SCORES_TABLE_COLUMNS, score_features
from tests.model_fixture import small_log, small_model

NAMES = ["recency_days", "frequency"]


@pytest.fixture(scope="module")
def additive_booster() -> xgb.Booster:
    """One depth-2 tree fitted exactly to y = a + 2b on the four points (a, b) in {0, 1}^2:
    learning rate 1, no regularisation, base score 0, so the leaves are y itself."""
    x = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype="float32")
    y = x[:, 0] + 2 * x[:, 1]
    params = {
        "eta": 1.0,
        "lambda": 0.0,
        "max_depth": 2,
        "min_child_weight": 0.0,
        "base_score": 0.0,
        "tree_method": "exact",
        "objective": "reg:squarederror",
    }
    return xgb.train(params, xgb.DMatrix(x, label=y, feature_names=NAMES), num_boost_round=1)


def test_contributions_are_hand_computed_and_sum_to_the_margin(additive_booster) -> None:
    """Issue 10 item 3: for y = a + 2b on a uniform grid, TreeSHAP gives a - 1/2 and 2(b - 1/2);
    the bias is the base margin plus the tree's mean (3/2); the row sums are the margins."""
    x = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], dtype="float32")
    base = np.array([2.0, -1.0, 0.0, 0.5])
    contrib = booster_contributions(additive_booster, x, base, NAMES)
    expected = np.array(
        [
            [0.5, 1.0, 2.0 + 1.5],
            [-0.5, 1.0, -1.0 + 1.5],
            [0.5, -1.0, 0.0 + 1.5],
            [-0.5, -1.0, 0.5 + 1.5],
        ]
    )
    np.testing.assert_allclose(contrib, expected, atol=1e-6)
    margin = additive_booster.predict(
        xgb.DMatrix(x, base_margin=base, feature_names=NAMES), output_margin=True
    )
    np.testing.assert_allclose(contrib.sum(axis=1), margin, atol=1e-6)
    np.testing.assert_allclose(margin, [5.0, 1.0, 1.0, 0.5], atol=1e-6)


def test_reasons_are_the_largest_contributions_in_the_customers_words(additive_booster) -> None:
    """Issue 10 item 3: b (|contribution| 1) comes before a (1/2), each phrase says the
    customer's own value and whether it raises (+) or lowers (-) the prediction."""
    x = np.array([[1, 1], [0, 0]], dtype="float32")
    contrib = booster_contributions(additive_booster, x, np.zeros(2), NAMES)[:, :-1]
    assert top_inputs(contrib, 2).tolist() == [[1, 0], [1, 0]]
    values = np.array([[240.0, 1.0], [0.0, 0.0]])
    assert reason_text(contrib, values, NAMES) == [
        "1 repeat purchase day (+); no purchase for 240 days (+)",
        "0 repeat purchase days (-); no purchase for 0 days (-)",
    ]


def test_inputs_without_contribution_are_never_reasons() -> None:
    """Issue 10 item 3: zero contributions are skipped; ties keep the inputs' order."""
    contrib = np.array([[0.0, -0.2, 0.0, 0.2], [0.0, 0.0, 0.0, 0.0]])
    assert top_inputs(contrib, 3).tolist() == [[1, 3, -1], [-1, -1, -1]]
    names = ["recency_days", "spend_trend", "tenure_days", "spend_90d"]
    values = np.array([[10.0, 0.5, 100.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    assert reason_text(contrib, values, names) == [
        "spend up 3.0x on the previous 180 days (-); no spend in the last 90 days (+)",
        "",
    ]


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("recency_days", 240.0, "no purchase for 240 days"),
        ("spend_trend", 0.5, "spend up 3.0x on the previous 180 days"),
        ("spend_trend", -0.5, "spend down 3.0x on the previous 180 days"),
        ("spend_trend", 1.0, "spend in the last 180 days, none in the 180 before"),
        ("spend_365d", 1234.5, "spend 1,234 in the last 365 days"),
        ("gap_mean_days", float("nan"), "average gap: none yet (one purchase day)"),
        ("gap_last_days", float("nan"), "last gap: none yet (one purchase day)"),
        ("mean_repeat_spend", 0.0, "no repeat purchase yet"),
        ("bg_p_alive", 0.123, "BG/NBD P(alive) 12%"),
        ("returns_share", 0.25, "returns 25% of spend"),
        ("something_new", 1.5, "something_new 1.5"),
    ],
)
def test_phrases_use_the_customers_value(feature: str, value: float, text: str) -> None:
    """Issue 10 item 3: one phrase per input, from the customer's own value."""
    assert reasons.phrase(feature, value) == text


@pytest.fixture(scope="module")
def fitted():
    model, cutoff = small_model()
    return model, build_features(small_log(), cutoff), cutoff


def test_model_contributions_explain_its_p_active_and_spend(fitted) -> None:
    """Issue 10 item 3: per booster, the contributions sum to the margin the model predicts
    from: sigmoid(sum + level shift) is p_active, exp(sum) x spend factor is E[spend | active]."""
    model, features, _ = fitted
    assert model.blend_.method == "boosters"
    buyers = features[features["n_purchase_days"] > 0].reset_index(drop=True)
    _x, inputs, churn_base, spend_base = model.model_inputs(buyers)
    names = model.model_input_columns_
    churn = booster_contributions(model.churn_booster_, inputs, churn_base, names)
    spend = booster_contributions(model.spend_booster_, inputs, spend_base, names)
    pred = model.predict(buyers)
    shift, factor = model.level_["churn_logit_shift"], model.level_["spend_factor"]
    p_active = 1 / (1 + np.exp(-(churn.sum(axis=1).astype("float64") + shift)))
    np.testing.assert_allclose(p_active, pred["p_active"], rtol=1e-5)
    spend_if_active = np.exp(spend.sum(axis=1).astype("float64")) * factor
    np.testing.assert_allclose(spend_if_active, pred["expected_spend_if_active"], rtol=1e-5)


def test_scores_carry_the_top_three_reasons_of_each_booster(fitted) -> None:
    """Issue 10 item 3: the reason columns of the scores table are the phrases of each
    booster's three largest |contributions|, in order, for every customer."""
    model, features, cutoff = fitted
    scores = score_features(model, features, cutoff)
    assert list(scores.columns) == SCORES_TABLE_COLUMNS
    assert SCORES_TABLE_COLUMNS[-2:] == REASON_COLUMNS
    _x, inputs, churn_base, _ = model.model_inputs(features)
    names = model.model_input_columns_
    contrib = booster_contributions(model.churn_booster_, inputs, churn_base, names)[:, :-1]
    values = _x[names].to_numpy("float64")
    for i in range(0, len(features), 97):
        if features["n_purchase_days"].iloc[i] <= 0:
            continue
        largest = sorted(range(len(names)), key=lambda j: -abs(contrib[i, j]))[:3]
        expected = [
            f"{reasons.phrase(names[j], values[i, j])} ({'+' if contrib[i, j] > 0 else '-'})"
            for j in largest
        ]
        assert scores["reasons_p_active"].iloc[i] == "; ".join(expected)
    assert scores["reasons_spend"].str.count("; ").eq(2).all()


def test_reasons_do_not_depend_on_the_chunk_size(fitted) -> None:
    """Issue 10 item 3: computed in chunks (bounded memory), same text."""
    model, features, _ = fitted
    pd.testing.assert_frame_equal(
        reasons.reasons(model, features, chunk_rows=37), reasons.reasons(model, features)
    )


def test_customers_without_a_purchase_and_bgnbd_only_targets(fitted) -> None:
    """Issue 10 item 3: returns-only customers are told why P(active) is 0; a target the blend
    leaves to BG/NBD is explained by BG/NBD's own inputs, not by trees that play no part."""
    model, features, _ = fitted
    rows = features.head(5).copy()
    rows.loc[rows.index[0], "n_purchase_days"] = 0.0
    out = reasons.reasons(model, rows)
    assert out["reasons_p_active"].iloc[0] == reasons.NO_PURCHASE_REASON
    bgnbd = copy.copy(model)
    bgnbd.blend_ = Blend(0.0, 1.0, "test")
    out = reasons.reasons(bgnbd, features.head(3))
    first = features.iloc[0]
    assert out["reasons_p_active"].iloc[0] == (
        f"BG/NBD only: {first['frequency']:.0f} repeat purchase days, no purchase for "
        f"{first['recency_days']:.0f} days, first purchase {first['T_days']:.0f} days ago"
    ).replace(" 1 repeat purchase days", " 1 repeat purchase day")
    assert (
        out["reasons_spend"].iloc[0]
        == reasons.reasons(model, features.head(3))["reasons_spend"].iloc[0]
    )


def test_global_picture_is_the_mean_absolute_contribution(fitted) -> None:
    """Issue 10 item 3: mean |contribution| per input and booster over the buyers."""
    model, features, _ = fitted
    table = reasons.mean_abs_contributions(model, features)
    buyers = features[features["n_purchase_days"] > 0]
    _x, inputs, churn_base, spend_base = model.model_inputs(buyers)
    names = model.model_input_columns_
    churn = booster_contributions(model.churn_booster_, inputs, churn_base, names)[:, :-1]
    spend = booster_contributions(model.spend_booster_, inputs, spend_base, names)[:, :-1]
    by_name = table.set_index("feature")
    np.testing.assert_allclose(
        by_name.loc[names, "churn_mean_abs_shap"],
        np.abs(churn.astype("float64")).mean(axis=0),
        rtol=1e-9,
    )
    np.testing.assert_allclose(
        by_name.loc[names, "spend_mean_abs_shap"],
        np.abs(spend.astype("float64")).mean(axis=0),
        rtol=1e-9,
    )
    assert table["churn_mean_abs_shap"].is_monotonic_decreasing
    assert table.attrs["rows"] == str(len(buyers))
    sampled = reasons.mean_abs_contributions(model, features, sample_rows=100)
    assert sampled.attrs["rows"] == "100"
