"""Which method a model exports: blend weights chosen on a window, hand-computed cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.selection import WEIGHT_GRID, Blend, blend_arrays, choose_blend

IDS = ["a", "b", "c", "d"]
ACTUALS = pd.DataFrame(
    {"customer_id": IDS, "active": [1, 1, 0, 0], "spend": [100.0, 10.0, 0.0, 0.0]}
)


def _pred(p, s) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": IDS, "p_active": p, "expected_spend": s})


PERFECT = _pred([0.9, 0.8, 0.2, 0.1], [90.0, 20.0, 5.0, 1.0])
REVERSED = _pred([0.1, 0.2, 0.8, 0.9], [1.0, 5.0, 20.0, 90.0])


def test_grid_is_tenths_from_zero_to_one():
    assert WEIGHT_GRID == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def test_boosters_that_rank_perfectly_are_exported_alone():
    blend = choose_blend(ACTUALS, PERFECT, REVERSED)
    assert (blend.active_weight, blend.spend_weight, blend.method) == (1.0, 1.0, "boosters")
    assert "boosters 1.0000, BG/NBD 0.0000" in blend.reason


def test_bgnbd_that_ranks_perfectly_is_exported_alone():
    # BG/NBD right by small margins, boosters wrong by large ones: any boosters' weight hurts
    close = _pred([0.52, 0.51, 0.50, 0.49], [10.2, 10.1, 10.0, 9.9])
    wild = _pred([0.0, 0.3, 0.7, 1.0], [0.0, 100.0, 200.0, 300.0])
    blend = choose_blend(ACTUALS, wild, close)
    assert (blend.active_weight, blend.spend_weight, blend.method) == (0.0, 0.0, "bgnbd")


def test_ties_go_to_the_boosters():
    blend = choose_blend(ACTUALS, PERFECT, PERFECT)
    assert blend.method == "boosters"


def test_a_blend_when_each_method_gets_a_different_pair_right():
    # boosters order a > b right but put c above b; BG/NBD order b > c right but b above a
    boosters = _pred([0.9, 0.3, 0.5, 0.1], [90.0, 3.0, 5.0, 1.0])
    bgnbd = _pred([0.6, 0.7, 0.2, 0.1], [6.0, 7.0, 2.0, 1.0])
    blend = choose_blend(ACTUALS, boosters, bgnbd)
    assert blend.method == "blend"
    # 0.5 x boosters + 0.5 x BG/NBD: a 0.75, b 0.5, c 0.35, d 0.1 ranks perfectly; so does any
    # weight with a > b > c: the largest such boosters' weight on the grid is 0.7 (b 0.44 > c 0.41)
    assert blend.active_weight == 0.7
    p, _ = blend_arrays(blend, boosters["p_active"], boosters["expected_spend"], 0, 0)
    assert p.tolist() == pytest.approx([0.63, 0.21, 0.35, 0.07])


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
        choose_blend(flat, PERFECT, REVERSED)
