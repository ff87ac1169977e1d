"""Backtest results as tables (pure): the evaluation table, bootstrap intervals, multi-cutoff
summaries and snapshot checks, in Markdown for the terminal and as flat MLflow metric names.

Metric names follow ``<target>_<metric>`` (``spend_gini_norm``, ``churn_roc_auc``) with the
prefixes of :data:`clvflow.models.training.BASELINE_PREFIXES` for the other methods.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clvflow.features.snapshots import SnapshotCheck
from clvflow.models.training import BASELINE_PREFIXES

#: Table column -> metric name (the columns of the evaluation table).
TABLE_METRICS = {
    "gini_norm": "spend_gini_norm",
    "top_decile": "spend_top_decile_capture",
    "rmse": "spend_rmse",
    "mae": "spend_mae",
    "agg_bias": "spend_agg_bias",
    "roc_auc": "churn_roc_auc",
    "pr_auc": "churn_pr_auc",
    "brier": "churn_brier",
}

#: Rows of the evaluation table: method -> metric prefix, and the key of its predictions.
METHODS = {
    "model": "",
    "boosters alone": BASELINE_PREFIXES["boosters"],
    "BG/NBD × Gamma-Gamma": BASELINE_PREFIXES["bgnbd"],
    "historical": BASELINE_PREFIXES["historical"],
}
PREDICTION_KEYS = {
    "model": "model",
    "boosters alone": "boosters",
    "BG/NBD × Gamma-Gamma": "bgnbd",
    "historical": "historical",
}

# ---- evaluation table (pure) ---------------------------------------------------------------


def evaluation_table(metrics: dict[str, float]) -> pd.DataFrame:
    """Rows model / boosters alone (when the model is not) / BG/NBD x Gamma-Gamma / historical;
    the backtest table's columns (agg_bias: a share). A method without metrics has no row (the model's
    row is always there)."""
    rows = {
        method: {col: metrics.get(f"{prefix}{name}", np.nan) for col, name in TABLE_METRICS.items()}
        for method, prefix in METHODS.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table = table.loc[table.notna().any(axis=1) | (table.index == "model")]
    table.index.name = "method"
    return table


def _cell_format(column: str) -> str:
    """Money with 2 decimals, agg_bias in %, everything else with 3 decimals."""
    return {"rmse": "{:.2f}", "mae": "{:.2f}", "agg_bias": "{:+.1%}"}.get(column, "{:.3f}")


def format_evaluation_table(table: pd.DataFrame) -> str:
    """Markdown table as in the README (agg_bias in %, money with 2 decimals); the index is
    the first column (headed by its name, default ``method``), text cells are kept as they are."""

    def cell(col: str, v: Any) -> str:
        if isinstance(v, str):
            return v
        return "-" if pd.isna(v) else _cell_format(col).format(v)

    header = [table.index.name or "method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, row in table.iterrows():
        cells = [cell(str(col), v) for col, v in row.items()]
        lines.append("| " + " | ".join([str(method), *cells]) + " |")
    return "\n".join(lines)


#: MLflow metric prefixes of the interval rows (``<prefix><metric>_ci95_low`` / ``_high``).
INTERVAL_PREFIXES = {
    "model": "",
    "bgnbd": BASELINE_PREFIXES["bgnbd"],
    "model - bgnbd": "gain_vs_bgnbd_",
}


def interval_metrics(intervals: pd.DataFrame) -> dict[str, float]:
    """Flat MLflow metrics of :func:`backtest_intervals`."""
    out: dict[str, float] = {}
    row: Any  # (a namedtuple of the table's columns: pandas-stubs types its fields as any scalar)
    for row in intervals.itertuples():
        name = f"{INTERVAL_PREFIXES[row.method]}{row.metric}_ci95"
        out[f"{name}_low"], out[f"{name}_high"] = row.low, row.high
    return out


def format_intervals(intervals: pd.DataFrame) -> str:
    """Markdown table: one row per method, ``estimate [low, high]`` per metric (columns named and
    formatted as in :func:`format_evaluation_table`)."""
    columns = {name: col for col, name in TABLE_METRICS.items() if name in set(intervals["metric"])}
    names = {"model": "model", "bgnbd": "BG/NBD × Gamma-Gamma", "model - bgnbd": "model − BG/NBD"}
    lines = ["| method | " + " | ".join(columns.values()) + " |", "|" + "---|" * (len(columns) + 1)]
    for method, rows in intervals.groupby("method", sort=False):
        cells = []
        for name, col in columns.items():
            r = rows.loc[rows["metric"] == name].iloc[0]
            fmt = _cell_format(col)
            cells.append(f"{fmt.format(r.estimate)} [{fmt.format(r.low)}, {fmt.format(r.high)}]")
        lines.append(f"| {names.get(str(method), str(method))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def snapshot_table(checks: list[SnapshotCheck]) -> pd.DataFrame:
    """One row per candidate snapshot: date, history, buyers, active, used, why not."""
    return pd.DataFrame(
        [
            {
                "snapshot_date": c.snapshot_date.date().isoformat(),
                "history_days": c.history_days,
                "n_buyers": c.n_buyers,
                "n_active": c.n_active,
                "used": c.used,
                "reason": c.reason,
            }
            for c in checks
        ],
        columns=["snapshot_date", "history_days", "n_buyers", "n_active", "used", "reason"],
    )


def summary_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """Flat MLflow metrics of a multi-cutoff summary: ``mean_gain_vs_bgnbd_<metric>`` and its
    ``_ci95_low`` / ``_ci95_high``."""
    out: dict[str, float] = {}
    row: Any  # (a namedtuple of the table's columns: pandas-stubs types its fields as any scalar)
    for row in summary.itertuples():
        name = f"mean_gain_vs_bgnbd_{row.metric}"
        out[name], out[f"{name}_ci95_low"], out[f"{name}_ci95_high"] = (
            row.estimate,
            row.low,
            row.high,
        )
    return out


def format_summary(summary: pd.DataFrame) -> str:
    """Markdown: one row per metric, mean gain [low, high] and how many cutoffs gained."""
    names = {name: col for col, name in TABLE_METRICS.items()}
    lines = [
        "| metric | mean gain over BG/NBD | 95% interval | cutoffs with a gain |",
        "|---|---|---|---|",
    ]
    row: Any  # (a namedtuple of the table's columns: pandas-stubs types its fields as any scalar)
    for row in summary.itertuples():
        col = names.get(row.metric, row.metric)
        fmt = _cell_format(col)
        lines.append(
            f"| {col} | {fmt.format(row.estimate)} | [{fmt.format(row.low)}, "
            f"{fmt.format(row.high)}] | {row.n_positive} of {row.n_backtests} |"
        )
    return "\n".join(lines)
