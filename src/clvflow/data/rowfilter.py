"""Opt-in row filters: drop input rows by the value of any column (``--exclude``).

A rule is written ``COLUMN=VALUE[,VALUE...]`` (drop the rows whose value is one of these) or
``COLUMN^=PREFIX[,PREFIX...]`` (drop the rows whose value starts with one of these), e.g.
``StockCode=POST,M,BANK CHARGES`` or ``InvoiceNo^=C`` (cancelled invoices). ``COLUMN`` is the
name in the input file, mapped or not. Values are compared as text, case-sensitive, with
surrounding spaces ignored on both sides (numbers as their text, a whole number in a float column
without ``.0``: ``store=7`` matches 7.0); a missing value never matches. One text may hold several
rules separated by ``;`` (the form an MLproject parameter needs); blank texts hold none. Values
cannot contain ``,`` or ``;``.

Rules apply in the order given; a row that several rules match is counted under the first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

SYNTAX = "COLUMN=VALUE[,VALUE...] or COLUMN^=PREFIX[,PREFIX...]"


@dataclass(frozen=True)
class RowFilter:
    """Drop rows whose ``column`` equals one of ``values`` (``prefix``: starts with one)."""

    column: str
    values: tuple[str, ...]
    prefix: bool = False

    def describe(self) -> str:
        """E.g. ``StockCode in {POST, M}`` or ``InvoiceNo starts with C``."""
        if self.prefix:
            if len(self.values) == 1:
                return f"{self.column} starts with {self.values[0]}"
            return f"{self.column} starts with one of {{{', '.join(self.values)}}}"
        return f"{self.column} in {{{', '.join(self.values)}}}"

    def matches(self, column: pd.Series) -> np.ndarray:
        """Boolean mask of the rows of ``column`` (this rule's input column) that it drops."""
        text = _as_text(column).str.strip()
        wanted = list(self.values)
        hit = text.str.startswith(tuple(wanted)) if self.prefix else text.isin(wanted)
        return hit.fillna(False).to_numpy(dtype=bool) & column.notna().to_numpy()


def _as_text(column: pd.Series) -> pd.Series:
    """Values as text; whole numbers in a float column without the ``.0`` (7.0 -> "7")."""
    if isinstance(column.dtype, pd.StringDtype):
        return column
    text = column.astype("str")
    if pd.api.types.is_float_dtype(column):
        whole = (column == np.floor(column)) & (column.abs() < 2**63)
        text[whole] = column[whole].astype("int64").astype("str")
    return text


def parse_row_filter(text: str) -> RowFilter:
    """One rule from its text (see the module docstring).

    Raises:
        ValueError: no ``=``, no column name, or an empty value.
    """
    column, sep, values = text.partition("=")
    prefix = column.endswith("^")
    column = (column[:-1] if prefix else column).strip()
    items = tuple(v.strip() for v in values.split(","))
    if not sep or not column or not all(items):
        raise ValueError(
            f"bad --exclude rule {text!r}: write {SYNTAX}, e.g. 'StockCode=POST,M' or "
            "'InvoiceNo^=C' (no empty column name or value)"
        )
    return RowFilter(column, items, prefix)


def parse_row_filters(texts: Iterable[str | RowFilter]) -> list[RowFilter]:
    """Rules from texts that each hold zero or more rules separated by ``;`` (rules pass through).

    Raises:
        ValueError: a rule is malformed.
    """
    rules: list[RowFilter] = []
    for item in texts:
        if isinstance(item, RowFilter):
            rules.append(item)
        else:
            rules.extend(parse_row_filter(part) for part in item.split(";") if part.strip())
    return rules
