"""Tests for clvflow.evaluation.metrics: hand-computed cases, invariants and bad-input rules."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.integrate import trapezoid

from clvflow.evaluation.metrics import (
    BOOTSTRAP_METRICS,
    CHURN_METRICS,
    METRIC_NAMES,
    SPEND_METRICS,
    churn_metrics,
    decile_table,
    evaluate_predictions,
    gain_curve,
    gini_norm,
    paired_bootstrap,
    reliability_table,
    spend_metrics,
    top_decile_capture,
)

# --- gini_norm --------------------------------------------------------------------------------


def test_gini_perfect_ranking_is_one() -> None:
    actual = np.array([5.0, 0.0, 12.0, 3.0, 0.0, 7.5])
    assert gini_norm(actual, actual) == 1.0
    assert gini_norm(actual, actual * 3 + 2) == 1.0


def test_gini_reversed_ranking_is_minus_one() -> None:
    actual = np.array([5.0, 0.0, 12.0, 3.0, 0.0, 7.5])
    assert gini_norm(actual, -actual) == pytest.approx(-1.0, abs=1e-12)


def test_gini_constant_prediction_is_exactly_zero() -> None:
    actual = np.array([5.0, 0.0, 12.0, 3.0, 0.0, 7.5, 0.1])
    assert gini_norm(actual, np.zeros(7)) == 0.0
    assert gini_norm(actual, np.full(7, 3.3)) == 0.0


def test_gini_random_prediction_is_about_zero() -> None:
    rng = np.random.default_rng(42)
    actual = np.where(rng.random(100_000) < 0.25, rng.gamma(1.0, 100.0, 100_000), 0.0)
    assert abs(gini_norm(actual, rng.random(100_000))) < 0.02


def test_gini_hand_computed_with_ties() -> None:
    # Customers A, B tie on top. Tie-averaged order gives spend 3, 3, 3, 1 of 10:
    # gain 0.3, 0.6, 0.9, 1.0 -> area 0.575 -> Gini 0.15. Perfect: 6, 3, 1, 0 -> area 0.75 -> 0.5.
    actual = np.array([6.0, 0.0, 3.0, 1.0])
    pred = np.array([2.0, 2.0, 1.0, 0.0])
    assert gini_norm(actual, pred) == pytest.approx(0.3, abs=1e-12)
    # Equals the mean over both tie-breaks (A first: 0.6, B first: 0.0).
    a_first = gini_norm(actual, np.array([2.1, 2.0, 1.0, 0.0]))
    b_first = gini_norm(actual, np.array([2.0, 2.1, 1.0, 0.0]))
    assert (a_first, b_first) == pytest.approx((0.6, 0.0), abs=1e-12)


def test_gini_equals_area_under_gain_curve() -> None:
    rng = np.random.default_rng(0)
    actual = np.round(rng.gamma(0.5, 50.0, 500))
    pred = np.round(actual * rng.lognormal(0.0, 1.0, 500), -1)  # many ties
    x, y = gain_curve(actual, pred)
    xs, ys = gain_curve(actual, actual)
    expected = (2 * trapezoid(y, x) - 1) / (2 * trapezoid(ys, xs) - 1)
    assert gini_norm(actual, pred) == pytest.approx(expected, abs=1e-12)


def test_gini_one_million_rows_is_fast() -> None:
    rng = np.random.default_rng(1)
    actual = np.where(rng.random(1_000_000) < 0.25, rng.gamma(1.0, 100.0, 1_000_000), 0.0)
    pred = np.round(actual * rng.lognormal(0.0, 1.0, 1_000_000))
    start = time.perf_counter()
    value = gini_norm(actual, pred)
    assert time.perf_counter() - start < 2.0
    assert 0.5 < value < 1.0


# --- property tests ---------------------------------------------------------------------------

spend_arrays = arrays(np.float64, 12, elements=st.integers(0, 1000).map(float))
score_arrays = arrays(np.float64, 12, elements=st.integers(-20, 20).map(float))


def _has_ranking(actual: np.ndarray) -> bool:
    return actual.sum() > 0 and actual.min() < actual.max()


@settings(max_examples=75, deadline=None)
@given(actual=spend_arrays, pred=score_arrays)
def test_gini_properties(actual: np.ndarray, pred: np.ndarray) -> None:
    assume(_has_ranking(actual))
    g = gini_norm(actual, pred)
    assert -1.0 <= g <= 1.0
    # Only the order of pred matters (integer scores keep strict transforms exact).
    assert gini_norm(actual, np.exp(pred / 4.0)) == pytest.approx(g, abs=1e-12)
    assert gini_norm(actual, pred**3 - 5.0) == pytest.approx(g, abs=1e-12)
    # Reversing the scores flips the sign, ties included.
    assert gini_norm(actual, -pred) == pytest.approx(-g, abs=1e-12)
    # Row order and the currency unit do not matter.
    perm = np.random.default_rng(0).permutation(actual.size)
    assert gini_norm(actual[perm], pred[perm]) == pytest.approx(g, abs=1e-12)
    assert gini_norm(actual * 0.37, pred) == pytest.approx(g, abs=1e-12)


@settings(max_examples=75, deadline=None)
@given(actual=spend_arrays, pred=score_arrays)
def test_top_decile_properties(actual: np.ndarray, pred: np.ndarray) -> None:
    assume(_has_ranking(actual))
    share = top_decile_capture(actual, pred)
    assert 0.0 <= share <= top_decile_capture(actual, actual) + 1e-12
    perm = np.random.default_rng(0).permutation(actual.size)
    assert top_decile_capture(actual[perm], pred[perm]) == pytest.approx(share, abs=1e-12)


# --- top_decile_capture, gain_curve -----------------------------------------------------------


def test_top_decile_capture_20_rows_with_boundary_tie() -> None:
    actual = np.zeros(20)
    actual[:4] = [40.0, 10.0, 30.0, 20.0]
    pred = np.ones(20)
    pred[:4] = [9.0, 5.0, 5.0, 5.0]
    # Top 2 = customer 0 (40) + one of the 3-way tie, expected (10 + 30 + 20) / 3 = 20.
    assert top_decile_capture(actual, pred) == pytest.approx(0.6, abs=1e-12)
    pred[1] = 8.0  # break the tie: top 2 hold 40 + 10
    assert top_decile_capture(actual, pred) == pytest.approx(0.5, abs=1e-12)


def test_top_decile_capture_interpolates_fractional_customer() -> None:
    actual = np.zeros(15)
    actual[:3] = [30.0, 10.0, 60.0]
    pred = np.arange(15.0)[::-1]  # customer 0 ranked first
    # 10% of 15 = 1.5 customers: 30 + 0.5 * 10 of 100.
    assert top_decile_capture(actual, pred) == pytest.approx(0.35, abs=1e-12)


def test_gain_curve_points() -> None:
    x, y = gain_curve([6.0, 0.0, 3.0, 1.0], [2.0, 2.0, 1.0, 0.0])
    np.testing.assert_allclose(x, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(y, [0.0, 0.3, 0.6, 0.9, 1.0])


# --- spend_metrics ----------------------------------------------------------------------------


def test_spend_metrics_hand_computed() -> None:
    actual = [10.0, 20.0, 30.0, 40.0]
    pred = [20.0, 20.0, 20.0, 50.0]
    m = spend_metrics(actual, pred)
    assert tuple(m) == SPEND_METRICS
    assert m["agg_bias"] == pytest.approx(0.1)
    assert m["mae"] == pytest.approx(7.5)
    assert m["rmse"] == pytest.approx(np.sqrt(75.0))
    assert m["spearman"] == pytest.approx(np.sqrt(0.6))  # ranks 1..4 vs 2, 2, 2, 4


def test_spend_metrics_constant_prediction() -> None:
    m = spend_metrics([0.0, 5.0, 10.0], [0.0, 0.0, 0.0])
    assert m["gini_norm"] == 0.0
    assert m["agg_bias"] == -1.0
    assert np.isnan(m["spearman"])
    assert m["top_decile_capture"] == pytest.approx(0.1)


# --- decile_table -----------------------------------------------------------------------------


def test_decile_table_values() -> None:
    actual = np.arange(1.0, 21.0)
    table = decile_table(actual, 2 * actual)
    assert list(table.index) == list(range(1, 11))
    assert list(table.columns) == [
        "n",
        "mean_pred",
        "mean_actual",
        "share_pred",
        "share_actual",
        "abs_pct_error",
    ]
    assert (table["n"] == 2).all()
    assert table.loc[1, "mean_actual"] == 19.5
    assert table.loc[10, "mean_pred"] == 3.0
    assert table.loc[1, "share_actual"] == pytest.approx(39 / 210)
    assert table["share_pred"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(table["abs_pct_error"], 1.0)
    assert table.attrs["mape"] == pytest.approx(1.0)


def test_decile_table_uneven_sizes_and_zero_deciles() -> None:
    actual = np.zeros(25)
    actual[:5] = 10.0
    pred = np.arange(25.0)[::-1]
    table = decile_table(actual, pred)
    assert table["n"].tolist() == [3, 2, 3, 2, 3, 2, 3, 2, 3, 2]
    assert table["abs_pct_error"].isna().sum() == 8  # deciles with no actual spend
    # Decile 1: mean pred 23 vs mean actual 10; decile 2: 20.5 vs 10.
    assert table.attrs["mape"] == pytest.approx((1.3 + 1.05) / 2)


def test_decile_table_splits_ties_by_expectation() -> None:
    actual = np.zeros(10)
    actual[0] = 10.0
    table = decile_table(actual, np.zeros(10))
    np.testing.assert_allclose(table["mean_actual"], 1.0)


def test_decile_table_needs_ten_customers() -> None:
    with pytest.raises(ValueError, match="at least 10 customers"):
        decile_table([1.0, 2.0], [1.0, 2.0])


# --- churn ------------------------------------------------------------------------------------


def test_churn_metrics_hand_computed() -> None:
    m = churn_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert tuple(m) == CHURN_METRICS
    assert m["roc_auc"] == pytest.approx(0.75)
    assert m["pr_auc"] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)


def test_churn_metrics_accepts_booleans() -> None:
    m = churn_metrics(np.array([False, True, False, True]), [0.1, 0.9, 0.2, 0.8])
    assert (m["roc_auc"], m["pr_auc"]) == (1.0, 1.0)
    assert m["brier"] == pytest.approx(0.025)


def test_reliability_table_values() -> None:
    table = reliability_table([0, 0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.8, 0.9], n_bins=3)
    assert list(table.columns) == ["n", "mean_pred", "observed_rate"]
    assert table["n"].tolist() == [2, 2, 2]
    np.testing.assert_allclose(table["mean_pred"], [0.15, 0.35, 0.85])
    np.testing.assert_allclose(table["observed_rate"], [0.0, 0.5, 1.0])


def test_reliability_table_splits_ties_by_expectation() -> None:
    table = reliability_table([1, 1, 0, 0], [0.5] * 4, n_bins=2)
    np.testing.assert_allclose(table["observed_rate"], [0.5, 0.5])


def test_reliability_table_bad_bins() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        reliability_table([0, 1], [0.2, 0.7], n_bins=3)


# --- evaluate_predictions ---------------------------------------------------------------------


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    actual = pd.DataFrame(
        {"customer_id": [1, 2, 3, 4], "active": [1, 0, 1, 1], "spend": [10.0, 0.0, 30.0, 40.0]}
    )
    pred = pd.DataFrame(
        {
            "customer_id": [4, 3, 2, 1],
            "p_active": [0.9, 0.7, 0.2, 0.6],
            "expected_spend": [50.0, 20.0, 20.0, 20.0],
        }
    )
    return actual, pred


def test_evaluate_predictions_joins_on_customer_id(frames) -> None:
    actual, pred = frames
    metrics = evaluate_predictions(actual, pred)
    assert tuple(metrics) == METRIC_NAMES
    assert all(isinstance(v, float) for v in metrics.values())
    joined = actual.merge(pred, on="customer_id")
    assert metrics["spend_agg_bias"] == pytest.approx(0.375)
    assert metrics["spend_gini_norm"] == gini_norm(joined["spend"], joined["expected_spend"])
    assert metrics["churn_roc_auc"] == 1.0


def test_metric_names_are_stable() -> None:
    assert METRIC_NAMES == (
        "spend_gini_norm",
        "spend_top_decile_capture",
        "spend_spearman",
        "spend_mae",
        "spend_rmse",
        "spend_agg_bias",
        "churn_roc_auc",
        "churn_pr_auc",
        "churn_brier",
    )


def test_evaluate_predictions_missing_column(frames) -> None:
    actual, pred = frames
    with pytest.raises(ValueError, match=r"`pred` is missing column\(s\) \['p_active'\]"):
        evaluate_predictions(actual, pred.drop(columns="p_active"))
    with pytest.raises(ValueError, match=r"`actual` is missing column\(s\) \['spend'\]"):
        evaluate_predictions(actual.drop(columns="spend"), pred)


def test_evaluate_predictions_mismatched_customers(frames) -> None:
    actual, pred = frames
    pred.loc[0, "customer_id"] = 99
    with pytest.raises(ValueError, match=r"1 in `actual` only \(first: \[4\]\), 1 in `pred` only"):
        evaluate_predictions(actual, pred)


def test_evaluate_predictions_duplicate_customers(frames) -> None:
    actual, pred = frames
    with pytest.raises(ValueError, match="`pred` has 1 duplicated customer_id"):
        evaluate_predictions(actual, pd.concat([pred, pred.head(1)]))


def test_evaluate_predictions_id_type_mismatch(frames) -> None:
    actual, pred = frames
    actual["customer_id"] = actual["customer_id"].astype(str)
    with pytest.raises(ValueError, match="cast both to str"):
        evaluate_predictions(actual, pred)
    pred["customer_id"] = pred["customer_id"].astype(str)
    assert evaluate_predictions(actual, pred)["churn_roc_auc"] == 1.0


def test_evaluate_predictions_nan_names_column(frames) -> None:
    actual, pred = frames
    pred.loc[1, "expected_spend"] = np.nan
    with pytest.raises(ValueError, match=r"`pred.expected_spend` has 1 NaN"):
        evaluate_predictions(actual, pred)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actual", "pred", "match"),
    [
        ([1.0, 2.0], [1.0], "`actual` has 2 rows but `pred` has 1"),
        ([1.0, np.nan], [1.0, 2.0], r"`actual` has 1 NaN/inf values \(first at positions \[1\]\)"),
        ([1.0, 2.0], [np.inf, 2.0], "`pred` has 1 NaN/inf"),
        ([1.0, -2.0], [1.0, 2.0], "`actual` has 1 negative values"),
        ([0.0, 0.0], [1.0, 2.0], "`actual` sums to 0"),
        ([], [], "`actual` is empty"),
        ([[1.0, 2.0]], [[1.0, 2.0]], "`actual` must be 1-D"),
        (["a", "b"], [1.0, 2.0], "`actual` must be numeric"),
    ],
)
def test_spend_metrics_bad_input(actual, pred, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        spend_metrics(actual, pred)


def test_gini_undefined_when_all_actual_equal() -> None:
    with pytest.raises(ValueError, match="all `actual` values are equal"):
        gini_norm([3.0, 3.0, 3.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("active", "p_active", "match"),
    [
        ([0, 2], [0.1, 0.2], "`active` must hold only 0/1"),
        ([1, 1], [0.1, 0.2], "`active` holds a single class"),
        ([0, 1], [0.1, 1.2], r"`p_active` must be probabilities in \[0, 1\]"),
        ([0, 1], [0.1], "`active` has 2 rows but `p_active` has 1"),
    ],
)
def test_churn_metrics_bad_input(active, p_active, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        churn_metrics(active, p_active)


# --- paired bootstrap -------------------------------------------------------------------------


def _bootstrap_frames(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(n)]
    value = rng.gamma(0.5, 40.0, n)
    active = (rng.random(n) < value / (value + 20)).astype(int)
    spend = active * value * rng.lognormal(0, 0.3, n)
    actual = pd.DataFrame({"customer_id": ids, "active": active, "spend": spend})

    def pred(noise: float) -> pd.DataFrame:
        s = value * rng.lognormal(0, noise, n)
        return pd.DataFrame({"customer_id": ids, "p_active": s / (s + 20), "expected_spend": s})

    return actual, {"good": pred(0.2), "poor": pred(1.5)}


def test_paired_bootstrap_estimates_are_the_point_metrics() -> None:
    actual, preds = _bootstrap_frames()
    table = paired_bootstrap(actual, preds, reference="poor", n_resamples=50)
    assert list(table["method"].unique()) == ["good", "poor", "good - poor"]
    assert set(table["metric"]) == set(BOOTSTRAP_METRICS)
    point = evaluate_predictions(actual, preds["good"])
    got = table[table["method"] == "good"].set_index("metric")["estimate"]
    for metric in BOOTSTRAP_METRICS:
        assert got[metric] == pytest.approx(point[metric], rel=1e-12)
    assert (table["low"] <= table["high"]).all()


def test_paired_bootstrap_separates_a_better_ranking() -> None:
    actual, preds = _bootstrap_frames()
    table = paired_bootstrap(actual, preds, reference="poor", n_resamples=100)
    gain = table[table["method"] == "good - poor"].set_index("metric")
    assert gain.loc["spend_gini_norm", "low"] > 0  # the whole interval above zero
    assert gain.loc["churn_roc_auc", "low"] > 0
    assert gain.loc["spend_rmse", "high"] < 0


def test_paired_bootstrap_of_a_method_against_itself_is_exactly_zero() -> None:
    actual, preds = _bootstrap_frames()
    same = {"a": preds["good"], "b": preds["good"].copy()}
    table = paired_bootstrap(actual, same, reference="b", n_resamples=20)
    diff = table[table["method"] == "a - b"]
    assert (diff[["estimate", "low", "high"]].to_numpy() == 0).all()


def test_paired_bootstrap_is_deterministic_per_seed() -> None:
    actual, preds = _bootstrap_frames()
    first = paired_bootstrap(actual, preds, reference="poor", n_resamples=20, seed=3)
    again = paired_bootstrap(actual, preds, reference="poor", n_resamples=20, seed=3)
    other = paired_bootstrap(actual, preds, reference="poor", n_resamples=20, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_paired_bootstrap_bad_settings() -> None:
    actual, preds = _bootstrap_frames(100)
    with pytest.raises(ValueError, match="reference 'nope'"):
        paired_bootstrap(actual, preds, reference="nope")
    with pytest.raises(ValueError, match="n_resamples >= 10"):
        paired_bootstrap(actual, preds, reference="poor", n_resamples=5)
    with pytest.raises(ValueError, match="mismatched customers"):
        paired_bootstrap(actual, {"poor": preds["poor"].iloc[1:]}, reference="poor")


def test_aligned_frames_skip_the_join_with_the_same_metrics_and_checks() -> None:
    """Issue 11 item 3: actuals and predictions listing the same sorted ids are paired row by
    row (no join); the metrics equal, bit for bit, those of the same predictions shuffled
    (joined), and a duplicated id is still refused."""
    rng = np.random.default_rng(4)
    n = 500
    ids = pd.Series([f"c{i:04d}" for i in range(n)], dtype="str")
    active = (rng.random(n) < 0.4).astype("int64")
    actual = pd.DataFrame(
        {"customer_id": ids, "active": active, "spend": np.round(active * rng.gamma(1, 9, n), 2)}
    )
    pred = pd.DataFrame(
        {"customer_id": ids, "p_active": rng.random(n), "expected_spend": rng.gamma(1, 9, n)}
    )
    shuffled = pred.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert evaluate_predictions(actual, pred) == evaluate_predictions(actual, shuffled)
    twice = actual.assign(customer_id=ids.where(ids != "c0001", "c0000"))
    with pytest.raises(ValueError, match="duplicated customer_id"):
        evaluate_predictions(twice, pred.assign(customer_id=twice["customer_id"]))
