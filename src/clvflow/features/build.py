"""Per-customer features as of a date, from transactions dated strictly before it.

Conventions (those of lifetimes / CLVTools): time is in days; all transactions of a customer on one
calendar day collapse into one *customer-day*. A customer-day is a *purchase day* when it has at
least one row with amount >= 0. Its *spend* is the day's net amount, floored at 0: the purchases
minus the returns or cancellations (amount < 0) of the same day, so an order cancelled the same
day counts as a purchase day with the spend that is left (0 if nothing is). The per-purchase-day
features (``mean_repeat_spend``, ``mean_spend_per_day``, ``max_spend_per_day``,
``first_purchase_spend``, ``last_purchase_spend``) use that spend. ``gross_spend`` is the sum of
the amounts >= 0; ``total_spend`` and the spend windows are net of every return; every return is
also summarised separately (``return_amount``, ``n_return_days``). Without negative amounts the
net spends equal the gross ones. ``as_of`` is exclusive: the last observed day is ``as_of - 1 day``.

``FEATURE_COLUMNS`` is the one feature list: training and scoring both use it.

How (numpy): customer ids become dense integer codes (:mod:`clvflow.core.idcodes`); customers are cut
into blocks of about half a million rows; within a block the rows are sorted once by (customer, day)
with one packed-integer sort, and every aggregate is a segment sum, prefix sum or difference over
the sorted arrays. Blocks are independent, so they run on several threads. Money is summed in
integer units of 1/10,000 (each amount rounded half away from zero to 4 decimals, as a
DECIMAL(18,4) cast does), so sums are exact and the result depends neither on the order of
additions nor on the thread count. docs/benchmarks.md has the measurements and why this replaced a
DuckDB query.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvflow.core.dates import DateLike, to_day
from clvflow.core.idcodes import count_codes, encode_ids
from clvflow.core.steptimes import timed_step

log = logging.getLogger(__name__)

RECENT_WINDOWS_DAYS = (30, 90, 180, 365)

#: BTYD sufficient statistics (Fader, Hardie & Lee 2005), in days.
BTYD_COLUMNS = ["frequency", "t_x_days", "T_days", "mean_repeat_spend"]

FEATURE_COLUMNS: list[str] = [
    "recency_days",
    "tenure_days",
    "n_purchase_days",
    *BTYD_COLUMNS,
    "total_spend",
    "gross_spend",
    "mean_spend_per_day",
    "max_spend_per_day",
    "first_purchase_spend",
    "last_purchase_spend",
    *[f"purchase_days_{w}d" for w in RECENT_WINDOWS_DAYS],
    *[f"spend_{w}d" for w in RECENT_WINDOWS_DAYS],
    "spend_prev_180d",
    "spend_trend",
    "purchase_days_per_30d",
    "gap_mean_days",
    "gap_std_days",
    "gap_max_days",
    "gap_last_days",
    "recency_over_gap_mean",
    "return_amount",
    "n_return_days",
    "returns_share",
]


#: Money is summed in integer units of 1/10,000 (exact and order-independent).
MONEY_UNITS = 10_000
#: Days before ``as_of`` where the previous 180-day spend window starts and ends.
_PREV_WINDOW_DAYS = (360, 180)
#: Rows per block of customers processed together (see _aggregate).
_BLOCK_ROWS = 1 << 19


@timed_step("features and labels")
def build_features(
    tx: pd.DataFrame, as_of: DateLike, *, threads: int | None = None
) -> pd.DataFrame:
    """One row per customer with at least one transaction before ``as_of``.

    Args:
        tx: transactions table (``customer_id``, ``timestamp``, ``amount``), e.g. from ingest.
        as_of: date (str, ``date`` or ``Timestamp``); only rows with ``timestamp < as_of`` are used.
        threads: worker threads for the blocks of customers (default: the number of cores, at most
            4). The result does not depend on it: blocks are independent and sums are exact.

    Returns:
        DataFrame with ``customer_id`` then ``FEATURE_COLUMNS`` (float64), sorted by customer_id.
        Undefined gap features (fewer than one repeat purchase) are NaN.

    Raises:
        ValueError: a required column is missing, or a used row has no customer id, no timestamp
            or a non-finite amount.
    """
    day, timestamps, before, amounts = _rows_before(tx, as_of)
    _check_used_rows(tx, before, amounts)
    ids = encode_ids(tx["customer_id"], before)  # code -1: row on/after as_of
    if ids.n_ids == 0:
        return _no_features()
    as_of_day = int(_day_numbers(np.array([day.to_datetime64()]))[0])
    threads = _threads(threads)
    agg = _aggregate(ids.codes, timestamps, amounts, ids.n_ids, as_of_day, threads)
    return _derive(ids.ids, agg, as_of_day)


def _rows_before(
    tx: pd.DataFrame, date: DateLike
) -> tuple[pd.Timestamp, np.ndarray, np.ndarray, np.ndarray]:
    """(the day, the timestamps, the mask of rows dated before it, the amounts) of ``tx``,
    after checking its columns."""
    missing = [c for c in ("customer_id", "timestamp", "amount") if c not in tx.columns]
    if missing:
        raise ValueError(f"transactions table lacks column(s) {missing}; has {list(tx.columns)}")
    day = to_day(date)
    timestamps = _timestamps(tx["timestamp"])
    before = timestamps < np.datetime64(day.date(), "D")
    return day, timestamps, before, tx["amount"].to_numpy("float64")


def _threads(threads: int | None) -> int:
    """Worker threads for the blocks of customers: as given, else the cores, at most 4."""
    return threads or min(os.cpu_count() or 1, 4)


def _no_features() -> pd.DataFrame:
    """The feature table of no customer."""
    return pd.DataFrame(columns=["customer_id", *FEATURE_COLUMNS]).astype(
        {c: "float64" for c in FEATURE_COLUMNS} | {"customer_id": "str"}
    )


@dataclass(frozen=True)
class CustomerDays:
    """Every customer-day of a log before ``end_day`` (see :func:`customer_days`), sorted by
    (customer, day): what :func:`features_from_days` builds the features of any earlier date
    from without sorting the rows again.

    ``ids``: the distinct ids (ascending; code i is ``ids[i]``); ``cd``: arrays over the
    customer-days, ``code`` and ``day`` (int32), ``buy`` / ``ret`` (money units bought /
    returned, >= 0), ``has_buy`` / ``has_ret``; ``bad_amount_days`` / ``no_id_days``: day
    numbers of the rows :func:`build_features` refuses (a non-finite amount, no id)."""

    ids: pd.Index
    cd: dict[str, np.ndarray]
    end_day: int
    bad_amount_days: np.ndarray
    no_id_days: np.ndarray


@timed_step("features and labels")
def customer_days(tx: pd.DataFrame, end: DateLike, *, threads: int | None = None) -> CustomerDays:
    """The customer-days of ``tx``'s rows dated before ``end``, for :func:`features_from_days`
    at any date up to ``end``. (One sort of the rows instead of one per date: a training fit
    builds the features of eight dates.)"""
    day, timestamps, before, amounts = _rows_before(tx, end)
    end_day = int(_day_numbers(np.array([day.to_datetime64()]))[0])

    def refused_days(rows: np.ndarray) -> np.ndarray:
        return _day_numbers(timestamps[rows & before])  # (a copy: the mask selects)

    finite = np.isfinite(amounts)
    bad_amount_days = refused_days(~finite)
    if not finite.all():  # (refused from their day on: zero until then, never summed)
        amounts = np.where(finite, amounts, 0.0)
    no_id_days = refused_days(tx["customer_id"].isna().to_numpy())
    ids = encode_ids(tx["customer_id"], before)
    threads = _threads(threads)
    cd: dict[str, np.ndarray]
    if ids.n_ids == 0:
        cd = {
            "code": np.zeros(0, dtype=np.int32),
            "day": np.zeros(0, dtype=np.int32),
            "buy": np.zeros(0, dtype=np.int64),
            "ret": np.zeros(0, dtype=np.int64),
            "has_buy": np.zeros(0, dtype=bool),
            "has_ret": np.zeros(0, dtype=bool),
        }
    else:

        def block_days(rows: np.ndarray | slice, lo: int, n: int) -> dict[str, np.ndarray]:
            cd = _rows_to_days(ids.codes, timestamps, amounts, rows, lo)
            cd["code"] += lo  # (the log's codes)
            return cd

        cd = _by_blocks(ids.codes, ids.n_ids, threads, block_days)
    return CustomerDays(ids.ids, cd, end_day, bad_amount_days, no_id_days)


@timed_step("features and labels")
def features_from_days(
    days: CustomerDays, as_of: DateLike, *, threads: int | None = None
) -> pd.DataFrame:
    """:func:`build_features` of the log ``days`` was built from, as of ``as_of`` (at most its
    ``end``): the same table, bit for bit, from the customer-days before ``as_of``."""
    day = to_day(as_of)
    as_of_day = int(_day_numbers(np.array([day.to_datetime64()]))[0])
    if as_of_day > days.end_day:
        raise ValueError(f"customer-days end before {day.date()}: build them to a later end")
    _refuse(int((days.bad_amount_days < as_of_day).sum()), "amount")
    _refuse(int((days.no_id_days < as_of_day).sum()), "customer_id")
    used = days.cd["day"] < as_of_day
    cd = {name: values[used] for name, values in days.cd.items()}
    present = np.zeros(len(days.ids), dtype=bool)
    present[cd["code"]] = True
    n_customers = int(present.sum())
    if n_customers == 0:
        return _no_features()
    dense = (np.cumsum(present, dtype=np.int32) - 1).astype(np.int32)
    cd["code"] = dense[cd["code"]]  # (codes of the customers known then, in the same id order)
    threads = _threads(threads)

    def aggregate_block(rows: np.ndarray | slice, lo: int, n: int) -> dict[str, np.ndarray]:
        block = {name: values[rows] for name, values in cd.items()}
        block["code"] = block["code"] - lo
        return _aggregate_block(block, n, as_of_day)

    agg = _by_blocks(cd["code"], n_customers, threads, aggregate_block, sorted_codes=True)
    return _derive(days.ids[present], agg, as_of_day)


def _timestamps(values: pd.Series) -> np.ndarray:
    """Timestamps as naive datetime64 (aware ones converted to UTC first); NaT stays NaT."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if not pd.api.types.is_datetime64_dtype(values.dtype):
        raise ValueError(
            f"column 'timestamp' must hold datetimes, not {values.dtype}; "
            "read the file with clvflow.data.ingest.load_transactions"
        )
    return values.to_numpy()


def _day_numbers(timestamps: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 (floored, so a time of day counts to its calendar day), in place."""
    unit, count = np.datetime_data(timestamps.dtype)
    # (unit is the array's own, a str: numpy's overloads want a literal)
    ticks_per_day = np.timedelta64(1, "D") // np.timedelta64(count, unit)  # type: ignore[call-overload]
    ticks = timestamps.view(np.int64)
    return np.floor_divide(ticks, ticks_per_day, out=ticks)


def _check_used_rows(tx: pd.DataFrame, before: np.ndarray, amounts: np.ndarray) -> None:
    _refuse(int((~np.isfinite(amounts) & before).sum()), "amount")
    _refuse(int((tx["customer_id"].isna().to_numpy() & before).sum()), "customer_id")


def _refuse(n_rows: int, column: str) -> None:
    """Raise when ``n_rows`` rows the features would use lack a usable ``column`` value."""
    if n_rows and column == "amount":
        raise ValueError(
            f"column 'amount' has {n_rows:,} missing or infinite value(s) before as_of"
        )
    if n_rows:
        raise ValueError(f"column '{column}' is missing on {n_rows:,} row(s)")


def to_money_units(amounts: np.ndarray) -> np.ndarray:
    """Amounts as int64 multiples of 1/10,000, rounded half away from zero (DECIMAL(18,4) cast)."""
    scaled = amounts * MONEY_UNITS
    units = np.rint(scaled)
    off = np.abs(np.subtract(scaled, units, out=scaled), out=scaled)
    tie = off == 0.5  # rint rounds halves to even: move those away from zero
    if tie.any():
        halves = amounts[tie] * MONEY_UNITS
        units[tie] = np.trunc(halves) + np.sign(halves)
    out = scaled.view(np.int64)  # (reuse the buffer: 20M rows make every copy count)
    np.copyto(out, units, casting="unsafe")
    return out


def _customer_days(codes: np.ndarray, days: np.ndarray, amounts: np.ndarray) -> dict:
    """Sort rows by (customer, day) and collapse each customer-day.

    Rows are grouped by one sort, not by hashing: customer codes are already dense integers, so
    (code, day, row) packs into one int64 when it fits (up to ~2**63 combinations, e.g. 4M
    customers x 16 years x 250M rows); else lexsort.

    Returns arrays over customer-days in (code, day) order: ``code`` and ``day`` (int32), ``buy`` /
    ``ret`` (units bought / returned that day, >= 0), ``has_buy`` / ``has_ret`` (bool).
    """
    n = len(codes)
    first_day = int(days.min())
    row_bits = max(n - 1, 1).bit_length()
    day_bits = max(int(days.max()) - first_day, 1).bit_length()
    code_bits = max(int(codes.max()), 1).bit_length()
    if row_bits + day_bits + code_bits > 63:
        order = np.lexsort((days, codes))
        key = codes[order].astype(np.int64) << day_bits | (days[order] - first_day)
    else:
        key = codes.astype(np.int64)
        key <<= day_bits
        key += days
        key -= first_day
        key <<= row_bits
        key += np.arange(n, dtype=np.int64)
        key.sort()
        order = key & ((1 << row_bits) - 1)
        key >>= row_bits
    starts = _segment_starts(key)
    key = key[starts]
    amounts = amounts[order]
    del order
    units = to_money_units(amounts)
    is_buy = amounts >= 0
    del amounts
    buy = _sum_at(np.where(is_buy, units, 0), starts)
    return {
        "code": (key >> day_bits).astype(np.int32),
        "day": ((key & ((1 << day_bits) - 1)) + first_day).astype(np.int32),
        "buy": buy,
        "ret": buy - _sum_at(units, starts),
        "has_buy": np.logical_or.reduceat(is_buy, starts),
        "has_ret": np.logical_or.reduceat(np.logical_not(is_buy, out=is_buy), starts),
    }


def _aggregate(
    codes: np.ndarray,
    timestamps: np.ndarray,
    amounts: np.ndarray,
    n_customers: int,
    as_of_day: int,
    threads: int,
) -> dict[str, np.ndarray]:
    """Per-customer aggregates (money in units, days as day numbers) of the rows with a code.

    Args:
        codes: customer code per row (0 .. n_customers - 1; -1: row not used).
        timestamps: naive datetime64 per row.
        amounts: amount per row (>= 0: purchase row, < 0: return row).
        n_customers: number of customers (every code has at least one row).
        as_of_day: day number of as_of.
        threads: blocks processed at once.
    """

    def aggregate_block(rows: np.ndarray | slice, lo: int, n: int) -> dict[str, np.ndarray]:
        return _aggregate_block(_rows_to_days(codes, timestamps, amounts, rows, lo), n, as_of_day)

    return _by_blocks(codes, n_customers, threads, aggregate_block)


def _rows_to_days(
    codes: np.ndarray,
    timestamps: np.ndarray,
    amounts: np.ndarray,
    rows: np.ndarray | slice,
    lo: int,
) -> dict[str, np.ndarray]:
    """The customer-days of the ``rows`` of one block of customers, coded from ``lo`` = 0."""
    return _customer_days(codes[rows] - lo, _day_numbers(timestamps[rows]), amounts[rows])


def _by_blocks(
    codes: np.ndarray,
    n_customers: int,
    threads: int,
    work: Callable[[np.ndarray | slice, int, int], dict[str, np.ndarray]],
    *,
    sorted_codes: bool = False,
) -> dict[str, np.ndarray]:
    """``work(rows, lo, n)`` for each block of the consecutive customers ``lo .. lo + n - 1``
    (``rows``: theirs, in order), the results concatenated in block order.

    Blocks hold about ``_BLOCK_ROWS`` rows each: every temporary then stays small enough
    (< 32 MB) for malloc to recycle it instead of returning it to the OS, and on 20M rows fresh
    memory pages cost as much as the arithmetic. Blocks are independent: they run on ``threads``.
    ``sorted_codes`` (ascending, none missing: customer-days): each block's rows are a slice,
    a view, not a copy (the row path needs copies: it computes in place).
    """
    customer_block = _customer_blocks(count_codes(codes, n_customers))
    n_blocks = int(customer_block[-1]) + 1
    first_customer = np.searchsorted(customer_block, np.arange(n_blocks + 1))
    if sorted_codes:
        edges = np.searchsorted(codes, first_customer)

        def rows_of(block: int) -> np.ndarray | slice:
            return slice(int(edges[block]), int(edges[block + 1]))

    else:
        row_block = np.empty(len(codes), dtype=np.uint16)  # n_blocks: unused row
        for rows in _row_slices(len(codes)):
            chunk = codes[rows]
            row_block[rows] = np.where(chunk >= 0, customer_block[chunk], n_blocks)

        def rows_of(block: int) -> np.ndarray | slice:
            return np.flatnonzero(row_block == block)

    def one(block: int) -> dict[str, np.ndarray]:
        lo, hi = int(first_customer[block]), int(first_customer[block + 1])
        return work(rows_of(block), lo, hi - lo)

    if threads > 1 and n_blocks > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            parts = list(pool.map(one, range(n_blocks)))
    else:
        parts = [one(block) for block in range(n_blocks)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _customer_blocks(rows_per_customer: np.ndarray) -> np.ndarray:
    """Block number of each customer: consecutive customers, about ``_BLOCK_ROWS`` rows a block
    (a customer with more rows than that gets a block of its own)."""
    block = (np.cumsum(rows_per_customer) - 1) // _BLOCK_ROWS
    return np.unique(block, return_inverse=True)[1].astype(np.uint16)


def _row_slices(n: int) -> list[slice]:
    return [slice(i, min(i + _BLOCK_ROWS, n)) for i in range(0, n, _BLOCK_ROWS)]


def _aggregate_block(cd: dict, n_customers: int, as_of_day: int) -> dict[str, np.ndarray]:
    """Per-customer aggregates of one block from its customer-days."""
    first = _segment_starts(cd["code"])
    agg: dict[str, np.ndarray] = {
        "first_day": cd["day"][first],
        "n_purchase_days": _sum_at(cd["has_buy"], first),
        "gross_spend": _sum_at(cd["buy"], first),
        "return_amount": _sum_at(cd["ret"], first),
        "n_return_days": _sum_at(cd["has_ret"], first),
    }
    agg.update(_windows(cd, first, as_of_day))
    agg.update(_purchase_days(cd, n_customers, agg["first_day"]))
    return agg


def _segment_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values."""
    new = np.ones(len(sorted_values), dtype=bool)
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    return np.flatnonzero(new)


def _sum_at(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``values`` over the segments beginning at ``starts`` (int64; none if no segment)."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.add.reduceat(values, starts, dtype=np.int64)


def _max_at(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Maxima of ``values`` over the segments beginning at ``starts``."""
    return np.maximum.reduceat(values, starts) if len(starts) else values[:0]


def _cumulative(values: np.ndarray) -> np.ndarray:
    """Prefix sums with a leading 0: sum of values[i:j] is out[j] - out[i]."""
    out = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


def _windows(cd: dict, first: np.ndarray, as_of_day: int) -> dict[str, np.ndarray]:
    """Purchase days and net spend in the trailing windows, via prefix sums.

    A customer's days are sorted, so "day >= as_of - w" is a suffix of its segment; its length is
    the count of such days.
    """
    end = np.append(first[1:], len(cd["day"]))
    net = _cumulative(cd["buy"] - cd["ret"])
    buys = _cumulative(cd["has_buy"])

    def suffix_start(day: int) -> np.ndarray:
        return end - _sum_at(cd["day"] >= day, first)

    out = {}
    for w in RECENT_WINDOWS_DAYS:
        start = suffix_start(as_of_day - w)
        out[f"purchase_days_{w}d"] = buys[end] - buys[start]
        out[f"spend_{w}d"] = net[end] - net[start]
    older, newer = (suffix_start(as_of_day - d) for d in _PREV_WINDOW_DAYS)
    out["spend_prev_180d"] = net[newer] - net[older]
    return out


def _purchase_days(cd: dict, n_customers: int, first_day: np.ndarray) -> dict[str, np.ndarray]:
    """First/last purchase day and spend, total and max daily spend and gap statistics.

    A purchase day's spend is its net amount (bought minus returned that day) floored at 0.
    Customers without a purchase day get first_day as fp/lp (unused: features fall back to tenure),
    0 spends and NaN gap statistics; those with one purchase day get NaN gap statistics.
    """
    buy = np.flatnonzero(cd["has_buy"])
    code, day = cd["code"][buy], cd["day"][buy]
    spend = np.maximum(cd["buy"][buy] - cd["ret"][buy], 0)
    start = _segment_starts(code)
    end = np.append(start[1:], len(code))[: len(start)] - 1
    who = code[start]
    out = {
        "fp": first_day.copy(),
        "lp": first_day.copy(),
        "purchase_spend": np.zeros(n_customers, dtype=np.int64),
        "first_purchase_spend": np.zeros(n_customers, dtype=np.int64),
        "last_purchase_spend": np.zeros(n_customers, dtype=np.int64),
        "max_spend_per_day": np.zeros(n_customers, dtype=np.int64),
    }
    out["fp"][who], out["lp"][who] = day[start], day[end]
    out["purchase_spend"][who] = _sum_at(spend, start)
    out["first_purchase_spend"][who] = spend[start]
    out["last_purchase_spend"][who] = spend[end]
    out["max_spend_per_day"][who] = _max_at(spend, start)
    # gap[i] = day[i + 1] - day[i] within a customer, 0 across customers (real gaps are >= 1)
    gap = np.zeros(len(day), dtype=np.int64)
    np.subtract(day[1:], day[:-1], out=gap[:-1])
    gap[:-1] *= code[1:] == code[:-1]
    squares = _cumulative(gap * gap)
    repeat = end > start  # at least two purchase days
    who, start, end = who[repeat], start[repeat], end[repeat]
    for name in ("n_gaps", "gap_sum", "gap_sq_sum", "gap_max_days", "gap_last_days"):
        out[name] = np.full(n_customers, np.nan)
    out["n_gaps"][who] = end - start
    out["gap_sum"][who] = day[end] - day[start]
    out["gap_sq_sum"][who] = squares[end] - squares[start]
    out["gap_max_days"][who] = _max_at(gap, start)
    out["gap_last_days"][who] = gap[end - 1]
    return out


_MONEY = (
    "gross_spend",
    "return_amount",
    "purchase_spend",
    "max_spend_per_day",
    "first_purchase_spend",
    "last_purchase_spend",
    *[f"spend_{w}d" for w in RECENT_WINDOWS_DAYS],
    "spend_prev_180d",
)


def _derive(ids: pd.Index, agg: dict[str, np.ndarray], as_of_day: int) -> pd.DataFrame:
    """Turn the aggregates into the feature table (vectorised numpy)."""

    def col(name: str) -> np.ndarray:
        values = agg[name].astype("float64")
        return values / MONEY_UNITS if name in _MONEY else values

    def days_until_as_of(name: str) -> np.ndarray:
        return (as_of_day - agg[name]).astype("float64")

    f: dict[str, np.ndarray] = {}
    n = col("n_purchase_days")
    has_buy = n > 0
    tenure = days_until_as_of("first_day")
    since_fp = np.where(has_buy, days_until_as_of("fp"), tenure)  # returns-only: first day
    since_lp = np.where(has_buy, days_until_as_of("lp"), tenure)
    frequency = np.maximum(n - 1, 0)
    gross = col("gross_spend")
    net_days = col("purchase_spend")  # sum of the purchase days' net spends
    first_spend = col("first_purchase_spend")
    returns = col("return_amount")
    with np.errstate(divide="ignore", invalid="ignore"):
        f["recency_days"] = since_lp
        f["tenure_days"] = tenure
        f["n_purchase_days"] = n
        f["frequency"] = frequency
        f["t_x_days"] = since_fp - since_lp
        f["T_days"] = since_fp - 1
        f["mean_repeat_spend"] = np.where(frequency > 0, (net_days - first_spend) / frequency, 0.0)
        f["total_spend"] = gross - returns
        f["gross_spend"] = gross
        f["mean_spend_per_day"] = np.where(has_buy, net_days / n, 0.0)
        f["max_spend_per_day"] = col("max_spend_per_day")
        f["first_purchase_spend"] = first_spend
        f["last_purchase_spend"] = col("last_purchase_spend")
        for w in RECENT_WINDOWS_DAYS:
            f[f"purchase_days_{w}d"] = col(f"purchase_days_{w}d")
        for w in RECENT_WINDOWS_DAYS:
            f[f"spend_{w}d"] = col(f"spend_{w}d")
        recent = f["spend_180d"]
        prev = col("spend_prev_180d")
        f["spend_prev_180d"] = prev
        denom = np.abs(recent) + np.abs(prev)
        f["spend_trend"] = np.where(denom > 0, (recent - prev) / denom, 0.0)
        f["purchase_days_per_30d"] = 30.0 * n / np.maximum(since_fp, 1.0)
        n_gaps = col("n_gaps")  # NaN when no gaps
        mean_gap = col("gap_sum") / n_gaps
        f["gap_mean_days"] = mean_gap
        f["gap_std_days"] = np.sqrt(np.maximum(col("gap_sq_sum") / n_gaps - mean_gap**2, 0.0))
        f["gap_max_days"] = col("gap_max_days")
        f["gap_last_days"] = col("gap_last_days")
        f["recency_over_gap_mean"] = since_lp / mean_gap
        f["return_amount"] = returns
        f["n_return_days"] = col("n_return_days")
        f["returns_share"] = np.where(gross > 0, returns / gross, np.where(returns > 0, 1.0, 0.0))
    table = pd.DataFrame({c: f[c] for c in FEATURE_COLUMNS}, copy=False)
    table.insert(0, "customer_id", ids.astype("str").array)
    return table


# ---- checking a feature table that did not come from build_features -----------------------

#: Undefined (NaN) for a customer with fewer than two purchase days; every other feature is a
#: finite number.
GAP_COLUMNS = [
    "gap_mean_days",
    "gap_std_days",
    "gap_max_days",
    "gap_last_days",
    "recency_over_gap_mean",
]
#: Net of returns, so possibly negative; every other feature is >= 0 (recency_days >= 1).
NET_COLUMNS = [
    "total_spend",
    *[f"spend_{w}d" for w in RECENT_WINDOWS_DAYS],
    "spend_prev_180d",
    "spend_trend",
]
#: Day counts and counts: whole numbers.
WHOLE_COLUMNS = [
    "recency_days",
    "tenure_days",
    "n_purchase_days",
    "frequency",
    "t_x_days",
    "T_days",
    *[f"purchase_days_{w}d" for w in RECENT_WINDOWS_DAYS],
    "gap_max_days",
    "gap_last_days",
    "n_return_days",
]
_ROWS_SHOWN = 5


def feature_table_problems(features: pd.DataFrame) -> list[str]:
    """What makes a feature table impossible for :func:`build_features` to have produced.

    Rules from the definitions above: finite numbers (NaN only in ``GAP_COLUMNS``), >= 0 except
    ``NET_COLUMNS``, whole day counts and counts, the last purchase day at least one day before
    ``as_of`` and not before the first transaction (1 <= recency_days <= tenure_days), days since
    the first purchase day = t_x_days + recency_days = T_days + 1 <= tenure_days, frequency =
    max(n_purchase_days - 1, 0), purchase days of the trailing windows nested (30d <= 90d <= 180d
    <= 365d <= n_purchase_days), spend_trend in [-1, 1].

    Returns:
        One line per broken rule: the rule, the first offending rows (0-based position and
        customer_id) and how many more; empty when the table is plausible.
    """
    missing = [c for c in ["customer_id", *FEATURE_COLUMNS] if c not in features.columns]
    if missing:
        return [f"missing column(s) {missing}"]
    raw = {
        c: pd.to_numeric(features[c], errors="coerce").to_numpy("float64") for c in FEATURE_COLUMNS
    }
    rules = [("customer_id is missing", features["customer_id"].isna().to_numpy())]
    for c, v in raw.items():
        if c in GAP_COLUMNS:
            rules.append((f"{c} must be a finite number or missing", np.isinf(v)))
        else:
            rules.append((f"{c} must be a finite number", ~np.isfinite(v)))
    # below, comparisons with a non-finite value (reported above) are False
    f = {c: np.where(np.isfinite(v), v, np.nan) for c, v in raw.items()}

    def differ(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a < b) | (a > b)

    with np.errstate(invalid="ignore"):
        nonnegative = [c for c in FEATURE_COLUMNS if c not in {*NET_COLUMNS, "recency_days"}]
        rules += [(f"{c} must be >= 0", f[c] < 0) for c in nonnegative]
        rules += [
            (f"{c} must be a whole number", differ(f[c], np.round(f[c]))) for c in WHOLE_COLUMNS
        ]
        since_first_purchase = f["T_days"] + 1
        windows = [f[f"purchase_days_{w}d"] for w in RECENT_WINDOWS_DAYS] + [f["n_purchase_days"]]
        rules += [
            ("recency_days must be >= 1 (as_of is after the last day)", f["recency_days"] < 1),
            ("recency_days must be <= tenure_days", f["recency_days"] > f["tenure_days"]),
            ("T_days must be < tenure_days", since_first_purchase > f["tenure_days"]),
            (
                "t_x_days + recency_days must equal T_days + 1",
                differ(f["t_x_days"] + f["recency_days"], since_first_purchase),
            ),
            (
                "frequency must equal max(n_purchase_days - 1, 0)",
                differ(f["frequency"], np.maximum(f["n_purchase_days"] - 1, 0)),
            ),
            (
                "purchase_days_30d <= _90d <= _180d <= _365d <= n_purchase_days must hold",
                np.any([a > b for a, b in itertools.pairwise(windows)], axis=0),
            ),
            ("spend_trend must be in [-1, 1]", np.abs(f["spend_trend"]) > 1),
        ]
    return [f"{rule}: {_rows_text(features, bad)}" for rule, bad in rules if bad.any()]


def _rows_text(features: pd.DataFrame, bad: np.ndarray) -> str:
    rows = np.flatnonzero(bad)
    ids = features["customer_id"].to_numpy()
    shown = ", ".join(f"{r} ({ids[r]!r})" for r in rows[:_ROWS_SHOWN])
    more = f" and {rows.size - _ROWS_SHOWN} more" if rows.size > _ROWS_SHOWN else ""
    return f"row(s) {shown}{more}"


def check_feature_table(features: pd.DataFrame, name: str = "feature table") -> None:
    """Raise ValueError naming the first three :func:`feature_table_problems`, if any."""
    problems = feature_table_problems(features)
    if problems:
        more = f"; and {len(problems) - 3} more rule(s) broken" if len(problems) > 3 else ""
        raise ValueError(
            f"{name}: impossible feature values (rows counted from 0, customer_id in brackets): "
            + "; ".join(problems[:3])
            + more
            + "; build the table with `clvflow features` (clvflow.features.build.build_features)"
        )
