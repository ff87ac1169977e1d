"""Labels: what each customer did in the window ``[as_of, as_of + horizon_days)``.

Definitions (docs/evaluation.md): ``active`` = 1 when the customer has at least one purchase
(a row with amount >= 0) in the window; ``spend`` = sum of the window's amounts net of returns,
floored at 0. Labels exist for every customer with a transaction before ``as_of`` (those scored).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clvflow.core.dates import DateLike, to_day
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
    known = pd.Index(tx.loc[(ts < start).to_numpy(), "customer_id"].unique()).sort_values()
    window = tx.loc[((ts >= start) & (ts < end)).to_numpy()]
    by_customer = window.groupby("customer_id", sort=False)["amount"]
    bought = by_customer.max().reindex(known)  # max >= 0 <=> at least one purchase row
    net = by_customer.sum().reindex(known)
    return pd.DataFrame(
        {
            "customer_id": known.astype("str"),
            "active": (bought.to_numpy() >= 0).astype("int64"),
            "spend": np.maximum(net.fillna(0.0).to_numpy("float64"), 0.0),
        }
    )
