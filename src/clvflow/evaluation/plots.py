"""Backtest figures for MLflow artifacts and HTML reports.

Every function builds a standalone `matplotlib.figure.Figure` (no pyplot, no global state), so it
is safe in threads and servers; save it with `fig.savefig(path)`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from clvflow.evaluation.metrics import ArrayLike, gain_curve, gini_norm, reliability_table

MAX_CURVE_POINTS = 1001  # gain curves are piecewise linear; this many points draw them faithfully


def _check_named(curves: Mapping[str, ArrayLike], name: str) -> None:
    if not curves:
        raise ValueError(f"`{name}` is empty; pass at least one model name -> predictions")


def gain_curve_figure(actual: ArrayLike, preds: Mapping[str, ArrayLike]) -> Figure:
    """Cumulative share of actual spend vs share of customers ranked by each model.

    Args:
        actual: actual window spend per customer (currency, >= 0).
        preds: model name -> predicted spend (or score) per customer, same order as `actual`.

    Returns:
        Figure with one line per model (normalized Gini in the legend), then the perfect ranking
        and the random line.

    Raises:
        ValueError: `preds` is empty or any input is invalid (see clvflow.evaluation.metrics).
    """
    _check_named(preds, "preds")
    grid = np.linspace(0.0, 1.0, MAX_CURVE_POINTS)
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for name, pred in preds.items():
        x, y = gain_curve(actual, pred)
        ax.plot(grid, np.interp(grid, x, y), label=f"{name} (Gini {gini_norm(actual, pred):.3f})")
    x, y = gain_curve(actual, actual)
    ax.plot(grid, np.interp(grid, x, y), color="black", ls="--", lw=1, label="perfect (Gini 1)")
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="random (Gini 0)")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="Gain curve: spend captured by the highest-ranked customers",
        xlabel="Customers, ranked by prediction (% of all)",
        ylabel="Actual spend in window (cumulative % of total)",
    )
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def reliability_figure(
    active: ArrayLike, probs: Mapping[str, ArrayLike], n_bins: int = 10
) -> Figure:
    """Reliability (calibration) curves of predicted P(active in window), with the diagonal.

    Args:
        active: 1 if the customer bought in the window, else 0.
        probs: model name -> predicted probability of being active, same order as `active`.
        n_bins: equal-count bins of predicted probability per curve.

    Returns:
        Figure with one line per model (markers at bin means), then the diagonal.

    Raises:
        ValueError: `probs` is empty or any input is invalid (see clvflow.evaluation.metrics).
    """
    _check_named(probs, "probs")
    fig = Figure(figsize=(6, 6), layout="constrained")
    ax = fig.add_subplot()
    for name, p_active in probs.items():
        table = reliability_table(active, p_active, n_bins=n_bins)
        ax.plot(table["mean_pred"], table["observed_rate"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfectly calibrated")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        aspect="equal",
        title=f"Reliability of P(active in window), {n_bins} equal-count bins",
        xlabel="Predicted probability of a purchase (bin mean, %)",
        ylabel="Observed share of customers who purchased (%)",
    )
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def decile_figure(decile_table_df: pd.DataFrame, currency: str = "$") -> Figure:
    """Grouped bars of mean predicted vs mean actual spend per predicted decile.

    Args:
        decile_table_df: output of `clvflow.evaluation.metrics.decile_table` (index = decile, columns
            mean_pred and mean_actual; `attrs["mape"]` shown in the title when present).
        currency: currency symbol for the axis label.

    Returns:
        Figure with two bar containers (predicted, actual), one bar per decile.

    Raises:
        ValueError: a required column is missing.
    """
    missing = {"mean_pred", "mean_actual"} - set(decile_table_df.columns)
    if missing:
        raise ValueError(
            f"`decile_table_df` is missing column(s) {sorted(missing)}; "
            "pass the output of clvflow.evaluation.metrics.decile_table"
        )
    deciles = decile_table_df.index.to_numpy()
    pos = np.arange(len(deciles))
    width = 0.4
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(pos - width / 2, decile_table_df["mean_pred"], width, label="mean predicted")
    ax.bar(pos + width / 2, decile_table_df["mean_actual"], width, label="mean actual")
    title = "Predicted vs actual spend per predicted decile"
    if "mape" in decile_table_df.attrs:
        title += f" (MAPE {decile_table_df.attrs['mape']:.1%})"
    ax.set(
        xticks=pos,
        xticklabels=[str(d) for d in deciles],
        title=title,
        xlabel="Predicted decile (1 = highest predicted spend)",
        ylabel=f"Spend per customer in window ({currency}, decile mean)",
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    return fig


def feature_importance_figure(
    importances: pd.Series,
    title: str,
    top_n: int = 20,
    xlabel: str = "Importance (model units)",
) -> Figure:
    """Horizontal bars of the `top_n` largest importances (by absolute value), largest on top.

    Args:
        importances: feature name -> importance (e.g. XGBoost gain, mean |SHAP| in currency).
        title: figure title, e.g. which model and importance type.
        top_n: number of features shown.
        xlabel: axis label, with the importance's unit.

    Returns:
        Figure with one bar per shown feature.

    Raises:
        ValueError: `importances` is empty or holds NaN.
    """
    if importances.empty:
        raise ValueError("`importances` is empty; pass one value per feature")
    if importances.isna().any():
        bad = importances.index[importances.isna()].tolist()[:5]
        raise ValueError(f"`importances` has NaN for features {bad}; drop or fill them first")
    order = importances.abs().sort_values(ascending=False).index[:top_n]
    shown = importances.loc[order][::-1]  # barh draws bottom-up
    fig = Figure(figsize=(7, 0.3 * len(shown) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    ax.barh([str(i) for i in shown.index], shown.to_numpy())
    ax.set(title=title, xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)
    return fig
