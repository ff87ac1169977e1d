"""The shared transaction flags of the CLI (commands have their own test files)."""

import json

import pandas as pd
import pytest

from clvflow.cli.main import build_parser, main

CSV = (
    "InvoiceNo,StockCode,CustomerID,InvoiceDate,Amount\n"
    "1,A,c1,2024-01-01,10\n"
    "C1,A,c1,2024-01-01,-10\n"
    "2,POST,c1,2024-01-02,5\n"
    "3,B,c2,2024-01-03,7\n"
)
MAPPING = [
    "--customer-col",
    "CustomerID",
    "--timestamp-col",
    "InvoiceDate",
    "--amount-col",
    "Amount",
]


def test_exclude_flags_reach_the_quality_report(tmp_path):
    path = tmp_path / "tx.csv"
    path.write_text(CSV)
    out, quality = tmp_path / "f.csv", tmp_path / "q.json"
    argv = ["features", "--transactions", str(path), *MAPPING, "--output", str(out)]
    argv += ["--exclude", "InvoiceNo^=C", "--exclude", "StockCode=POST"]
    assert main([*argv, "--quality-report", str(quality)]) == 0
    report = json.loads(quality.read_text())
    assert report["excluded"] == [
        {"rule": "InvoiceNo starts with C", "rows": 1},
        {"rule": "StockCode in {POST}", "rows": 1},
    ]
    assert report["rows_used"] == 2
    features = pd.read_csv(out).set_index("customer_id")
    assert features["total_spend"].to_dict() == {"c1": 10.0, "c2": 7.0}


def test_blank_exclude_adds_no_rule_and_a_bad_one_is_a_usage_error(capsys):
    parse = build_parser().parse_args
    base = ["features", "--transactions", "cdnow", "--output", "x.csv"]
    assert parse([*base, "--exclude", "", "--exclude", "a=1;b^=2"]).exclude == ["a=1;b^=2"]
    with pytest.raises(SystemExit):
        parse([*base, "--exclude", "StockCode"])
    assert "bad --exclude rule 'StockCode'" in capsys.readouterr().err
