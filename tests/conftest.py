"""Shared fixtures: tiny hand-built transaction tables with hand-computed expectations."""

from __future__ import annotations

import os

import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def make_tx(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    """A transactions table from (customer_id, timestamp, amount) tuples."""
    return pd.DataFrame(
        {
            "customer_id": pd.Series([r[0] for r in rows], dtype="str"),
            "timestamp": pd.to_datetime([r[1] for r in rows]),
            "amount": pd.Series([r[2] for r in rows], dtype="float64"),
        }
    )


# as_of 2024-03-01 (2024 is a leap year), horizon 30 days -> window [2024-03-01, 2024-03-31)
TINY_AS_OF = "2024-03-01"
TINY_ROWS = [
    ("001", "2024-01-01 10:00", 10.0),  # same day as the next row: one purchase day of 15
    ("001", "2024-01-01 15:00", 5.0),
    ("001", "2024-01-11 09:00", 20.0),
    ("001", "2024-02-10 12:00", 30.0),
    ("001", "2024-02-10 18:00", -5.0),  # a return on a purchase day
    ("001", "2024-03-05 08:00", 100.0),  # in the window
    ("002", "2024-02-20 23:59", 50.0),  # one-time buyer
    ("002", "2024-03-31 00:00", 999.0),  # first instant after the window: not a label
    ("003", "2024-01-15 11:00", -12.0),  # history of returns only
    ("004", "2023-12-01 10:00", 0.0),  # zero-amount purchase
    ("004", "2024-02-29 10:00", 40.0),
    ("004", "2024-03-10 10:00", -10.0),  # only a return in the window: inactive, spend 0
    ("005", "2024-03-02 10:00", 70.0),  # first seen after as_of: not known at as_of
]


@pytest.fixture
def tiny_tx() -> pd.DataFrame:
    return make_tx(TINY_ROWS)
