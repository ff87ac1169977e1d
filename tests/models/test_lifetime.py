"""Tests for clvflow.models.lifetime: MBG/NBD P(alive), its fit, and DERT, hand-computed or against an
independent numerical integral."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats

from clvflow.models.lifetime import (
    DertTable,
    MbgNbdParams,
    _beta_geometric_mean,
    _mbgnbd_objective,
    fit_mbgnbd,
    lifetime_discount_rate,
    lifetime_value,
    long_run_dert,
    mbgnbd_dert,
    mbgnbd_expected_purchases,
    mbgnbd_prob_alive,
    weekly_discount_rate,
)

PARAMS = MbgNbdParams(r=0.5, alpha=10.0, a=0.8, b=2.0, log_likelihood=0.0)


def test_p_alive_hand_computed_and_below_one_for_one_time_buyers() -> None:
    """Issue 10 item 2: MBG/NBD P(alive) = 1 / (1 + a / (b + x) ((alpha + T) / (alpha + t_x))^(r + x)):
    a one-time buyer (x = 0) is not alive for sure, and fades as T grows."""
    # x = 0, T = 20: odds 0.8 / 2 x (30 / 10)^0.5 = 0.4 sqrt(3); x = 2, t_x = 15, T = 20:
    # odds 0.8 / 4 x (30 / 25)^2.5
    got = mbgnbd_prob_alive(PARAMS, [0, 2, 0], [0.0, 15.0, 0.0], [20.0, 20.0, 80.0])
    want = [1 / (1 + 0.4 * np.sqrt(3)), 1 / (1 + 0.2 * 1.2**2.5), 1 / (1 + 0.4 * 9**0.5)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[2] < got[0] < 1.0


def test_objective_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 300).astype(float)
    T = rng.uniform(5, 60, 300)
    t_x = np.where(x > 0, T * rng.uniform(0, 1, 300), 0.0)
    objective = _mbgnbd_objective(x, t_x, T)
    point = np.log([0.7, 8.0, 0.9, 2.5])
    _, grad = objective(point)
    step = 1e-6
    numeric = [
        (objective(point + e)[0] - objective(point - e)[0]) / (2 * step) for e in np.eye(4) * step
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


def _simulate_mbgnbd(n: int, params: MbgNbdParams, weeks: float, seed: int) -> tuple:
    """(x, t_x, T) of MBG/NBD customers observed for ``weeks`` after their first purchase:
    dropout chance p right after every purchase, the first one included. Repeat purchases made
    before dropping out: geometric; those inside the window: the first of a Poisson count, at
    uniform order statistics."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    before_dropout = rng.geometric(p) - 1
    in_window = rng.poisson(lam * weeks)
    x = np.minimum(before_dropout, in_window)
    t_x = np.zeros(n)
    rep = x > 0
    t_x[rep] = weeks * rng.beta(x[rep], in_window[rep] - x[rep] + 1)
    return x.astype(float), t_x, np.full(n, weeks)


def test_fit_recovers_simulated_parameters() -> None:
    """MBG/NBD's maximum likelihood fit recovers the parameters of 20,000 simulated customers."""
    truth = MbgNbdParams(r=0.6, alpha=8.0, a=0.7, b=2.5, log_likelihood=0.0)
    x, t_x, T = _simulate_mbgnbd(20_000, truth, 78.0, seed=1)
    fit = fit_mbgnbd(x, t_x, T)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), rel=0.15), name
    assert fit.log_likelihood == pytest.approx(
        -_mbgnbd_objective(x, t_x, T)(np.log([fit.r, fit.alpha, fit.a, fit.b]))[0] * x.size
    )


def test_dert_matches_an_independent_double_integral() -> None:
    """Issue 10 item 1: DERT = P(alive) E[lambda / (delta + p lambda)] over lambda ~ Gamma(r + x,
    alpha + T), p ~ Beta(a, b + x + 1), here by scipy's dblquad on the densities."""
    delta = weekly_discount_rate(0.1)
    histories = [(0, 0.0, 60.0), (3, 20.0, 70.0), (10, 65.0, 70.0)]
    x, t_x, T = (np.array(c, dtype=float) for c in zip(*histories, strict=True))
    got = mbgnbd_dert(PARAMS, x, t_x, T, 0.1)
    alive = mbgnbd_prob_alive(PARAMS, x, t_x, T)
    for i, (xi, _, Ti) in enumerate(histories):
        shape, rate, big_b = PARAMS.r + xi, PARAMS.alpha + Ti, PARAMS.b + xi + 1
        log_norm = shape * math.log(rate) - math.lgamma(shape) - special.betaln(PARAMS.a, big_b)

        def density(p: float, lam: float, shape=shape, rate=rate, big_b=big_b, c=log_norm) -> float:
            if lam <= 0 or p <= 0 or p >= 1:
                return 0.0
            log_w = c + (shape - 1) * math.log(lam) - rate * lam
            log_w += (PARAMS.a - 1) * math.log(p) + (big_b - 1) * math.log1p(-p)
            return lam / (delta + p * lam) * math.exp(log_w)

        top = stats.gamma.isf(1e-13, shape, scale=1 / rate)
        value, _ = integrate.dblquad(density, 0, top, 0, 1, epsabs=1e-11, epsrel=1e-8)
        assert got[i] == pytest.approx(alive[i] * value, rel=2e-5)


def test_dert_without_discounting_tends_to_the_closed_form() -> None:
    """With a > 1 and a rate near 0, DERT -> P(alive) (a + b + x) / (a - 1), the expected number of
    purchases before dropping out; it falls as the rate rises."""
    params = MbgNbdParams(r=0.5, alpha=10.0, a=2.5, b=2.0, log_likelihood=0.0)
    x, t_x, T = np.array([0.0, 4.0]), np.array([0.0, 30.0]), np.array([40.0, 40.0])
    alive = mbgnbd_prob_alive(params, x, t_x, T)
    limit = alive * (params.a + params.b + x) / (params.a - 1)
    np.testing.assert_allclose(mbgnbd_dert(params, x, t_x, T, 1e-10), limit, rtol=1e-3)
    rates = [0.01, 0.1, 0.3]
    values = [mbgnbd_dert(params, x, t_x, T, d) for d in rates]
    assert (values[0] > values[1]).all() and (values[1] > values[2]).all()


def test_beta_geometric_mean_is_2f1_also_where_scipy_fails() -> None:
    """The E[1 / (1 - u (1 - p))] table: scipy's 2F1 where it is finite; near u = 1 with a large
    b + x (where scipy returns NaN) the direct integral, which tends to (a + B - 1) / (a - 1)."""
    v = np.linspace(-5, 12, 400)
    for a, big_b in ((0.49, 2.0), (0.9, 30.0), (2.5, 8.0)):
        ref = special.hyp2f1(1.0, big_b, a + big_b, special.expit(v))
        np.testing.assert_allclose(_beta_geometric_mean(a, big_b, v), ref, rtol=2e-4)
    big_b = 171.9
    assert not np.isfinite(special.hyp2f1(1.0, big_b, 2.5 + big_b, special.expit(12.0)))
    got = _beta_geometric_mean(2.5, big_b, np.array([12.0, 30.0]))
    assert got[1] == pytest.approx((2.5 + big_b - 1) / 1.5, rel=1e-3)
    assert np.isfinite(got).all() and got[0] < got[1]


def test_lifetime_value_and_discount_rate() -> None:
    """Issue 10 item 1: value = margin x DERT x spend if active / purchases if active (>= 1);
    the rate is the one given, else 10% a year; a rate of 0 or 1 is refused for DERT."""
    got = lifetime_value(
        np.array([2.0, 0.5]), np.array([90.0, 40.0]), np.array([3.0, 0.0]), margin=0.5
    )
    np.testing.assert_allclose(got, [0.5 * 2 * 30, 0.5 * 0.5 * 40])
    assert lifetime_discount_rate(0.0) == 0.10
    assert lifetime_discount_rate(0.2) == 0.2
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="lifetime discount rate must be in"):
            weekly_discount_rate(bad)
    assert weekly_discount_rate(0.1) == pytest.approx(np.log(1.1) * 7 / 365.25)


def test_expected_purchases_match_a_simulation_and_the_dert_limit() -> None:
    """MBG/NBD E[purchases in (T, T + t]] (Batislam et al. 2007): for a customer just acquired
    (x = t_x = T = 0) it is the mean repeat count of simulated customers over t weeks; over a
    very long window with a > 1 it tends to DERT's undiscounted limit."""
    truth = MbgNbdParams(r=0.6, alpha=8.0, a=1.7, b=2.5, log_likelihood=0.0)
    x, _, _ = _simulate_mbgnbd(200_000, truth, 52.0, seed=2)
    want = mbgnbd_expected_purchases(truth, [0], [0.0], [0.0], 52.0)[0]
    assert x.mean() == pytest.approx(want, rel=0.02)
    far = mbgnbd_expected_purchases(truth, [2.0], [10.0], [20.0], 1e9)[0]
    alive = mbgnbd_prob_alive(truth, [2.0], [10.0], [20.0])[0]
    assert far == pytest.approx(alive * (truth.a + truth.b + 2) / (truth.a - 1), rel=1e-3)


def test_dert_of_a_batch_with_the_population_table_equals_the_whole_table() -> None:
    """Issue 12 item 3: DERT is integrated on one grid per x spanning that x's customers, so a
    batch alone can differ from the whole table by ~1e-9; with the population's DertTable (what
    Spark scoring passes each batch) every row of every batch equals the whole table's exactly,
    and a history outside the table is an error."""
    import pandas as pd

    rng = np.random.default_rng(3)
    n = 400
    x = rng.integers(0, 6, n).astype(float)
    T = rng.integers(1, 700, n).astype(float)
    features = pd.DataFrame(
        {
            "n_purchase_days": np.where(np.arange(n) % 50 == 0, 0.0, x + 1),
            "frequency": x,
            "t_x_days": np.floor(T * rng.uniform(0, 1, n)) * (x > 0),
            "T_days": T,
        }
    )
    whole = long_run_dert(PARAMS, features, 0.1)
    buyers = features[features["n_purchase_days"] > 0]
    table = DertTable.build(PARAMS, buyers["frequency"], buyers["T_days"], 0.1)
    assert table.value.size == len(buyers[["frequency", "T_days"]].drop_duplicates())
    for batch in (features.iloc[:37], features.iloc[37:250], features.iloc[250:]):
        got = long_run_dert(PARAMS, batch.reset_index(drop=True), 0.1, table)
        np.testing.assert_array_equal(got, whole[batch.index])
    assert (whole[features["n_purchase_days"].to_numpy() == 0] == 0).all()
    with pytest.raises(ValueError, match="1 histories not in the DERT table"):
        table.lookup(np.array([1.0]), np.array([5000.0]))
