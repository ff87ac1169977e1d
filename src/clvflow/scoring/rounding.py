"""Rounding of the tables people read: the scores and trend files written as CSV.

A CSV is read by people and spreadsheets, so its numbers are written as a person would: money to
2 decimals, probabilities (and every other fractional number) to 4, counts as integers.
Parquet files keep full precision (typed columns, read by programs; nothing is lost there).
Rounding happens at the edge, on the copy written; the tables in memory are never changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Money columns of the scores and trend tables (currency of the input): 2 decimals.
MONEY_COLUMNS = frozenset(
    {
        "expected_spend_if_active",
        "expected_spend",
        "clv",
        "historical_clv",
        "aov",
        "clv_lifetime",
        "value_at_risk",
        "clv_total",
        "clv_mean",
        "clv_lifetime_total",
        "cac",
        "cac_mean",
        "spend_p10",
        "spend_p90",
        "clv_p10",
        "clv_p90",
    }
)
#: Counts (and whole days): written as integers.
COUNT_COLUMNS = frozenset(
    {
        "horizon_days",
        "purchase_days",
        "recency_days",
        "tenure_days",
        "customers",
        "retention_priority",
        "winback_priority",
    }
)
MONEY_DECIMALS = 2
#: Probabilities and every other fractional column not listed above.
OTHER_DECIMALS = 4


def round_for_csv(table: pd.DataFrame) -> pd.DataFrame:
    """A copy with money to ``MONEY_DECIMALS``, counts as (nullable) integers and every other
    float column to ``OTHER_DECIMALS``; text, dates and integer columns unchanged."""
    out = table.copy()
    for column in out.columns:
        values = out[column]
        if not pd.api.types.is_float_dtype(values):
            continue
        if column in COUNT_COLUMNS:
            out[column] = np.round(values).astype("Int64")
        elif column in MONEY_COLUMNS:
            out[column] = values.round(MONEY_DECIMALS)
        else:
            out[column] = values.round(OTHER_DECIMALS)
    return out


def for_file(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """The table as written to ``path``: rounded for a CSV (``.csv``, ``.csv.gz``), unchanged
    for Parquet."""
    name = Path(path).name.lower()
    return round_for_csv(table) if name.endswith((".csv", ".csv.gz")) else table
