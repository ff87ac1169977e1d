"""Which method a trained model exports: the boosters, BG/NBD x Gamma-Gamma, or a blend of the
two, chosen on an out-of-time backtest window (pure functions over prediction tables).

The blend mixes the two methods' outputs themselves, not their ranks: probabilities for
P(active), money for expected spend,

    p_active       = w_active * boosters.p_active       + (1 - w_active) * bgnbd.p_active
    expected_spend = w_spend  * boosters.expected_spend + (1 - w_spend)  * bgnbd.expected_spend

so totals stay in currency and a blend of two calibrated models stays calibrated.

Each weight is chosen on the grid 0, 0.1, ..., 1 by its *sure* gain over BG/NBD on the window:
the gain in ROC AUC (``w_active``) or normalised Gini (``w_spend``) is computed on bootstrap
resamples of the customers (paired), and the weight whose 10th-percentile gain is largest wins
(ties go to the smaller boosters' weight). BG/NBD alone scores exactly 0, so the boosters get
weight only where they beat BG/NBD by more than the window's noise; a gain that is not sure is
shrunk towards BG/NBD, the method that is hard to beat out of time. Whether the choice holds on
the next window is what ``clvflow backtest`` measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from clvflow.core.cores import map_in_order, one_blas_thread
from clvflow.core.progress import track
from clvflow.core.steptimes import timed_step
from clvflow.evaluation import resampling
from clvflow.evaluation.metrics import prediction_arrays

#: Boosters' weights tried (0 = BG/NBD only, 1 = boosters only).
WEIGHT_GRID = tuple(float(round(w, 1)) for w in np.linspace(0.0, 1.0, 11))


@dataclass(frozen=True)
class Blend:
    """Boosters' weight in P(active) and in expected spend, and why they were chosen."""

    active_weight: float = 1.0
    spend_weight: float = 1.0
    reason: str = "boosters by default"

    @property
    def method(self) -> str:
        """``boosters``, ``bgnbd`` or ``blend``."""
        if self.active_weight == 1.0 and self.spend_weight == 1.0:
            return "boosters"
        if self.active_weight == 0.0 and self.spend_weight == 0.0:
            return "bgnbd"
        return "blend"

    def describe(self) -> str:
        """One line: the method and its weights."""
        if self.method != "blend":
            return self.method
        return (
            f"blend (boosters' weight {self.active_weight:.1f} in p_active, "
            f"{self.spend_weight:.1f} in expected spend; the rest BG/NBD x Gamma-Gamma)"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "method": self.method}

    @classmethod
    def from_dict(cls, data: dict | None) -> Blend:
        """From :meth:`to_dict`; None (a model saved before blends existed): boosters only."""
        if not data:
            return cls()
        return cls(data["active_weight"], data["spend_weight"], data.get("reason", ""))


def blend_arrays(
    blend: Blend,
    p_boosters: np.ndarray,
    spend_boosters: np.ndarray,
    p_bgnbd: np.ndarray,
    spend_bgnbd: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(p_active, expected_spend) of the blend (module docstring)."""
    wa, ws = blend.active_weight, blend.spend_weight
    return wa * p_boosters + (1 - wa) * p_bgnbd, ws * spend_boosters + (1 - ws) * spend_bgnbd


#: Bootstrap resamples and the quantile of the gain that a weight is judged by.
N_RESAMPLES, GAIN_QUANTILE = 100, 0.10
#: Resamples draw at most this many customers (more would only cost time; fewer is more cautious).
MAX_RESAMPLE_CUSTOMERS = 200_000


def _gains(
    kind: str,
    truth: np.ndarray,
    boosters: np.ndarray,
    bgnbd: np.ndarray,
    draws: list[np.ndarray],
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per weight: the gain over BG/NBD (``kind`` ``auc`` of P(active) or ``gini`` of spend) on
    all customers, and its quantile over the draws (judged ``threads`` at once). Each blend is
    ranked once; a draw is a count per customer (:mod:`clvflow.evaluation.resampling`), and all
    customers are the draw counting each once (the same numbers as ranking them anew, bit for
    bit)."""
    scores = [w * boosters + (1 - w) * bgnbd for w in WEIGHT_GRID]
    # (the truth in each ranking's order: a draw then costs one gather per ranking)
    if kind == "auc":
        flags = truth.astype(np.uint8)
        rankings = [(r, r.ranked(flags)) for r in map(resampling.Ranking, scores)]
    else:
        truth = truth.astype("float64")
        rankings = [(r, r.ranked(truth)) for r in map(resampling.Ranking, scores)]
        by_truth = resampling.Ranking(truth)
        truth_by_truth = by_truth.ranked(truth)

    def per_weight(w: np.ndarray, size: int) -> np.ndarray:
        """Each blend's metric on the resample counting customer i ``w[i]`` times."""
        if kind == "auc":
            return np.array([r.roc_auc(w, x) for r, x in rankings])
        best = by_truth.spend_groups(w, truth_by_truth).gini_raw(size)
        if best <= 0:
            raise ValueError("all `actual` values are equal: a normalized Gini is undefined")
        raw = np.array([r.spend_groups(w, x).gini_raw(size) for r, x in rankings])
        return np.clip(raw / best, -1.0, 1.0)

    n = len(truth)
    by_draw = np.empty((len(draws), len(WEIGHT_GRID)))
    with one_blas_thread():  # (many n-sized dot products: BLAS threads only spin)
        full = per_weight(np.ones(n, dtype=np.uint8), n)
        on_draws = map_in_order(
            lambda i: per_weight(resampling.resample_counts(i, n), len(i)), draws, threads
        )
        for d, gains in enumerate(track(on_draws, "blend weights on resamples", len(draws))):
            by_draw[d] = gains
    by_draw -= by_draw[:, [0]]
    return full - full[0], np.quantile(by_draw, GAIN_QUANTILE, axis=0)


def _valid_draws(active: np.ndarray, spend: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(active)
    size = min(n, MAX_RESAMPLE_CUSTOMERS)
    draws = []
    for _ in range(N_RESAMPLES):
        i = rng.integers(0, n, size)
        if active[i].min() != active[i].max() and spend[i].sum() > 0:
            draws.append(i)
    return draws


def _surest(gain: np.ndarray, sure: np.ndarray) -> int:
    """Index of the weight with the largest sure gain (smallest weight on ties)."""
    return int(np.flatnonzero(sure >= sure.max() - 1e-12)[0])


@timed_step("evaluation")
def choose_blend(
    actuals: pd.DataFrame,
    boosters: pd.DataFrame,
    bgnbd: pd.DataFrame,
    *,
    seed: int = 0,
    threads: int | None = None,
) -> Blend:
    """The weights with the surest gain over BG/NBD on the window (module docstring).

    Args:
        actuals: customer_id, active (0/1), spend over the window.
        boosters, bgnbd: customer_id, p_active, expected_spend of the same customers.
        seed: of the bootstrap resamples (same inputs and seed, same choice).
        threads: resamples judged at once (default: the cores available); the choice does not
            depend on it.

    Raises:
        ValueError: the window has only one outcome or no spend (nothing to rank).
    """
    active = actuals["active"].to_numpy(dtype=int)
    spend = actuals["spend"].to_numpy(dtype=float)
    if active.min() == active.max() or spend.sum() <= 0:
        raise ValueError("the selection window needs active and inactive customers and spend")
    pb, sb = prediction_arrays(actuals, boosters)
    pg, sg = prediction_arrays(actuals, bgnbd)
    draws = _valid_draws(active, spend, seed)
    auc_gain, auc_sure = _gains("auc", active, pb, pg, draws, threads)
    gini_gain, gini_sure = _gains("gini", spend, sb, sg, draws, threads)
    ia, ispend = _surest(auc_gain, auc_sure), _surest(gini_gain, gini_sure)
    wa, ws = WEIGHT_GRID[ia], WEIGHT_GRID[ispend]
    reason = (
        f"gain over BG/NBD on the window (10th percentile of {len(draws)} resamples): ROC AUC "
        f"{auc_gain[ia]:+.4f} ({auc_sure[ia]:+.4f}; boosters alone {auc_gain[-1]:+.4f} "
        f"({auc_sure[-1]:+.4f})), gini {gini_gain[ispend]:+.4f} ({gini_sure[ispend]:+.4f}; "
        f"boosters alone {gini_gain[-1]:+.4f} ({gini_sure[-1]:+.4f}))"
    )
    return Blend(wa, ws, reason)
