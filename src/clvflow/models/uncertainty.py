"""Per-customer uncertainty: a predictive distribution of each customer's spend in the window.

Spend in the window is zero-inflated, so the predictive distribution of customer ``i`` mixes a
point mass at 0 (no purchase, probability ``1 - p_i``) with ``s_i x R`` when active, where ``p_i``
and ``s_i`` are the model's ``p_active`` and ``expected_spend_if_active`` (the point predictions,
unchanged) and ``R`` is a ratio with mean 1 whose distribution is calibrated on a time slice
before the cutoff (:func:`calibrate_spend`): the observed ``spend / s`` of the customers active in
that slice, split into bins of ``s`` (the spread differs between small and large spenders), each
bin's ratios divided by their mean. The mixture's mean is ``p_i x s_i``, the point prediction.

From it: the 10th and 90th percentiles of each customer's spend (:func:`spend_quantiles`), the
coverage of those intervals on a backtest (:func:`interval_coverage`) and an interval on the
total (:func:`total_interval`: the sum over independent customers, with its exact mean and
variance, times a shared level factor, so the total's interval is not the sum of the customers'
bounds; :func:`total_clv_interval` values it like CLV).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

#: Percentiles of the per-customer interval (an 80% central interval).
LOWER, UPPER = 0.10, 0.90
#: Levels at which each bin's ratio quantiles are stored (0, 0.005, ..., 1).
GRID = np.linspace(0.0, 1.0, 201)
#: Bins of predicted spend-if-active; fewer when the slice has few active customers.
N_BINS = 5
MIN_PER_BIN = 200
#: Customers less likely to buy than this add nothing to the variance of the total.
MIN_P_ACTIVE = 1e-6
#: Draws of the total.
TOTAL_DRAWS = 20_000


@dataclass(frozen=True)
class SpendCalibration:
    """The calibrated ratio distribution (JSON-able; stored in the model).

    edges: inner bin edges of predicted spend-if-active (len = n_bins - 1).
    quantiles: per bin, the ratio quantiles at ``GRID`` (mean of the ratios = 1).
    level_sd: log-scale sd of the shared level error of the total (from the slice's total).
    source: where the slice came from (held out or in-sample; printed by the benchmark).
    """

    edges: list[float]
    quantiles: list[list[float]]
    level_sd: float
    source: str
    n_active: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> SpendCalibration | None:
        return None if not data else cls(**data)


def calibrate_spend(actuals: pd.DataFrame, pred: pd.DataFrame, *, source: str) -> SpendCalibration:
    """Calibrate the ratio distribution on one time slice.

    Args:
        actuals: ``customer_id``, ``active``, ``spend`` of the slice's window.
        pred: ``customer_id``, ``p_active``, ``expected_spend_if_active``, ``expected_spend``
            made for that window from data before it (same customers).
        source: a short description of the slice.

    Raises:
        ValueError: the customers differ, or fewer than 20 active customers with a prediction.
    """
    merged = actuals.merge(pred, on="customer_id", how="inner", validate="one_to_one")
    if len(merged) != len(actuals) or len(merged) != len(pred):
        raise ValueError("calibration: predictions and actuals hold different customers")
    act = merged.loc[(merged["active"] == 1) & (merged["expected_spend_if_active"] > 0)]
    if len(act) < 20:
        raise ValueError(f"calibration: {len(act)} active customers in the slice, 20 needed")
    s = act["expected_spend_if_active"].to_numpy("float64")
    ratio = act["spend"].to_numpy("float64") / s
    n_bins = int(max(1, min(N_BINS, len(act) // MIN_PER_BIN)))
    edges = np.quantile(s, np.linspace(0, 1, n_bins + 1)[1:-1]) if n_bins > 1 else np.array([])
    which = np.searchsorted(edges, s, side="right")
    quantiles = []
    for b in range(n_bins):
        r = ratio[which == b] if (which == b).any() else ratio
        r = r / r.mean() if r.mean() > 0 else np.ones(1)
        quantiles.append([float(v) for v in np.quantile(r, GRID)])
    predicted = float(merged["expected_spend"].sum())
    actual = float(merged["spend"].sum())
    # one slice, one error: its size as the scale (E|X| = sd x sqrt(2 / pi) for a normal X)
    level_sd = abs(np.log(actual / predicted)) * np.sqrt(np.pi / 2) if predicted > 0 < actual else 0
    return SpendCalibration(
        [float(e) for e in edges], quantiles, float(level_sd), source, int(len(act))
    )


def _bins(cal: SpendCalibration, s: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(cal.edges, dtype="float64"), s, side="right")


def ratio_quantile(cal: SpendCalibration, s: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Quantile at ``level`` (per row) of the ratio R for customers with spend-if-active ``s``."""
    which = _bins(cal, s)
    out = np.empty(len(s), dtype="float64")
    for b, q in enumerate(cal.quantiles):
        rows = which == b
        out[rows] = np.interp(level[rows], GRID, np.asarray(q))
    return out


def _quantile_cdf(qs: np.ndarray, r: np.ndarray, *, left: bool) -> np.ndarray:
    """CDF of a distribution given by its quantiles ``qs`` at ``GRID``: linear between distinct
    quantiles; a value repeated over several levels is an atom, whose left and right CDF differ."""
    u, first = np.unique(qs, return_index=True)
    last = np.append(first[1:] - 1, len(qs) - 1)
    j = np.searchsorted(u, r, side="right") - 1
    jj = np.clip(j, 0, len(u) - 1)
    nxt = np.minimum(jj + 1, len(u) - 1)
    span = np.where(nxt > jj, u[nxt] - u[jj], 1.0)
    frac = np.clip((r - u[jj]) / span, 0.0, 1.0)
    between = GRID[last[jj]] + frac * (GRID[first[nxt]] - GRID[last[jj]])
    at = r == u[jj]
    value = np.where(at, GRID[first[jj]] if left else GRID[last[jj]], between)
    value = np.where((jj == len(u) - 1) & ~at, 1.0, value)
    return np.where(j < 0, 0.0, value)


def ratio_cdf(cal: SpendCalibration, s: np.ndarray, r: np.ndarray, *, left: bool) -> np.ndarray:
    """P(R <= r) (``left``: P(R < r)) per row, for customers with spend-if-active ``s``."""
    which = _bins(cal, s)
    out = np.empty(len(s), dtype="float64")
    for b, q in enumerate(cal.quantiles):
        rows = which == b
        out[rows] = _quantile_cdf(np.asarray(q), r[rows], left=left)
    return out


def spend_quantiles(
    cal: SpendCalibration, p_active: np.ndarray, spend_if_active: np.ndarray, level: float
) -> np.ndarray:
    """Quantile at ``level`` of each customer's spend in the window: 0 when the level falls in
    the mass at 0 (``level <= 1 - p``), else ``s x`` the ratio quantile at ``(level - (1 - p)) /
    p``."""
    p = np.asarray(p_active, dtype="float64")
    s = np.asarray(spend_if_active, dtype="float64")
    buys = p > 1.0 - level
    inner = np.where(buys, (level - (1.0 - p)) / np.where(p > 0, p, 1.0), 0.0)
    return np.where(buys, s * ratio_quantile(cal, s, np.clip(inner, 0.0, 1.0)), 0.0)


def spend_cdf(
    cal: SpendCalibration,
    p_active: np.ndarray,
    spend_if_active: np.ndarray,
    y: np.ndarray,
    *,
    left: bool = False,
) -> np.ndarray:
    """Predictive P(spend <= y) (``left``: P(spend < y)) per customer."""
    p = np.asarray(p_active, dtype="float64")
    s = np.asarray(spend_if_active, dtype="float64")
    y = np.asarray(y, dtype="float64")
    r = np.where(s > 0, y / np.where(s > 0, s, 1.0), np.inf)
    g = ratio_cdf(cal, s, r, left=left)
    below = (y <= 0) if left else (y < 0)
    return np.where(below, 0.0, (1.0 - p) + p * g)


def pit_coverage(
    cdf_left: np.ndarray, cdf_right: np.ndarray, lower: float = LOWER, upper: float = UPPER
) -> np.ndarray:
    """Per customer, P(lower <= U <= upper) for the randomised PIT U ~ Uniform(F(y-), F(y)),
    the calibration check for a distribution with atoms (Czado, Gneiting & Held 2009): 1 or 0
    where F is continuous at y, the share of [F(y-), F(y)] inside [lower, upper] at an atom.
    Its mean is ``upper - lower`` when the predictive distributions are right."""
    lo, hi = np.asarray(cdf_left, dtype="float64"), np.asarray(cdf_right, dtype="float64")
    width = hi - lo
    inside = np.clip(np.minimum(hi, upper) - np.maximum(lo, lower), 0.0, None)
    point = ((hi >= lower) & (hi <= upper)).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(width > 1e-12, inside / width, point)


def interval_coverage(
    cal: SpendCalibration,
    p_active: np.ndarray,
    spend_if_active: np.ndarray,
    actual: np.ndarray,
    active: np.ndarray | None = None,
) -> dict[str, float]:
    """Coverage of the 10th-90th percentile intervals against the actual spend (``active``:
    the window's ``active`` labels; default: spend > 0).

    Returns:
        ``n``; ``covered`` (share of customers whose actual spend lies in [p10, p90]) and
        ``nominal`` (its expectation under the model: the mean predicted content of the
        intervals, above 80% because of the mass at 0); ``pit`` (randomised-PIT coverage of
        the central 80%, nominal exactly 0.8); ``active_n``, ``active_covered``: among the
        active, the share inside the 10th-90th percentile of spend-if-active (nominal 0.8).
    """
    p = np.asarray(p_active, dtype="float64")
    s = np.asarray(spend_if_active, dtype="float64")
    y = np.asarray(actual, dtype="float64")
    lo = spend_quantiles(cal, p, s, LOWER)
    hi = spend_quantiles(cal, p, s, UPPER)
    content = spend_cdf(cal, p, s, hi) - spend_cdf(cal, p, s, lo, left=True)
    pit = pit_coverage(spend_cdf(cal, p, s, y, left=True), spend_cdf(cal, p, s, y))
    bought = y > 0 if active is None else np.asarray(active) == 1
    active = bought & (s > 0)
    a_lo = s[active] * ratio_quantile(cal, s[active], np.full(active.sum(), LOWER))
    a_hi = s[active] * ratio_quantile(cal, s[active], np.full(active.sum(), UPPER))
    return {
        "n": float(len(y)),
        "covered": float(np.mean((y >= lo - 1e-9) & (y <= hi + 1e-9))),
        "nominal": float(np.mean(content)),
        "pit": float(np.mean(pit)),
        "active_n": float(active.sum()),
        "active_covered": float(np.mean((y[active] >= a_lo) & (y[active] <= a_hi)))
        if active.any()
        else float("nan"),
    }


def _ratio_second_moment(cal: SpendCalibration, s: np.ndarray) -> np.ndarray:
    """E[R^2] per row (the integral of the squared quantile function over the stored grid)."""
    moments = np.array([np.trapezoid(np.asarray(q) ** 2, GRID) for q in cal.quantiles])
    return moments[_bins(cal, s)]


def total_terms(
    cal: SpendCalibration, p_active: np.ndarray, spend_if_active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, the terms whose sums over customers are the total spend's mean and
    variance (so they can be summed anywhere, e.g. per Spark partition). A blend of the
    boosters' spend with BG/NBD's P(active) can pair a vanishing P(active) with an enormous
    spend-if-active (their ratio); such customers (P(active) < ``MIN_P_ACTIVE``) are certain
    zeros: variance term 0."""
    p = np.asarray(p_active, dtype="float64")
    s = np.asarray(spend_if_active, dtype="float64")
    mean = p * s
    some = p >= MIN_P_ACTIVE
    var = np.zeros(len(p))
    var[some] = p[some] * s[some] * s[some] * _ratio_second_moment(cal, s[some]) - mean[some] ** 2
    return mean, var


def total_draws(
    cal: SpendCalibration,
    p_active: np.ndarray,
    spend_if_active: np.ndarray,
    *,
    n_draws: int = TOTAL_DRAWS,
    seed: int = 0,
) -> np.ndarray:
    """Draws of the total spend (:func:`draws_from_moments` of the sums of
    :func:`total_terms`)."""
    p = np.asarray(p_active, dtype="float64")
    mean, var = total_terms(cal, p, spend_if_active)
    some = p >= MIN_P_ACTIVE
    return draws_from_moments(
        cal, float(np.sum(mean)), float(np.sum(var[some])), n_draws=n_draws, seed=seed
    )


def draws_from_moments(
    cal: SpendCalibration, mean: float, var: float, *, n_draws: int = TOTAL_DRAWS, seed: int = 0
) -> np.ndarray:
    """Draws of the total spend: the sum over customers drawn independently from their
    predictive distributions (a gamma with the sum's exact ``mean`` and ``var``, which keeps its
    right skew), times one shared level factor (log-normal, mean 1, log-sd ``level_sd``) for
    what all customers share (season, the level of the whole window), which independent draws
    alone would miss."""
    rng = np.random.default_rng(seed)
    if mean <= 0:
        return np.zeros(n_draws)
    total = rng.gamma(mean**2 / var, var / mean, n_draws) if var > 0 else np.full(n_draws, mean)
    sd = cal.level_sd
    return total * (np.exp(rng.normal(-sd * sd / 2, sd, n_draws)) if sd > 0 else 1.0)


def total_interval(
    cal: SpendCalibration,
    p_active: np.ndarray,
    spend_if_active: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[float, float]:
    """The 10th and 90th percentiles of the total spend (:func:`total_draws`)."""
    draws = total_draws(cal, p_active, spend_if_active, seed=seed)
    return float(np.quantile(draws, LOWER)), float(np.quantile(draws, UPPER))


def total_clv_interval(
    calibration: dict | None, scores: pd.DataFrame
) -> tuple[float, float] | None:
    """The 10th and 90th percentiles of the total horizon CLV of a scores table (the total
    spend's, valued like ``clv``: margin and discount are one factor per table); None for a
    model saved without a calibration."""
    cal = SpendCalibration.from_dict(calibration)
    if cal is None:
        return None
    p = scores["p_active"].to_numpy("float64")
    mean, var = total_terms(cal, p, scores["expected_spend_if_active"].to_numpy("float64"))
    return clv_interval_from_sums(
        cal,
        float(np.sum(mean)),
        float(np.sum(var[p >= MIN_P_ACTIVE])),
        spend=float(scores["expected_spend"].sum()),
        clv=float(scores["clv"].sum()),
    )


def clv_interval_from_sums(
    cal: SpendCalibration, mean: float, var: float, *, spend: float, clv: float
) -> tuple[float, float]:
    """The total CLV interval from sums over customers: of :func:`total_terms` (``mean``,
    ``var``), of ``expected_spend`` (``spend``) and of ``clv`` (``clv``)."""
    draws = draws_from_moments(cal, mean, var)
    factor = clv / spend if spend > 0 else 1.0
    return float(np.quantile(draws, LOWER)) * factor, float(np.quantile(draws, UPPER)) * factor
