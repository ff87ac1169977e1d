"""The across-seasons benchmark: one origin gives the four rows with the evaluation table's
columns (docs/evaluation.md)."""

from __future__ import annotations

import pandas as pd
from benchmarks.bench_seasons import compare, format_table

from clvflow.data.simulate import simulate
from clvflow.models.tables import TABLE_METRICS


def test_compare_one_seasonal_origin():
    sim = simulate(
        2500,
        start="2021-01-01",
        as_of="2023-04-01",
        horizon_days=60,
        seed=1,
        seasonal_amplitude=0.4,
    )
    rows = pd.DataFrame(compare(sim.transactions, "2023-04-01", 60, "sim", sim.truth))
    assert list(rows["method"].str.split(" \\(").str[0]) == [
        "BG/NBD × Gamma-Gamma",
        "model, BG/NBD level",
        "model, seasonal level",
        "oracle",
    ]
    assert "ratio" in rows["method"].iloc[2]  # the year-ago snapshot was used
    # BG/NBD level: the model's total equals BG/NBD's, so the aggregate bias is the same.
    assert abs(rows["agg_bias"].iloc[1] - rows["agg_bias"].iloc[0]) < 1e-9
    text = format_table(rows[["data", "cutoff", "method", *TABLE_METRICS]])
    assert text.count("\n") == 5 and "| sim | 2023-04-01 | oracle (latent truth) |" in text
