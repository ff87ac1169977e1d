"""Tests for clvflow.models.btyd: BG/NBD, Gamma-Gamma and the baseline predictors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clvflow.features.build import build_features
from clvflow.models import btyd
from clvflow.models.btyd import (
    BASELINE_COLUMNS,
    MIN_REPEAT_BUYERS,
    BgNbdParams,
    GammaGammaParams,
    bgnbd_expected_purchases,
    bgnbd_gamma_gamma_baseline,
    bgnbd_prob_active,
    bgnbd_prob_alive,
    fit_bgnbd,
    fit_btyd_checked,
    fit_gamma_gamma,
    gamma_gamma_expected_spend,
    historical_baseline,
)

# CI keeps a copy of shared/ beside the repository clone.
# The 1/10 CDNOW sample of the BG/NBD paper (shared/datasets/cdnow, gzipped beside the tests).
CDNOW_SAMPLE = Path(__file__).parents[1] / "data" / "CDNOW_sample.txt.gz"
CALIBRATION_AS_OF = pd.Timestamp("1997-10-01")  # calibration 1997-01-01 .. 1997-09-30
WEEK = 7.0

PARAMS = BgNbdParams(r=0.8, alpha=6.0, a=0.6, b=2.5, log_likelihood=float("nan"))


# --- helpers -----------------------------------------------------------------------------------


def _simulate(
    params: BgNbdParams, T: np.ndarray, horizon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw BG/NBD histories over (0, T] and purchase counts in (T, T + horizon].

    A customer makes repeat purchases at Poisson rate lambda and drops out right after the k-th
    one, k ~ Geometric(p) (no dropout at the first purchase, time 0). Given n Poisson events in
    (0, T], the k-th event time is T * Beta(k, n - k + 1). Returns (frequency, t_x, n_window).
    """
    n = T.size
    lam = rng.gamma(params.r, 1.0 / params.alpha, n)
    p = rng.beta(params.a, params.b, n)
    k = rng.geometric(p)
    n_cal = rng.poisson(lam * T)
    x = np.minimum(n_cal, k)
    t_x = np.zeros(n)
    rep = x > 0
    t_x[rep] = T[rep] * rng.beta(x[rep], n_cal[rep] - x[rep] + 1)
    alive = k > n_cal  # the memoryless Poisson process restarts at T for the survivors
    n_window = np.where(alive, np.minimum(rng.poisson(lam * horizon), k - n_cal), 0)
    return x.astype(float), t_x, n_window


# --- CDNOW sample: published parameters -----------------------------------------------------------


@pytest.fixture(scope="module")
def cdnow_tx() -> pd.DataFrame:
    raw = pd.read_csv(
        CDNOW_SAMPLE,
        sep=r"\s+",
        header=None,
        names=["master_id", "sample_id", "date", "n_cds", "amount"],
        dtype={"sample_id": str, "date": str},
    )
    return pd.DataFrame(
        {
            "customer_id": raw["sample_id"],
            "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["amount"].astype(float),
        }
    )


@pytest.fixture(scope="module")
def cdnow_features(cdnow_tx: pd.DataFrame) -> pd.DataFrame:
    return build_features(cdnow_tx, CALIBRATION_AS_OF, threads=1)


@pytest.fixture(scope="module")
def cdnow_bgnbd(cdnow_features: pd.DataFrame) -> BgNbdParams:
    f = cdnow_features
    return fit_bgnbd(f["frequency"], f["t_x_days"] / WEEK, f["T_days"] / WEEK)


def test_cdnow_t_convention(cdnow_features: pd.DataFrame) -> None:
    # Customers joining on 1997-01-01 have T = 272 days = 38.86 weeks, as in the paper's data.
    assert len(cdnow_features) == 2357
    assert cdnow_features["T_days"].max() == 272
    assert cdnow_features["frequency"].sum() == 2457


def test_cdnow_bgnbd_published_parameters(cdnow_bgnbd: BgNbdParams) -> None:
    p = cdnow_bgnbd
    assert (round(p.r, 4), round(p.alpha, 4), round(p.a, 4), round(p.b, 4)) == (
        0.2426,
        4.4136,
        0.7929,
        2.4259,
    )
    assert p.log_likelihood == pytest.approx(-9582.43, abs=0.005)


def test_cdnow_bgnbd_published_conditional_expectation(cdnow_bgnbd: BgNbdParams) -> None:
    # FHL 2005, section 5: x = 2, t_x = 30.43, T = 38.86 weeks -> 1.226 purchases in 39 weeks.
    expected = bgnbd_expected_purchases(cdnow_bgnbd, [2], [30.43], [38.86], 39.0)
    assert expected[0] == pytest.approx(1.226, abs=5e-4)


def test_cdnow_gamma_gamma_published_parameters(cdnow_features: pd.DataFrame) -> None:
    gg = fit_gamma_gamma(cdnow_features["frequency"], cdnow_features["mean_repeat_spend"])
    # The likelihood is flat along gamma: the optimum is gamma = 15.4435 +- 5e-5.
    assert gg.p == pytest.approx(6.250, abs=1e-3)
    assert gg.q == pytest.approx(3.744, abs=1e-3)
    assert gg.gamma == pytest.approx(15.444, abs=1e-3)


def test_cdnow_bgnbd_gamma_gamma_baseline(
    cdnow_tx: pd.DataFrame, cdnow_features: pd.DataFrame
) -> None:
    horizon_days = 273  # 39 weeks of holdout: 1997-10-01 .. 1998-06-29
    returns_only = _tiny_features().query("customer_id == 'c'")  # no purchase day: left out
    features = pd.concat([cdnow_features, returns_only], ignore_index=True)
    out = bgnbd_gamma_gamma_baseline(features, horizon_days)
    assert list(out.columns) == BASELINE_COLUMNS
    assert out["customer_id"].tolist() == features["customer_id"].tolist()
    assert out.iloc[-1].tolist() == ["c", 0.0, 0.0]
    out = out.iloc[:-1]
    assert out["p_active"].between(0, 1).all()
    assert (out["expected_spend"] >= 0).all()
    # Pinned against the holdout. BG/NBD under-forecasts this window: 1,653 expected repeat
    # purchase days vs 1,880 actual, so the spend comes out 16% low and p_active 3 points low.
    end = CALIBRATION_AS_OF + pd.Timedelta(days=horizon_days)
    window = cdnow_tx[(cdnow_tx["timestamp"] >= CALIBRATION_AS_OF) & (cdnow_tx["timestamp"] < end)]
    assert out["expected_spend"].sum() / window["amount"].sum() == pytest.approx(0.844, abs=0.005)
    active = out["customer_id"].isin(window["customer_id"])
    assert active.mean() == pytest.approx(0.290, abs=5e-4)
    assert out["p_active"].mean() == pytest.approx(0.262, abs=0.005)


# --- simulation ---------------------------------------------------------------------------------


def test_fit_bgnbd_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(7)
    T = rng.uniform(20.0, 40.0, 10_000)
    x, t_x, _ = _simulate(PARAMS, T, 1.0, rng)
    fit = fit_bgnbd(x, t_x, T)
    got = np.array([fit.r, fit.alpha, fit.a, fit.b])
    want = np.array([PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b])
    np.testing.assert_allclose(got, want, rtol=0.15)


def test_prob_active_and_expected_purchases_match_monte_carlo() -> None:
    rng = np.random.default_rng(11)
    n, T_weeks, horizon = 300_000, 30.0, 20.0
    T = np.full(n, T_weeks)
    x, t_x, n_window = _simulate(PARAMS, T, horizon, rng)
    p_active = bgnbd_prob_active(PARAMS, x, t_x, T, horizon)
    expected = bgnbd_expected_purchases(PARAMS, x, t_x, T, horizon)
    recent = t_x >= T / 2
    # Conditional checks: within groups of histories, mean prediction = observed mean.
    groups = {
        "x=0": x == 0,
        "x=1 early": (x == 1) & ~recent,
        "x=1 recent": (x == 1) & recent,
        "x=2-4 early": (x >= 2) & (x <= 4) & ~recent,
        "x=2-4 recent": (x >= 2) & (x <= 4) & recent,
        "x>=5": x >= 5,
    }
    for name, mask in groups.items():
        active = (n_window[mask] > 0).astype(float)
        tol = 5 * active.std() / np.sqrt(mask.sum())
        assert p_active[mask].mean() == pytest.approx(active.mean(), abs=tol), name
        tol = 5 * n_window[mask].std() / np.sqrt(mask.sum())
        assert expected[mask].mean() == pytest.approx(n_window[mask].mean(), abs=tol), name


# --- exact values -------------------------------------------------------------------------------


def test_one_time_buyers_closed_forms() -> None:
    T, h = np.array([10.0, 30.0]), 5.0
    zeros = np.zeros(2)
    np.testing.assert_array_equal(bgnbd_prob_alive(PARAMS, zeros, zeros, T), [1.0, 1.0])
    want = 1.0 - ((PARAMS.alpha + T) / (PARAMS.alpha + T + h)) ** PARAMS.r
    np.testing.assert_allclose(bgnbd_prob_active(PARAMS, zeros, zeros, T, h), want, rtol=1e-12)


def test_prob_alive_closed_form() -> None:
    got = bgnbd_prob_alive(PARAMS, [3], [4.0], [10.0])
    odds = PARAMS.a / (PARAMS.b + 2.0) * ((PARAMS.alpha + 10.0) / (PARAMS.alpha + 4.0)) ** 3.8
    assert got[0] == pytest.approx(1.0 / (1.0 + odds), rel=1e-12)


def test_expected_purchases_short_window_is_rate_times_alive() -> None:
    # For a tiny window, E[purchases] ~ P(alive) * E[lambda | alive] * h.
    x, t_x, T, h = np.array([0.0, 3.0]), np.array([0.0, 4.0]), np.array([10.0, 10.0]), 1e-4
    got = bgnbd_expected_purchases(PARAMS, x, t_x, T, h)
    want = bgnbd_prob_alive(PARAMS, x, t_x, T) * (PARAMS.r + x) / (PARAMS.alpha + T) * h
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_gamma_gamma_expected_spend_exact() -> None:
    params = GammaGammaParams(p=2.0, q=3.0, gamma=10.0, log_likelihood=float("nan"))
    got = gamma_gamma_expected_spend(params, [0, 2, 0], [0.0, 20.0, 99.0])
    np.testing.assert_allclose(got, [10.0, 100.0 / 6.0, 10.0], rtol=1e-12)


def _tiny_features() -> pd.DataFrame:
    """Customers a (one purchase), b (three purchase days, one of two rows), c (a return only)."""
    tx = pd.DataFrame(
        {
            "customer_id": ["a", "b", "b", "b", "b", "c"],
            "timestamp": pd.to_datetime(
                [
                    "2024-01-02",
                    "2024-01-01",
                    "2024-01-05",
                    "2024-01-05 18:00",
                    "2024-01-08",
                    "2024-01-03",
                ],
                format="ISO8601",
            ),
            "amount": [50.0, 10.0, 20.0, 5.0, 10.0, -5.0],
        }
    )
    return build_features(tx, "2024-01-11", threads=1)


def test_tiny_features_have_the_assumed_definitions() -> None:
    f = _tiny_features().set_index("customer_id")
    assert f.loc["b", ["frequency", "t_x_days", "T_days", "mean_repeat_spend"]].tolist() == [
        2.0,
        7.0,
        9.0,
        17.5,
    ]
    assert f["T_days"].tolist() == [8.0, 9.0, 7.0]
    assert f["n_purchase_days"].tolist() == [1.0, 3.0, 0.0]
    assert f["total_spend"].tolist() == [50.0, 45.0, -5.0]


def test_historical_baseline_exact() -> None:
    out = historical_baseline(_tiny_features(), horizon_days=30)
    assert list(out.columns) == BASELINE_COLUMNS
    assert out["customer_id"].tolist() == ["a", "b", "c"]
    # observed days = T_days + 1 = 9, 10, 8; c has only a return: no spend, no purchase rate.
    np.testing.assert_allclose(out["expected_spend"], [50 / 9 * 30, 45 / 10 * 30, 0.0])
    np.testing.assert_allclose(
        out["p_active"], [1 - np.exp(-1 / 9 * 30), 1 - np.exp(-3 / 10 * 30), 0.0]
    )


def test_bgnbd_allows_zero_observation_period() -> None:
    # A first purchase on as_of - 1 gives T = 0: the likelihood term is 1, predictions defined.
    x, t_x, T = [0, 0, 3], [0.0, 0.0, 4.0], [0.0, 5.0, 10.0]
    assert np.isfinite(bgnbd_prob_active(PARAMS, x, t_x, T, 2.0)).all()
    want = 1.0 - (PARAMS.alpha / (PARAMS.alpha + 2.0)) ** PARAMS.r
    assert bgnbd_prob_active(PARAMS, x, t_x, T, 2.0)[0] == pytest.approx(want, rel=1e-12)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frequency", "t_x", "T", "match"),
    [
        ([-1, 2], [0.0, 3.0], [5.0, 5.0], "frequency must be >= 0"),
        ([1.5, 2], [1.0, 3.0], [5.0, 5.0], "frequency must be whole numbers"),
        ([1, 2], [6.0, 3.0], [5.0, 5.0], "t_x must be <= T"),
        ([1, 2], [-1.0, 3.0], [5.0, 5.0], "t_x must be >= 0"),
        ([1, 2], [1.0, 3.0], [5.0], "same length"),
        ([1, 2], [1.0, np.nan], [5.0, 5.0], "t_x has non-finite"),
        ([0, 0], [0.0, 0.0], [5.0, 5.0], "no customer has a repeat purchase"),
        ([], [], [], "zero customers"),
    ],
)
def test_fit_bgnbd_rejects_bad_input(frequency, t_x, T, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_bgnbd(frequency, t_x, T)


def test_bgnbd_predictions_reject_bad_horizon_and_input() -> None:
    with pytest.raises(ValueError, match="horizon must be a positive"):
        bgnbd_prob_active(PARAMS, [1], [1.0], [5.0], 0.0)
    with pytest.raises(ValueError, match="horizon must be a positive"):
        bgnbd_expected_purchases(PARAMS, [1], [1.0], [5.0], -3.0)
    with pytest.raises(ValueError, match="t_x must be <= T"):
        bgnbd_prob_alive(PARAMS, [1], [6.0], [5.0])


@pytest.mark.parametrize(
    ("frequency", "monetary", "match"),
    [
        ([-1, 2], [1.0, 3.0], "frequency must be >= 0"),
        ([1, 2], [1.0], "same length"),
        ([0, 0], [0.0, 0.0], "no customer has a repeat purchase"),
        ([1, 2], [0.0, 3.0], "monetary must be > 0"),
    ],
)
def test_fit_gamma_gamma_rejects_bad_input(frequency, monetary, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_gamma_gamma(frequency, monetary)


def test_gamma_gamma_expected_spend_needs_q_above_one() -> None:
    params = GammaGammaParams(p=2.0, q=0.9, gamma=10.0, log_likelihood=float("nan"))
    with pytest.raises(ValueError, match="q must be > 1"):
        gamma_gamma_expected_spend(params, [1], [10.0])


@pytest.mark.parametrize("baseline", [historical_baseline, bgnbd_gamma_gamma_baseline])
def test_baselines_reject_bad_features(baseline) -> None:
    with pytest.raises(ValueError, match=r"lacks columns \['T_days'\]"):
        baseline(_tiny_features().drop(columns="T_days"), 30)
    with pytest.raises(ValueError, match="horizon_days must be a positive"):
        baseline(_tiny_features(), 0)


# ---- degenerate fits are reported, not raised -------------------------------------------------


def _features(rows: list[tuple[str, str, float]], as_of: str) -> pd.DataFrame:
    from tests.conftest import make_tx

    return build_features(make_tx(rows), as_of)


def test_checked_fit_needs_enough_repeat_buyers() -> None:
    rows = [(f"c{i}", "2024-01-01", 10.0) for i in range(30)]
    rows += [(f"c{i}", "2024-01-05", 12.0) for i in range(MIN_REPEAT_BUYERS - 1)]
    fit, why = fit_btyd_checked(_features(rows, "2024-02-01"), 30)
    assert fit is None
    assert why == f"{MIN_REPEAT_BUYERS - 1} repeat buyers (BG/NBD and Gamma-Gamma need 20)"
    with pytest.raises(ValueError, match="cannot be fitted on these data: 19 repeat buyers"):
        bgnbd_gamma_gamma_baseline(_features(rows, "2024-02-01"), 30)


def test_checked_fit_rejects_cdnow_after_three_days(monkeypatch) -> None:
    """CDNOW's first snapshot of a one-year backtest had 3 days of history: 9 repeat buyers, and
    fitted anyway BG/NBD runs off (r and alpha in the tens of thousands) and its expected
    purchases are not finite (hyp2f1 fails)."""
    from clvflow.data.ingest import load_cdnow
    from clvflow.models import btyd

    features = build_features(load_cdnow(), "1997-01-04")
    fit, why = fit_btyd_checked(features, 181)
    assert (fit, why) == (None, "9 repeat buyers (BG/NBD and Gamma-Gamma need 20)")
    monkeypatch.setattr(btyd, "MIN_REPEAT_BUYERS", 1)
    fit, why = fit_btyd_checked(features, 181)
    assert fit is None and why.startswith("BG/NBD expected purchases are not finite")


def test_checked_fit_accepts_cdnow_after_a_month() -> None:
    from clvflow.data.ingest import load_cdnow

    features = build_features(load_cdnow(), "1997-02-01")
    fit, why = fit_btyd_checked(features, 181)
    assert why == "" and fit is not None and fit.gamma_gamma.q > 1


# ---- fast fits: analytic gradients, collapsed histories, warm starts ---------------------------

# Histories drawn from a small grid, so that many customers share one (x, t_x, T).
_histories = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40
)
_log_params = st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4)


def _fd_gradient(objective, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central differences of the objective's value."""
    steps = np.eye(theta.size) * h
    return np.array([(objective(theta + e)[0] - objective(theta - e)[0]) / (2 * h) for e in steps])


@settings(max_examples=60, deadline=None)
@given(_histories, _log_params)
def test_bgnbd_analytic_gradient_matches_finite_differences(rows, theta) -> None:
    """Issue 11 item 2: the BG/NBD objective over collapsed histories is the per-customer
    log-likelihood's negative mean, and its analytic gradient matches central differences."""
    grid = np.array(rows, dtype=float)
    x = grid[:, 0]
    T = 1.0 + 2.5 * grid[:, 2]
    t_x = np.where(x > 0, T * grid[:, 1] / 4.0, 0.0)
    theta = np.array(theta)
    objective, n_rows = btyd._bgnbd_objective(x, t_x, T)
    assert n_rows == len(set(zip(x, t_x, T, strict=True)))
    value, grad = objective(theta)
    r, alpha, a, b = np.exp(theta)
    want = -btyd._bgnbd_log_lik(r, alpha, a, b, x, t_x, T).mean()
    assert value == pytest.approx(want, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, _fd_gradient(objective, theta), rtol=1e-5, atol=1e-7)


@settings(max_examples=60, deadline=None)
@given(_histories, st.lists(st.floats(-2.0, 2.0), min_size=3, max_size=3))
def test_gamma_gamma_analytic_gradient_matches_finite_differences(rows, theta) -> None:
    """Issue 11 item 2: the Gamma-Gamma objective over collapsed (x, m) is the per-customer
    log-likelihood's negative mean, and its analytic gradient matches central differences."""
    grid = np.array(rows, dtype=float)
    x = grid[:, 0] + 1.0
    m = 5.0 + 10.0 * grid[:, 1]
    theta = np.array(theta)
    objective = btyd._gamma_gamma_objective(x, m)
    value, grad = objective(theta)
    p, q, gamma = np.exp(theta)
    want = -btyd._gamma_gamma_log_lik(p, q, gamma, x, m).mean()
    assert value == pytest.approx(want, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, _fd_gradient(objective, theta), rtol=1e-5, atol=1e-7)


def test_collapse_counts_identical_rows() -> None:
    """Issue 11 item 2: identical histories become one row with its count."""
    x = np.array([2.0, 0.0, 2.0, 2.0, 0.0])
    T = np.array([5.0, 3.0, 5.0, 4.0, 3.0])
    (ux, uT), counts = btyd._collapse(x, T)
    assert ux.tolist() == [0.0, 2.0, 2.0]
    assert uT.tolist() == [3.0, 4.0, 5.0]
    assert counts.tolist() == [2.0, 1.0, 2.0]


def test_cdnow_analytic_fit_is_the_numerical_one_to_three_decimals(
    cdnow_features: pd.DataFrame,
) -> None:
    """Issue 11 item 2: on CDNOW the analytic-gradient fit reproduces the numerical-gradient fit
    clvflow used before (same parameters to 3 decimals, at least its log-likelihood)."""
    f = cdnow_features
    args = (f["frequency"], f["t_x_days"] / WEEK, f["T_days"] / WEEK)
    fast, slow = fit_bgnbd(*args), fit_bgnbd(*args, numerical=True)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), abs=5e-4), name
    assert fast.log_likelihood >= slow.log_likelihood - 1e-9
    gg_fast = fit_gamma_gamma(f["frequency"], f["mean_repeat_spend"])
    gg_slow = fit_gamma_gamma(f["frequency"], f["mean_repeat_spend"], numerical=True)
    for name in ("p", "q", "gamma"):
        assert getattr(gg_fast, name) == pytest.approx(getattr(gg_slow, name), abs=5e-4), name
    assert gg_fast.log_likelihood >= gg_slow.log_likelihood - 1e-9


def test_warm_start_that_converges_runs_one_start(cdnow_features, monkeypatch) -> None:
    """Issue 11 item 2: a fit warm-started from converging parameters runs L-BFGS-B once (cold:
    once per fixed start) and lands on the cold fit's optimum."""
    calls = []
    minimize = btyd.optimize.minimize

    def counted(*args, **kwargs):
        calls.append(kwargs.get("jac"))
        return minimize(*args, **kwargs)

    monkeypatch.setattr(btyd.optimize, "minimize", counted)
    f = cdnow_features
    args = (f["frequency"], f["t_x_days"] / WEEK, f["T_days"] / WEEK)
    cold = fit_bgnbd(*args)
    assert calls == [True, True, True]
    calls.clear()
    nearby = BgNbdParams(r=0.3, alpha=4.0, a=0.9, b=2.0, log_likelihood=float("nan"))
    warm = fit_bgnbd(*args, init=nearby)
    assert calls == [True]
    np.testing.assert_allclose(
        [warm.r, warm.alpha, warm.a, warm.b], [cold.r, cold.alpha, cold.a, cold.b], rtol=1e-5
    )
    calls.clear()
    gg_cold = fit_gamma_gamma(f["frequency"], f["mean_repeat_spend"])
    gg = fit_gamma_gamma(f["frequency"], f["mean_repeat_spend"], init=gg_cold)
    assert calls == [True, True, True, True]
    assert gg.p == pytest.approx(gg_cold.p, rel=1e-6)


def test_fit_on_a_ridge_falls_back_to_the_numerical_fit() -> None:
    """Issue 11 item 2: where the analytic fit runs off to the search bound (Gamma-Gamma on CDNOW
    after three days: a likelihood ridge in q and gamma), the fit is redone with numerical
    gradients as before, so the parameters (and fit_btyd_checked's verdict) are those of the
    numerical fit, bit for bit."""
    from clvflow.data.ingest import load_cdnow

    f = build_features(load_cdnow(), "1997-01-04")
    f = f.loc[f["mean_repeat_spend"] > 0]
    analytic = btyd._gamma_gamma_objective(
        f["frequency"].to_numpy(float), f["mean_repeat_spend"].to_numpy(float)
    )
    scale = f["mean_repeat_spend"].mean()
    starts = [(1.0, 1.0, scale), (5.0, 3.0, 0.5 * scale), (2.0, 5.0, 2.0 * scale)]
    log_params = btyd._fit_log_params(analytic, starts, "Gamma-Gamma")  # no fallback
    assert log_params[2] == pytest.approx(btyd._LOG_BOUND)  # gamma runs to the bound
    fast = fit_gamma_gamma(f["frequency"], f["mean_repeat_spend"])
    slow = fit_gamma_gamma(f["frequency"], f["mean_repeat_spend"], numerical=True)
    assert (fast.p, fast.q, fast.gamma) == (slow.p, slow.q, slow.gamma)
    assert slow.gamma < 1e6


def test_warm_start_stalled_on_a_ridge_runs_every_start() -> None:
    """Issue 11 item 2: a warm start from a point far out on a flat ridge (CDNOW's first
    snapshot, 1997-02-01: a -> 0 and b -> infinity) can stall there on the next snapshot; such a
    warm fit is not trusted alone, so the next snapshot still gets the cold fit's optimum."""
    from clvflow.data.ingest import load_cdnow

    f = build_features(load_cdnow(), "1997-03-03")
    f = f.loc[f["n_purchase_days"] > 0]
    args = (f["frequency"], f["t_x_days"] / WEEK, f["T_days"] / WEEK)
    ridge = BgNbdParams(r=0.517, alpha=8.85, a=9.7e-5, b=10741.7, log_likelihood=float("nan"))
    cold, warm = fit_bgnbd(*args), fit_bgnbd(*args, init=ridge)
    assert (round(cold.a, 3), round(cold.b, 3)) == (0.266, 0.583)
    np.testing.assert_allclose(
        [warm.r, warm.alpha, warm.a, warm.b], [cold.r, cold.alpha, cold.a, cold.b], rtol=1e-4
    )


def test_fits_on_counted_histories_equal_the_fits_on_the_customers() -> None:
    """Issue 12 item 2: rows given once with how many customers they stand for (what a Spark
    groupBy returns) fit the same BG/NBD and Gamma-Gamma parameters as the customers one by one
    (CDNOW's buyers as of 1997-10-01)."""
    from clvflow.data.ingest import load_cdnow

    f = build_features(load_cdnow(), "1997-10-01")
    f = f[f["n_purchase_days"] > 0]
    x, m = f["frequency"].to_numpy(), f["mean_repeat_spend"].to_numpy()
    t_x, T = f["t_x_days"].to_numpy() / 7.0, f["T_days"].to_numpy() / 7.0
    one_by_one = fit_bgnbd(x, t_x, T), fit_gamma_gamma(x[m > 0], m[m > 0])
    (ux, utx, uT), n = btyd._collapse(x, t_x, T)
    (gx, gm), gn = btyd._collapse(x[m > 0], m[m > 0])
    assert ux.size < x.size / 2 and n.sum() == x.size  # the histories really collapse
    counted = fit_bgnbd(ux, utx, uT, counts=n), fit_gamma_gamma(gx, gm, counts=gn)
    for a, b in zip(counted, one_by_one, strict=True):
        np.testing.assert_allclose(list(vars(a).values()), list(vars(b).values()), rtol=1e-9)
    with pytest.raises(ValueError, match="counts must be whole numbers >= 1"):
        fit_bgnbd(ux, utx, uT, counts=n - 0.5)


@pytest.mark.parametrize(
    "kind", ["whole days", "weeks", "fractions", "negative", "too wide to pack", "missing"]
)
def test_row_order_is_lexsorts_order(kind: str) -> None:
    """Issue 11 item 2: the histories' sort order (packed into one integer key when the columns
    are small whole numbers of days or weeks) is exactly ``np.lexsort``'s, ties kept in input order, and falls
    back to lexsort on anything else."""
    rng = np.random.default_rng(4)
    n = 20_000
    x = rng.integers(0, 12, n).astype(float)  # (many equal rows: the ties)
    t_x = rng.integers(0, 40, n).astype(float)
    T = rng.integers(0, 40, n).astype(float)
    if kind == "weeks":
        t_x, T = t_x / 7.0, T / 7.0  # (as the BG/NBD fits take them)
    elif kind == "fractions":
        T = T + 0.5
    elif kind == "negative":
        t_x[7] = -1.0
    elif kind == "too wide to pack":
        T = T * 2.0**40
    elif kind == "missing":
        x[3] = np.nan
    order = btyd._row_order((x, t_x, T))
    assert np.array_equal(order, np.lexsort((T, t_x, x)))
