"""Seeded, vectorised simulator of retail purchase logs with known ground truth.

Generative story (a BG/NBD x lognormal-spend process; times are timezone-naive, ``start`` and
``as_of`` are midnights, all durations in days):

1. Acquisition: customer ``i`` makes a first purchase at ``start + u_i * (as_of - start)`` with
   ``u_i ~ Beta(1, acquisition_shape)`` (1 = uniform, > 1 = front-loaded: more old customers).
2. Purchase rate: ``rate_i ~ Gamma(rate_shape, mean = 1 / mean_days_between_purchases)`` purchases
   per day; while alive, repeat purchases form a Poisson process with intensity
   ``rate_i * s(t)``, where ``s(t) = 1 + seasonal_amplitude * cos(2 pi (t - peak) / 365.25 days)``
   and ``peak`` is day ``seasonal_peak_day`` of the year (``seasonal_amplitude = 0``: no season,
   the default). Equivalently, a homogeneous process in the "seasonal clock"
   ``S(t) = integral of s``; every formula below uses lengths on that clock.
3. Dropout: ``dropout_i ~ Beta(dropout_a, dropout_b)``; right after each repeat purchase the
   customer becomes inactive for good with probability ``dropout_i`` (BG/NBD convention: never
   straight after the first purchase). Purchases are simulated up to ``as_of + horizon_days``.
4. Order value: per-customer mean ``mean_order_value_i ~ Gamma(order_value_shape,
   mean = order_value_mean)``; an order is free (amount 0) with probability ``zero_amount_prob``,
   otherwise lognormal with log-sd ``order_value_sigma``, scaled so that its expectation (zeros
   included) is ``mean_order_value_i``; rounded to cents. Wholesale buyers: with probability
   ``wholesale_share`` a customer's mean is instead ``wholesale_order_value_mean`` times a
   lognormal of mean 1 and log-sd ``wholesale_order_value_sigma``, a heavy tail (with the defaults
   and 5% wholesale buyers among 4,000 customers, 3 or 4 spend 100k+ a year and the top 1% of the
   customers hold about half the spend); their orders are then drawn as above.
5. Split baskets: with probability ``split_prob`` an order of at least 1.00 is written as 2 or 3
   rows the same calendar day (later seconds) whose amounts sum to the order value.
6. Returns: with probability ``return_prob`` a non-free order gets one return row 1 to
   ``return_max_delay_days`` days later, amount ``-fraction * order value`` with fraction
   ``~ Uniform(0.2, 1.0)`` (at least 0.01); returns dated on or after ``as_of + horizon_days`` are
   not exported. A cancelled order (step 7) is never returned.
7. Same-day cancellations: with probability ``cancel_rate`` a non-free order gets a cancellation
   row 1 minute to 6 hours after it (at the latest the same calendar day's last second), amount
   ``-fraction * order value``: the whole order (fraction 1) or, with probability
   ``cancel_partial_prob``, ``fraction ~ Uniform(0, 1)`` (at least 0.01).
8. Guest checkouts: ``missing_id_share > 0`` adds extra customers, simulated by the same story,
   whose rows have no customer id (NA), about that share of all rows. They are not customers of
   the truth (ingest drops rows without an id).

Random streams: the story draws from ``default_rng(seed)``; wholesale buyers, cancellations and
guests each draw from their own child of ``SeedSequence(seed)``. So the defaults give the frames
this simulator gave before those options existed, and turning one on leaves the customers and
their order times as they were (``cancel_rate > 0``: the same orders plus cancellation rows, minus
the returns of cancelled orders; ``wholesale_share > 0``: other values, so other baskets split).

Short histories (3 to 12 months) are just ``start`` a few months before ``as_of``. A Q4 peak (retail
sales peak in late November / December) is ``seasonal_amplitude > 0`` with ``seasonal_peak_day``
around 330 (26 November); :func:`retail_like` combines these settings.

Truth per customer (all acquired before ``as_of``): the latent draws, ``alive_at_as_of``, the
realised window labels ``active``/``spend`` over ``[as_of, as_of + horizon_days)`` computed from the
exported rows exactly as in docs/evaluation.md, and two oracles given the latent state at ``as_of``:

- ``p_active_oracle = alive * (1 - exp(-rate * H))``: exact (an alive customer is alive until their
  first purchase in the window), with ``H`` the window's length on the seasonal clock.
- ``expected_spend = alive * (1 - exp(-rate * dropout * H)) / dropout * mean_order_value *
  (1 - return_prob * 0.6 * (1 - cancel_rate) - cancel_rate * (1 - cancel_partial_prob / 2))``:
  the expected number of purchases in the window is exact (BG/NBD, memoryless); the spend is a
  tight approximation that ignores returns crossing the window edges (orders before ``as_of``
  returned inside it, window orders returned after it) and the floor at 0.

Under cancellations the truth keeps the label definition, which reads the exported rows: a
cancelled order still counts as a purchase for ``active`` and ``p_active_oracle`` (its row has an
amount >= 0; a fully cancelled order makes a customer active with spend 0), the cancellation row
never does (negative amount), and ``spend`` / ``expected_spend`` are net of cancellations.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
DAYS_PER_YEAR = 365.25
_SEASON_GRID_SECONDS = 3_600  # the seasonal clock is inverted by interpolation on an hourly grid
_RETURN_FRACTION_LOW, _RETURN_FRACTION_HIGH = 0.2, 1.0
_MEAN_RETURN_FRACTION = (_RETURN_FRACTION_LOW + _RETURN_FRACTION_HIGH) / 2
_MIN_SPLIT_ORDER_VALUE = 1.0
_CANCEL_DELAY_SECONDS = (60, 6 * 3_600)  # a cancellation comes 1 minute to 6 hours after its order
# Child streams of SeedSequence(seed) for the optional parts of the story (module docstring).
_WHOLESALE_STREAM, _CANCEL_STREAM, _GUEST_STREAM = 0, 1, 2

TRANSACTION_COLUMNS = ("customer_id", "timestamp", "amount")
TRUTH_COLUMNS = (
    "customer_id",
    "first_purchase",
    "purchase_rate_per_day",
    "dropout_prob",
    "mean_order_value",
    "alive_at_as_of",
    "active",
    "spend",
    "expected_spend",
    "p_active_oracle",
)


@dataclass(frozen=True, eq=False)
class Simulation:
    """Simulated purchase log and the ground truth it was drawn from.

    transactions: ``customer_id`` (str; NA on guest rows, only when ``missing_id_share > 0``),
        ``timestamp`` (datetime64[ns], naive, seconds resolution), ``amount`` (float64; negative =
        return or cancellation), sorted by timestamp, all dated ``< as_of + horizon_days``.
    truth: one row per customer (columns ``TRUTH_COLUMNS``), sorted by ``customer_id``.
    """

    transactions: pd.DataFrame
    truth: pd.DataFrame
    as_of: pd.Timestamp
    horizon_days: int


def simulate(
    n_customers: int = 10_000,
    *,
    start: str | dt.date = "2022-01-01",
    as_of: str | dt.date = "2024-01-01",
    horizon_days: int = 180,
    seed: int = 0,
    acquisition_shape: float = 2.0,
    mean_days_between_purchases: float = 30.0,
    rate_shape: float = 0.6,
    dropout_a: float = 1.0,
    dropout_b: float = 60.0,
    order_value_mean: float = 50.0,
    order_value_shape: float = 3.0,
    order_value_sigma: float = 0.6,
    zero_amount_prob: float = 0.002,
    split_prob: float = 0.05,
    return_prob: float = 0.03,
    return_max_delay_days: int = 30,
    seasonal_amplitude: float = 0.0,
    seasonal_peak_day: int = 349,
    wholesale_share: float = 0.0,
    wholesale_order_value_mean: float = 1_500.0,
    wholesale_order_value_sigma: float = 1.0,
    cancel_rate: float = 0.0,
    cancel_partial_prob: float = 0.0,
    missing_id_share: float = 0.0,
    id_prefix: str = "C",
) -> Simulation:
    """Simulate a purchase log with known per-customer truth (see the module docstring).

    Args:
        n_customers: number of customers, all acquired in ``[start, as_of)``.
        start, as_of: midnights (str, date or Timestamp; timezone-naive), ``start < as_of``.
        horizon_days: length of the label window ``[as_of, as_of + horizon_days)``, in days.
        seed: seed (>= 0) of the numpy generators; the same seed gives identical frames.
        wholesale_share: probability that a customer is a wholesale buyer (heavy-tailed spend).
        cancel_rate: probability that an order is cancelled the same day.
        cancel_partial_prob: probability that a cancellation is partial rather than whole.
        missing_id_share: about this share of rows are guest rows without a customer id.
        Other keyword arguments set the generative story (module docstring).

    Returns:
        A ``Simulation``.

    Raises:
        ValueError: an argument is out of range (the message names it).
    """
    args = dict(locals())  # the arguments, by name, for validation and the draws
    start_ts, as_of_ts = _to_midnight("start", start), _to_midnight("as_of", as_of)
    _validate(n_customers, start_ts, as_of_ts, horizon_days, args)
    t0 = time.perf_counter()
    as_of_sec = (as_of_ts - start_ts) // pd.Timedelta(seconds=1)
    end_sec = as_of_sec + horizon_days * SECONDS_PER_DAY
    season = _Season(seasonal_amplitude, seasonal_peak_day, start_ts)
    streams = np.random.SeedSequence(seed)

    cust, alive, rows = _population(streams, n_customers, as_of_sec, end_sec, season, args)
    ids = _customer_ids(n_customers, id_prefix)
    truth = _truth_frame(
        ids,
        cust,
        alive,
        *rows,
        start_ts,
        as_of_sec,
        season.days_between(as_of_sec, end_sec),
        _net_order_share(args),
    )
    n_guests = round(n_customers * missing_id_share / (1.0 - missing_id_share))
    if n_guests:
        guest_streams = _child(streams, _GUEST_STREAM)
        guest_rows = _population(guest_streams, n_guests, as_of_sec, end_sec, season, args)[2]
        rows = _append_guest_rows(rows, guest_rows)
    transactions = _transactions_frame(ids, *rows, start_ts)
    logger.info(
        "simulated %d customers, %d transactions in %.1f s",
        n_customers,
        len(transactions),
        time.perf_counter() - t0,
    )
    return Simulation(transactions, truth, as_of_ts, horizon_days)


#: Settings of :func:`retail_like`: about a year of online-retail invoices (the shape of the UCI
#: Online Retail files: 2010-12-01 to 2011-12-09), with wholesale buyers, same-day cancellations, a
#: late-November peak and a fifth of the rows without a customer id.
RETAIL_LIKE_SETTINGS: MappingProxyType[str, Any] = MappingProxyType(
    {
        "start": "2010-12-01",
        "as_of": "2011-09-10",
        "horizon_days": 90,
        "acquisition_shape": 3.0,
        "wholesale_share": 0.05,
        "cancel_rate": 0.03,
        "cancel_partial_prob": 0.3,
        "seasonal_amplitude": 0.5,
        "seasonal_peak_day": 330,
        "missing_id_share": 0.2,
    }
)


def retail_like(n_customers: int = 4_000, *, seed: int = 0, **overrides: Any) -> Simulation:
    """:func:`simulate` with ``RETAIL_LIKE_SETTINGS``, each overridable by keyword.

    About a year of rows (``start`` to ``as_of + horizon_days``); the failures real invoice files
    cause: a few wholesale buyers spending 100k+ a year, orders cancelled the same day, a Q4 peak
    and guest rows without a customer id.
    """
    return simulate(n_customers, seed=seed, **{**RETAIL_LIKE_SETTINGS, **overrides})


def _population(
    streams: np.random.SeedSequence,
    n: int,
    as_of_sec: int,
    end_sec: int,
    season: _Season,
    args: dict,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Draw ``n`` customers and their export rows (steps 1-7 of the module docstring).

    Returns:
        (latent draws, alive_at_as_of, rows as (customer index, second since start, amount)).
    """
    rng = np.random.default_rng(streams)
    cust = _draw_customers(rng, n, as_of_sec, args)
    if args["wholesale_share"] > 0:
        _draw_wholesale(np.random.default_rng(_child(streams, _WHOLESALE_STREAM)), cust, args)
    order_cust, order_sec, alive = _draw_orders(rng, cust, as_of_sec, end_sec, season)
    order_amount = _draw_order_values(
        rng,
        cust["mean_order_value"][order_cust],
        args["order_value_sigma"],
        args["zero_amount_prob"],
    )
    cancel_rng = np.random.default_rng(_child(streams, _CANCEL_STREAM))
    cancel_idx, cancel_sec, cancel_amount = _draw_cancellations(
        cancel_rng, order_sec, order_amount, args["cancel_rate"], args["cancel_partial_prob"]
    )
    row_cust, row_sec, row_amount = _write_rows(
        rng, order_cust, order_sec, order_amount, end_sec, cancel_idx, args
    )
    if len(cancel_idx):
        row_cust = np.concatenate((row_cust, order_cust[cancel_idx]))
        row_sec = np.concatenate((row_sec, cancel_sec))
        row_amount = np.concatenate((row_amount, cancel_amount))
    return cust, alive, (row_cust, row_sec, row_amount)


def _child(streams: np.random.SeedSequence, key: int) -> np.random.SeedSequence:
    """Child ``key`` of ``streams`` (what ``streams.spawn`` would give, without its counter)."""
    return np.random.SeedSequence(streams.entropy, spawn_key=(*streams.spawn_key, key))


def _net_order_share(args: dict) -> float:
    """Expected share of an order's value left after returns and cancellations."""
    cancel_rate = args["cancel_rate"]
    mean_cancel_fraction = 1.0 - args["cancel_partial_prob"] / 2  # 1, or Uniform(0, 1) if partial
    return (
        1.0
        - args["return_prob"] * _MEAN_RETURN_FRACTION * (1.0 - cancel_rate)
        - cancel_rate * mean_cancel_fraction
    )


def _append_guest_rows(
    rows: tuple[np.ndarray, np.ndarray, np.ndarray],
    guest_rows: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers' rows then guests' rows, the guests' customer index set to -1 (no id)."""
    guest_cust = np.full(len(guest_rows[0]), -1, dtype=np.int64)
    return (
        np.concatenate((rows[0], guest_cust)),
        np.concatenate((rows[1], guest_rows[1])),
        np.concatenate((rows[2], guest_rows[2])),
    )


def _to_midnight(name: str, value: str | dt.date) -> pd.Timestamp:
    """Parse a naive midnight; raise ValueError naming ``name`` otherwise."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}={value!r} is not a date") from err
    # pd.Timestamp("NaT") returns NaT, which pandas-stubs does not model
    if ts is pd.NaT or ts.tzinfo is not None or ts != ts.normalize():  # type: ignore[comparison-overlap]
        raise ValueError(f"{name}={value!r} must be a timezone-naive midnight (a day)")
    return ts


def _validate(
    n_customers: int, start: pd.Timestamp, as_of: pd.Timestamp, horizon_days: int, args: dict
) -> None:
    """Check argument ranges; raise ValueError naming the first bad one."""
    if not isinstance(n_customers, (int, np.integer)) or n_customers < 1:
        raise ValueError(f"n_customers must be an integer >= 1, got {n_customers!r}")
    if not isinstance(args["seed"], (int, np.integer)) or args["seed"] < 0:
        raise ValueError(f"seed must be an integer >= 0, got {args['seed']!r}")
    if start >= as_of:
        raise ValueError(f"start ({start.date()}) must be before as_of ({as_of.date()})")
    for name in ("horizon_days", "return_max_delay_days"):
        if not isinstance(args[name], (int, np.integer)) or args[name] < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {args[name]!r}")
    positive = (
        "acquisition_shape",
        "mean_days_between_purchases",
        "rate_shape",
        "dropout_a",
        "dropout_b",
        "order_value_mean",
        "order_value_shape",
        "order_value_sigma",
        "wholesale_order_value_mean",
        "wholesale_order_value_sigma",
    )
    for name in positive:
        if not np.isfinite(args[name]) or args[name] <= 0:
            raise ValueError(f"{name} must be a finite number > 0, got {args[name]!r}")
    if not isinstance(args["id_prefix"], str) or not args["id_prefix"].isascii():
        raise ValueError(f"id_prefix must be an ASCII string, got {args['id_prefix']!r}")
    below_one = (
        "zero_amount_prob",
        "split_prob",
        "return_prob",
        "seasonal_amplitude",
        "wholesale_share",
        "cancel_rate",
        "missing_id_share",
    )
    for name in below_one:
        if not 0 <= args[name] < 1:
            raise ValueError(f"{name} must be in [0, 1), got {args[name]!r}")
    if not 0 <= args["cancel_partial_prob"] <= 1:
        raise ValueError(
            f"cancel_partial_prob must be in [0, 1], got {args['cancel_partial_prob']!r}"
        )
    peak = args["seasonal_peak_day"]
    if not isinstance(peak, (int, np.integer)) or not 1 <= peak <= 366:
        raise ValueError(f"seasonal_peak_day must be a day of the year in 1..366, got {peak!r}")


@dataclass(frozen=True)
class _Season:
    """The seasonal clock ``S(sec)`` (seconds since ``start``): the integral of the intensity
    multiplier ``1 + amplitude * cos(phase(sec))``; the identity when ``amplitude`` is 0."""

    amplitude: float
    peak_day: int
    start: pd.Timestamp

    @property
    def _omega(self) -> float:
        return 2 * np.pi / (DAYS_PER_YEAR * SECONDS_PER_DAY)

    @property
    def _phase0(self) -> float:
        return 2 * np.pi * (self.start.day_of_year - self.peak_day) / DAYS_PER_YEAR

    def clock(self, sec: np.ndarray) -> np.ndarray:
        """Seconds on the seasonal clock (float64)."""
        sec = np.asarray(sec, dtype=np.float64)
        if self.amplitude == 0:
            return sec
        w, p0 = self._omega, self._phase0
        return sec + self.amplitude / w * (np.sin(p0 + w * sec) - np.sin(p0))

    def seconds_at(self, clock: np.ndarray, end_sec: int) -> np.ndarray:
        """Inverse of :meth:`clock` on ``[0, end_sec]`` (int64 seconds, hourly-grid interpolation;
        exact where the clock is the identity)."""
        if self.amplitude == 0:
            return clock.astype(np.int64)
        grid = np.append(np.arange(0, end_sec, _SEASON_GRID_SECONDS, dtype=np.float64), end_sec)
        return np.interp(clock, self.clock(grid), grid).astype(np.int64)

    def days_between(self, from_sec: int, to_sec: int) -> float:
        """Length of ``[from_sec, to_sec)`` on the seasonal clock, in days."""
        ends = self.clock(np.array([from_sec, to_sec]))
        return float(ends[1] - ends[0]) / SECONDS_PER_DAY


def _draw_customers(
    rng: np.random.Generator, n: int, as_of_sec: int, args: dict
) -> dict[str, np.ndarray]:
    """Draw each customer's first-purchase second (since start) and latent parameters."""
    first_sec = (rng.beta(1.0, args["acquisition_shape"], n) * as_of_sec).astype(np.int64)
    rate = rng.gamma(
        args["rate_shape"], 1.0 / (args["rate_shape"] * args["mean_days_between_purchases"]), n
    )
    dropout = np.clip(rng.beta(args["dropout_a"], args["dropout_b"], n), 1e-9, 1.0)
    mean_value = rng.gamma(
        args["order_value_shape"], args["order_value_mean"] / args["order_value_shape"], n
    )
    return {
        "first_sec": np.minimum(first_sec, as_of_sec - 1),
        "rate": rate,
        "dropout": dropout,
        "mean_order_value": mean_value,
    }


def _draw_wholesale(rng: np.random.Generator, cust: dict[str, np.ndarray], args: dict) -> None:
    """Make a ``wholesale_share`` of the customers wholesale buyers: replace their mean order value
    by a heavy-tailed draw (lognormal of mean ``wholesale_order_value_mean``), in place."""
    n = len(cust["mean_order_value"])
    sigma = args["wholesale_order_value_sigma"]
    is_wholesale = rng.random(n) < args["wholesale_share"]
    mean_value = args["wholesale_order_value_mean"] * rng.lognormal(-0.5 * sigma**2, sigma, n)
    cust["mean_order_value"] = np.where(is_wholesale, mean_value, cust["mean_order_value"])


def _draw_orders(
    rng: np.random.Generator,
    cust: dict[str, np.ndarray],
    as_of_sec: int,
    end_sec: int,
    season: _Season,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw all orders (first + repeat purchases) up to ``end_sec``.

    Repeat purchases of customer i are the first ``m = min(N, K)`` points of a Poisson process on
    ``(0, L)``, with ``N ~ Poisson(rate * L)`` and ``K ~ Geometric(dropout)`` (the purchase after
    which they drop out). The first m of N uniform order statistics are ``S_j / (S_m + G)`` with
    ``S`` cumulative unit exponentials and ``G ~ Gamma(N - m + 1)``, so only kept points are drawn.
    ``L`` and the points live on the seasonal clock and are mapped back to calendar seconds.

    Returns:
        (customer index, second since start, alive_at_as_of per customer); orders grouped by
        customer, first purchases first.
    """
    n = len(cust["rate"])
    first_sec = cust["first_sec"]
    first_clock = season.clock(first_sec)
    span_clock = season.clock(np.array(end_sec))[()] - first_clock
    span_days = span_clock / SECONDS_PER_DAY
    n_poisson = rng.poisson(cust["rate"] * span_days)
    n_until_dropout = rng.geometric(cust["dropout"])
    n_repeat = np.minimum(n_poisson, n_until_dropout)

    rep_cust = np.repeat(np.arange(n), n_repeat)
    csum = np.cumsum(rng.standard_exponential(int(n_repeat.sum())))
    ends = np.cumsum(n_repeat)
    padded = np.concatenate(([0.0], csum))
    before_group = padded[ends - n_repeat]
    last_in_group = padded[ends] - before_group
    del padded
    denom = last_in_group + rng.standard_gamma(n_poisson - n_repeat + 1.0)
    frac = (csum - before_group[rep_cust]) / denom[rep_cust]
    if season.amplitude == 0:  # calendar = clock: integer arithmetic, no interpolation
        rep_sec = first_sec[rep_cust] + (frac * (end_sec - first_sec)[rep_cust]).astype(np.int64)
    else:
        rep_clock = first_clock[rep_cust] + frac * span_clock[rep_cust]
        rep_sec = np.maximum(season.seconds_at(rep_clock, end_sec), first_sec[rep_cust])
    rep_sec = np.minimum(rep_sec, end_sec - 1)

    # Alive at as_of iff the purchase that causes dropout has not happened before as_of.
    n_repeat_before = np.bincount(rep_cust[rep_sec < as_of_sec], minlength=n)
    alive = n_repeat_before < n_until_dropout
    order_cust = np.concatenate((np.arange(n), rep_cust))
    order_sec = np.concatenate((first_sec, rep_sec))
    return order_cust, order_sec, alive


def _draw_order_values(
    rng: np.random.Generator, mean_value: np.ndarray, sigma: float, zero_prob: float
) -> np.ndarray:
    """Draw order values (cents) whose expectation, zeros included, is ``mean_value``."""
    lognormal = rng.lognormal(-0.5 * sigma**2, sigma, len(mean_value))
    value = np.round(mean_value / (1.0 - zero_prob) * lognormal, 2)
    value[rng.random(len(value)) < zero_prob] = 0.0
    return value


def _draw_cancellations(
    rng: np.random.Generator,
    order_sec: np.ndarray,
    order_amount: np.ndarray,
    cancel_rate: float,
    partial_prob: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same-day cancellations: (index of the cancelled order, second, negative amount)."""
    if cancel_rate == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    n_orders = len(order_sec)
    idx = np.flatnonzero((rng.random(n_orders) < cancel_rate) & (order_amount > 0))
    # start is a midnight, so the day's last second is sec - sec % day + day - 1.
    last_second_of_day = SECONDS_PER_DAY - 1 - order_sec[idx] % SECONDS_PER_DAY
    delay = rng.integers(*_CANCEL_DELAY_SECONDS, len(idx), endpoint=True)
    sec = order_sec[idx] + np.minimum(delay, last_second_of_day)
    fraction = np.where(rng.random(len(idx)) < partial_prob, rng.random(len(idx)), 1.0)
    amount = -np.maximum(0.01, np.round(fraction * order_amount[idx], 2))
    return idx, sec, amount


def _write_rows(
    rng: np.random.Generator,
    order_cust: np.ndarray,
    order_sec: np.ndarray,
    order_amount: np.ndarray,
    end_sec: int,
    cancel_idx: np.ndarray,
    args: dict,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn orders into export rows: split some baskets, add return rows (none for the cancelled
    orders ``cancel_idx``)."""
    split_prob, return_prob = args["split_prob"], args["return_prob"]
    return_max_delay_days = args["return_max_delay_days"]
    n_orders = len(order_cust)
    is_split = (rng.random(n_orders) < split_prob) & (order_amount >= _MIN_SPLIT_ORDER_VALUE)
    split_idx = np.flatnonzero(is_split)
    n_parts = rng.integers(2, 4, len(split_idx))
    part_order = np.repeat(split_idx, n_parts)
    part_group = np.repeat(np.arange(len(split_idx)), n_parts)
    is_first_part = np.diff(part_group, prepend=-1) != 0
    # Weights in [0.5, 1.5] keep every part >= ~11% of the order, so parts stay positive.
    weight = 0.5 + rng.random(len(part_order))
    share = weight / np.bincount(part_group, weights=weight)[part_group]
    part_amount = np.round(order_amount[part_order] * share, 2)
    rest = np.bincount(part_group, weights=np.where(is_first_part, 0.0, part_amount))
    part_amount[is_first_part] = np.round(order_amount[split_idx] - rest, 2)
    # Extra parts later the same calendar day (start is a midnight, so sec % day = time of day).
    to_midnight = SECONDS_PER_DAY - order_sec[part_order] % SECONDS_PER_DAY
    part_sec = order_sec[part_order] + np.where(
        is_first_part, 0, rng.integers(0, to_midnight, dtype=np.int64)
    )

    returned = (rng.random(n_orders) < return_prob) & (order_amount > 0)
    returned[cancel_idx] = False
    ret_idx = np.flatnonzero(returned)
    ret_sec = order_sec[ret_idx] + rng.integers(
        SECONDS_PER_DAY, return_max_delay_days * SECONDS_PER_DAY + 1, len(ret_idx)
    )
    fraction = rng.uniform(_RETURN_FRACTION_LOW, _RETURN_FRACTION_HIGH, len(ret_idx))
    ret_amount = -np.maximum(0.01, np.round(fraction * order_amount[ret_idx], 2))
    keep = ret_sec < end_sec

    whole = ~is_split
    row_cust = np.concatenate(
        (order_cust[whole], order_cust[part_order], order_cust[ret_idx][keep])
    )
    row_sec = np.concatenate((order_sec[whole], part_sec, ret_sec[keep]))
    row_amount = np.concatenate((order_amount[whole], part_amount, ret_amount[keep]))
    return row_cust, row_sec, row_amount


def _customer_ids(n: int, prefix: str) -> np.ndarray:
    """Ids ``prefix`` + zero-padded 1..n (at least 7 digits), as fixed-width bytes (``S<k>``)."""
    width = max(7, len(str(n)))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    number = np.arange(1, n + 1, dtype=np.int64)[:, None]
    digits = (number // powers % 10 + ord("0")).astype(np.uint8)
    head = np.broadcast_to(np.frombuffer(prefix.encode("ascii"), np.uint8), (n, len(prefix)))
    chars = np.ascontiguousarray(np.hstack((head, digits)))
    return chars.view(f"S{chars.shape[1]}").ravel()


def _string_array(
    fixed: np.ndarray, valid: np.ndarray | None = None
) -> pd.api.extensions.ExtensionArray:
    """Fixed-width ASCII bytes as a pandas ``str`` array, built on one arrow buffer (no copies);
    entries where ``valid`` is False are missing (NA)."""
    n, width = len(fixed), fixed.dtype.itemsize
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    buffers = [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(fixed))]
    null_count = 0 if valid is None else int(n - np.count_nonzero(valid))
    array = pa.Array.from_buffers(pa.large_string(), n, buffers, null_count=null_count)
    return pd.array(array, dtype="str")


def _truth_frame(
    ids: np.ndarray,
    cust: dict[str, np.ndarray],
    alive: np.ndarray,
    row_cust: np.ndarray,
    row_sec: np.ndarray,
    row_amount: np.ndarray,
    start: pd.Timestamp,
    as_of_sec: int,
    window_clock_days: float,
    net_order_share: float,
) -> pd.DataFrame:
    """Per-customer truth: latent draws, realised window labels and oracle expectations
    (``window_clock_days``: the label window's length on the seasonal clock; ``net_order_share``:
    the expected share of an order's value left after returns and cancellations)."""
    n = len(alive)
    in_window = row_sec >= as_of_sec
    n_bought = np.bincount(row_cust[in_window & (row_amount >= 0)], minlength=n)
    net = np.bincount(row_cust[in_window], weights=row_amount[in_window], minlength=n)
    rate, dropout = cust["rate"], cust["dropout"]
    expected_purchases = -np.expm1(-rate * dropout * window_clock_days) / dropout
    net_order_value = cust["mean_order_value"] * net_order_share
    return pd.DataFrame(
        {
            "customer_id": _string_array(ids),
            "first_purchase": _timestamps(start, cust["first_sec"]),
            "purchase_rate_per_day": rate,
            "dropout_prob": dropout,
            "mean_order_value": cust["mean_order_value"],
            "alive_at_as_of": alive,
            "active": (n_bought > 0).astype(np.int64),
            "spend": np.maximum(np.round(net, 2), 0.0),
            "expected_spend": np.where(alive, expected_purchases * net_order_value, 0.0),
            "p_active_oracle": np.where(alive, -np.expm1(-rate * window_clock_days), 0.0),
        }
    )


def _transactions_frame(
    ids: np.ndarray,
    row_cust: np.ndarray,
    row_sec: np.ndarray,
    row_amount: np.ndarray,
    start: pd.Timestamp,
) -> pd.DataFrame:
    """The export: rows sorted by timestamp (stable), as a real log would be; rows of customer
    index -1 (guests) have no id."""
    order = _stable_argsort(row_sec)
    row_cust = row_cust[order]
    if row_cust.min(initial=0) < 0:
        has_id = row_cust >= 0
        customer_id = _string_array(ids[np.where(has_id, row_cust, 0)], has_id)
    else:
        customer_id = _string_array(ids[row_cust])
    return pd.DataFrame(
        {
            "customer_id": customer_id,
            "timestamp": _timestamps(start, row_sec[order]),
            "amount": row_amount[order],
        },
        copy=False,
    )


def _stable_argsort(key: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 keys.

    Packs (key, position) into one int64 and sorts that with the default sort, ~3x faster than a
    stable argsort; falls back to the latter when the bits do not fit.
    """
    n_bits = max(int(len(key) - 1).bit_length(), 1)
    if len(key) == 0 or int(key.max()).bit_length() + n_bits > 62:
        return np.argsort(key, kind="stable")
    packed = (key << n_bits) | np.arange(len(key), dtype=np.int64)
    packed.sort()
    return packed & ((1 << n_bits) - 1)


def _timestamps(start: pd.Timestamp, sec: np.ndarray) -> np.ndarray:
    """``start`` + ``sec`` seconds as naive datetime64[ns]."""
    return (start.as_unit("ns").value + sec * 1_000_000_000).view("datetime64[ns]")
