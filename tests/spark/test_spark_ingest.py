"""The Spark reader gives the single-machine transactions table and data-quality counts, and
`clvflow features --engine spark` the same feature file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from clvflow.cli.main import main
from clvflow.core.errors import InputError
from clvflow.data.ingest import ColumnMap, DataQualityReport, load_transactions
from clvflow.data.simulate import retail_like
from clvflow.features.build import build_features
from clvflow.spark.features import build_features_spark, features_to_pandas
from clvflow.spark.ingest import ROW_COLUMN, load_transactions_spark
from tests.spark.test_spark_features import assert_same_features

AS_OF = "2011-09-01"


def messy_log() -> pd.DataFrame:
    """A retail-like log (cancellations, returns, zero amounts, guest rows without an id) with
    float-formatted ids ('123.0') for some customers, duplicated rows and an extra column."""
    tx = retail_like(n_customers=150, seed=5, missing_id_share=0.05).transactions
    raw = pd.DataFrame(
        {
            "CustomerID": tx["customer_id"],
            "InvoiceDate": tx["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "Amount": tx["amount"].round(2).map("{:.2f}".format),
            "Channel": np.where(np.arange(len(tx)) % 3 == 0, "web", "shop"),
        }
    )
    ids = raw["CustomerID"].str.replace("C", "1", regex=False)  # C0000029 -> 10000029
    raw["CustomerID"] = ids
    floaty = ids.notna() & ids.str[-1].isin(["1", "7"])
    raw.loc[floaty, "CustomerID"] = ids[floaty] + ".0"
    raw.loc[floaty & (np.arange(len(raw)) % 2 == 0), "CustomerID"] = ids + ".00"
    dupes = raw.iloc[::17]
    return pd.concat([raw, dupes, dupes.iloc[::2]], ignore_index=True)


COLUMNS = ColumnMap(customer_id="CustomerID", timestamp="InvoiceDate", amount="Amount")


def sorted_tx(tx: pd.DataFrame) -> pd.DataFrame:
    return tx.sort_values(["customer_id", "timestamp", "amount"], kind="stable").reset_index(
        drop=True
    )


def report_counts(report: DataQualityReport) -> dict:
    return {k: v for k, v in report.to_dict().items() if k != "notes"}


@pytest.mark.parametrize(("suffix", "drop_duplicates"), [(".csv", False), (".parquet", True)])
def test_spark_reader_equals_the_local_one_on_a_messy_log(
    spark, tmp_path: Path, suffix: str, drop_duplicates: bool
) -> None:
    """Issue 12 item 1: guest rows, float-formatted ids, duplicates, returns and cancellations:
    the same cleaned rows, the same counts and the same features on both engines."""
    raw = messy_log()
    path = tmp_path / f"log{suffix}"
    if suffix == ".csv":
        raw.to_csv(path, index=False)
    else:
        raw.to_parquet(path, index=False)
    local_tx, local = load_transactions(
        path, COLUMNS, as_of=AS_OF, drop_duplicates=drop_duplicates, keep_far_dates=True
    )
    spark_tx, report = load_transactions_spark(
        spark, path, COLUMNS, as_of=AS_OF, drop_duplicates=drop_duplicates
    )
    assert local.customer_ids_float_formatted > 20 and local.duplicate_rows > 20
    assert local.dropped_missing_customer_id > 0 and local.returns > 0
    assert report_counts(report) == report_counts(local)
    got = spark_tx.drop(ROW_COLUMN).toPandas()
    got["customer_id"] = got["customer_id"].astype("str")
    pd.testing.assert_frame_equal(
        sorted_tx(got), sorted_tx(local_tx), check_dtype=False, check_exact=True
    )
    table = features_to_pandas(build_features_spark(spark_tx, AS_OF))
    assert_same_features(table, build_features(local_tx, AS_OF))


def test_spark_reader_names_the_file_column_and_values_it_cannot_read(
    spark, tmp_path: Path
) -> None:
    """Issue 12 item 1: a missing column and non-ISO dates fail with the file, the column, the
    first values and what to do (an InputError, exit 2 from the CLI)."""
    path = tmp_path / "bad.csv"
    path.write_text("customer_id,timestamp,amount\n1,2024-01-05,3.5\n2,05/01/2024,4\n")
    with pytest.raises(InputError, match=r"bad.csv, column 'timestamp': 1 row\(s\).*'05/01/2024'"):
        load_transactions_spark(spark, path)
    with pytest.raises(InputError, match=r"missing column\(s\) 'amt' \(for amount\)"):
        load_transactions_spark(spark, path, ColumnMap(amount="amt"))


def test_features_command_on_spark_writes_the_local_table(spark, tmp_path: Path, capsys) -> None:
    """Issue 12 item 1: `clvflow features --engine spark` writes the file the default engine
    writes (same ids, same numbers, as of the same default date: the day after the last row)
    and the same data-quality counts."""
    raw = messy_log()
    path = tmp_path / "log.csv"
    raw.to_csv(path, index=False)
    flags = ["--transactions", str(path), "--customer-col", "CustomerID", "--timestamp-col"]
    flags += ["InvoiceDate", "--amount-col", "Amount", "--keep-far-dates"]  # as-of: the default
    for engine in ("local", "spark"):
        out, quality = tmp_path / f"{engine}.parquet", tmp_path / f"{engine}.json"
        args = ["features", *flags, "--output", str(out), "--quality-report", str(quality)]
        assert main([*args, "--engine", engine]) == 0
    local = pd.read_parquet(tmp_path / "local.parquet")
    assert_same_features(pd.read_parquet(tmp_path / "spark.parquet"), local)
    first, last = (pd.Timestamp(d).normalize() for d in raw["InvoiceDate"].agg(["min", "max"]))
    assert local["tenure_days"].max() == (last - first).days + 1  # as of the day after the last
    reports = [
        DataQualityReport(**json.loads((tmp_path / f"{e}.json").read_text()))
        for e in ("local", "spark")
    ]
    assert report_counts(reports[1]) == report_counts(reports[0])
    code = main(["features", *flags, "--output", str(tmp_path / "x.csv"), "--engine", "spark",
                 "--dayfirst"])  # fmt: skip
    assert code == 2
    assert "--dayfirst needs --date-format on the Spark engine" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_spark_reader_applies_exclude_rules_date_layouts_and_the_far_dates_rule(
    spark, tmp_path: Path, suffix: str
) -> None:
    """Issue 12 item 1: --exclude (counted rule by rule, first match wins, a whole float
    matching its integer text), --date-format and the far-dates check give the single-machine
    rows and counts on Spark."""
    raw = messy_log()
    stamps = pd.to_datetime(raw["InvoiceDate"])
    raw["InvoiceDate"] = stamps.dt.strftime("%d/%m/%Y %H:%M")
    raw["Store"] = (np.arange(len(raw)) % 5).astype(float)  # 0.0 .. 4.0
    typo = raw.iloc[[3, 8, 9]].copy()
    typo["InvoiceDate"] = ["01/02/2999 10:00", "15/06/1911 09:30", "16/06/1911 09:30"]
    typo[["Channel", "Store"]] = ["shop", 0.0]
    raw = pd.concat([raw, typo], ignore_index=True)
    path = tmp_path / f"log{suffix}"
    if suffix == ".csv":
        raw.to_csv(path, index=False)
    else:
        raw.to_parquet(path, index=False)
    rules = ["Channel=web", "Store=3,3.0;Store=3,4,4.0", "Channel^=x"]  # (CSV: text "3.0")
    options = {"exclude": rules, "date_format": "%d/%m/%Y %H:%M", "as_of": AS_OF}
    local_tx, local = load_transactions(path, COLUMNS, **options)
    spark_tx, report = load_transactions_spark(spark, path, COLUMNS, **options)
    excluded = [e["rows"] for e in local.excluded]
    assert local.dropped_far_dates == 3 and min(excluded[:3]) > 0 and excluded[3] == 0
    assert excluded[1] == pytest.approx(excluded[2], rel=0.2)  # store 3 once, then store 4
    assert report_counts(report) == report_counts(local)
    assert [n for n in report.notes if "far from" not in n] == [
        n for n in local.notes if "far from" not in n
    ]
    far_note = next(n for n in report.notes if "far from" in n)
    assert (
        far_note.startswith("3 row(s) dropped, column 'InvoiceDate'") and "1911-06-15" in far_note
    )
    got = spark_tx.drop(ROW_COLUMN).toPandas()
    got["customer_id"] = got["customer_id"].astype("str")
    pd.testing.assert_frame_equal(
        sorted_tx(got), sorted_tx(local_tx), check_dtype=False, check_exact=True
    )
    with pytest.raises(InputError, match=r"--exclude 'Till in \{1\}' names column 'Till'"):
        load_transactions_spark(spark, path, COLUMNS, exclude=["Till=1"])
    with pytest.raises(InputError, match=r"do not match --date-format '%Y-%m-%d'.*first: '"):
        load_transactions_spark(spark, path, COLUMNS, date_format="%Y-%m-%d")


@pytest.mark.parametrize("zone", [None, "Europe/Paris"])
def test_spark_reads_parquet_written_by_pandas_with_nanosecond_timestamps(
    spark, tmp_path: Path, zone: str | None
) -> None:
    """Issue 12 item 1: Parquet timestamps in nanoseconds (pandas' unit before 3.0, and many
    writers'), which Spark's reader refuses: clvflow reads them (naive, or zoned and taken at
    UTC) and gets the single-machine rows."""
    raw = messy_log()
    stamps = pd.to_datetime(raw["InvoiceDate"]).astype("datetime64[ns]")
    raw["InvoiceDate"] = stamps.dt.tz_localize(zone) if zone else stamps
    path = tmp_path / "ns.parquet"
    raw.to_parquet(path, index=False)
    assert str(pq.read_schema(path).field("InvoiceDate").type).startswith("timestamp[ns")
    local_tx, local = load_transactions(path, COLUMNS, as_of=AS_OF)
    spark_tx, report = load_transactions_spark(spark, path, COLUMNS, as_of=AS_OF)
    assert report_counts(report) == report_counts(local)
    got = spark_tx.drop(ROW_COLUMN).toPandas()
    got["customer_id"] = got["customer_id"].astype("str")
    pd.testing.assert_frame_equal(
        sorted_tx(got), sorted_tx(local_tx), check_dtype=False, check_exact=True
    )
