"""Population drift: PSI of each model input and of the predictions, scoring vs training.

A *reference profile* is taken from the features (and predictions) the final model was fitted
for (the population at the training cutoff) and travels with the model. At scoring time the
population stability index (PSI) of every feature is computed against it:
PSI = sum over bins (a - e) ln(a / e), with e and a the reference and scoring shares per bin
(decile bins of the reference; a small floor keeps empty bins finite). Rule of thumb: < 0.1
stable, 0.1-0.25 moderate shift, > 0.25 major shift (the default warning threshold).

Customer ages (``AGE_COLUMNS``) grow one day per day: scored N days after the reference date, a
population that merely aged would drift there, which nobody can act on. They are compared with
the reference aged by N days instead (the plain PSI is kept as ``psi_unaged``).
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
#: Days since the customer's first transaction / first purchase: +1 per day for everyone.
AGE_COLUMNS = ("tenure_days", "T_days")


def _edges(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    qs = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    return [float(q) for q in qs]


def _shares(values: np.ndarray, edges: list[float]) -> list[float]:
    """Shares of values per bin: one bin for missing values, then len(edges) + 1 bins."""
    return (_counts(values, edges) / max(len(values), 1)).tolist()


def _counts(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Values per bin: one bin for missing values, then len(edges) + 1 bins."""
    missing = ~np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), values[~missing], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype("float64")
    return np.concatenate([[missing.sum()], counts])


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
    profile: dict[str, dict],
    table: pd.DataFrame,
    threshold: float = DEFAULT_PSI_THRESHOLD,
    age_days: int = 0,
) -> pd.DataFrame:
    """PSI of each profiled column of ``table`` against the reference profile.

    Args:
        age_days: days from the reference date (training cutoff) to the scoring date; the
            ``AGE_COLUMNS`` are compared with the reference's bins moved by that many days.

    Returns:
        DataFrame ``column``, ``psi``, ``drifted`` (psi > threshold), ``psi_unaged`` (the PSI
        against the reference as profiled; equal to ``psi`` except for aged columns), sorted by
        psi descending. Columns absent from ``table`` are skipped.
    """
    return drift_from_counts(profile, bin_counts(profile, table, age_days), len(table), threshold)


def bin_counts(
    profile: dict[str, dict], table: pd.DataFrame, age_days: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per profiled column of ``table``: its values per reference bin, unaged and aged (see
    :func:`drift_table`). Counts of the parts of a population add up to the population's."""
    out = {}
    for col, ref in profile.items():
        if col not in table.columns:
            continue
        values = table[col].to_numpy(dtype="float64")
        unaged = _counts(values, ref["edges"])
        aged = unaged
        if col in AGE_COLUMNS and age_days:
            aged = _counts(values, [e + age_days for e in ref["edges"]])
        out[col] = (unaged, aged)
    return out


def drift_from_counts(
    profile: dict[str, dict],
    counts: dict[str, tuple[np.ndarray, np.ndarray]],
    n: int,
    threshold: float = DEFAULT_PSI_THRESHOLD,
) -> pd.DataFrame:
    """:func:`drift_table` from the :func:`bin_counts` of ``n`` values."""
    rows = []
    for col, (unaged_counts, aged_counts) in counts.items():
        shares = profile[col]["shares"]
        unaged = psi(shares, (unaged_counts / max(n, 1)).tolist())
        value = psi(shares, (aged_counts / max(n, 1)).tolist())
        rows.append(
            {"column": col, "psi": value, "drifted": value > threshold, "psi_unaged": unaged}
        )
    out = pd.DataFrame(rows, columns=["column", "psi", "drifted", "psi_unaged"])
    return out.sort_values("psi", ascending=False, ignore_index=True)
