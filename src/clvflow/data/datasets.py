"""Embedded data: the CDNOW master log, resolved by name.

CDNOW (Fader & Hardie): 69,659 transactions of the 23,570 customers whose first purchase at CDNOW
was in Q1 1997, 1997-01-01 .. 1998-06-30. Shipped gzipped inside the package; every command that
takes a transactions path also accepts the name ``cdnow``.
"""

from __future__ import annotations

import gzip
from importlib import resources

import pandas as pd

CDNOW = "cdnow"
CDNOW_RESOURCE = "CDNOW_master.txt.gz"


def is_embedded(source: object) -> bool:
    """True when ``source`` names the embedded CDNOW log (accepted wherever a path is)."""
    return str(source) == CDNOW


def read_cdnow_raw() -> pd.DataFrame:
    """The CDNOW master log as a raw frame for ingest (columns customer_id, timestamp, amount,
    and the number of CDs as ``__number_of_cds``). Customer ids keep their leading zeros."""
    resource = resources.files("clvflow.data").joinpath(CDNOW_RESOURCE)
    with resource.open("rb") as fh, gzip.open(fh, "rt") as text:
        raw = pd.read_csv(text, sep=r"\s+", dtype={"customer_id": "str", "date": "str"})
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "timestamp": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["dollar_value"].astype("float64"),
            "__number_of_cds": raw["number_of_cds"],
        }
    )
