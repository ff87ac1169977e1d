"""Long-run value: MBG/NBD's P(alive) and discounted expected residual transactions (DERT).

Why a second purchase-count model: BG/NBD (the model's base, :mod:`clvflow.models.btyd`) lets a
customer drop out only right after a *repeat* purchase, so a one-time buyer is alive with
probability 1 however long ago the purchase was (half of CDNOW's customers). MBG/NBD (Batislam,
Denizel & Filiztekin 2007, "Empirical validation and comparison of models for customer base
analysis", IJRM 24(3)) is the same story with one more dropout chance, right after the first
purchase; its P(alive) falls with the time since the last purchase for everyone:

    P(alive | x, t_x, T) = 1 / (1 + a / (b + x) * ((alpha + T) / (alpha + t_x)) ** (r + x))

(x repeat purchases, t_x the last and T the end of the history, in weeks from the first one).
Its per-customer likelihood is B(a, b + x + 1) / B(a, b) * Gamma(r + x) alpha^r / Gamma(r) *
[(alpha + T)^-(r + x) + a / (b + x) (alpha + t_x)^-(r + x)], fitted by maximum likelihood on the
same history as BG/NBD (at the training cutoff), warm-started from BG/NBD's parameters.

DERT (Fader, Hardie & Lee 2005, "RFM and CLV", JMR 42(4), for Pareto/NBD; derived here for
MBG/NBD): the expected number of future purchases, each discounted continuously at
delta = ln(1 + annual rate) per year to the scoring date. A customer alive with purchase rate
lambda and dropout probability p makes a k-th future purchase if still there after k - 1 dropout
chances ((1 - p)^(k-1)) at a time that is a sum of k exponential gaps (E[e^(-delta tau_k)] =
u^k, u = lambda / (lambda + delta)), so E[sum_k e^(-delta tau_k)] = sum_k (1 - p)^(k-1) u^k.
Given alive, lambda ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x + 1), independent;
averaging over p gives u 2F1(1, b + x + 1; a + b + x + 1; u) (Gauss' hypergeometric function),
averaged over lambda numerically (trapezoid rule in log lambda, exact Gamma weights). So

    DERT = P(alive) * E_lambda[u 2F1(1, b + x + 1; a + b + x + 1; u)],

finite for every discount rate > 0 and no cap: without discounting it would be
P(alive) (a + b + x) / (a - 1), infinite when a <= 1 (CDNOW's a is below 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from clvflow.models.btyd import (
    _LOG_BOUND,
    DAYS_PER_WEEK,
    MIN_REPEAT_BUYERS,
    ArrayLike,
    BgNbdParams,
    Objective,
    _check_rft,
    _collapse,
    _dot,
    _finite,
    _fit_log_params,
)

logger = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.25  # (as clvflow.scoring.value's: models do not import scoring)

#: Yearly discount rate of lifetime value when none is given (a lifetime needs one: see above).
DEFAULT_LIFETIME_DISCOUNT_RATE = 0.10
#: The lifetime value formula in one line (logged to MLflow with each trained model).
LIFETIME_FORMULA = (
    "clv_lifetime = margin x DERT x spend per purchase; DERT = MBG/NBD P(alive) x "
    "E[u 2F1(1, b+x+1; a+b+x+1; u)], u = lambda / (lambda + ln(1 + lifetime_discount_rate) / "
    "year), lambda ~ Gamma(r+x, alpha+T); spend per purchase = E[spend | active in the window] / "
    "BG/NBD E[purchase days | active in the window]"
)

# Quadrature in y = log(lambda (alpha + T)): points per customer group and the step of the
# table of u 2F1(...) interpolated in log(lambda / delta).
_N_NODES = 600
_TABLE_STEP = 0.01


@dataclass(frozen=True)
class MbgNbdParams:
    """Fitted MBG/NBD parameters (``alpha`` in weeks, as BG/NBD's in :class:`BtydFit`)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


def lifetime_discount_rate(annual_discount_rate: float) -> float:
    """The yearly rate lifetime value is discounted at: the given one, or 10% when it is 0."""
    return annual_discount_rate if annual_discount_rate > 0 else DEFAULT_LIFETIME_DISCOUNT_RATE


def _mbgnbd_objective(x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> Objective:
    """Negative mean MBG/NBD log-likelihood and its gradient over (log r, log alpha, log a,
    log b), summed over distinct (x, t_x, T) histories with counts."""
    n = float(x.size)
    (xs, txs, Ts), w = _collapse(x, t_x, T)
    ux, ix = np.unique(xs, return_inverse=True)
    wx = np.bincount(ix, weights=w, minlength=ux.size)

    def objective(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        r, alpha, a, b = np.exp(log_params)
        with np.errstate(all="ignore"):
            log_T = np.log(alpha + Ts)
            log_tx = np.log(alpha + txs)
            rx = r + xs
            bx = b + ux
            a3 = -rx * log_T
            a4 = np.log(a) - np.log(bx)[ix] - rx * log_tx
            top = np.logaddexp(a3, a4)
            w4 = np.exp(a4 - top)  # weight of "dropped out right after the last purchase"
            w3 = 1.0 - w4
            dig_ab = special.digamma(a + b)
            dig_abx = special.digamma(a + bx + 1.0)
            ll = (
                n * (r * np.log(alpha) - special.gammaln(r))
                + n * (special.gammaln(a + b) - special.gammaln(b))
                + _dot(wx, special.gammaln(r + ux) + special.gammaln(bx + 1.0))
                - _dot(wx, special.gammaln(a + bx + 1.0))
                + _dot(w, top)
            )
            dr = (
                n * (np.log(alpha) - special.digamma(r))
                + _dot(wx, special.digamma(r + ux))
                - _dot(w, w3 * log_T + w4 * log_tx)
            )
            dalpha = n * r / alpha - _dot(w * rx, w3 / (alpha + Ts) + w4 / (alpha + txs))
            da = n * dig_ab - _dot(wx, dig_abx) + _dot(w, w4) / a
            db = (
                n * (dig_ab - special.digamma(b))
                + _dot(wx, special.digamma(bx + 1.0) - dig_abx)
                - _dot(w * w4, 1.0 / bx[ix])
            )
            grad = -np.array([dr * r, dalpha * alpha, da * a, db * b]) / n
        return _finite(-ll / n, grad)

    return objective


def fit_mbgnbd(
    frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike, init: BgNbdParams | None = None
) -> MbgNbdParams:
    """Fit MBG/NBD by maximum likelihood (inputs as :func:`clvflow.models.btyd.fit_bgnbd`).

    Raises:
        ValueError: invalid input, no customer, or no repeat purchase.
    """
    x, tx, t_end = _check_rft(frequency, t_x, T)
    if x.size == 0 or not (x > 0).any():
        raise ValueError("cannot fit MBG/NBD: no customer with a repeat purchase")
    objective = _mbgnbd_objective(x, tx, t_end)
    scale = float(t_end.mean()) if t_end.mean() > 0 else 1.0
    starts = [(1.0, scale, 1.0, 1.0), (0.5, 0.1 * scale, 0.5, 2.0), (2.0, 2.0 * scale, 2.0, 5.0)]
    warm = None if init is None else (init.r, init.alpha, init.a, init.b)

    def value(log_params: np.ndarray) -> float:
        return objective(log_params)[0]

    log_params = _fit_log_params(objective, starts, "MBG/NBD", warm, value)
    r, alpha, a, b = np.exp(log_params)
    ll = -objective(log_params)[0] * x.size
    logger.info("MBG/NBD fit: r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.2f", r, alpha, a, b, ll)
    return MbgNbdParams(float(r), float(alpha), float(a), float(b), float(ll))


def _histories(features: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """(buyers mask, x, t_x weeks, T weeks) of a feature table."""
    buyers = features["n_purchase_days"].to_numpy(dtype="float64") > 0
    sub = features.loc[buyers]
    return (
        buyers,
        sub["frequency"].to_numpy(dtype="float64"),
        sub["t_x_days"].to_numpy(dtype="float64") / DAYS_PER_WEEK,
        sub["T_days"].to_numpy(dtype="float64") / DAYS_PER_WEEK,
    )


def fit_long_run(
    features: pd.DataFrame, init: BgNbdParams | None = None
) -> tuple[MbgNbdParams | None, str]:
    """MBG/NBD fitted on a feature table's buyers (history before its as_of), or None and why
    it is unusable (too few repeat buyers, a failed fit, a parameter on the search bound)."""
    buyers, x, t_x, T = _histories(features)
    n_repeat = int((x > 0).sum())
    if n_repeat < MIN_REPEAT_BUYERS:
        return None, f"{n_repeat} repeat buyers (MBG/NBD needs {MIN_REPEAT_BUYERS})"
    try:
        fit = fit_mbgnbd(x, t_x, T, init)
    except ValueError as err:
        return None, str(err)
    logs = np.log([fit.r, fit.alpha, fit.a, fit.b])
    if np.any(np.abs(logs) >= _LOG_BOUND - 1e-3):
        return None, f"a parameter ran off to the search bound ({fit})"
    return fit, ""


def mbgnbd_prob_alive(
    params: MbgNbdParams, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> np.ndarray:
    """MBG/NBD P(alive at T | history): below 1 for one-time buyers too (module docstring)."""
    x, tx, t_end = _check_rft(frequency, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds = np.log(a) - np.log(b + x) + (r + x) * (np.log(alpha + t_end) - np.log(alpha + tx))
    return 1.0 / (1.0 + np.exp(np.minimum(log_odds, 700.0)))


def mbgnbd_expected_purchases(
    params: MbgNbdParams, frequency: ArrayLike, t_x: ArrayLike, T: ArrayLike, horizon: float
) -> np.ndarray:
    """MBG/NBD expected purchases in (T, T + horizon] given the history (weeks; Batislam et al.
    2007): P(alive) (a + b + x) / (a - 1) [1 - ((alpha + T) / (alpha + T + t))^(r + x)
    2F1(r + x, b + x + 1; a + b + x; t / (alpha + T + t))].

    Raises:
        ValueError: invalid input, or 2F1 not finite for some history.
    """
    x, tx, t_end = _check_rft(frequency, t_x, T)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + t_end + horizon)
    hyp = special.hyp2f1(r + x, b + x + 1.0, a + b + x, z)
    decay = np.exp((r + x) * (np.log(alpha + t_end) - np.log(alpha + t_end + horizon)))
    expected = (a + b + x) / (a - 1.0) * (1.0 - decay * hyp)
    expected = expected * mbgnbd_prob_alive(params, x, tx, t_end)
    if not np.isfinite(expected).all():
        raise ValueError(f"MBG/NBD expected purchases not finite ({params})")
    return np.maximum(expected, 0.0)


def weekly_discount_rate(annual_discount_rate: float) -> float:
    """Continuous discount rate per week equivalent to a yearly rate (> 0)."""
    if not 0 < annual_discount_rate < 1:
        raise ValueError(
            f"a lifetime discount rate must be in (0, 1), e.g. 0.1; got {annual_discount_rate}"
        )
    return float(np.log1p(annual_discount_rate) / (DAYS_PER_YEAR / DAYS_PER_WEEK))


def _beta_geometric_mean(a: float, big_b: float, v: np.ndarray) -> np.ndarray:
    """E[1 / (1 - u (1 - p))] for p ~ Beta(a, big_b), u = expit(v): 2F1(1, big_b; a + big_b; u).

    scipy's hyp2f1 where u <= 0.99; nearer 1 it fails for large big_b (NaN from about
    big_b = 170 on), so there the Beta mean is integrated directly: trapezoid rule in log p, with
    1 - u = expit(-v) kept exact.
    """
    u = special.expit(v)
    out = special.hyp2f1(1.0, big_b, a + big_b, u)
    hard = (u > 0.99) | ~np.isfinite(out)
    if not hard.any():
        return out
    q, uh = special.expit(-v[hard]), u[hard]
    # p^a (1 - p)^(big_b - 1) / B(a, big_b) per d(log p); left of log q the integrand is
    # ~ p^a / q, negligible 35 / a e-folds further down.
    w = np.linspace(float(np.log(q.min())) - 35.0 / min(a, 1.0), 0.0, 2000)
    with np.errstate(divide="ignore"):
        log_weight = a * w + (big_b - 1.0) * np.log(-np.expm1(w)) - special.betaln(a, big_b)
    weight = np.exp(log_weight) * (w[1] - w[0])
    weight[0] *= 0.5  # (the last node, p = 1, has weight 0)
    p = np.exp(w)
    values = np.empty(q.size)
    for start in range(0, q.size, 500):
        part = slice(start, start + 500)
        values[part] = (1.0 / (q[part, None] + uh[part, None] * p[None, :])) @ weight
    out[hard] = values
    return out


def _dert_if_alive(params: MbgNbdParams, x: float, beta: np.ndarray, delta: float) -> np.ndarray:
    """E_lambda[u 2F1(1, B; a + B; u)] for customers with x repeat purchases and
    beta = alpha + T (weeks), lambda ~ Gamma(r + x, beta), u = lambda / (lambda + delta)."""
    s = params.r + x
    big_b = params.b + x + 1.0
    # y = log(lambda beta) ~ log-Gamma(s, 1); the integrand is ~ e^((s+1) y) / (delta beta) on
    # the left and the Gamma weight vanishes on the right.
    c = np.log(delta * beta)  # u = 1 / (1 + e^(c - y))
    y_lo = (float(c.min()) - 35.0) / (s + 1.0)
    y_hi = float(np.log(s + 12.0 * np.sqrt(s) + 40.0))
    y = np.linspace(y_lo, y_hi, _N_NODES)
    step = y[1] - y[0]
    weight = np.exp(s * y - np.exp(y) - special.gammaln(s)) * step
    weight[[0, -1]] *= 0.5
    # u 2F1(...) as a function of v = y - c = log(lambda / delta), tabulated once per x
    v_lo, v_hi = y_lo - float(c.max()), y_hi - float(c.min())
    v = np.arange(v_lo, v_hi + _TABLE_STEP, _TABLE_STEP)
    table = special.expit(v) * _beta_geometric_mean(params.a, big_b, v)
    out = np.empty(beta.size)
    for start in range(0, beta.size, 2000):  # bounded memory: 2000 x _N_NODES at a time
        part = c[start : start + 2000]
        values = np.interp(y[None, :] - part[:, None], v, table)
        out[start : start + 2000] = values @ weight
    return out


def dert_if_alive(
    params: MbgNbdParams, frequency: np.ndarray, T: np.ndarray, annual_discount_rate: float
) -> np.ndarray:
    """E[discounted residual purchases | alive] per customer: a function of (x, T) only (weeks),
    integrated on one grid per x spanning that x's customers (so a value depends on the others
    with the same x, by about 1e-9: :class:`DertTable` computes it once for a population
    scored in batches)."""
    delta = weekly_discount_rate(annual_discount_rate)
    x = np.asarray(frequency, dtype="float64")
    out = np.zeros(x.size)
    beta = params.alpha + np.asarray(T, dtype="float64")
    for value in np.unique(x):
        rows = x == value
        betas, inverse = np.unique(beta[rows], return_inverse=True)
        out[rows] = _dert_if_alive(params, float(value), betas, delta)[inverse]
    return out


def mbgnbd_dert(
    params: MbgNbdParams,
    frequency: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    annual_discount_rate: float,
    if_alive: np.ndarray | None = None,
) -> np.ndarray:
    """Discounted expected residual transactions per customer (module docstring), histories in
    weeks as :func:`mbgnbd_prob_alive`, discounted at ``annual_discount_rate`` (in (0, 1));
    ``if_alive``: :func:`dert_if_alive` of these customers when already known."""
    x, tx, t_end = _check_rft(frequency, t_x, T)
    if if_alive is None:
        if_alive = dert_if_alive(params, x, t_end, annual_discount_rate)
    return mbgnbd_prob_alive(params, x, tx, t_end) * if_alive


@dataclass(frozen=True)
class DertTable:
    """:func:`dert_if_alive` of every distinct history (``frequency``, ``T_days``) of a
    population of buyers, computed in one call as for the whole feature table, so that scoring
    the population in batches (Spark) gives each customer the same value as scoring it whole."""

    frequency: np.ndarray
    T_days: np.ndarray
    value: np.ndarray

    @classmethod
    def build(
        cls, params: MbgNbdParams, frequency: ArrayLike, T_days: ArrayLike, rate: float
    ) -> DertTable:
        """From the buyers' ``frequency`` and ``T_days`` (repeats allowed), at yearly ``rate``."""
        pairs = pd.DataFrame(
            {"frequency": np.asarray(frequency, "float64"), "T_days": np.asarray(T_days, "float64")}
        ).drop_duplicates(ignore_index=True)
        x = pairs["frequency"].to_numpy()
        T_days = pairs["T_days"].to_numpy()
        return cls(x, T_days, dert_if_alive(params, x, T_days / DAYS_PER_WEEK, rate))

    def lookup(self, frequency: np.ndarray, T_days: np.ndarray) -> np.ndarray:
        """The values of these histories (ValueError for one not in the table)."""
        index = pd.MultiIndex.from_arrays([self.frequency, self.T_days])
        at = index.get_indexer(pd.MultiIndex.from_arrays([frequency, T_days]))
        if (at < 0).any():
            raise ValueError(f"{int((at < 0).sum())} histories not in the DERT table")
        return self.value[at]


def long_run_p_alive(params: MbgNbdParams, features: pd.DataFrame) -> np.ndarray:
    """MBG/NBD P(alive) per row of a feature table; 0 for customers without a purchase day."""
    buyers, x, t_x, T = _histories(features)
    out = np.zeros(len(features))
    out[buyers] = mbgnbd_prob_alive(params, x, t_x, T)
    return out


def long_run_dert(
    params: MbgNbdParams,
    features: pd.DataFrame,
    annual_discount_rate: float,
    table: DertTable | None = None,
) -> np.ndarray:
    """Discounted expected lifetime purchase days per row of a feature table (the window's
    included); 0 for customers without a purchase day. ``table``: the population's
    :class:`DertTable` (at the same rate) when the table is a batch of it."""
    buyers, x, t_x, T = _histories(features)
    if_alive = None
    if table is not None:
        if_alive = table.lookup(x, features["T_days"].to_numpy("float64")[buyers])
    out = np.zeros(len(features))
    out[buyers] = mbgnbd_dert(params, x, t_x, T, annual_discount_rate, if_alive)
    return out


def spend_per_purchase(spend_if_active: np.ndarray, purchases_if_active: np.ndarray) -> np.ndarray:
    """E[spend | active in the window] / E[purchase days | active in the window] (the latter
    >= 1 by definition; values below, e.g. 0 without a purchase history, count as 1)."""
    return np.asarray(spend_if_active, "float64") / np.maximum(purchases_if_active, 1.0)


def lifetime_value(
    dert: np.ndarray,
    spend_if_active: np.ndarray,
    purchases_if_active: np.ndarray,
    *,
    margin: float,
) -> np.ndarray:
    """Lifetime value = margin x DERT x :func:`spend_per_purchase`."""
    per_purchase = spend_per_purchase(spend_if_active, purchases_if_active)
    return margin * np.asarray(dert, "float64") * per_purchase
