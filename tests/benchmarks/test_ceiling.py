"""The information-ceiling diagnostic: hand-computed quantity features, no leakage from rows on or
after the cutoff into the inputs, and a CV harness that detects information when it is there."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchmarks.ceiling import QUANTITY_COLUMNS, in_window_cv, model_inputs, quantity_features

from clvflow.data.simulate import simulate
from clvflow.evaluation.metrics import gini_norm
from clvflow.features.labels import build_labels
from clvflow.models.clv import MODEL_INPUT_COLUMNS


def _tx(rows):
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount", "units"]).assign(
        timestamp=lambda d: pd.to_datetime(d["timestamp"], format="ISO8601")
    )


def test_quantity_features_hand_computed():
    tx = _tx(
        [
            ("a", "2020-01-01 09:00", 10.0, 1),
            ("a", "2020-01-01 15:00", 20.0, 2),  # same day: 3 units, 30.00
            ("a", "2020-08-01", 30.0, 4),  # within 180 days of the cutoff
            ("a", "2020-08-05", -5.0, -1),  # a return
            ("b", "2020-02-01", 5.0, 0),  # no units
            ("a", "2020-09-01", 99.0, 50),  # on the cutoff: ignored
            ("c", "2020-10-01", 99.0, 50),  # after the cutoff: ignored, no row
        ]
    )
    got = quantity_features(tx, "2020-09-01", "units").set_index("customer_id")
    assert list(got.columns) == QUANTITY_COLUMNS
    assert list(got.index) == ["a", "b"]
    a = got.loc["a"]
    assert a["units_total"] == 6  # 3 + 4 - 1
    assert a["units_per_day"] == pytest.approx(2.0)  # transaction days: 3, 4, -1
    assert a["units_max_day"] == 4
    assert a["units_first_day"] == 3
    assert a["units_last_day"] == -1
    assert a["units_180d"] == 3  # 4 - 1 (from 2020-03-05 on)
    assert a["price_per_unit"] == pytest.approx(60.0 / 6)  # gross spend / units
    b = got.loc["b"]
    assert (b["units_total"], b["units_180d"], b["price_per_unit"]) == (0, 0, 0.0)


@pytest.fixture(scope="module")
def sim():
    return simulate(3000, seed=5, horizon_days=120)


def test_model_inputs_ignore_rows_on_or_after_the_cutoff(sim):
    tx = sim.transactions
    before = tx.loc[tx["timestamp"] < sim.as_of]
    full = model_inputs(tx, sim.as_of, sim.horizon_days)
    cut = model_inputs(before, sim.as_of, sim.horizon_days)
    assert list(full.columns) == ["customer_id", *MODEL_INPUT_COLUMNS]
    pd.testing.assert_frame_equal(full, cut)


def test_in_window_cv_finds_information_when_it_is_there(sim):
    tx = sim.transactions
    inputs = model_inputs(tx, sim.as_of, sim.horizon_days)
    actuals = build_labels(tx, sim.as_of, sim.horizon_days)
    honest = in_window_cv(inputs, actuals, n_rounds=60)
    assert sorted(honest["customer_id"]) == sorted(actuals["customer_id"])
    assert honest["p_active"].between(0, 1).all()
    assert np.isfinite(honest["expected_spend"]).all()
    answers = actuals.rename(columns={"active": "answer_active", "spend": "answer_spend"})
    leaked = in_window_cv(inputs.merge(answers, on="customer_id"), actuals, n_rounds=60)
    spend = actuals.set_index("customer_id")["spend"]
    g_honest = gini_norm(spend.loc[honest["customer_id"]], honest["expected_spend"])
    g_leaked = gini_norm(spend.loc[leaked["customer_id"]], leaked["expected_spend"])
    assert g_leaked > 0.97
    assert g_honest < g_leaked - 0.05


def test_in_window_cv_rejects_mismatched_customers(sim):
    tx = sim.transactions
    inputs = model_inputs(tx, sim.as_of, sim.horizon_days)
    actuals = build_labels(tx, sim.as_of, sim.horizon_days)
    with pytest.raises(ValueError, match="same customers"):
        in_window_cv(inputs.iloc[1:], actuals)
