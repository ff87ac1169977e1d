"""Tests for clvflow.models.uncertainty: the per-customer predictive distribution of spend, its
intervals, their coverage and the interval on the total."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.models.uncertainty import (
    GRID,
    SpendCalibration,
    calibrate_spend,
    interval_coverage,
    pit_coverage,
    spend_cdf,
    spend_quantiles,
    total_interval,
)


def uniform_ratio(level_sd: float = 0.0) -> SpendCalibration:
    """R ~ Uniform(0, 2) (mean 1) in one bin: its quantile at level u is 2u."""
    return SpendCalibration([], [list(2.0 * GRID)], level_sd, "test", 100)


def test_quantiles_of_a_known_mixture() -> None:
    """Issue 10 item 4: spend = 0 w.p. 1 - p, else s x R with R ~ Uniform(0, 2). By hand:
    p = 1: p10 = 0.2 s, p90 = 1.8 s; p = 0.5: p10 = 0 (in the mass at 0), p90 = s x 2 x
    (0.9 - 0.5) / 0.5 = 1.6 s; p = 0.05: both 0 (the mass holds 95%)."""
    cal = uniform_ratio()
    p = np.array([1.0, 0.5, 0.05])
    s = np.array([100.0, 100.0, 100.0])
    np.testing.assert_allclose(spend_quantiles(cal, p, s, 0.1), [20.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(spend_quantiles(cal, p, s, 0.9), [180.0, 160.0, 0.0], atol=1e-9)
    # the CDF inverts them: F(160) for p = 0.5 is 0.5 + 0.5 x 0.8 = 0.9; F(0) = 1 - p
    np.testing.assert_allclose(
        spend_cdf(cal, p, s, np.array([180.0, 160.0, 0.0])), [0.9, 0.9, 0.95]
    )
    np.testing.assert_allclose(spend_cdf(cal, p, s, np.zeros(3), left=True), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(spend_cdf(cal, p, s, np.zeros(3)), [0.0, 0.5, 0.95])


def test_calibration_bins_and_normalises_the_ratios() -> None:
    """Issue 10 item 4: one bin below 2 x MIN_PER_BIN active customers; the ratios spend / s of
    the active, divided by their mean, become the bin's quantiles; the level sd is |log(actual
    total / predicted total)| x sqrt(pi / 2), here |log(300 / 400)| x sqrt(pi / 2)."""
    n = 40
    actuals = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "active": [1] * 20 + [0] * 20,
            "spend": [5.0] * 10 + [25.0] * 10 + [0.0] * 20,
        }
    )
    pred = pd.DataFrame(
        {
            "customer_id": actuals["customer_id"],
            "p_active": 0.5,
            "expected_spend_if_active": 20.0,
            "expected_spend": 10.0,
        }
    )
    cal = calibrate_spend(actuals, pred, source="slice")
    assert cal.edges == [] and len(cal.quantiles) == 1 and cal.n_active == 20
    # ratios 0.25 (x10) and 1.25 (x10), mean 0.75: normalised 1/3 and 5/3
    q = np.asarray(cal.quantiles[0])
    assert q[0] == pytest.approx(1 / 3) and q[-1] == pytest.approx(5 / 3)
    assert cal.level_sd == pytest.approx(abs(np.log(300 / 400)) * np.sqrt(np.pi / 2))
    with pytest.raises(ValueError, match="different customers"):
        calibrate_spend(actuals, pred.iloc[1:], source="slice")


def test_pit_coverage_by_hand() -> None:
    """Issue 10 item 4: the randomised PIT check of the central 80%. Continuous points count 1
    inside [0.1, 0.9] and 0 outside; an atom [F(y-), F(y)] counts the share of it inside:
    [0, 0.5] -> 0.4 / 0.5 = 0.8; [0, 0.95] -> 0.8 / 0.95; [0, 0.05] -> 0."""
    lo = np.array([0.5, 0.95, 0.0, 0.0, 0.0])
    hi = np.array([0.5, 0.95, 0.5, 0.95, 0.05])
    np.testing.assert_allclose(pit_coverage(lo, hi), [1.0, 0.0, 0.8, 0.8 / 0.95, 0.0])


def test_coverage_of_draws_from_the_distribution_itself() -> None:
    """Issue 10 item 4: when the actual spends are drawn from the predictive distributions, the
    PIT coverage is 80%, the share in [p10, p90] equals its nominal (here 1 - p = 0.95 for
    p = 0.05, 0.9 for p = 0.5 and 0.8 for p = 1: mean 0.883) and the active share 80%."""
    rng = np.random.default_rng(0)
    n = 30_000
    p = np.repeat([0.05, 0.5, 1.0], n // 3)
    s = rng.uniform(10, 100, n)
    y = np.where(rng.random(n) < p, s * rng.uniform(0, 2, n), 0.0)
    c = interval_coverage(uniform_ratio(), p, s, y)
    assert c["nominal"] == pytest.approx((0.95 + 0.9 + 0.8) / 3, abs=1e-6)
    assert c["covered"] == pytest.approx(c["nominal"], abs=0.01)
    assert c["pit"] == pytest.approx(0.8, abs=0.01)
    assert c["active_covered"] == pytest.approx(0.8, abs=0.01)
    # spends all at their expectation: for p = 0.05, y = 0.05 s has F(y) = 0.95 + 0.05 x 0.0125,
    # above 0.9 (missed); for p = 0.5 F = 0.625 and for p = 1 F = 0.5 (inside): 2/3
    assert interval_coverage(uniform_ratio(), p, s, p * s)["pit"] == pytest.approx(2 / 3)


def test_total_interval_is_not_the_sum_of_customer_bounds() -> None:
    """Issue 10 item 4: 1,000 customers with p = 0.5, s = 10, R ~ Uniform(0, 2): the sums of the
    bounds are 0 and 16,000, but the total has mean 5,000 and sd sqrt(1000 x (0.5 x 100 x 4/3 -
    25)) = 204.1, so its 10th-90th percentiles are 5,000 -/+ 1.2816 x 204.1 = 4,738 / 5,262."""
    p, s = np.full(1000, 0.5), np.full(1000, 10.0)
    cal = uniform_ratio()
    assert spend_quantiles(cal, p, s, 0.9).sum() == pytest.approx(16_000)
    lo, hi = total_interval(cal, p, s)
    sd = np.sqrt(1000 * (0.5 * 100 * 4 / 3 - 25))
    assert lo == pytest.approx(5000 - 1.2816 * sd, rel=0.01)
    assert hi == pytest.approx(5000 + 1.2816 * sd, rel=0.01)
    # a shared level error widens it: sd 0.1 on the log scale is ~ +/-12.8% of the total
    lo2, hi2 = total_interval(uniform_ratio(level_sd=0.1), p, s)
    assert hi2 - lo2 > 2 * (hi - lo)
    assert total_interval(cal, p, s) == (lo, hi)  # seeded: same numbers
    # a customer with a vanishing chance of an enormous spend (a blend's ratio) changes nothing
    far = total_interval(cal, np.append(p, 1e-29), np.append(s, 5e23))
    assert far == pytest.approx((lo, hi), rel=1e-6)
