"""Tests for clvflow.evaluation.plots: each figure has the expected artists and saves to PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from clvflow.evaluation.metrics import decile_table
from clvflow.evaluation.plots import (
    decile_figure,
    feature_importance_figure,
    gain_curve_figure,
    reliability_figure,
)


@pytest.fixture(scope="module")
def backtest() -> dict[str, np.ndarray]:
    """Seeded stand-in for a backtest: 2,000 customers, ~25% active."""
    rng = np.random.default_rng(7)
    n = 2000
    propensity = rng.beta(1.0, 3.0, n)
    active = (rng.random(n) < propensity).astype(int)
    spend = active * rng.gamma(2.0, 50.0, n)
    return {
        "active": active,
        "spend": spend,
        "model": propensity * 100.0 + rng.normal(0.0, 5.0, n),
        "historical": np.round(propensity * 10.0) * 10.0,  # coarse: many ties
        "p_model": propensity,
        "p_flat": np.clip(propensity * 0.5 + 0.1, 0.0, 1.0),
    }


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=80)
    assert path.exists() and path.stat().st_size > 1000


def test_gain_curve_figure(backtest, tmp_path: Path) -> None:
    preds = {"model": backtest["model"], "historical": backtest["historical"]}
    fig = gain_curve_figure(backtest["spend"], preds)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == len(preds) + 2  # models + perfect + random
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("model (Gini 0.")
    assert labels[-2:] == ["perfect (Gini 1)", "random (Gini 0)"]
    _save(fig, tmp_path / "gain.png")


def test_reliability_figure(backtest, tmp_path: Path) -> None:
    probs = {"model": backtest["p_model"], "shrunk": backtest["p_flat"]}
    fig = reliability_figure(backtest["active"], probs, n_bins=8)
    lines = fig.axes[0].get_lines()
    assert len(lines) == len(probs) + 1  # models + diagonal
    assert len(lines[0].get_xdata()) == 8
    _save(fig, tmp_path / "reliability.png")


def test_decile_figure(backtest, tmp_path: Path) -> None:
    table = decile_table(backtest["spend"], backtest["model"])
    fig = decile_figure(table)
    ax = fig.axes[0]
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [len(b) for b in bars] == [10, 10]
    assert "MAPE" in ax.get_title()
    _save(fig, tmp_path / "deciles.png")


def test_decile_figure_missing_column() -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['mean_actual'\]"):
        decile_figure(pd.DataFrame({"mean_pred": [1.0]}))


@pytest.mark.parametrize(("n_features", "n_bars"), [(35, 20), (5, 5)])
def test_feature_importance_figure(tmp_path: Path, n_features: int, n_bars: int) -> None:
    rng = np.random.default_rng(0)
    importances = pd.Series(rng.random(n_features), index=[f"f_{i}" for i in range(n_features)])
    fig = feature_importance_figure(importances, "XGBoost spend model: gain")
    ax = fig.axes[0]
    assert len(ax.patches) == n_bars
    top_label = ax.get_yticklabels()[-1].get_text()
    assert top_label == importances.idxmax()  # largest drawn on top
    _save(fig, tmp_path / "importance.png")


def test_empty_inputs_raise() -> None:
    with pytest.raises(ValueError, match="`preds` is empty"):
        gain_curve_figure([1.0, 2.0], {})
    with pytest.raises(ValueError, match="`probs` is empty"):
        reliability_figure([0, 1], {})
    with pytest.raises(ValueError, match="`importances` has NaN"):
        feature_importance_figure(pd.Series({"a": np.nan}), "t")
