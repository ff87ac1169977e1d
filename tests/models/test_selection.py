"""Which method a model exports: blend weights chosen on a window, hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.models.selection import WEIGHT_GRID, Blend, blend_arrays, choose_blend

IDS = ["a", "b", "c", "d"]
ACTUALS = pd.DataFrame(
    {"customer_id": IDS, "active": [1, 1, 0, 0], "spend": [100.0, 10.0, 0.0, 0.0]}
)
PERFECT = pd.DataFrame(
    {"customer_id": IDS, "p_active": [0.9, 0.8, 0.2, 0.1], "expected_spend": [90.0, 20, 5, 1]}
)


def test_grid_is_tenths_from_zero_to_one():
    assert WEIGHT_GRID == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _population(n: int = 2000, seed: int = 0):
    """Customers with a latent value; the window's activity and spend follow it."""
    rng = np.random.default_rng(seed)
    value = rng.gamma(1.0, 1.0, n)
    active = (rng.random(n) < value / (1 + value)).astype(int)
    spend = active * value * 50
    ids = [f"c{i}" for i in range(n)]
    actuals = pd.DataFrame({"customer_id": ids, "active": active, "spend": spend})

    def method(noise: float, seed: int) -> pd.DataFrame:
        r = np.random.default_rng(seed)
        v = np.exp(np.log(value) + noise * r.normal(size=n))
        return pd.DataFrame(
            {"customer_id": ids, "p_active": v / (1 + v), "expected_spend": v / (1 + v) * v * 50}
        )

    return actuals, method


def test_boosters_that_see_the_truth_are_exported_alone():
    actuals, method = _population()
    blend = choose_blend(actuals, method(0.05, 1), method(3.0, 2))
    assert (blend.active_weight, blend.spend_weight, blend.method) == (1.0, 1.0, "boosters")
    assert "gain over BG/NBD on the window (10th percentile of 100 resamples)" in blend.reason


def test_bgnbd_that_sees_the_truth_is_exported_alone():
    actuals, method = _population()
    blend = choose_blend(actuals, method(3.0, 1), method(0.05, 2))
    assert (blend.active_weight, blend.spend_weight, blend.method) == (0.0, 0.0, "bgnbd")


def test_a_gain_within_the_noise_goes_to_bgnbd():
    actuals, method = _population(n=60)
    blend = choose_blend(actuals, method(1.0, 1), method(1.05, 2))
    assert blend.method == "bgnbd"


def test_two_equally_noisy_methods_are_averaged():
    # independent errors of the same size: the half-half blend halves the noise
    actuals, method = _population(n=4000)
    blend = choose_blend(actuals, method(1.0, 1), method(1.0, 2))
    assert blend.method == "blend"
    assert 0.3 <= blend.active_weight <= 0.7 and 0.3 <= blend.spend_weight <= 0.7


def test_the_choice_is_deterministic():
    actuals, method = _population(n=500)
    args = (actuals, method(1.0, 1), method(1.2, 2))
    assert choose_blend(*args) == choose_blend(*args)


def test_the_choice_does_not_depend_on_the_threads():
    """Issue 11: the resamples are judged on several threads at once: the same weights and the
    same reason (its gains printed to 4 decimals) as on one thread."""
    actuals, method = _population(n=3000)
    args = (actuals, method(1.0, 1), method(1.1, 2))
    one = choose_blend(*args, threads=1)
    assert choose_blend(*args, threads=2) == one == choose_blend(*args, threads=3)


def test_blend_arrays_mix_probabilities_and_money():
    blend = Blend(0.25, 0.5)
    p, s = blend_arrays(
        blend, np.array([0.8]), np.array([100.0]), np.array([0.4]), np.array([20.0])
    )
    assert p.tolist() == [pytest.approx(0.25 * 0.8 + 0.75 * 0.4)]
    assert s.tolist() == [pytest.approx(60.0)]
    assert "0.2 in p_active" in blend.describe() or "0.3 in p_active" in blend.describe()


def test_blend_round_trips_and_old_models_mean_boosters():
    blend = Blend(0.3, 0.6, "why")
    assert Blend.from_dict(blend.to_dict()) == blend
    assert blend.to_dict()["method"] == "blend"
    assert Blend.from_dict(None) == Blend() and Blend().method == "boosters"


def test_a_window_without_both_outcomes_cannot_choose():
    flat = ACTUALS.assign(active=1)
    with pytest.raises(ValueError, match="active and inactive customers"):
        choose_blend(flat, PERFECT, PERFECT)


def test_the_blend_choice_is_unchanged_to_the_bit() -> None:
    """Issue 11 item 3: the per-draw gains behind the blend choice, with one gather per ranking
    and integer counts, equal those of floating-point group sums gathered twice (the code
    before), bit for bit."""
    from scipy.stats import rankdata

    from clvflow.evaluation.metrics import gini_norm
    from clvflow.models import selection
    from tests.float_resampling import FloatRanking, gini_raw, roc_auc

    rng = np.random.default_rng(11)
    n = 4000
    active = (rng.random(n) < 0.35).astype(int)
    spend = np.round(active * rng.gamma(0.6, 50.0, n), 2)
    boosters = np.clip(0.2 + 0.5 * active - 0.3 * rng.random(n), 0, 1)
    bgnbd = np.round(rng.random(n), 2)
    draws = selection._valid_draws(active, spend, 0)[:15]

    def auc_by_ranks(y: np.ndarray, score: np.ndarray) -> float:  # (Mann-Whitney)
        ranks = rankdata(score)
        n1 = int(y.sum())
        return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))

    def gains_before(kind: str, truth: np.ndarray, b: np.ndarray, g: np.ndarray):
        scores = [wt * b + (1 - wt) * g for wt in WEIGHT_GRID]
        metric = auc_by_ranks if kind == "auc" else gini_norm
        full = np.array([metric(truth, score) for score in scores])
        rankings = [FloatRanking(score) for score in scores]
        by_truth = FloatRanking(truth)
        out = np.empty((len(draws), len(WEIGHT_GRID)))
        for d, i in enumerate(draws):
            w = np.bincount(i, minlength=n).astype("float64")
            w_truth, size = w * truth, float(len(i))
            if kind == "auc":
                out[d] = [roc_auc(r.sums(w_truth), r.sums(w)) for r in rankings]
                continue
            best = gini_raw(by_truth.sums(w_truth), by_truth.sums(w), size)
            raw = [gini_raw(r.sums(w_truth), r.sums(w), size) for r in rankings]
            out[d] = np.clip(np.array(raw) / best, -1.0, 1.0)
        out -= out[:, [0]]
        return full - full[0], np.quantile(out, selection.GAIN_QUANTILE, axis=0)

    for kind, truth, b, g in (
        ("auc", active, boosters, bgnbd),
        ("gini", spend, boosters * 60, np.round(bgnbd * 40, 0)),
    ):
        gain, sure = selection._gains(kind, truth, b, g, draws)
        gain_before, sure_before = gains_before(kind, truth, b, g)
        assert np.array_equal(gain, gain_before) and np.array_equal(sure, sure_before)
