"""Tests for clvflow.scoring.rounding: the numbers of the CSV files people read."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.scoring.rounding import for_file, round_for_csv


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "p_active": [0.123456789, 1 / 3],
            "clv": [12.345678, 2 / 3],
            "purchase_days": [3.0, np.nan],
            "recency_days": [10.0, 0.0],
            "retention_priority": [1, 2],
            "clv_percentile": [66.66666667, 33.3333333],
            "reasons_p_active": ["no purchase for 10 days (-)", ""],
        }
    )


def test_csv_money_has_two_decimals_probabilities_four_counts_integers() -> None:
    """Issue 10 item 6: no 17-digit floats or float-typed counts in a CSV."""
    out = round_for_csv(_table())
    assert out["p_active"].tolist() == [0.1235, 0.3333]
    assert out["clv"].tolist() == [12.35, 0.67]
    assert out["clv_percentile"].tolist() == [66.6667, 33.3333]
    assert str(out["purchase_days"].dtype) == "Int64"
    assert out["purchase_days"].tolist() == [3, pd.NA]
    assert out["recency_days"].tolist() == [10, 0]
    assert out["retention_priority"].tolist() == [1, 2]
    assert out["reasons_p_active"].tolist() == _table()["reasons_p_active"].tolist()
    text = out.to_csv(index=False).splitlines()
    assert text[1] == "a,0.1235,12.35,3,10,1,66.6667,no purchase for 10 days (-)"


def test_parquet_keeps_full_precision() -> None:
    """Issue 10 item 6: only CSV is rounded; the table itself is never changed."""
    table = _table()
    pd.testing.assert_frame_equal(for_file(table, "s.parquet"), table)
    assert for_file(table, "s.CSV.gz")["clv"].tolist() == [12.35, 0.67]
    assert table["clv"].iloc[0] == 12.345678
