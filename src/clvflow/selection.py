"""Which method a trained model exports: the boosters, BG/NBD x Gamma-Gamma, or a blend of the
two, chosen on an out-of-time backtest window (pure functions over prediction tables).

The blend mixes the two methods' outputs themselves, not their ranks: probabilities for
P(active), money for expected spend,

    p_active       = w_active * boosters.p_active       + (1 - w_active) * bgnbd.p_active
    expected_spend = w_spend  * boosters.expected_spend + (1 - w_spend)  * bgnbd.expected_spend

so totals stay in currency and a blend of two calibrated models stays calibrated. Each weight is
the value on the grid 0, 0.1, ..., 1 that ranks the window best: ROC AUC for ``w_active``,
normalised Gini for ``w_spend`` (ties go to the larger boosters' weight). Because 0 and 1 are on
the grid, the chosen method is never below BG/NBD (nor the boosters) on the window it was chosen
on; whether that holds on the next window is what ``clvflow backtest`` measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from clvflow.evaluation import gini_norm

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


def _aligned(actuals: pd.DataFrame, pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    p = pred.set_index("customer_id").loc[actuals["customer_id"]]
    return p["p_active"].to_numpy(dtype=float), p["expected_spend"].to_numpy(dtype=float)


def _best(scores: dict[float, float]) -> float:
    top = max(scores.values())
    return max(w for w, s in scores.items() if s >= top - 1e-12)


def choose_blend(actuals: pd.DataFrame, boosters: pd.DataFrame, bgnbd: pd.DataFrame) -> Blend:
    """The weights that rank the window's actuals best (module docstring).

    Args:
        actuals: customer_id, active (0/1), spend over the window.
        boosters, bgnbd: customer_id, p_active, expected_spend of the same customers.

    Raises:
        ValueError: the window has only one outcome or no spend (nothing to rank).
    """
    active = actuals["active"].to_numpy(dtype=int)
    spend = actuals["spend"].to_numpy(dtype=float)
    if active.min() == active.max() or spend.sum() <= 0:
        raise ValueError("the selection window needs active and inactive customers and spend")
    pb, sb = _aligned(actuals, boosters)
    pg, sg = _aligned(actuals, bgnbd)
    auc = {w: float(roc_auc_score(active, w * pb + (1 - w) * pg)) for w in WEIGHT_GRID}
    gini = {w: gini_norm(spend, w * sb + (1 - w) * sg) for w in WEIGHT_GRID}
    wa, ws = _best(auc), _best(gini)
    reason = (
        f"on the window: ROC AUC {auc[wa]:.4f} (boosters {auc[1.0]:.4f}, BG/NBD {auc[0.0]:.4f}); "
        f"gini {gini[ws]:.4f} (boosters {gini[1.0]:.4f}, BG/NBD {gini[0.0]:.4f})"
    )
    return Blend(wa, ws, reason)
