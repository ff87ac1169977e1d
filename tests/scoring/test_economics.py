"""Tests for clvflow.scoring.economics: CLV:CAC per segment and churn what-ifs, hand-computed."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from clvflow.scoring.economics import (
    SEGMENT_TABLE_COLUMNS,
    clv_cac_by_segment,
    what_if_churn_reduction,
)
from clvflow.scoring.segments import add_segments
from clvflow.scoring.value import horizon_clv, lifetime_clv
from tests.scores_fixture import synthetic_scores

MARGIN = 0.5  # with no discounting: clv = 0.5 p s, lifetime = 0.5 s r / (1 - r), r <= 0.95


def small_table() -> pd.DataFrame:
    """Three customers, margin 0.5, no discount, horizon 90 days."""
    p_active = np.array([0.2, 0.5, 0.6])
    spend_if_active = np.array([100.0, 40.0, 10.0])
    economics = {"horizon_days": 90, "margin": MARGIN, "annual_discount_rate": 0.0}
    return pd.DataFrame(
        {
            "customer_id": pd.Series(["x", "y", "z"], dtype="str"),
            "horizon_days": 90,
            "p_active": p_active,
            "p_churn": 1.0 - p_active,
            "expected_spend_if_active": spend_if_active,
            "clv": horizon_clv(p_active * spend_if_active, **economics),  # 10, 10, 3
            "clv_lifetime": lifetime_clv(spend_if_active, p_active, **economics),  # 12.5, 20, 7.5
            "segment": pd.Series(["at risk", "at risk", "loyal"], dtype="str"),
            "value_tier": pd.Series(["VIP", "high", "high"], dtype="str"),
        }
    )


# --- clv_cac_by_segment -----------------------------------------------------------------------


def test_clv_cac_scalar() -> None:
    table = clv_cac_by_segment(small_table(), cac=5.0)
    assert list(table.columns) == list(SEGMENT_TABLE_COLUMNS)
    assert table.index.name == "segment"
    assert table.index.tolist() == ["loyal", "at risk"]  # natural segment order
    at_risk = table.loc["at risk"]
    assert at_risk["customers"] == 2
    assert at_risk["clv_total"] == pytest.approx(20.0)
    assert at_risk["clv_mean"] == pytest.approx(10.0)
    assert at_risk["clv_lifetime_total"] == pytest.approx(32.5)
    assert at_risk["clv_lifetime_mean"] == pytest.approx(16.25)
    assert at_risk["churn_rate"] == pytest.approx(0.65)  # (0.8 + 0.5) / 2
    assert at_risk["cac_mean"] == pytest.approx(5.0)
    assert at_risk["clv_cac_ratio"] == pytest.approx(3.25)
    assert table.loc["loyal", "clv_cac_ratio"] == pytest.approx(1.5)  # 7.5 / 5


def test_clv_cac_per_customer_series_by_tier() -> None:
    cac = pd.Series({"z": 2.5, "y": 30.0, "x": 10.0, "unscored": 99.0})
    table = clv_cac_by_segment(small_table(), cac=cac, by="value_tier")
    assert table.index.tolist() == ["VIP", "high"]
    assert table.loc["high", "cac_mean"] == pytest.approx(16.25)  # (30 + 2.5) / 2
    assert table.loc["high", "clv_cac_ratio"] == pytest.approx(13.75 / 16.25)  # (20 + 7.5) / 2
    assert table.loc["VIP", "clv_cac_ratio"] == pytest.approx(1.25)  # 12.5 / 10


def test_clv_cac_none_and_zero() -> None:
    table = clv_cac_by_segment(small_table(), cac=None)
    assert table["cac_mean"].isna().all() and table["clv_cac_ratio"].isna().all()
    assert table["clv_total"].sum() == pytest.approx(23.0)
    table = clv_cac_by_segment(small_table(), cac=0)
    assert table["clv_cac_ratio"].isna().all()  # no cost: ratio undefined, not inf


def test_clv_cac_on_segmented_synthetic_table() -> None:
    scores = add_segments(synthetic_scores(1500, seed=2))
    table = clv_cac_by_segment(scores, cac=20.0)
    assert table["customers"].sum() == len(scores)
    assert table["clv_total"].sum() == pytest.approx(scores["clv"].sum())
    assert table["clv_lifetime_total"].sum() == pytest.approx(scores["clv_lifetime"].sum())


@pytest.mark.parametrize(
    ("cac", "match"),
    [
        (pd.Series({"x": 1.0, "y": 2.0}), r"no value for 1 customer\(s\), e\.g\. \['z'\]"),
        (pd.Series([1.0, 2.0, 3.0], index=["x", "x", "y"]), r"repeats customer_id\(s\) \['x'\]"),
        (pd.Series({"x": 1.0, "y": -2.0, "z": 1.0}), r"finite and >= 0.*\['y'\]"),
        (-1.0, r"finite and >= 0"),
        (float("nan"), r"finite and >= 0"),
        ("10", "must be a number"),
        (True, "must be a number"),
    ],
)
def test_clv_cac_bad_cac(cac: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        clv_cac_by_segment(small_table(), cac=cac)  # type: ignore[arg-type]


def test_clv_cac_missing_group_column() -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['churn_risk'\]"):
        clv_cac_by_segment(small_table(), cac=1.0, by="churn_risk")


# --- what_if_churn_reduction ------------------------------------------------------------------


def test_what_if_exact() -> None:
    # at risk: x p 0.2 -> 0.5, y p 0.5 -> 0.8; z unchanged.
    # clv: before 10 + 10 + 3 = 23; after 0.5*0.5*100 + 0.5*0.8*40 + 3 = 25 + 16 + 3 = 44.
    # lifetime: before 12.5 + 20 + 7.5 = 40; after 0.5*100*0.5/0.5 + 0.5*40*0.8/0.2 + 7.5 = 137.5.
    got = what_if_churn_reduction(
        small_table(), "at risk", 30, margin=MARGIN, annual_discount_rate=0.0
    )
    expected = {
        "by": "segment",
        "segment": "at risk",
        "points": 30.0,
        "customers_affected": 2,
        "clv_before": 23.0,
        "clv_after": 44.0,
        "clv_gain": 21.0,
        "clv_lifetime_before": 40.0,
        "clv_lifetime_after": 137.5,
        "clv_lifetime_gain": 97.5,
    }
    assert got == pytest.approx(expected)


def test_what_if_caps_and_by_tier() -> None:
    # high tier = y, z; +60 points: y p 1.1 -> 1 (lifetime r capped at 0.95), z p 1.2 -> 1.
    # clv gain: 0.5*(1 - 0.5)*40 + 0.5*(1 - 0.6)*10 = 10 + 2 = 12.
    # lifetime: y 0.5*40*0.95/0.05 = 380 (was 20), z 0.5*10*0.95/0.05 = 95 (was 7.5).
    got = what_if_churn_reduction(
        small_table(), "high", 60, by="value_tier", margin=MARGIN, annual_discount_rate=0.0
    )
    assert got["customers_affected"] == 2
    assert got["clv_gain"] == pytest.approx(12.0)
    assert got["clv_lifetime_after"] == pytest.approx(12.5 + 380.0 + 95.0)
    assert got["clv_lifetime_gain"] == pytest.approx(360.0 + 87.5)


def test_what_if_zero_points_and_discounting() -> None:
    economics = {"horizon_days": 90, "margin": 0.3, "annual_discount_rate": 0.1}
    scores = add_segments(synthetic_scores(500, seed=4, **economics))
    got = what_if_churn_reduction(scores, "lost", 0, margin=0.3, annual_discount_rate=0.1)
    assert got["clv_gain"] == 0.0 and got["clv_lifetime_gain"] == 0.0
    assert got["clv_before"] == pytest.approx(scores["clv"].sum())
    assert got["clv_lifetime_before"] == pytest.approx(scores["clv_lifetime"].sum())
    got = what_if_churn_reduction(scores, "lost", 5, margin=0.3, annual_discount_rate=0.1)
    lost = scores[scores["segment"] == "lost"]
    p_new = np.minimum(lost["p_active"] + 0.05, 1.0)
    clv_new = horizon_clv(p_new * lost["expected_spend_if_active"], **economics)
    assert got["customers_affected"] == len(lost)
    assert got["clv_gain"] == pytest.approx(clv_new.sum() - lost["clv"].sum())


def test_what_if_warns_on_other_economics(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="clvflow.scoring.economics"):
        what_if_churn_reduction(small_table(), "loyal", 5, margin=1.0, annual_discount_rate=0.0)
    assert "do not reproduce the table's clv" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"segment": "champions"},
            r"no customer has segment == 'champions'.*\['at risk', 'loyal'\]",
        ),
        ({"points": 101}, "percentage points, 0-100"),
        ({"points": -5}, "percentage points, 0-100"),
        ({"horizon_days": 30}, r"horizon_days=30 but the table has \[90\]"),
        ({"margin": 0}, "margin must be in"),
        ({"by": "churn_risk"}, r"lacks column\(s\) \['churn_risk'\]"),
    ],
)
def test_what_if_bad_input(kwargs: dict, match: str) -> None:
    args = {"segment": "at risk", "points": 5, "margin": MARGIN, "annual_discount_rate": 0.0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        what_if_churn_reduction(small_table(), **args)


def test_what_if_needs_horizon_when_table_has_none() -> None:
    table = small_table().drop(columns="horizon_days")
    with pytest.raises(ValueError, match="pass horizon_days"):
        what_if_churn_reduction(table, "loyal", 5, margin=MARGIN, annual_discount_rate=0.0)
    got = what_if_churn_reduction(
        table, "loyal", 10, horizon_days=90, margin=MARGIN, annual_discount_rate=0.0
    )
    assert got["clv_gain"] == pytest.approx(0.5 * 0.1 * 10.0)
