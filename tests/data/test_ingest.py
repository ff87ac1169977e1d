import gzip
import json

import pandas as pd
import pytest

from clvflow.core.errors import InputError
from clvflow.data.ingest import ColumnMap, load_transactions

INVOICE_COLUMNS = ColumnMap(
    customer_id="CustomerID",
    timestamp="InvoiceDate",
    amount=None,
    quantity="Quantity",
    unit_price="UnitPrice",
)
# An Online-Retail-style invoice-line export with the usual mess.
INVOICE_CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom
C536379,D,Discount,-1,2010-12-01 09:41:00,27.50,14527.0,United Kingdom
536414,22139,,56,2010-12-01 11:52:00,0.00,,United Kingdom
536544,21773,DECORATIVE ROSE,1,2010-12-01 14:32:00,2.51,,United Kingdom
536367,84879,BIRD ORNAMENT,32,2010-12-01 08:34:00,1.69,13047,United Kingdom
537000,22423,REGENCY CAKESTAND,1,2010-12-02 10:00:00,0.00,13047,United Kingdom
C536383,35004C,SET OF 3 COLOURED,-1,2010-12-01 09:49:00,4.65,15311.0,United Kingdom
536368,22960,JAM MAKING SET,6,2010-12-09 10:00:00,4.25,00042,United Kingdom
"""


def write(tmp_path, name, text):
    path = tmp_path / name
    if name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def test_invoice_lines_exact_report(tmp_path):
    path = write(tmp_path, "invoices.csv", INVOICE_CSV)
    tx, report = load_transactions(path, INVOICE_COLUMNS, as_of="2010-12-09")
    r = report.to_dict()
    assert r["rows_read"] == 10
    assert r["dropped_missing_customer_id"] == 2
    assert r["duplicate_rows"] == 1 and r["dropped_duplicates"] == 0
    assert r["rows_used"] == 8
    assert r["returns"] == 2  # the two cancellations
    assert r["zero_amounts"] == 1  # the zero price with a customer id
    assert r["customer_ids_float_formatted"] == 5
    assert r["rows_on_or_after_as_of"] == 1
    assert r["customers"] == 4  # 17850, 14527, 13047, 15311 (00042 only after as_of)
    assert r["customers_only_returns"] == 2  # 14527 and 15311
    assert sorted(tx["customer_id"].unique()) == ["00042", "13047", "14527", "15311", "17850"]
    assert tx["amount"].round(2).tolist() == [15.3, 20.34, 20.34, -27.5, 54.08, 0.0, -4.65, 25.5]
    assert "normalised" in report.to_table()


def test_every_row_is_used_or_counted(tmp_path):
    path = write(tmp_path, "invoices.csv.gz", INVOICE_CSV)
    tx, report = load_transactions(path, INVOICE_COLUMNS, drop_duplicates=True)
    assert report.dropped_duplicates == 1
    assert len(tx) == report.rows_used == 7
    assert report.rows_used + report.dropped_missing_customer_id + report.dropped_duplicates == 10
    report.save(tmp_path / "q.json")
    assert json.loads((tmp_path / "q.json").read_text())["rows_used"] == 7


def test_ids_keep_leading_zeros_and_parquet_reads(tmp_path):
    frame = pd.DataFrame(
        {
            "cust": ["00001", "00002", "00001"],
            "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]),
            "value": [1.5, 2.0, 3.0],
        }
    )
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    tx, report = load_transactions(path, ColumnMap("cust", "ts", "value"))
    assert tx["customer_id"].tolist() == ["00001", "00002", "00001"]
    assert tx["amount"].tolist() == [1.5, 2.0, 3.0]
    assert report.customers == 2


def test_float_id_column_in_parquet_is_normalised(tmp_path):
    frame = pd.DataFrame(
        {"customer_id": [17850.0, None, 12.0], "timestamp": ["2024-01-01"] * 3, "amount": [1, 2, 3]}
    )
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    tx, report = load_transactions(path)
    assert tx["customer_id"].tolist() == ["17850", "12"]
    assert report.customer_ids_float_formatted == 2
    assert report.dropped_missing_customer_id == 1


def test_mixed_timestamp_formats_and_timezones(tmp_path):
    path = write(
        tmp_path,
        "tx.csv",
        "customer_id,timestamp,amount\n"
        "a,2024-01-01 10:00:00,1\na,2024-01-02,2\nb,2024-01-03T23:30:00+02:00,3\n",
    )
    tx, _ = load_transactions(path)
    assert tx["timestamp"].tolist() == list(
        pd.to_datetime(["2024-01-01 10:00", "2024-01-02 00:00", "2024-01-03 21:30"])
    )


@pytest.mark.parametrize(
    ("name", "text", "columns", "match"),
    [
        ("nofile.csv", None, ColumnMap(), r"nofile.csv: file not found"),
        ("tx.xlsx", "x", ColumnMap(), r"unsupported file type '.xlsx'.*Supported: .csv"),
        ("empty.csv", "", ColumnMap(), r"empty.csv: the file is empty"),
        ("header.csv", "customer_id,timestamp,amount\n", ColumnMap(), r"no data rows"),
        (
            "cols.csv",
            "id,date,value\n1,2024-01-01,3\n",
            ColumnMap(),
            r"missing column\(s\) 'customer_id' \(for customer_id\), 'timestamp'.*"
            r"Columns present: \['id', 'date', 'value'\].*--customer-col",
        ),
        (
            "ts.csv",
            "customer_id,timestamp,amount\na,2024-01-01,1\nb,yesterday,2\nc,2024-13-45,3\n",
            ColumnMap(),
            r"ts.csv, column 'timestamp': 2 row\(s\) are not dates/times; "
            r"first: line 3 \('yesterday'\), line 4 \('2024-13-45'\)",
        ),
        (
            "nots.csv",
            "customer_id,timestamp,amount\na,2024-01-01,1\nb,,2\n",
            ColumnMap(),
            r"column 'timestamp': 1 row\(s\) have no timestamp; first: line 3",
        ),
        (
            "amt.csv",
            "customer_id,when,price\na,2024-01-01,$1.00\nb,2024-01-02,2\nc,2024-01-03,\n",
            ColumnMap(timestamp="when", amount="price"),
            r"amt.csv, column 'price': 2 row\(s\) are not numbers; "
            r"first: line 2 \('\$1.00'\), line 4 \(''\).*no currency sign",
        ),
        (
            "qty.csv",
            "customer_id,timestamp,q,p\na,2024-01-01,x,1\n",
            ColumnMap(amount=None, quantity="q", unit_price="p"),
            r"column 'q': 1 row\(s\) are not numbers; first: line 2 \('x'\)",
        ),
        (
            "noid.csv",
            "customer_id,timestamp,amount\n,2024-01-01,1\n",
            ColumnMap(),
            r"no row has a customer id in column 'customer_id'.*--customer-col",
        ),
    ],
)
def test_bad_input_errors(tmp_path, name, text, columns, match):
    path = tmp_path / name if text is None else write(tmp_path, name, text)
    with pytest.raises(InputError, match=match):
        load_transactions(path, columns)


def test_directory_and_corrupt_parquet(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_transactions(tmp_path / ".", ColumnMap())
    bad = write(tmp_path, "bad.parquet", "not parquet at all")
    with pytest.raises(InputError, match=r"bad.parquet: cannot read as Parquet"):
        load_transactions(bad)


def test_no_amount_mapping():
    with pytest.raises(InputError, match="no amount column"):
        ColumnMap(amount=None).required()


def test_exclude_rules_count_exactly_what_they_drop(tmp_path):
    path = write(tmp_path, "invoices.csv", INVOICE_CSV)
    rules = ["InvoiceNo^=C", "StockCode=D,22139,71053"]  # D is a cancellation: counted by rule 1
    tx, report = load_transactions(path, INVOICE_COLUMNS, exclude=rules)
    assert report.excluded == [
        {"rule": "InvoiceNo starts with C", "rows": 2},
        {"rule": "StockCode in {D, 22139, 71053}", "rows": 3},  # the duplicate pair, a no-id row
    ]
    assert report.dropped_excluded == 5
    assert report.dropped_missing_customer_id == 1
    assert report.duplicate_rows == 0 and report.returns == 0
    assert len(tx) == report.rows_used == 4
    assert tx["amount"].round(2).tolist() == [15.3, 54.08, 0.0, 25.5]
    assert report.rows_used + report.dropped_excluded + report.dropped_missing_customer_id == 10
    table = report.to_table()
    assert "dropped: --exclude rules" in table
    assert "excluded by StockCode in {D, 22139, 71053}" in table


def test_exclude_on_mapped_and_typed_columns(tmp_path):
    frame = pd.DataFrame(
        {
            "cust": ["a", "b", "c", "d"],
            "ts": pd.to_datetime(["2024-01-01"] * 4),
            "value": [1.0, 2.0, 3.0, 4.0],
            "store": [7, 8, None, 7],
        }
    )
    path = tmp_path / "tx.parquet"
    frame.to_parquet(path)
    tx, report = load_transactions(
        path, ColumnMap("cust", "ts", "value"), exclude=["store=7;cust= b "]
    )
    assert tx["customer_id"].tolist() == ["c"]  # a missing store never matches
    assert [e["rows"] for e in report.excluded] == [2, 1]


def test_excluded_rows_are_not_parsed_and_lines_stay_right(tmp_path):
    text = "customer_id,timestamp,amount,kind\na,2024-01-01,1,x\nb,never,2,fee\nc,2024-01-03,3,x\n"
    path = write(tmp_path, "tx.csv", text)
    tx, _ = load_transactions(path, exclude=["kind=fee"])
    assert tx["customer_id"].tolist() == ["a", "c"]
    path = write(tmp_path, "tx.csv", text.replace("2024-01-03", "soon"))
    with pytest.raises(InputError, match=r"column 'timestamp'.*first: line 4 \('soon'\)"):
        load_transactions(path, exclude=["kind=fee"])


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        (
            "Stockcode=POST",
            r"invoices.csv: --exclude 'Stockcode in \{POST\}' names column 'Stockcode', which the "
            r"file does not have. Columns present: \['InvoiceNo', 'StockCode', 'Description',",
        ),
        ("StockCode", r"bad --exclude rule 'StockCode': write COLUMN=VALUE\[,VALUE...\]"),
        ("StockCode=POST,", r"bad --exclude rule 'StockCode=POST,'"),
        ("Country=United Kingdom", r"the --exclude rules drop every row"),
    ],
)
def test_bad_exclude_rules(tmp_path, rule, match):
    path = write(tmp_path, "invoices.csv", INVOICE_CSV)
    with pytest.raises(InputError, match=match):
        load_transactions(path, INVOICE_COLUMNS, exclude=[rule])


def test_exclude_column_missing_from_a_raw_frame():
    with pytest.raises(InputError, match=r"cdnow.*'CDs'.*present: \[.*'number_of_cds'\]"):
        load_transactions("cdnow", exclude=["CDs=1"])
