"""Classic CLV baselines: BG/NBD x Gamma-Gamma and the historical spend-rate formula.

Pure functions over numpy arrays / pandas DataFrames, fitted by maximum likelihood with
numpy + scipy.

- BG/NBD: Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative to
  the Pareto/NBD Model", Marketing Science 24(2).
- Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer
  Base Analysis", Journal of Marketing Research 42(4); Fader & Hardie (2013), "The Gamma-Gamma
  Model of Monetary Value".

BG/NBD inputs follow the usual convention: `frequency` = number of repeat purchases (purchase
days after the first one), `t_x` = time of the last purchase and `T` = end of the observation
period, both measured from the first purchase, all in one time unit of the caller's choice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from clvflow.core.cores import one_blas_thread
from clvflow.core.steptimes import timed_step

logger = logging.getLogger(__name__)

ArrayLike = np.ndarray | pd.Series | Sequence[float]

BASELINE_COLUMNS = ["customer_id", "p_active", "expected_spend"]
"""Output columns of the baseline predictors, in order."""

DAYS_PER_WEEK = 7.0

# Log-parameter box for the optimiser: parameters in [1e-6, 1e6] of the data's units.
_LOG_BOUND = np.log(1e6)
# An analytic optimum further than this factor from the first fixed start is on a flat ridge.
_FAR = 1e3


@dataclass(frozen=True)
class BgNbdParams:
    """Fitted BG/NBD parameters (`alpha` in the time unit of the data it was fitted on)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma spend parameters (`gamma` in the currency of the data)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _as_1d(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} has non-finite values at positions {bad[:5].tolist()}")
    return arr


def _first_rows(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask)[:5].tolist()


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: arr.shape[0] for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"inputs must have the same length, got {lengths}")


def _check_rft(
    frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (frequency, t_x, T) and return them as float arrays."""
    x = _as_1d(frequency, "frequency")
    tx = _as_1d(t_x, "t_x")
    t_end = _as_1d(T, "T")
    _check_same_length(frequency=x, t_x=tx, T=t_end)
    if (x < 0).any():
        raise ValueError(f"frequency must be >= 0; negative at positions {_first_rows(x < 0)}")
    if (x != np.round(x)).any():
        raise ValueError(
            f"frequency must be whole numbers; fractional at positions {_first_rows(x != np.round(x))}"
        )
    if (tx < 0).any():
        raise ValueError(f"t_x must be >= 0; negative at positions {_first_rows(tx < 0)}")
    if (tx > t_end).any():
        raise ValueError(
            f"t_x must be <= T (last purchase inside the observation period); "
            f"t_x > T at positions {_first_rows(tx > t_end)}"
        )
    return x, tx, t_end


def _check_horizon(horizon: float, name: str = "horizon") -> float:
    if not np.isfinite(horizon) or horizon <= 0:
        raise ValueError(f"{name} must be a positive number, got {horizon!r}")
    return float(horizon)


# --------------------------------------------------------------------------------------------
# Optimisation helper
# --------------------------------------------------------------------------------------------


Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
"""Negative mean log-likelihood and its gradient, both over log-parameters."""


def _fit_log_params(
    objective: Objective,
    starts: Sequence[Sequence[float]],
    what: str,
    init: Sequence[float] | None = None,
    legacy: Callable[[np.ndarray], float] | None = None,
    numerical: bool = False,
) -> np.ndarray:
    """Minimise ``objective`` over log-parameters with bounded L-BFGS-B (analytic gradient).

    With ``init`` (e.g. the previous snapshot's parameters) the fit starts there first and stops
    when that run converges within a factor ``_FAR`` of the first start; otherwise every start in
    ``starts`` runs too and the best finite optimum wins. An optimum beyond that (or on the search
    bound) is on a likelihood ridge (the data do not identify a parameter, e.g. BG/NBD's a and b
    running off together) where the stopping point is arbitrary: ``legacy`` (the same negative mean log-likelihood, value only) then redoes
    the fit as before analytic gradients (numerical gradients, every start), so that such fits,
    and what :func:`fit_btyd_checked` makes of them, stay as they were. ``numerical``: only that.

    Returns the best log-parameter vector; raises ValueError if no start reaches a finite value.
    Deterministic: the starts are fixed by the caller.
    """
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * len(starts[0])

    def run(start: Sequence[float], fun: Callable, jac: bool) -> optimize.OptimizeResult:
        x0 = np.clip(np.log(np.asarray(start, dtype=float)), -_LOG_BOUND, _LOG_BOUND)
        return optimize.minimize(
            fun,
            x0,
            jac=jac,
            method="L-BFGS-B",
            bounds=bounds,
            options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000},
        )

    def on_bound(res: optimize.OptimizeResult) -> bool:
        return bool(np.any(np.abs(res.x) >= _LOG_BOUND - 1e-6))

    reference = np.log(np.asarray(starts[0], dtype=float))

    def far_out(res: optimize.OptimizeResult) -> bool:
        """On the bound, or a parameter beyond a factor _FAR of the first fixed start: a flat
        ridge, where the stopping point is arbitrary and a warm start can stall."""
        return on_bound(res) or bool(np.any(np.abs(res.x - reference) >= np.log(_FAR)))

    def best_of(results: list[optimize.OptimizeResult]) -> optimize.OptimizeResult | None:
        finite = [res for res in results if np.isfinite(res.fun)]
        return min(finite, key=lambda res: res.fun) if finite else None

    # L-BFGS-B's BLAS calls are tiny: waking BLAS threads for them costs more than the fit.
    with one_blas_thread():
        results = []
        if numerical and legacy is not None:
            init, starts_first = None, []
        else:
            starts_first = list(starts)
        if init is not None:
            warm = run(init, objective, True)
            if warm.success and np.isfinite(warm.fun) and not far_out(warm):
                return warm.x
            results.append(warm)
        best = best_of(results + [run(start, objective, True) for start in starts_first])
        if (best is None or far_out(best)) and legacy is not None:
            best = best_of([run(start, legacy, False) for start in starts])
    if best is None:
        raise ValueError(f"{what} fit failed: no start reached a finite log-likelihood")
    if on_bound(best):
        logger.warning(
            "%s fit: a parameter reached the search bound (log-params %s); the data may not "
            "identify the model",
            what,
            np.round(best.x, 3).tolist(),
        )
    return best.x


def _collapse(
    *columns: np.ndarray, weights: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of ``columns`` (sorted) and how often each occurs, as float weights
    (with ``weights``: the sum of the rows' weights, e.g. counts of already collapsed rows).

    A log-likelihood summed over customers equals the count-weighted sum over distinct histories.
    """
    n = columns[0].size
    order = _row_order(columns)
    ordered = [c[order] for c in columns]
    first = np.ones(n, dtype=bool)
    for c in ordered:
        first[1:] &= c[1:] == c[:-1]
    first = ~first
    first[:1] = True
    starts = np.flatnonzero(first)
    if weights is not None:
        return [c[starts] for c in ordered], np.add.reduceat(weights[order], starts)
    counts = np.diff(np.append(starts, n)).astype(float)
    return [c[starts] for c in ordered], counts


def _row_order(columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """The stable lexicographic order of the rows of ``columns`` (``np.lexsort`` with the first
    column as the primary key). Columns of small non-negative whole numbers of days or weeks
    (counts, ages in weeks) are packed into one integer key first: the same order, several times
    faster to sort than lexsort's passes over float columns."""
    key = np.zeros(columns[0].size, dtype=np.int64)
    room = 2**62
    for c in columns:
        whole = _as_whole(c)
        if whole is None:
            return np.lexsort(columns[::-1])
        span = int(whole.max()) + 1
        room //= span
        if room == 0:
            return np.lexsort(columns[::-1])
        key = key * span + whole
    return np.argsort(key, kind="stable")


def _as_whole(c: np.ndarray) -> np.ndarray | None:
    """``c`` as non-negative whole numbers of its unit (1, or a day when ``c`` is in weeks), in
    the same order, ties included; None when it is not one."""
    if not c.size or not c.min() >= 0:  # (False on NaN as well)
        return None
    for per_unit in (1.0, DAYS_PER_WEEK):
        whole = np.rint(c * per_unit)
        if np.array_equal(whole / per_unit, c):  # exactly: equal wholes are equal values
            return whole.astype(np.int64)
    return None


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """Sum of a * b without BLAS (whose threads cost milliseconds per call on a busy machine)."""
    return float(np.einsum("i,i->", a, b))


def _finite(value: float, grad: np.ndarray) -> tuple[float, np.ndarray]:
    """(value, grad), or a huge value with a zero gradient where the likelihood is not finite."""
    if np.isfinite(value) and np.isfinite(grad).all():
        return float(value), grad
    return 1e300, np.zeros_like(grad)


# --------------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------------


def _bgnbd_log_lik(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6), stable via log-sum-exp."""
    log_a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    log_a2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    log_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    log_a4 = np.full_like(x, -np.inf)
    # b + x - 1 > 0 whenever x >= 1, so the log is defined on the masked rows.
    log_a4[repeat] = (
        np.log(a) - np.log(b + x[repeat] - 1.0) - (r + x[repeat]) * np.log(alpha + t_x[repeat])
    )
    return log_a1 + log_a2 + np.logaddexp(log_a3, log_a4)


def _bgnbd_objective(
    x: np.ndarray, t_x: np.ndarray, T: np.ndarray, counts: np.ndarray | None = None
) -> tuple[Objective, int]:
    """Negative mean BG/NBD log-likelihood (eq. 6) with its analytic gradient over
    (log r, log alpha, log a, log b), and the number of distinct histories it sums over.

    Customers are collapsed to distinct (x, t_x, T) histories with counts (one-time buyers to
    distinct T); terms of x, t_x or T alone are computed once per distinct value. One-time
    buyers contribute r log(alpha) - r log(alpha + T) (their gamma-function terms cancel).
    ``counts``: how many customers each row stands for (default 1 each).
    """
    n = float(x.size) if counts is None else float(counts.sum())
    once = x == 0
    w_once, w_rep = (None, None) if counts is None else (counts[once], counts[~once])
    (T0,), w0 = _collapse(T[once], weights=w_once)
    (xr, txr, Tr), wr = _collapse(x[~once], t_x[~once], T[~once], weights=w_rep)
    ux, ix = np.unique(xr, return_inverse=True)
    uT, iT = np.unique(Tr, return_inverse=True)
    utx, itx = np.unique(txr, return_inverse=True)
    wx = np.bincount(ix, weights=wr, minlength=ux.size)
    n_rep = float(wr.sum())

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(log_params)
        with np.errstate(all="ignore"):
            log_T0 = np.log(alpha + T0)
            log_T = np.log(alpha + uT)[iT]
            log_tx = np.log(alpha + utx)[itx]
            inv_bx = 1.0 / (b + ux - 1.0)
            rx = r + xr
            a3 = -rx * log_T
            a4 = np.log(a) + np.log(inv_bx)[ix] - rx * log_tx
            top = np.logaddexp(a3, a4)
            w4 = np.exp(a4 - top)  # weight of the "dropped out after t_x" branch
            w3 = 1.0 - w4
            dig_ab, dig_abx = special.digamma(a + b), special.digamma(a + b + ux)
            ll = (
                n * r * np.log(alpha)
                - r * _dot(w0, log_T0)
                + n_rep * (special.gammaln(a + b) - special.gammaln(b) - special.gammaln(r))
                + _dot(wx, special.gammaln(r + ux) + special.gammaln(b + ux))
                - _dot(wx, special.gammaln(a + b + ux))
                + _dot(wr, top)
            )
            dr = (
                n * np.log(alpha)
                - _dot(w0, log_T0)
                - n_rep * special.digamma(r)
                + _dot(wx, special.digamma(r + ux))
                - _dot(wr, w3 * log_T + w4 * log_tx)
            )
            dalpha = (
                n * r / alpha
                - r * _dot(w0, 1.0 / (alpha + T0))
                - _dot(wr * rx, w3 / (alpha + uT)[iT] + w4 / (alpha + utx)[itx])
            )
            da = n_rep * dig_ab - _dot(wx, dig_abx) + _dot(wr, w4) / a
            db = (
                n_rep * (dig_ab - special.digamma(b))
                + _dot(wx, special.digamma(b + ux) - dig_abx)
                - _dot(wr * w4, inv_bx[ix])
            )
            grad = -np.array([dr * r, dalpha * alpha, da * a, db * b]) / n
        return _finite(-ll / n, grad)

    return objective, T0.size + xr.size


def fit_bgnbd(
    frequency: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    init: BgNbdParams | None = None,
    *,
    numerical: bool = False,
    counts: ArrayLike | None = None,
) -> BgNbdParams:
    """Fit BG/NBD by maximum likelihood.

    Args:
        frequency: repeat purchases per customer (whole numbers >= 0).
        t_x: time of the last purchase since the first one (0 if frequency is 0).
        T: length of the observation period since the first purchase (>= t_x).
            `t_x` and `T` share one time unit (e.g. weeks); `alpha` comes out in that unit.
        init: a warm start (e.g. the previous snapshot's fit, same time unit); the fixed starts
            run only when the fit from it does not converge.
        numerical: fit as clvflow did before analytic gradients (numerical gradients, every
            start, per customer): the reference of `make bench-btyd`.
        counts: customers per row, when the rows are distinct histories already collapsed
            (e.g. by a Spark groupBy): the fit equals the one on the customers themselves.

    Returns:
        BgNbdParams with r, alpha, a, b and the total log-likelihood at the optimum.

    Raises:
        ValueError: on invalid input, or when no customer has a repeat purchase (the dropout
            process is then not identified).
    """
    x, tx, t_end = _check_rft(frequency, t_x, T)
    w = _check_counts(counts, x.size)
    if x.size == 0:
        raise ValueError("cannot fit BG/NBD on zero customers")
    if not (x > 0).any():
        raise ValueError("cannot fit BG/NBD: no customer has a repeat purchase (frequency > 0)")
    if numerical and w is not None:
        raise ValueError("numerical=True fits per customer: give the customers, not counts")
    objective, n_rows = _bgnbd_objective(x, tx, t_end, w)
    n = x.size if w is None else float(w.sum())
    logger.debug("BG/NBD fit: %d customers, %d distinct histories", n, n_rows)
    # alpha carries the time unit: scale its starts by the mean observation period.
    mean_T = float(t_end.mean()) if w is None else float(np.average(t_end, weights=w))
    scale = mean_T if mean_T > 0 else 1.0
    starts = [
        (1.0, scale, 1.0, 1.0),
        (0.5, 0.1 * scale, 0.5, 2.0),
        (2.0, 2.0 * scale, 2.0, 5.0),
    ]
    warm = None if init is None else (init.r, init.alpha, init.a, init.b)

    def legacy(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        per_row = _bgnbd_log_lik(r, alpha, a, b, x, tx, t_end)
        value = -(per_row if w is None else per_row * w).sum() / n
        return float(value) if np.isfinite(value) else 1e300

    log_params = _fit_log_params(objective, starts, "BG/NBD", warm, legacy, numerical)
    r, alpha, a, b = np.exp(log_params)
    ll = -objective(log_params)[0] * n
    logger.info("BG/NBD fit: r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.2f", r, alpha, a, b, ll)
    return BgNbdParams(float(r), float(alpha), float(a), float(b), ll)


def _odds_dead(params: BgNbdParams, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x) for repeat customers, 0 otherwise."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    odds = np.zeros_like(x)
    rep = x > 0
    log_odds = (
        np.log(a)
        - np.log(b + x[rep] - 1.0)
        + (r + x[rep]) * (np.log(alpha + T[rep]) - np.log(alpha + t_x[rep]))
    )
    odds[rep] = np.exp(np.minimum(log_odds, 700.0))
    return odds


def bgnbd_prob_alive(
    params: BgNbdParams, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """P(customer still alive at T | history) under BG/NBD (FHL 2005, eq. 13).

    Args:
        params: fitted BG/NBD parameters (time unit of `t_x`, `T` must match the fit).
        frequency, t_x, T: customer histories as in `fit_bgnbd`.

    Returns:
        Array of probabilities in (0, 1]; exactly 1 for customers with frequency 0.

    Raises:
        ValueError: on invalid input.
    """
    x, tx, t_end = _check_rft(frequency, t_x, T)
    return 1.0 / (1.0 + _odds_dead(params, x, tx, t_end))


def bgnbd_expected_purchases(
    params: BgNbdParams, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike, horizon: float
) -> np.ndarray:
    """Conditional expected number of purchases in (T, T + horizon] (FHL 2005, eq. 10).

    Args:
        params: fitted BG/NBD parameters.
        frequency, t_x, T: customer histories as in `fit_bgnbd`.
        horizon: window length (> 0), same time unit as `T`.

    Returns:
        Array of expected purchase counts (>= 0).

    Raises:
        ValueError: on invalid input or a non-positive horizon.
    """
    x, tx, t_end = _check_rft(frequency, t_x, T)
    horizon = _check_horizon(horizon)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + t_end + horizon)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    decay = np.exp((r + x) * (np.log(alpha + t_end) - np.log(alpha + t_end + horizon)))
    numerator = (a + b + x - 1.0) / (a - 1.0) * (1.0 - decay * hyp)
    expected = numerator / (1.0 + _odds_dead(params, x, tx, t_end))
    bad = ~np.isfinite(expected)
    if bad.any():
        raise ValueError(
            f"BG/NBD expected purchases are not finite at positions {_first_rows(bad)} "
            f"(params {params}); hyp2f1 failed for these histories"
        )
    return np.maximum(expected, 0.0)


def bgnbd_prob_active(
    params: BgNbdParams, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike, horizon: float
) -> np.ndarray:
    """P(at least one purchase in (T, T + horizon] | history) under BG/NBD.

    Dropout happens only right after a purchase, so a customer alive at T who makes no purchase
    in the window stays alive through it; given alive, lambda ~ Gamma(r + x, alpha + T). Hence
    P(no purchase) = 1 - P(alive) + P(alive) * ((alpha + T) / (alpha + T + horizon))^(r + x).

    Args:
        params: fitted BG/NBD parameters.
        frequency, t_x, T: customer histories as in `fit_bgnbd`.
        horizon: window length (> 0), same time unit as `T`.

    Returns:
        Array of probabilities in [0, 1).

    Raises:
        ValueError: on invalid input or a non-positive horizon.
    """
    x, tx, t_end = _check_rft(frequency, t_x, T)
    horizon = _check_horizon(horizon)
    p_alive = 1.0 / (1.0 + _odds_dead(params, x, tx, t_end))
    log_ratio = np.log(params.alpha + t_end) - np.log(params.alpha + t_end + horizon)
    # 1 - ratio^(r+x), computed without cancellation for short windows.
    p_buy_if_alive = -np.expm1((params.r + x) * log_ratio)
    return p_alive * p_buy_if_alive


# --------------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------------


def _check_counts(counts: ArrayLike | None, n_rows: int) -> np.ndarray | None:
    """Customers per row as floats (whole numbers >= 1), or None."""
    if counts is None:
        return None
    w = _as_1d(counts, "counts")
    if w.size != n_rows:
        raise ValueError(f"counts has {w.size} values for {n_rows} rows")
    bad = (w < 1) | (w != np.round(w))
    if bad.any():
        raise ValueError(f"counts must be whole numbers >= 1; not at positions {_first_rows(bad)}")
    return w


def _check_spend(frequency: ArrayLike, monetary: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = _as_1d(frequency, "frequency")
    m = _as_1d(monetary, "monetary")
    _check_same_length(frequency=x, monetary=m)
    if (x < 0).any():
        raise ValueError(f"frequency must be >= 0; negative at positions {_first_rows(x < 0)}")
    return x, m


def _gamma_gamma_log_lik(
    p: float, q: float, gamma: float, x: np.ndarray, m: np.ndarray
) -> np.ndarray:
    """Per-customer log-density of the mean spend m over x transactions (Fader & Hardie 2013)."""
    return (
        special.gammaln(p * x + q)
        - special.gammaln(p * x)
        - special.gammaln(q)
        + q * np.log(gamma)
        + (p * x - 1.0) * np.log(m)
        + p * x * np.log(x)
        - (p * x + q) * np.log(gamma + x * m)
    )


def _gamma_gamma_objective(
    x: np.ndarray, m: np.ndarray, counts: np.ndarray | None = None
) -> Objective:
    """Negative mean Gamma-Gamma log-likelihood with its analytic gradient over
    (log p, log q, log gamma), summed over distinct (x, m) with counts.

    Only -(p x + q) log(gamma + x m) needs a pass over the rows per evaluation: the terms in
    log m and log x are linear in p (sums precomputed), the gamma functions depend on x alone.
    """
    n = float(x.size) if counts is None else float(counts.sum())
    (xs, ms), w = _collapse(x, m, weights=counts)
    ux, ix = np.unique(xs, return_inverse=True)
    wx = np.bincount(ix, weights=w, minlength=ux.size)
    total = xs * ms
    wx_total = w * xs
    sum_log_m = _dot(w, np.log(ms))
    sum_x_log_mx = _dot(w * xs, np.log(ms) + np.log(xs))

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        p, q, gamma = np.exp(log_params)
        with np.errstate(all="ignore"):
            log_gt = np.log(gamma + total)
            px = p * ux
            ll = (
                _dot(wx, special.gammaln(px + q) - special.gammaln(px))
                + n * (q * np.log(gamma) - special.gammaln(q))
                + p * sum_x_log_mx
                - sum_log_m
                - p * _dot(wx_total, log_gt)
                - q * _dot(w, log_gt)
            )
            dig = special.digamma(px + q)
            dp = _dot(wx * ux, dig - special.digamma(px)) + sum_x_log_mx - _dot(wx_total, log_gt)
            dq = _dot(wx, dig) - n * special.digamma(q) + n * np.log(gamma) - _dot(w, log_gt)
            dgamma = n * q / gamma - _dot(p * wx_total + q * w, 1.0 / (gamma + total))
            grad = -np.array([dp * p, dq * q, dgamma * gamma]) / n
        return _finite(-ll / n, grad)

    return objective


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary: ArrayLike,
    init: GammaGammaParams | None = None,
    *,
    numerical: bool = False,
    counts: ArrayLike | None = None,
) -> GammaGammaParams:
    """Fit the Gamma-Gamma spend model by maximum likelihood on customers with frequency > 0.

    Args:
        frequency: repeat purchases per customer (rows with 0 are ignored).
        monetary: mean spend per repeat purchase (currency units); must be > 0 where
            frequency > 0.
        init: a warm start (e.g. the previous snapshot's fit); the fixed starts run only when
            the fit from it does not converge.
        numerical: fit as before analytic gradients (see :func:`fit_bgnbd`).
        counts: customers per row for collapsed rows (see :func:`fit_bgnbd`).

    Returns:
        GammaGammaParams with p, q, gamma and the log-likelihood over the repeat customers.

    Raises:
        ValueError: on mismatched lengths, negative frequency, non-positive monetary value of a
            repeat customer, or when there is no repeat customer.
    """
    x, m = _check_spend(frequency, monetary)
    w = _check_counts(counts, x.size)
    if numerical and w is not None:
        raise ValueError("numerical=True fits per customer: give the customers, not counts")
    repeat = x > 0
    if not repeat.any():
        raise ValueError(
            "cannot fit Gamma-Gamma: no customer has a repeat purchase (frequency > 0)"
        )
    bad = repeat & (m <= 0)
    if bad.any():
        raise ValueError(
            f"monetary must be > 0 for customers with frequency > 0; found {int(bad.sum())} "
            f"at positions {_first_rows(bad)}; drop or floor them before fitting"
        )
    x, m = x[repeat], m[repeat]
    w = None if w is None else w[repeat]
    objective = _gamma_gamma_objective(x, m, w)
    # gamma carries the currency unit: scale its starts by the mean spend.
    scale = float(m.mean()) if w is None else float(np.average(m, weights=w))
    starts = [(1.0, 1.0, scale), (5.0, 3.0, 0.5 * scale), (2.0, 5.0, 2.0 * scale)]
    warm = None if init is None else (init.p, init.q, init.gamma)
    n = x.size if w is None else float(w.sum())

    def legacy(log_params: np.ndarray) -> float:
        p, q, gamma = np.exp(log_params)
        per_row = _gamma_gamma_log_lik(p, q, gamma, x, m)
        value = -(per_row if w is None else per_row * w).sum() / n
        return float(value) if np.isfinite(value) else 1e300

    log_params = _fit_log_params(objective, starts, "Gamma-Gamma", warm, legacy, numerical)
    p, q, gamma = np.exp(log_params)
    ll = -objective(log_params)[0] * n
    if q <= 1.0:
        logger.warning("Gamma-Gamma fit: q=%.4f <= 1, the population mean spend is infinite", q)
    logger.info("Gamma-Gamma fit: p=%.4f q=%.4f gamma=%.4f LL=%.2f", p, q, gamma, ll)
    return GammaGammaParams(float(p), float(q), float(gamma), ll)


def gamma_gamma_expected_spend(
    params: GammaGammaParams, frequency: ArrayLike, monetary: ArrayLike
) -> np.ndarray:
    """Conditional expected mean spend per transaction: (p(gamma + x m)) / (p x + q - 1).

    Args:
        params: fitted Gamma-Gamma parameters (q > 1).
        frequency: repeat purchases per customer (>= 0).
        monetary: observed mean spend per repeat purchase (ignored where frequency is 0).

    Returns:
        Array of expected spend per transaction; the population mean p*gamma/(q-1) for
        customers with frequency 0.

    Raises:
        ValueError: on invalid input, or q <= 1 (infinite population mean).
    """
    x, m = _check_spend(frequency, monetary)
    p, q, gamma = params.p, params.q, params.gamma
    if q <= 1.0:
        raise ValueError(f"Gamma-Gamma q must be > 1 for a finite expected spend, got q={q}")
    m = np.where(x > 0, m, 0.0)
    return p * (gamma + x * m) / (p * x + q - 1.0)


# --------------------------------------------------------------------------------------------
# Baseline predictors over a feature table
# --------------------------------------------------------------------------------------------

_FEATURE_COLUMNS = [
    "customer_id",
    "n_purchase_days",
    "frequency",
    "t_x_days",
    "T_days",
    "mean_repeat_spend",
    "total_spend",
]


def _check_features(features: pd.DataFrame, horizon_days: int) -> None:
    missing = [c for c in _FEATURE_COLUMNS if c not in features.columns]
    if missing:
        raise ValueError(
            f"feature table lacks columns {missing}; build it with clvflow.features.build.build_features"
        )
    _check_horizon(horizon_days, "horizon_days")


@dataclass(frozen=True)
class BtydFit:
    """BG/NBD (time unit: weeks) and Gamma-Gamma parameters fitted on one feature table."""

    bgnbd: BgNbdParams
    gamma_gamma: GammaGammaParams


#: Columns added by :func:`btyd_predictions` (model features and the baseline's outputs).
BTYD_PREDICTION_COLUMNS = [
    "bg_p_alive",
    "bg_expected_purchases",
    "bg_p_active",
    "gg_expected_spend",
    "bg_expected_spend",
]


@timed_step("btyd fits")
def fit_btyd(features: pd.DataFrame, init: BtydFit | None = None) -> BtydFit:
    """Fit BG/NBD (weeks: t_x_days/7, T_days/7) on every customer with a purchase day and
    Gamma-Gamma on the repeat customers with positive `mean_repeat_spend`.

    Args:
        features: table from `clvflow.features.build.build_features` (history before its as_of only).
        init: warm start, e.g. the fit on the previous snapshot (see :func:`fit_bgnbd`).

    Raises:
        ValueError: on missing columns or data the models cannot be fitted on.
    """
    _check_features(features, 1)
    buyers = features["n_purchase_days"].to_numpy(dtype=float) > 0
    sub = features.loc[buyers]
    x = sub["frequency"].to_numpy(dtype=float)
    monetary = sub["mean_repeat_spend"].to_numpy(dtype=float)
    bg = fit_bgnbd(
        x,
        sub["t_x_days"].to_numpy(dtype=float) / DAYS_PER_WEEK,
        sub["T_days"].to_numpy(dtype=float) / DAYS_PER_WEEK,
        None if init is None else init.bgnbd,
    )
    fit_rows = (x > 0) & (monetary > 0)
    if (x > 0).sum() > fit_rows.sum():
        logger.info(
            "Gamma-Gamma fit skips %d repeat customers with non-positive mean spend",
            int((x > 0).sum() - fit_rows.sum()),
        )
    gg_init = None if init is None else init.gamma_gamma
    return BtydFit(bg, fit_gamma_gamma(x[fit_rows], monetary[fit_rows], gg_init))


#: Fewer repeat buyers than this and BG/NBD's dropout and Gamma-Gamma's spread are not identified.
MIN_REPEAT_BUYERS = 20


#: A BTYD fit of the same population by another route (e.g. Spark on every customer when
#: ``features`` are a sample's), given the warm start.
BtydFitter = Callable[[BtydFit | None], BtydFit]


def fit_btyd_checked(
    features: pd.DataFrame,
    horizon_days: int,
    init: BtydFit | None = None,
    fitter: BtydFitter | None = None,
) -> tuple[BtydFit | None, str]:
    """:func:`fit_btyd` (warm-started from ``init`` if given), judged usable for
    ``horizon_days`` predictions, or None and why not. ``fitter``: fits instead of
    :func:`fit_btyd` on ``features`` (which still serve the checks).

    A fit is degenerate when there are fewer than ``MIN_REPEAT_BUYERS`` repeat buyers, a fit
    fails, a parameter sits on the optimiser's bound (the data do not identify it), Gamma-Gamma's
    q <= 1 (infinite mean spend) or a prediction is not finite (e.g. BG/NBD's hyp2f1 fails when
    r and alpha run off together on a few days of history). Callers fall back instead of crashing.

    Returns:
        (fit, "") or (None, reason).
    """
    _check_features(features, horizon_days)
    buyers = features.loc[features["n_purchase_days"].to_numpy(dtype=float) > 0]
    repeat = buyers["frequency"].to_numpy(dtype=float) > 0
    monetary = buyers["mean_repeat_spend"].to_numpy(dtype=float)
    n_repeat = int((repeat & (monetary > 0)).sum())
    if n_repeat < MIN_REPEAT_BUYERS:
        return None, f"{n_repeat} repeat buyers (BG/NBD and Gamma-Gamma need {MIN_REPEAT_BUYERS})"
    try:
        fit = fit_btyd(features, init) if fitter is None else fitter(init)
    except ValueError as err:
        return None, str(err)
    logs = np.log([fit.bgnbd.r, fit.bgnbd.alpha, fit.bgnbd.a, fit.bgnbd.b])
    logs = np.append(logs, np.log([fit.gamma_gamma.p, fit.gamma_gamma.q, fit.gamma_gamma.gamma]))
    if np.any(np.abs(logs) >= _LOG_BOUND - 1e-3):
        return None, f"a parameter ran off to the search bound ({fit})"
    if fit.gamma_gamma.q <= 1.0:
        return None, f"Gamma-Gamma q={fit.gamma_gamma.q:.3f} <= 1 (infinite mean spend)"
    try:
        with np.errstate(all="ignore"):
            pred = btyd_predictions(fit, buyers, horizon_days)
    except ValueError as err:
        return None, str(err)
    if not np.isfinite(pred.to_numpy()).all():
        return None, f"non-finite predictions ({fit})"
    return fit, ""


@timed_step("btyd predictions")
def btyd_predictions(fit: BtydFit, features: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """BTYD predictions for the window [as_of, as_of + horizon_days) of each customer.

    Columns (rows as in `features`): `bg_p_alive`, `bg_expected_purchases` (purchase days),
    `bg_p_active` (P(at least one purchase)), `gg_expected_spend` (per purchase) and
    `bg_expected_spend` = expected purchases x expected spend per purchase. Customers without a
    purchase day (e.g. returns only) get 0 everywhere.
    """
    _check_features(features, horizon_days)
    buyers = features["n_purchase_days"].to_numpy(dtype=float) > 0
    sub = features.loc[buyers]
    x = sub["frequency"].to_numpy(dtype=float)
    t_x_weeks = sub["t_x_days"].to_numpy(dtype=float) / DAYS_PER_WEEK
    T_weeks = sub["T_days"].to_numpy(dtype=float) / DAYS_PER_WEEK
    horizon_weeks = horizon_days / DAYS_PER_WEEK
    monetary = np.maximum(sub["mean_repeat_spend"].to_numpy(dtype=float), 0.0)
    out = pd.DataFrame(0.0, index=features.index, columns=BTYD_PREDICTION_COLUMNS)
    purchases = bgnbd_expected_purchases(fit.bgnbd, x, t_x_weeks, T_weeks, horizon_weeks)
    spend = gamma_gamma_expected_spend(fit.gamma_gamma, x, monetary)
    out.loc[buyers, "bg_p_alive"] = bgnbd_prob_alive(fit.bgnbd, x, t_x_weeks, T_weeks)
    out.loc[buyers, "bg_expected_purchases"] = purchases
    out.loc[buyers, "bg_p_active"] = bgnbd_prob_active(
        fit.bgnbd, x, t_x_weeks, T_weeks, horizon_weeks
    )
    out.loc[buyers, "gg_expected_spend"] = spend
    out.loc[buyers, "bg_expected_spend"] = purchases * spend
    return out


def bgnbd_gamma_gamma_baseline(
    features: pd.DataFrame, horizon_days: int, fit: BtydFit | None = None
) -> pd.DataFrame:
    """BG/NBD x Gamma-Gamma predictions for the window [as_of, as_of + horizon_days).

    Both models are fitted on this same feature table (history before its as_of only, see
    :func:`fit_btyd`); p_active = P(at least one purchase in the window) and expected_spend =
    expected purchases in the window x expected spend per purchase. Customers without a purchase
    day (e.g. returns only) get p_active = expected_spend = 0.

    Args:
        features: table from `clvflow.features.build.build_features` (one row per customer).
        horizon_days: window length in days (> 0).
        fit: a usable fit already made on this same table (e.g. the model's own, see
            :func:`fit_btyd_checked`), used as is; None: fit here.

    Returns:
        DataFrame with columns customer_id, p_active, expected_spend (rows as in `features`).

    Raises:
        ValueError: on missing columns, a bad horizon, or data the models cannot be fitted on
            (including a degenerate fit, see :func:`fit_btyd_checked`).
    """
    _check_features(features, horizon_days)
    why = ""
    if fit is None:
        fit, why = fit_btyd_checked(features, horizon_days)
    if fit is None:
        raise ValueError(f"BG/NBD x Gamma-Gamma cannot be fitted on these data: {why}")
    pred = btyd_predictions(fit, features, horizon_days)
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "p_active": pred["bg_p_active"].to_numpy(),
            "expected_spend": pred["bg_expected_spend"].to_numpy(),
        }
    )


def historical_baseline(features: pd.DataFrame, horizon_days: int) -> pd.DataFrame:
    """Textbook "average order value x purchase frequency x lifespan" baseline.

    With observed_days = max(T_days + 1, 1) (days from the first purchase day through
    as_of - 1, both included):
        expected_spend = max(total_spend, 0) / observed_days * horizon_days
        p_active = 1 - exp(-n_purchase_days / observed_days * horizon_days)
    i.e. the historical spend rate and purchase-day rate per day, projected over the window
    and (for p_active) treated as a Poisson rate. Customers without a purchase day get 0.

    Args:
        features: table from `clvflow.features.build.build_features` (one row per customer).
        horizon_days: window length in days (> 0).

    Returns:
        DataFrame with columns customer_id, p_active, expected_spend (rows as in `features`).

    Raises:
        ValueError: on missing columns or a bad horizon.
    """
    _check_features(features, horizon_days)
    t_days = features["T_days"].to_numpy(dtype=float)
    observed_days = np.maximum(np.nan_to_num(t_days, nan=0.0) + 1.0, 1.0)
    n_days = np.nan_to_num(features["n_purchase_days"].to_numpy(dtype=float), nan=0.0)
    total = np.nan_to_num(features["total_spend"].to_numpy(dtype=float), nan=0.0)
    expected_spend = np.maximum(total, 0.0) / observed_days * horizon_days
    p_active = -np.expm1(-n_days / observed_days * horizon_days)
    return pd.DataFrame(
        {
            "customer_id": features["customer_id"].to_numpy(),
            "p_active": p_active,
            "expected_spend": expected_spend,
        }
    )
