"""Tests for clvflow.data.simulate: schema, determinism, label consistency, oracle calibration, and the
optional retail-file features (short histories, wholesale buyers, same-day cancellations, a Q4
peak, guest rows without id)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clvflow.data.simulate import (
    RETAIL_LIKE_SETTINGS,
    TRANSACTION_COLUMNS,
    TRUTH_COLUMNS,
    Simulation,
    retail_like,
    simulate,
)

N_LARGE = 50_000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """One default-settings simulation shared by the data and model-behaviour tests."""
    return simulate(N_LARGE, seed=7)


def _window_labels(tx: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Labels computed the plain pandas way, as docs/evaluation.md defines them."""
    end = as_of + pd.Timedelta(days=horizon_days)
    window = tx[(tx["timestamp"] >= as_of) & (tx["timestamp"] < end)]
    purchases = window[window["amount"] >= 0].groupby("customer_id").size()
    net = window.groupby("customer_id")["amount"].sum()
    labels = pd.DataFrame({"n_purchases": purchases, "spend": net.clip(lower=0)}).fillna(0)
    return labels.assign(active=(labels["n_purchases"] > 0).astype(np.int64))


# --- code tests ------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames() -> None:
    a, b = simulate(2_000, seed=3), simulate(2_000, seed=3)
    pd.testing.assert_frame_equal(a.transactions, b.transactions)
    pd.testing.assert_frame_equal(a.truth, b.truth)


def test_different_seeds_differ() -> None:
    a, b = simulate(2_000, seed=3), simulate(2_000, seed=4)
    assert not a.truth["first_purchase"].equals(b.truth["first_purchase"])
    assert not a.transactions.equals(b.transactions)


@pytest.mark.parametrize(
    "as_of",
    ["2024-01-01", dt.date(2024, 1, 1), dt.datetime(2024, 1, 1), pd.Timestamp("2024-01-01")],
)
def test_date_forms_are_equivalent(as_of: object) -> None:
    ref = simulate(500, as_of="2024-01-01", seed=1)
    got = simulate(500, as_of=as_of, seed=1)
    assert got.as_of == pd.Timestamp("2024-01-01")
    pd.testing.assert_frame_equal(got.transactions, ref.transactions)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_customers": 0}, "n_customers"),
        ({"n_customers": 2.5}, "n_customers"),
        ({"start": "2024-01-01", "as_of": "2024-01-01"}, "start"),
        ({"start": "2024-06-01", "as_of": "2024-01-01"}, "start"),
        ({"horizon_days": 0}, "horizon_days"),
        ({"as_of": "2024-01-01 12:00"}, "as_of"),
        ({"start": "not a date"}, "start"),
        ({"as_of": pd.Timestamp("2024-01-01", tz="UTC")}, "as_of"),
        ({"return_prob": 1.5}, "return_prob"),
        ({"rate_shape": 0.0}, "rate_shape"),
        ({"id_prefix": "Ç"}, "id_prefix"),
        ({"seasonal_amplitude": 1.0}, "seasonal_amplitude"),
        ({"seasonal_amplitude": -0.1}, "seasonal_amplitude"),
        ({"seasonal_peak_day": 0}, "seasonal_peak_day"),
        ({"seasonal_peak_day": 12.5}, "seasonal_peak_day"),
        ({"seed": -1}, "seed"),
        ({"wholesale_share": 1.0}, "wholesale_share"),
        ({"wholesale_order_value_mean": 0.0}, "wholesale_order_value_mean"),
        ({"wholesale_order_value_sigma": -1.0}, "wholesale_order_value_sigma"),
        ({"cancel_rate": -0.1}, "cancel_rate"),
        ({"cancel_partial_prob": 1.5}, "cancel_partial_prob"),
        ({"missing_id_share": 1.0}, "missing_id_share"),
    ],
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    kwargs = {"n_customers": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        simulate(**kwargs)


def test_single_customer_and_no_extras() -> None:
    one = simulate(1, seed=0)
    assert len(one.truth) == 1 and len(one.transactions) >= 1
    plain = simulate(2_000, zero_amount_prob=0, split_prob=0, return_prob=0, seed=0)
    assert (plain.transactions["amount"] > 0).all()


# --- data tests ------------------------------------------------------------------------------


def test_schema_and_dtypes(sim: Simulation) -> None:
    tx, truth = sim.transactions, sim.truth
    assert tuple(tx.columns) == TRANSACTION_COLUMNS
    assert tuple(truth.columns) == TRUTH_COLUMNS
    assert pd.api.types.is_string_dtype(tx["customer_id"])
    assert tx["timestamp"].dtype == np.dtype("datetime64[ns]")
    assert tx["amount"].dtype == np.float64
    assert truth["first_purchase"].dtype == np.dtype("datetime64[ns]")
    assert truth["alive_at_as_of"].dtype == bool
    assert len(truth) == N_LARGE and truth["customer_id"].is_unique
    assert set(tx["customer_id"].unique()) == set(truth["customer_id"])
    assert sim.as_of == pd.Timestamp("2024-01-01") and sim.horizon_days == 180
    assert not tx.isna().any().any() and not truth.isna().any().any()


def test_rows_dated_in_range_with_seconds(sim: Simulation) -> None:
    ts = sim.transactions["timestamp"]
    assert ts.min() >= pd.Timestamp("2022-01-01")
    assert ts.max() < sim.as_of + pd.Timedelta(days=sim.horizon_days)
    assert (ts.astype("int64") % 1_000_000_000 == 0).all()
    assert ts.dt.hour.nunique() == 24
    assert ts.is_monotonic_increasing
    assert not sim.transactions["customer_id"].is_monotonic_increasing


def test_first_purchase_is_first_row(sim: Simulation) -> None:
    first = sim.transactions.groupby("customer_id")["timestamp"].min()
    truth = sim.truth.set_index("customer_id")
    pd.testing.assert_series_equal(
        truth["first_purchase"], first.reindex(truth.index), check_names=False
    )
    assert (truth["first_purchase"] < sim.as_of).all()


def test_ids_keep_leading_zeros(sim: Simulation) -> None:
    assert sim.truth["customer_id"].iloc[0] == "C0000001"
    assert sim.transactions["customer_id"].str.fullmatch(r"C\d{7}").all()
    digits = simulate(20, id_prefix="", seed=0)
    assert digits.truth["customer_id"].iloc[1] == "0000002"
    assert digits.transactions["customer_id"].str.fullmatch(r"\d{7}").all()


def test_same_day_rows_returns_and_free_orders_present(sim: Simulation) -> None:
    tx = sim.transactions
    day = tx["timestamp"].dt.normalize()
    purchases = tx["amount"] >= 0
    same_day = tx[purchases].groupby([tx["customer_id"], day]).size()
    assert 0.02 < (same_day > 1).mean() < 0.2
    assert 0.01 < (tx["amount"] < 0).mean() < 0.05
    assert (tx["amount"] == 0).any()
    assert tx["amount"].round(2).eq(tx["amount"]).all()


def test_size_per_customer(sim: Simulation) -> None:
    assert 15 <= len(sim.transactions) / N_LARGE <= 25


def test_truth_labels_match_transactions(sim: Simulation) -> None:
    truth = sim.truth.set_index("customer_id")
    direct = _window_labels(sim.transactions, sim.as_of, sim.horizon_days)
    direct = direct.reindex(truth.index, fill_value=0)
    np.testing.assert_array_equal(truth["active"], direct["active"])
    np.testing.assert_allclose(truth["spend"], direct["spend"], atol=1e-6)
    assert truth["active"].between(0, 1).all() and (truth["spend"] >= 0).all()


# --- model-behaviour tests -------------------------------------------------------------------


def test_dead_customers_never_buy(sim: Simulation) -> None:
    truth = sim.truth
    assert truth.loc[~truth["alive_at_as_of"], "active"].eq(0).all()
    assert truth.loc[~truth["alive_at_as_of"], "expected_spend"].eq(0).all()


def test_oracle_ranks_spend(sim: Simulation) -> None:
    truth = sim.truth.iloc[:20_000]
    spearman = truth["expected_spend"].rank().corr(truth["spend"].rank())
    assert spearman > 0.5


def test_oracle_is_calibrated(sim: Simulation) -> None:
    truth = sim.truth
    agg_bias = truth["expected_spend"].sum() / truth["spend"].sum() - 1
    assert abs(agg_bias) < 0.03
    assert truth["p_active_oracle"].mean() == pytest.approx(truth["active"].mean(), abs=0.01)
    high = truth["p_active_oracle"] > 0.9
    assert truth.loc[high, "active"].mean() > 0.85


# --- seasonality -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seasonal() -> Simulation:
    """Customers who never drop out, acquired early, with purchases peaking mid-December at 1.5x
    the mean rate and bottoming out mid-June at 0.5x."""
    return simulate(
        30_000,
        seed=2,
        start="2021-01-01",
        as_of="2023-01-01",
        seasonal_amplitude=0.5,
        seasonal_peak_day=349,
        dropout_b=1e6,
        acquisition_shape=50.0,
    )


def test_seasonal_purchases_follow_the_season(seasonal: Simulation) -> None:
    tx = seasonal.transactions
    first = tx.groupby("customer_id")["timestamp"].transform("min")
    in_2022 = (tx["timestamp"] >= "2022-01-01") & (tx["timestamp"] < "2023-01-01")
    repeats = tx.loc[(tx["timestamp"] > first) & (tx["amount"] >= 0) & in_2022, "timestamp"]
    per_month = repeats.dt.month.value_counts()
    assert per_month.idxmax() in (12, 1) and per_month.idxmin() in (6, 7)
    # Intensity at the peak / at the trough = 1.5 / 0.5; December / June averages a bit less.
    assert 2.6 < per_month[12] / per_month[6] < 3.4


def test_seasonal_oracle_is_calibrated(seasonal: Simulation) -> None:
    truth = seasonal.truth
    assert truth["expected_spend"].sum() / truth["spend"].sum() - 1 == pytest.approx(0, abs=0.02)
    assert truth["p_active_oracle"].mean() == pytest.approx(truth["active"].mean(), abs=0.01)


def test_no_season_is_the_default() -> None:
    plain = simulate(2_000, seed=4)
    flat = simulate(2_000, seed=4, seasonal_amplitude=0.0, seasonal_peak_day=100)
    pd.testing.assert_frame_equal(plain.transactions, flat.transactions)
    pd.testing.assert_frame_equal(plain.truth, flat.truth)


# --- retail-file features --------------------------------------------------------------------


def test_defaults_are_unchanged_by_the_retail_options() -> None:
    """Pinned from the simulator before the optional retail settings existed (numpy's PCG64)."""
    plain = simulate(2_000, seed=3)
    assert len(plain.transactions) == 36_929
    assert plain.transactions["amount"].sum() == pytest.approx(1_696_770.47, abs=0.01)
    off = simulate(
        2_000,
        seed=3,
        wholesale_share=0.0,
        wholesale_order_value_mean=9.0,
        cancel_rate=0.0,
        cancel_partial_prob=0.7,
        missing_id_share=0.0,
    )
    pd.testing.assert_frame_equal(plain.transactions, off.transactions)
    pd.testing.assert_frame_equal(plain.truth, off.truth)


def _without_returns(**kwargs: object) -> Simulation:
    return simulate(20_000, seed=11, return_prob=0.0, split_prob=0.0, **kwargs)


def test_cancellations_are_same_day_negatives_of_their_orders() -> None:
    base, cancelled = _without_returns(), _without_returns(cancel_rate=0.2)
    tx = cancelled.transactions
    orders, cancels = tx[tx["amount"] >= 0], tx[tx["amount"] < 0]
    # The same orders as without cancellations, plus cancellation rows.
    pd.testing.assert_frame_equal(orders.reset_index(drop=True), base.transactions)
    assert len(cancels) / (orders["amount"] > 0).sum() == pytest.approx(0.2, abs=0.01)
    keys = ["customer_id", "day", "value"]
    pairs = cancels.assign(day=cancels["timestamp"].dt.normalize(), value=-cancels["amount"]).merge(
        orders.assign(day=orders["timestamp"].dt.normalize(), value=orders["amount"]),
        on=keys,
        suffixes=("", "_order"),
    )
    delay = pairs["timestamp"] - pairs["timestamp_order"]
    pairs = pairs[(delay >= pd.Timedelta(0)) & (delay <= pd.Timedelta(hours=6))]
    assert pairs.drop_duplicates(["customer_id", "timestamp", "amount"]).shape[0] == len(cancels)


def test_partial_cancellations_net_to_the_stated_share() -> None:
    base = _without_returns()
    cancelled = _without_returns(cancel_rate=0.2, cancel_partial_prob=0.5)
    amount = cancelled.transactions["amount"]
    # Cancelled share of the order value: 0.2 of the orders x (1 - 0.5 / 2) of their value each.
    assert -amount[amount < 0].sum() / amount[amount >= 0].sum() == pytest.approx(0.15, abs=0.01)
    assert amount.sum() == pytest.approx(base.transactions["amount"].sum() * 0.85, rel=0.01)


def test_truth_under_cancellations() -> None:
    sim = simulate(20_000, seed=12, cancel_rate=0.3, cancel_partial_prob=0.5)
    truth = sim.truth.set_index("customer_id")
    direct = _window_labels(sim.transactions, sim.as_of, sim.horizon_days)
    direct = direct.reindex(truth.index, fill_value=0)
    np.testing.assert_array_equal(truth["active"], direct["active"])
    np.testing.assert_allclose(truth["spend"], direct["spend"], atol=1e-6)
    assert truth["expected_spend"].sum() / truth["spend"].sum() - 1 == pytest.approx(0, abs=0.03)
    assert truth["p_active_oracle"].mean() == pytest.approx(truth["active"].mean(), abs=0.01)


def _spend_in_2023(sim: Simulation) -> pd.Series:
    tx = sim.transactions
    year = tx[(tx["timestamp"] >= "2023-01-01") & (tx["timestamp"] < "2024-01-01")]
    return year.groupby("customer_id")["amount"].sum().sort_values(ascending=False)


def test_wholesale_buyers_make_a_heavy_tail() -> None:
    base, wholesale = simulate(20_000, seed=5), simulate(20_000, seed=5, wholesale_share=0.05)
    changed = base.truth["mean_order_value"] != wholesale.truth["mean_order_value"]
    assert changed.mean() == pytest.approx(0.05, abs=0.005)
    # Only order values change (and, through them, which baskets split: the split needs >= 1.00).
    latent = ["first_purchase", "purchase_rate_per_day", "dropout_prob", "alive_at_as_of"]
    pd.testing.assert_frame_equal(base.truth[latent], wholesale.truth[latent])
    plain_spend, spend = _spend_in_2023(base), _spend_in_2023(wholesale)
    assert plain_spend.max() < 50_000 and (spend >= 100_000).sum() >= 5
    # Share of the year's spend held by the top 1% of the customers: ~0.10 without, ~0.43 with.
    assert _top_percent_share(plain_spend) < 0.15 and _top_percent_share(spend) > 0.3


def _top_percent_share(spend: pd.Series) -> float:
    return spend.head(len(spend) // 100).sum() / spend.sum()


@pytest.mark.parametrize("start", ["2023-10-01", "2023-07-01", "2023-01-01"])
def test_short_histories(start: str) -> None:
    sim = simulate(20_000, seed=6, start=start, horizon_days=90, seasonal_amplitude=0.4)
    tx, truth = sim.transactions, sim.truth
    assert tx["timestamp"].min() >= pd.Timestamp(start)
    assert (truth["first_purchase"] < sim.as_of).all()
    direct = _window_labels(tx, sim.as_of, sim.horizon_days)
    direct = direct.reindex(truth["customer_id"], fill_value=0)
    np.testing.assert_array_equal(truth["active"], direct["active"])
    assert truth["p_active_oracle"].mean() == pytest.approx(truth["active"].mean(), abs=0.01)
    assert truth["expected_spend"].sum() / truth["spend"].sum() - 1 == pytest.approx(0, abs=0.03)


def _orders_per_quarter(sim: Simulation) -> pd.Series:
    tx = sim.transactions
    orders = tx[(tx["amount"] >= 0) & (tx["timestamp"] >= "2011-01-01")]
    return orders["timestamp"].dt.quarter.value_counts()


def test_q4_peak() -> None:
    peak = _orders_per_quarter(retail_like(4_000, seed=3))
    flat = _orders_per_quarter(retail_like(4_000, seed=3, seasonal_amplitude=0.0))
    # Q4 stops at 8 December and the customer base grows, so compare with the season switched off.
    assert peak[4] > 1.5 * peak[2]
    assert peak[4] / peak[2] > 1.5 * flat[4] / flat[2]


def test_retail_like() -> None:
    sim = retail_like(4_000, seed=1)
    tx, truth = sim.transactions, sim.truth
    assert tx["timestamp"].min() >= pd.Timestamp(RETAIL_LIKE_SETTINGS["start"])
    assert tx["timestamp"].max() < pd.Timestamp("2011-12-09")
    guests = tx["customer_id"].isna()
    assert guests.mean() == pytest.approx(0.2, abs=0.02)
    assert set(tx.loc[~guests, "customer_id"]) == set(truth["customer_id"])
    direct = _window_labels(tx[~guests], sim.as_of, sim.horizon_days)
    direct = direct.reindex(truth["customer_id"], fill_value=0)
    np.testing.assert_allclose(truth["spend"], direct["spend"], atol=1e-6)
    assert (tx["amount"] < -10_000).any() and tx["amount"].max() > 20_000
    assert retail_like(300, seed=1, horizon_days=30).horizon_days == 30


def test_retail_like_is_deterministic() -> None:
    a, b, c = retail_like(1_000, seed=4), retail_like(1_000, seed=4), retail_like(1_000, seed=5)
    pd.testing.assert_frame_equal(a.transactions, b.transactions)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert not a.transactions.equals(c.transactions)
