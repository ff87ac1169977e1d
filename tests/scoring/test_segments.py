"""Tests for clvflow.scoring.segments: exact labels on a hand-built table, invariants with hypothesis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clvflow.scoring.segments import (
    CHURN_RISKS,
    REQUIRED_COLUMNS,
    SEGMENT_COLUMNS,
    SEGMENTS,
    VALUE_TIERS,
    WINBACK_P_ALIVE,
    add_segments,
)
from tests.scores_fixture import synthetic_scores

# n = 10, so a quintile score is ceil(rank / 2) and clv_percentile = 10 x rank.
# R: recency rank (longest ago = 1); F: purchase_days, six tied at 1 -> min rank 1 -> F = 1.
# value_at_risk = p_churn x clv_lifetime.
# id  recency R  purch F  hist_clv M  tenure  p_churn  clv  clv_lifetime
HAND = [
    ("A", 5, 1, 50, 30, 0.30, 100, 400),  # R5 F1 M2 tenure < 90: new; VaR 120
    ("B", 30, 8, 5000, 400, 0.85, 300, 1000),  # R4 F5 M5 high risk: can't lose them; VaR 850
    ("C", 10, 10, 3000, 900, 0.20, 500, 1000),  # R5 F5 M5 low risk: champions; VaR 200
    ("D", 90, 6, 1000, 700, 0.50, 210, 600),  # R3 F4 M4: loyal; VaR 300
    ("E", 20, 1, 100, 90, 0.79, 50, 500),  # R4 F1 M2, tenure exactly 90: potential loyalists; 395
    ("F", 200, 3, 400, 600, 0.80, 50, 200),  # R2 F4 M3: at risk (by F); VaR 160
    ("G", 500, 1, -10, 800, 1.00, 0, 0),  # R1 F1 M1 high risk: lost; VaR 0
    ("H", 400, 1, 20, 500, 0.75, 10, 400),  # R1 F1 M1 medium risk: hibernating; VaR 300
    ("I", 60, 1, 300, 300, 0.90, 20, 0),  # R3 F1 M3 high risk but R3: hibernating; VaR 0
    ("J", 300, 1, 800, 350, 0.90, 30, 100),  # R2 F1 M4: at risk (by M); VaR 90
]
EXPECTED = {
    # id: (clv_percentile, value_tier, churn_risk, segment, retention_priority)
    "A": (70.0, "medium", "low", "new", 7),
    "B": (90.0, "high", "high", "can't lose them", 1),
    "C": (100.0, "VIP", "low", "champions", 5),
    "D": (80.0, "medium", "medium", "loyal", 3),  # 80 is not > 80: medium; ties H, "D" < "H"
    "E": (55.0, "medium", "medium", "potential loyalists", 2),  # tied with F: ranks 5, 6
    "F": (55.0, "medium", "high", "at risk", 6),
    "G": (10.0, "low", "high", "lost", 10),  # no net spend: last
    "H": (20.0, "low", "medium", "hibernating", 4),
    "I": (30.0, "low", "high", "hibernating", 9),
    "J": (40.0, "low", "high", "at risk", 8),
}
EXPECTED_VAR = {"A": 120, "B": 850, "C": 200, "D": 300, "E": 395}
EXPECTED_VAR |= {"F": 160, "G": 0, "H": 300, "I": 0, "J": 90}


def hand_table() -> pd.DataFrame:
    cols = ["customer_id", "recency_days", "purchase_days", "historical_clv", "tenure_days"]
    cols += ["p_churn", "clv", "clv_lifetime"]
    table = pd.DataFrame(HAND, columns=cols)
    table["customer_id"] = table["customer_id"].astype("str")
    for col in ("historical_clv", "clv", "clv_lifetime"):
        table[col] = table[col].astype("float64")
    p_active = 1.0 - table["p_churn"]
    table["expected_spend"] = table["clv"] / 0.5
    spend_if_active = table["expected_spend"] / p_active.where(p_active > 0)
    table["expected_spend_if_active"] = spend_if_active.fillna(40.0)  # G: p_active 0
    table["p_alive"] = 1.0  # all alive
    return table


def test_hand_table_exact_labels() -> None:
    out = add_segments(hand_table()).set_index("customer_id")
    got = {
        cid: (
            row.clv_percentile,
            row.value_tier,
            row.churn_risk,
            row.segment,
            row.retention_priority,
        )
        for cid, row in out.iterrows()
    }
    assert got == EXPECTED
    assert out["value_at_risk"].to_dict() == pytest.approx(EXPECTED_VAR)


def test_priority_ties_broken_by_customer_id() -> None:
    table = hand_table()
    twins = table[table["customer_id"].isin(["B", "J"])].assign(customer_id=["z2", "IJ"])
    twins["customer_id"] = twins["customer_id"].astype("str")
    out = add_segments(pd.concat([table, twins], ignore_index=True)).set_index("customer_id")
    # B and its twin z2 tie at VaR 850: "B" < "z2"; J twin "IJ" < "J" at 90 (after A's 120)
    assert out.loc[["B", "z2", "IJ", "J"], "retention_priority"].tolist() == [1, 2, 9, 10]


def test_value_at_risk_is_churn_times_lifetime_value() -> None:
    """Issue 10 item 2: value at risk = P(churn) x lifetime CLV per customer, so it never exceeds
    lifetime CLV, in total either, whatever P(alive)."""
    scores = synthetic_scores(800, seed=9, horizon_days=90, margin=0.4, annual_discount_rate=0.1)
    out = add_segments(scores)
    np.testing.assert_allclose(out["value_at_risk"], out["p_churn"] * out["clv_lifetime"])
    assert (out["value_at_risk"] <= out["clv_lifetime"]).all()
    assert 0 < out["value_at_risk"].sum() < out["clv_lifetime"].sum()


# Win-back split. clv_lifetime = p_alive x 3 x spend_if_active (a stand-in), VaR = p_churn x it.
# id  p_alive p_active spend_if_active historical_clv
WINBACK = [
    ("a", 0.90, 0.50, 100.0, 300.0),  # lifetime 270, VaR 0.5 x 270 = 135
    ("b", 0.04, 0.01, 5000.0, 9000.0),  # gone: lifetime 600, VaR 594, win-back #1 by spend
    ("c", 0.60, 0.10, 200.0, 50.0),  # lifetime 360, VaR 324
    ("d", 0.01, 0.00, 50.0, 700.0),  # gone: lifetime 1.5, VaR 1.5, win-back #2
    ("e", 1.00, 0.95, 400.0, 0.0),  # no net spend: lifetime 1200, VaR 60, after a and c
    ("f", 0.049, 0.04, 1000.0, 700.0),  # gone (just under 5%): lifetime 147, VaR 141.12, #3
]


def winback_table() -> pd.DataFrame:
    table = hand_table().head(len(WINBACK)).reset_index(drop=True)
    ids, p_alive, p_active, spend_if_active, hist = map(list, zip(*WINBACK, strict=True))
    table["customer_id"] = pd.Series(ids, dtype="str")
    table["p_alive"] = p_alive
    table["p_churn"] = 1.0 - np.array(p_active)
    table["expected_spend_if_active"] = spend_if_active
    table["expected_spend"] = np.array(p_active) * np.array(spend_if_active)
    table["clv"] = table["expected_spend"]
    table["historical_clv"] = hist
    table["clv_lifetime"] = 3.0 * table["p_alive"] * table["expected_spend_if_active"]
    return table


def test_winback_targets_are_not_retention_priorities() -> None:
    """Issue 10 item 2: customers with P(alive) < 5% are ranked for win-back (by spend to date),
    after all others for retention, whatever their value at risk."""
    out = add_segments(winback_table()).set_index("customer_id")
    want_var = {"a": 135.0, "b": 594.0, "c": 324.0, "d": 1.5, "e": 60.0, "f": 141.12}
    assert out["value_at_risk"].to_dict() == pytest.approx(want_var)
    # b has the most value at risk but is gone: retention ranks c, a (alive, net spend), e (no
    # net spend), then the win-back targets b, f, d by value at risk
    want_retention = {"c": 1, "a": 2, "e": 3, "b": 4, "f": 5, "d": 6}
    assert out["retention_priority"].to_dict() == want_retention
    assert out["winback_priority"].to_dict() == {"a": 0, "b": 1, "c": 0, "d": 2, "e": 0, "f": 3}


def test_columns_appended_in_order_and_input_untouched() -> None:
    table = hand_table()
    before = table.copy()
    out = add_segments(table)
    assert list(out.columns) == list(table.columns) + list(SEGMENT_COLUMNS)
    pd.testing.assert_frame_equal(table, before)
    assert out["retention_priority"].dtype == "int64"


def test_row_order_and_index_do_not_matter() -> None:
    table = hand_table()
    shuffled = table.sample(frac=1.0, random_state=3)
    shuffled.index = [0] * len(shuffled)  # a repeated index must not confuse the ranking
    a = add_segments(table).set_index("customer_id").sort_index()
    b = add_segments(shuffled).set_index("customer_id").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_rerun_replaces_columns() -> None:
    once = add_segments(hand_table())
    pd.testing.assert_frame_equal(add_segments(once), once)


def test_new_takes_precedence_over_cant_lose_them() -> None:
    table = hand_table()
    table.loc[table["customer_id"] == "B", "tenure_days"] = 10
    out = add_segments(table).set_index("customer_id")
    assert out.loc["B", "segment"] == "new"


def test_no_net_spend_is_never_vip_nor_a_top_priority() -> None:
    """The top customer by predicted clv and value at risk cancelled everything (net spend 0):
    tier low, and ranked with G (only returns) after everyone with net spend."""
    table = hand_table()
    cancelled = table[table["customer_id"] == "B"].assign(customer_id="K", historical_clv=0.0)
    cancelled[["clv", "expected_spend", "expected_spend_if_active", "clv_lifetime"]] *= 10  # a VIP
    cancelled["customer_id"] = cancelled["customer_id"].astype("str")
    out = add_segments(pd.concat([table, cancelled], ignore_index=True)).set_index("customer_id")
    assert out.loc["K", "clv_percentile"] == 100.0
    assert out.loc["K", "value_tier"] == "low"
    assert out.loc["K", "value_at_risk"] == pytest.approx(10 * 850)
    assert "VIP" not in set(out["value_tier"])  # (n = 11: K's is the only percentile above 95)
    expected_priority = {cid: e[4] for cid, e in EXPECTED.items()} | {"K": 10, "G": 11}
    assert out["retention_priority"].to_dict() == expected_priority


def test_synthetic_tier_sizes() -> None:
    out = add_segments(synthetic_scores(2000, seed=5))
    counts = out["value_tier"].value_counts()
    assert counts.to_dict() == {"VIP": 100, "high": 300, "medium": 600, "low": 1000}
    assert set(out["segment"]) == set(SEGMENTS)  # a realistic table fills every segment


def test_empty_table() -> None:
    out = add_segments(hand_table().iloc[:0])
    assert list(out.columns)[-len(SEGMENT_COLUMNS) :] == list(SEGMENT_COLUMNS)
    assert out.empty


@pytest.mark.parametrize("dropped", ["clv", "tenure_days", "p_churn"])
def test_missing_column(dropped: str) -> None:
    with pytest.raises(ValueError, match=f"lacks column.*'{dropped}'"):
        add_segments(hand_table().drop(columns=dropped))


def test_bad_values() -> None:
    table = hand_table()
    table.loc[2, "clv"] = np.nan
    with pytest.raises(ValueError, match=r"`clv` has NaN/inf for 1 rows, e\.g\. \['C'\]"):
        add_segments(table)
    table = hand_table()
    table.loc[0, "p_churn"] = 1.5
    with pytest.raises(ValueError, match=r"`p_churn` must be in \[0, 1\]"):
        add_segments(table)
    table = hand_table()
    table["recency_days"] = table["recency_days"].astype("str")
    with pytest.raises(ValueError, match="`recency_days` must be numeric"):
        add_segments(table)


def test_duplicate_customer() -> None:
    table = pd.concat([hand_table(), hand_table().iloc[[1]]])
    with pytest.raises(ValueError, match=r"customer_id repeats \(1 rows, e\.g\. \['B'\]\)"):
        add_segments(table)


# --- invariants -------------------------------------------------------------------------------

_money = st.floats(-100.0, 1e4, allow_nan=False, allow_infinity=False)
_row = st.tuples(
    st.integers(1, 2000),  # recency_days
    st.integers(0, 30),  # purchase_days
    _money,  # historical_clv
    st.integers(0, 400),  # extra tenure over recency
    st.sampled_from([0.0, 0.2, 0.5, 0.79, 0.8, 0.95, 1.0]) | st.floats(0.0, 1.0),
    st.sampled_from([0.0, 10.0, 50.0]) | st.floats(0.0, 1e4),  # spend if active: ties likely
    st.sampled_from([0.0, 100.0]) | st.floats(0.0, 1e5),  # clv_lifetime
    st.sampled_from([0.0, 0.01, 1.0]) | st.floats(0.0, 1.0),  # share of non-buyers alive
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_row, min_size=1, max_size=40))
@example(rows=[(1, 0, 0.0, 0, 1.0, 1.0, 0.0, 0.01)])  # nobody expected to spend: money factor 1
@example(  # win-back targets with and without net spend, nobody expected to spend
    rows=[(1, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0)] * 3
    + [(1, 0, 0.0, 0, 1.0, 0.0, 0.0, 0.0), (1, 0, 1.0, 0, 1.0, 0.0, 0.0, 0.0)]
)
def test_invariants(rows: list[tuple]) -> None:
    table = pd.DataFrame(
        {
            "customer_id": pd.Series([f"c{i:03d}" for i in range(len(rows))], dtype="str"),
            "recency_days": [r[0] for r in rows],
            "purchase_days": [r[1] for r in rows],
            "historical_clv": [r[2] for r in rows],
            "tenure_days": [r[0] + r[3] for r in rows],
            "p_churn": [r[4] for r in rows],
            "expected_spend_if_active": [r[5] for r in rows],
            "clv_lifetime": [r[6] for r in rows],
        }
    )
    table["expected_spend"] = (1.0 - table["p_churn"]) * table["expected_spend_if_active"]
    table["clv"] = 0.5 * table["expected_spend"]
    table["p_alive"] = 1.0 - table["p_churn"] * (1.0 - np.array([r[7] for r in rows]))
    assert set(REQUIRED_COLUMNS) <= set(table.columns)
    out = add_segments(table)
    n = len(out)
    # every customer exactly one known label of each kind
    assert out["segment"].isin(SEGMENTS).all()
    assert out["value_tier"].isin(VALUE_TIERS).all()
    assert out["churn_risk"].isin(CHURN_RISKS).all()
    # priorities: a permutation of 1..n, alive customers with net spend first, then alive
    # without, then win-back targets; within each by value_at_risk desc, then customer_id
    assert sorted(out["retention_priority"]) == list(range(1, n + 1))
    by_priority = out.sort_values("retention_priority")
    gone = out["p_alive"] < WINBACK_P_ALIVE
    # (net spend splits the customers still alive only: the win-back targets are one group)
    no_net = out.assign(gone=gone, no_net=~gone & (out["historical_clv"] <= 0))
    expected = no_net.sort_values(
        ["gone", "no_net", "value_at_risk", "customer_id"], ascending=[True, True, False, True]
    )
    assert by_priority["customer_id"].tolist() == expected["customer_id"].tolist()
    # win-back: 1..k over the gone by spend to date desc, then customer_id; 0 for the others
    assert (out.loc[~gone, "winback_priority"] == 0).all()
    want = out[gone].sort_values(["historical_clv", "customer_id"], ascending=[False, True])
    got = out[gone].sort_values("winback_priority")
    assert got["customer_id"].tolist() == want["customer_id"].tolist()
    assert got["winback_priority"].tolist() == list(range(1, int(gone.sum()) + 1))
    # value at risk: P(churn) x lifetime CLV, never negative nor above lifetime CLV
    var = out["value_at_risk"].to_numpy()
    assert (var >= 0).all()
    np.testing.assert_allclose(var, out["p_churn"] * out["clv_lifetime"])
    assert (var <= out["clv_lifetime"].to_numpy()).all()
    # percentile in (0, 100], monotone in clv, equal for equal clv; tiers follow it among the
    # customers with net spend, and the others are "low"
    pct = out["clv_percentile"].to_numpy()
    clv = out["clv"].to_numpy()
    has_net = out["historical_clv"].to_numpy() > 0
    assert ((pct > 0) & (pct <= 100)).all()
    tier_rank = out["value_tier"].map(VALUE_TIERS.index).to_numpy()
    assert (out.loc[~has_net, "value_tier"] == "low").all()
    for i in range(n):
        assert (pct[clv > clv[i]] > pct[i]).all()
        assert (pct[clv == clv[i]] == pct[i]).all()
        if has_net[i]:
            assert (tier_rank[(clv > clv[i]) & has_net] <= tier_rank[i]).all()
