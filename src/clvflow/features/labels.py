"""Labels: what each customer did in the window ``[as_of, as_of + horizon_days)``.

Definitions (docs/evaluation.md): ``active`` = 1 when the customer has at least one purchase
(a row with amount >= 0) in the window; ``spend`` = sum of the window's amounts net of returns,
floored at 0. Labels exist for every customer with a transaction before ``as_of`` (those scored).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.core.dates import DateLike, to_day
from clvflow.core.idcodes import encode_ids
from clvflow.core.steptimes import timed_step

LABEL_COLUMNS = ["active", "spend"]


def validate_horizon(horizon_days: int) -> int:
    """Return ``horizon_days`` as int, or raise ValueError if it is not a positive whole number."""
    if isinstance(horizon_days, bool) or int(horizon_days) != horizon_days or horizon_days < 1:
        raise ValueError(f"horizon_days must be a whole number of days >= 1, got {horizon_days!r}")
    return int(horizon_days)


@timed_step("features and labels")
def build_labels(tx: pd.DataFrame, as_of: DateLike, horizon_days: int) -> pd.DataFrame:
    """Activity and spend of each customer known before ``as_of`` over the next ``horizon_days``.

    Args:
        tx: transactions table (``customer_id``, ``timestamp``, ``amount``).
        as_of: window start (date; inclusive).
        horizon_days: window length in days.

    Returns:
        DataFrame ``customer_id``, ``active`` (int 0/1), ``spend`` (float64 >= 0), sorted by id.
    """
    start = to_day(as_of)
    end = start + pd.Timedelta(days=validate_horizon(horizon_days))
    ts = tx["timestamp"]
    before = (ts < start).to_numpy()
    window = ((ts >= start) & (ts < end)).to_numpy()
    if tx["customer_id"].isna().to_numpy()[before].any():  # (a missing id is a known customer)
        return _labels_by_id(tx, before, window)
    # Every row's id as an integer code (once per log: the memo), so the window's rows group by
    # integer, not by text; codes ascend with the ids, so the known customers stay sorted.
    coded = encode_ids(tx["customer_id"])
    is_known = np.bincount(coded.codes[before], minlength=coded.n_ids) > 0
    position = np.cumsum(is_known) - 1  # code -> row of the known customer
    codes = coded.codes[window]
    amounts = tx["amount"].to_numpy("float64")[window]
    keep = codes >= 0
    keep[keep] = is_known[codes[keep]]
    n_known = int(is_known.sum())
    by_customer = pd.Series(amounts[keep]).groupby(position[codes[keep]], sort=False)
    bought = np.full(n_known, np.nan)  # max >= 0 <=> at least one purchase row
    net = np.zeros(n_known)
    maxima, sums = by_customer.max(), by_customer.sum()  # (pandas' sums: as by text id)
    bought[maxima.index.to_numpy()] = maxima.to_numpy()
    net[sums.index.to_numpy()] = sums.to_numpy()
    return pd.DataFrame(
        {
            "customer_id": coded.ids[is_known].astype("str"),
            "active": (bought >= 0).astype("int64"),
            "spend": np.maximum(net, 0.0),
        }
    )


def _labels_by_id(tx: pd.DataFrame, before: np.ndarray, window: np.ndarray) -> pd.DataFrame:
    """:func:`build_labels` grouping by the id text itself (when some id is missing)."""
    known = pd.Index(tx.loc[before, "customer_id"].unique()).sort_values()
    by_customer = tx.loc[window].groupby("customer_id", sort=False)["amount"]
    bought = by_customer.max().reindex(known)  # max >= 0 <=> at least one purchase row
    net = by_customer.sum().reindex(known)
    return pd.DataFrame(
        {
            "customer_id": known.astype("str"),
            "active": (bought.to_numpy() >= 0).astype("int64"),
            "spend": np.maximum(net.fillna(0.0).to_numpy("float64"), 0.0),
        }
    )
