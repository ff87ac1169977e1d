"""Population drift: PSI of each model input and of the predictions, scoring vs training.

A *reference profile* is taken from the features (and predictions) the final model was fitted
for (the population at the training cutoff) and travels with the model. At scoring time the
population stability index (PSI) of every feature is computed against it:
PSI = sum over bins (a - e) ln(a / e), with e and a the reference and scoring shares per bin
(decile bins of the reference; a small floor keeps empty bins finite). Rule of thumb: < 0.1
stable, 0.1-0.25 moderate shift, > 0.25 major shift (the default warning threshold).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

N_BINS = 10
PSI_FLOOR = 1e-4
DEFAULT_PSI_THRESHOLD = 0.25
PREDICTION_PROFILE_COLUMNS = ["p_active", "expected_spend"]


def _edges(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    qs = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    return [float(q) for q in qs]


def _shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of values per bin: one bin for missing values, then len(edges) + 1 bins."""
    missing = ~np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), values[~missing], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    all_counts = np.concatenate([[missing.sum()], counts])
    return (all_counts / max(len(values), 1)).tolist()


def reference_profile(table: pd.DataFrame, columns: list[str]) -> dict[str, dict]:
    """Decile bin edges and shares of each column (JSON-serialisable)."""
    profile = {}
    for col in columns:
        values = table[col].to_numpy(dtype="float64")
        edges = _edges(values)
        profile[col] = {"edges": edges, "shares": _shares(values, edges)}
    return profile


def psi(expected: list[float], actual: list[float]) -> float:
    """Population stability index between two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype="float64"), PSI_FLOOR)
    a = np.maximum(np.asarray(actual, dtype="float64"), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_table(
    profile: dict[str, dict], table: pd.DataFrame, threshold: float = DEFAULT_PSI_THRESHOLD
) -> pd.DataFrame:
    """PSI of each profiled column of ``table`` against the reference profile.

    Returns:
        DataFrame ``column``, ``psi``, ``drifted`` (psi > threshold), sorted by psi descending.
        Columns absent from ``table`` are skipped.
    """
    rows = []
    for col, ref in profile.items():
        if col not in table.columns:
            continue
        shares = _shares(table[col].to_numpy(dtype="float64"), ref["edges"])
        value = psi(ref["shares"], shares)
        rows.append({"column": col, "psi": value, "drifted": value > threshold})
    out = pd.DataFrame(rows, columns=["column", "psi", "drifted"])
    return out.sort_values("psi", ascending=False, ignore_index=True)
