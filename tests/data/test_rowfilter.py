import pandas as pd
import pytest

from clvflow.data.rowfilter import RowFilter, parse_row_filter, parse_row_filters


@pytest.mark.parametrize(
    ("text", "rule", "description"),
    [
        ("StockCode=POST", RowFilter("StockCode", ("POST",)), "StockCode in {POST}"),
        (
            " StockCode = POST, BANK CHARGES ",
            RowFilter("StockCode", ("POST", "BANK CHARGES")),
            "StockCode in {POST, BANK CHARGES}",
        ),
        ("InvoiceNo^=C", RowFilter("InvoiceNo", ("C",), prefix=True), "InvoiceNo starts with C"),
        (
            "InvoiceNo^=C,A",
            RowFilter("InvoiceNo", ("C", "A"), prefix=True),
            "InvoiceNo starts with one of {C, A}",
        ),
        ("Note=a=b", RowFilter("Note", ("a=b",)), "Note in {a=b}"),  # split at the first '='
    ],
)
def test_parse_forms(text, rule, description):
    assert parse_row_filter(text) == rule
    assert rule.describe() == description


def test_several_rules_in_one_text_and_blanks():
    rule = RowFilter("x", ("1",))
    assert parse_row_filters(["a=1;b^=2", "", " ; ", rule]) == [
        RowFilter("a", ("1",)),
        RowFilter("b", ("2",), prefix=True),
        rule,
    ]


@pytest.mark.parametrize("text", ["StockCode", "=POST", "StockCode=", "StockCode=a,,b", "^=C"])
def test_malformed_rules(text):
    with pytest.raises(ValueError, match=r"bad --exclude rule .*COLUMN=VALUE"):
        parse_row_filter(text)


def test_matches_text_numbers_and_missing_values():
    text = pd.Series([" C1 ", "c2", "A3", None], dtype="str")
    assert RowFilter("x", ("C",), prefix=True).matches(text).tolist() == [True, False, False, False]
    assert RowFilter("x", ("A3", "C1")).matches(text).tolist() == [True, False, True, False]
    numbers = pd.Series([7.0, 7.5, float("nan"), 70.0])
    assert RowFilter("x", ("7", "7.5")).matches(numbers).tolist() == [True, True, False, False]
    assert RowFilter("x", ("7",)).matches(pd.Series([7, 8])).tolist() == [True, False]
