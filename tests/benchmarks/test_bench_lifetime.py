"""The lifetime-value backtest: one small simulated log gives the table's rows, with the actual
window spend and the true lifetime value computed here by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from benchmarks.bench_lifetime import format_table, horizon_rows, true_lifetime

from clvflow.data.simulate import simulate
from clvflow.features.labels import build_labels
from clvflow.models.clv import ModelParams


def test_true_lifetime_by_hand() -> None:
    """Issue 10 item 1: alive x lambda / (delta + p lambda) x m x net share, delta per day."""
    truth = pd.DataFrame(
        {
            "purchase_rate_per_day": [0.1, 0.1, 0.02],
            "dropout_prob": [0.05, 0.05, 0.5],
            "mean_order_value": [40.0, 40.0, 10.0],
            "alive_at_as_of": [True, False, True],
        }
    )
    purchases = -np.expm1(-truth["purchase_rate_per_day"] * truth["dropout_prob"] * 30)
    purchases /= truth["dropout_prob"]
    truth["expected_spend"] = 0.9 * purchases * truth["mean_order_value"] * [1, 0, 1]
    delta = np.log(1.1) / 365.25
    want = [0.1 / (delta + 0.005) * 40 * 0.9, 0.0, 0.02 / (delta + 0.01) * 10 * 0.9]
    np.testing.assert_allclose(true_lifetime(truth, 30, 0.1), want, rtol=1e-12)


def test_horizon_rows_on_a_small_simulation() -> None:
    """Issue 10 item 1: each window's actual total is the labels' spend; each method's bias is
    its total against it; the longest horizon's lifetime differs from itself by 0."""
    sim = simulate(2500, start="2021-01-01", as_of="2023-01-01", horizon_days=60, seed=3)
    rows = horizon_rows(
        sim.transactions,
        "2023-01-01",
        (30, 60),
        "sim",
        params=ModelParams(n_estimators=20, seed=0),
        truth=sim.truth,
        truth_window_days=60,
    )
    table = pd.DataFrame(rows)
    for row in rows:
        labels = build_labels(sim.transactions, "2023-01-01", row["window_days"])
        assert row["actual"] == pytest.approx(labels["spend"].sum())
        for method in ("model", "long run", "BG/NBD"):
            assert row[f"{method} bias"] == pytest.approx(row[method] / row["actual"] - 1)
        assert 0 < row["lifetime"] < np.inf and row["true lifetime"] > 0
    assert table["vs H max"].tolist()[-1] == 0.0
    text = format_table(table)
    assert text.count("\n") == 3 and text.splitlines()[2].startswith("| sim | 30 | ")
