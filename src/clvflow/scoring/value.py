"""The CLV formulas: one small definition each, used by the model, scoring and reports.

Money is in the currency of the input amounts. Discounting: the window's spend is taken to fall at
the middle of the window, so ``clv = expected_spend x margin / (1 + annual_discount_rate) **
(horizon_days / 2 / 365.25)``. With margin 1 and no discount, ``clv == expected_spend``.
"""

from __future__ import annotations

import numpy as np

DAYS_PER_YEAR = 365.25


def check_economics(margin: float, annual_discount_rate: float) -> None:
    """Raise ValueError unless 0 < margin <= 1 and 0 <= annual_discount_rate < 1."""
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1] (a share of revenue), got {margin}")
    if not 0 <= annual_discount_rate < 1:
        raise ValueError(
            f"annual_discount_rate must be in [0, 1) (e.g. 0.1 for 10%), got {annual_discount_rate}"
        )


def horizon_discount_rate(annual_discount_rate: float, horizon_days: int) -> float:
    """Discount rate per horizon-long period, compounding the annual rate."""
    return (1.0 + annual_discount_rate) ** (horizon_days / DAYS_PER_YEAR) - 1.0


def horizon_clv(
    expected_spend: np.ndarray,
    *,
    horizon_days: int,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
) -> np.ndarray:
    """Value of the next ``horizon_days``: expected spend x margin, discounted to as_of."""
    check_economics(margin, annual_discount_rate)
    factor = (1.0 + annual_discount_rate) ** (-(horizon_days / 2.0) / DAYS_PER_YEAR)
    return np.asarray(expected_spend, dtype="float64") * margin * factor


def lifetime_clv(
    expected_spend_if_active: np.ndarray,
    p_active: np.ndarray,
    *,
    horizon_days: int,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
    max_retention: float = 0.95,
) -> np.ndarray:
    """Expected value over the customer's remaining lifetime (geometric retention model).

    Each horizon-long period the customer stays (buys) with probability r = ``p_active`` and then
    spends ``expected_spend_if_active``; value = sum over k >= 1 of m s r^k / (1 + d)^(k - 1/2)
    = m s r (1 + d)^(1/2) / (1 + d - r), with d the per-horizon discount rate (periods discounted at
    their middle, as in :func:`horizon_clv`, whose value is the k = 1 term). r is capped at
    ``max_retention`` so that a near-certain buyer without discounting keeps a finite value.
    """
    check_economics(margin, annual_discount_rate)
    d = horizon_discount_rate(annual_discount_rate, horizon_days)
    r = np.minimum(np.asarray(p_active, dtype="float64"), max_retention)
    s = np.asarray(expected_spend_if_active, dtype="float64")
    return margin * s * r * np.sqrt(1.0 + d) / (1.0 + d - r)
