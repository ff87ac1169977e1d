"""Bad input is refused with a message (file, column, lines, advice) or counted by a reported rule;
never taken silently, never a traceback. Tiny files on disk; the CLI exits 2."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.core.errors import InputError
from clvflow.data.ingest import ColumnMap, far_dates, load_transactions

HEADER = "customer_id,timestamp,amount\n"
# 10 rows of 2011 (lines 2-11), then a typo year 2999 (line 12) and one of 1911 (line 13).
TYPO_YEARS = (
    HEADER
    + "".join(f"c{i % 3},2011-0{1 + i // 2}-1{i % 2},{10 + i}\n" for i in range(10))
    + "c1,2999-01-01,5\nc2,1911-05-10,7\n"
)


def _csv(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    if name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _refused(capsys, argv: list) -> str:
    """Run the CLI in-process: exit code 2, a one-line error, no traceback."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"clvflow {argv[0]}: error: ") and "Traceback" not in err, err
    return err


# ---- item 3: dates far from all others ------------------------------------------------------


def test_typo_years_are_dropped_counted_and_do_not_move_the_as_of(tmp_path):
    """Issue 9 item 3: a 2999 and a 1911 row are dropped and counted, with their lines; the last
    date (so the default as-of) comes from the rows that remain; --keep-far-dates keeps them."""
    path = _csv(tmp_path, "tx.csv", TYPO_YEARS)
    tx, report = load_transactions(path)
    assert report.dropped_far_dates == 2
    assert report.rows_read == 12 and report.rows_used == len(tx) == 10
    assert report.first_timestamp == "2011-01-10 00:00:00"
    assert report.last_timestamp == "2011-05-11 00:00:00"
    assert report.notes == [
        "2 row(s) dropped, column 'timestamp' dated far from all other rows (a gap of over a "
        "year, and over the 2011-01-10 .. 2011-05-11 span of the bulk, with no row in between); "
        "first: line 12 (2999-01-01 00:00:00), line 13 (1911-05-10 00:00:00). Fix the dates, or "
        "pass --keep-far-dates to keep the rows"
    ]
    assert f"  {'dropped: dates far from all others (see note)':<48} {2:>12}" in report.to_table()
    # An explicit as-of does not bring them back; --keep-far-dates does.
    _, dated = load_transactions(path, as_of="2011-05-01")
    assert (dated.dropped_far_dates, dated.rows_on_or_after_as_of) == (2, 2)
    kept, all_rows = load_transactions(path, keep_far_dates=True)
    assert all_rows.dropped_far_dates == 0 and len(kept) == 12
    assert all_rows.last_timestamp == "2999-01-01 00:00:00"


def test_typo_year_no_longer_moves_the_cli_default_as_of(tmp_path):
    """Issue 9 item 3: `clvflow features` without --as-of scores as of the day after the last
    2011 row (2011-05-11), not 2999-01-02: recency = days from each last 2011 row to 2011-05-12."""
    path = _csv(tmp_path, "tx.csv", TYPO_YEARS)
    out, quality = tmp_path / "f.csv", tmp_path / "q.json"
    argv = ["features", "--transactions", path, "--output", out, "--quality-report", quality]
    assert main([str(a) for a in argv]) == 0
    features = pd.read_csv(out, dtype={"customer_id": str}).set_index("customer_id")
    assert features["recency_days"].to_dict() == {"c0": 1.0, "c1": 31.0, "c2": 2.0}
    assert json.loads(quality.read_text())["dropped_far_dates"] == 2
    out2 = tmp_path / "f2.csv"
    argv = ["features", "--transactions", path, "--output", out2, "--keep-far-dates"]
    assert main([str(a) for a in argv]) == 0
    assert pd.read_csv(out2)["recency_days"].min() == 1.0  # as of 2999-01-02: c1's 2999 row


def test_far_date_rule_leaves_growing_seasonal_and_real_logs_alone():
    """Issue 9 item 3: no gap over a year (sparse early years, yearly seasons, CDNOW) is kept
    whole; the rule needs a gap longer than a year AND longer than the bulk."""
    days = lambda *d: pd.to_datetime(list(d)).to_numpy()  # noqa: E731
    early = pd.date_range("2005-01-01", periods=6, freq="300D")  # a row every 300 days
    bulk = pd.date_range("2009-02-10", periods=1000, freq="5h")  # 208 days
    sparse_start = early.append(bulk).to_numpy()
    assert not far_dates(sparse_start)[0].any()
    far, _ = far_dates(np.delete(sparse_start, 4))  # a 600-day gap: the 4 rows before it are far
    assert np.flatnonzero(far).tolist() == [0, 1, 2, 3]
    seasons = days(*[f"{y}-06-{d:02d}" for y in (2020, 2021, 2022) for d in range(1, 30)])
    assert not far_dates(seasons)[0].any()
    # A 2-year bulk: a row 1.5 years after it is kept, one 2.5 years after it is far.
    bulk = [f"{y}-{m:02d}-01" for y in (2020, 2021) for m in range(1, 13)] + ["2022-01-01"]
    assert not far_dates(days(*bulk, "2023-07-01"))[0].any()
    far, span = far_dates(days(*bulk, "2024-07-01"))
    assert np.flatnonzero(far).tolist() == [25]
    assert span == (np.datetime64("2020-02-01"), np.datetime64("2022-01-01"))
    _, cdnow = load_transactions("cdnow")
    assert cdnow.dropped_far_dates == 0 and cdnow.rows_used == 69_659


# ---- item 6: ids, amounts, date layouts ---------------------------------------------------


def test_inexact_float_ids_are_refused_not_wrapped(tmp_path):
    """Issue 9 item 6: float ids beyond 2^53 (1e20 became -9223372036854775808, merging
    customers) are refused with their rows; 2^53 - 1 is still exact."""
    path = tmp_path / "tx.parquet"
    frame = pd.DataFrame(
        {
            "customer_id": [2.0**53 - 1, 1e20, 5.0, 2e20],
            "timestamp": ["2024-01-01"] * 4,
            "amount": [1.0, 2.0, 3.0, 4.0],
        }
    )
    frame.to_parquet(path)
    with pytest.raises(InputError) as err:
        load_transactions(path)
    assert str(err.value) == (
        f"{path}, column 'customer_id': 2 row(s) are floating-point ids too large to be exact "
        "(beyond 2^53 = 9007199254740992 floats skip whole numbers, so different ids can become "
        "one); first: line 2 (1e+20), line 4 (2e+20). Store the customer ids as text or "
        "integers in the file, not as floats."
    )
    frame.iloc[[0, 2]].to_parquet(path)
    tx, _ = load_transactions(path)
    assert tx["customer_id"].tolist() == ["9007199254740991", "5"]


def test_control_characters_in_ids_are_refused(tmp_path):
    """Issue 9 item 6: a NUL byte (inside or at the end of an id) made a new customer."""
    text = HEADER + "a,2024-01-01,1\na\x00,2024-01-02,2\nb,2024-01-03,3\nb\x00c,2024-01-04,4\n"
    path = _csv(tmp_path, "tx.csv", text)
    with pytest.raises(InputError) as err:
        load_transactions(path)
    assert str(err.value) == (
        f"{path}, column 'customer_id': 2 row(s) contain control characters (e.g. a NUL byte); "
        "first: line 3 ('a\\x00'), line 5 ('b\\x00c'). Remove them from the ids (a damaged "
        "export?), or map the right column with --customer-col."
    )


def test_amounts_whose_sums_overflow_are_refused(tmp_path):
    """Issue 9 item 6: two amounts of 1e308 summed to inf (total_spend 0); quantity x unit
    price can overflow too."""
    path = tmp_path / "tx.parquet"
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "timestamp": ["2024-01-01"] * 3,
            "amount": [1e308, 1e308, 2.5],
        }
    )
    frame.to_parquet(path)
    with pytest.raises(InputError) as err:
        load_transactions(path)
    assert str(err.value) == (
        f"{path}, column 'amount': 2 row(s) are too large to add up (their sums overflow "
        "floating point); first: line 1 (1e+308), line 2 (1e+308). Check these values (a unit "
        "or export error?) and fix or remove the rows."
    )
    lines = _csv(tmp_path, "lines.csv", "c,t,q,p\na,2024-01-01,2,3\nb,2024-01-02,1e200,1e200\n")
    with pytest.raises(InputError, match=r"column 'q x p': 1 row\(s\) are too large to add up"):
        load_transactions(lines, ColumnMap("c", "t", amount=None, quantity="q", unit_price="p"))


def test_day_month_order_is_never_guessed_silently(tmp_path):
    """Issue 9 item 6: `03/04/2011` was read month first with no note. Ambiguous: refused with
    the advice; --dayfirst or --date-format decide; a row like 25/03 decides, reported."""
    text = HEADER + "a,03/04/2011,1\nb,05/06/2011,2\n"
    path = _csv(tmp_path, "tx.csv", text)
    with pytest.raises(InputError) as err:
        load_transactions(path)
    assert str(err.value) == (
        f"{path}, column 'timestamp': the dates can be read month first ('%m/%d/%Y') or day "
        "first ('%d/%m/%Y') and no row tells which; e.g. line 2 ('03/04/2011'): 2011-03-04 or "
        "2011-04-03. Pass --dayfirst if day first, or --date-format '%m/%d/%Y' if month first."
    )
    tx, report = load_transactions(path, dayfirst=True)
    assert tx["timestamp"].tolist() == list(pd.to_datetime(["2011-04-03", "2011-06-05"]))
    assert report.notes == ["column 'timestamp' read with layout '%d/%m/%Y' (--dayfirst)"]
    tx, report = load_transactions(path, date_format="%m/%d/%Y")
    assert tx["timestamp"].tolist() == list(pd.to_datetime(["2011-03-04", "2011-05-06"]))
    assert report.notes == ["column 'timestamp' read with layout '%m/%d/%Y' (--date-format)"]
    decided = _csv(tmp_path, "dm.csv", text + "c,25/03/2011 10:00,3\n".replace(" 10:00", ""))
    tx, report = load_transactions(decided)
    assert tx["timestamp"].dt.strftime("%Y-%m-%d").tolist() == [
        "2011-04-03",
        "2011-06-05",
        "2011-03-25",
    ]
    assert report.notes == [
        "column 'timestamp' read with layout '%d/%m/%Y' (the only day/month order that fits "
        "every row)"
    ]
    with pytest.raises(InputError, match=r"line 4 \('25/03/2011'\)\. Fix these rows"):
        load_transactions(decided, date_format="%m/%d/%Y")


def test_mixed_date_layouts_are_refused_unless_asked_for(tmp_path):
    """Issue 9 item 6: ISO, `02/03/2011` and `March 5 2011` in one file were accepted; now
    refused (ISO variants still mix freely), or read row by row with --date-format mixed."""
    text = HEADER + "a,2011-03-01,1\na,02/03/2011,1\nb,March 5 2011,1\n"
    path = _csv(tmp_path, "tx.csv", text)
    with pytest.raises(InputError) as err:
        load_transactions(path)
    assert str(err.value) == (
        f"{path}, column 'timestamp': 2 row(s) are dates in another layout than the rest (ISO: "
        "YYYY-MM-DD ...); first: line 3 ('02/03/2011'), line 4 ('March 5 2011'). Give every "
        "date in one layout (ISO like 2024-03-31 is best), or pass --date-format mixed to read "
        "each row's own layout (day before month with --dayfirst)."
    )
    tx, report = load_transactions(path, date_format="mixed", dayfirst=True)
    assert tx["timestamp"].dt.strftime("%Y-%m-%d").tolist() == [
        "2011-03-01",
        "2011-03-02",
        "2011-03-05",
    ]
    assert report.notes == [
        "column 'timestamp': each row's date layout guessed on its own, day first (--dayfirst)"
    ]
    slashes = _csv(tmp_path, "s.csv", HEADER + "a,25/03/2011,1\nb,March 5 2011,1\n")
    with pytest.raises(InputError, match=r"1 row\(s\) are dates in another layout than the rest "):
        load_transactions(slashes)


def test_date_flags_reach_ingest_and_errors_exit_2(tmp_path, capsys):
    """Issue 9 item 6: the CLI refuses the ambiguous file (exit 2) and reads it with --dayfirst."""
    path = _csv(tmp_path, "tx.csv", HEADER + "a,03/04/2011,1\nb,05/06/2011,2\n")
    out = tmp_path / "f.csv"
    argv = ["features", "--transactions", path, "--output", out]
    err = _refused(capsys, argv)
    assert "Pass --dayfirst if day first, or --date-format '%m/%d/%Y' if month first." in err
    assert not out.exists()
    assert main([str(a) for a in [*argv, "--dayfirst", "--as-of", "2011-07-01"]]) == 0
    features = pd.read_csv(out).set_index("customer_id")
    assert features["recency_days"].to_dict() == {"a": 89.0, "b": 26.0}  # 3 April, 5 June


# ---- item 7: messages instead of tracebacks -------------------------------------------------


def test_unreadable_files_get_messages_not_tracebacks(tmp_path):
    """Issue 9 item 7: truncated .csv.gz (OSError), a repeated header name (KeyError) and a
    Latin-1 file (ArrowInvalid without file, line or advice)."""
    rows = "".join(f"c{i},2024-01-{1 + i % 28:02d},{i}\n" for i in range(3000))
    whole = gzip.compress((HEADER + rows).encode())
    truncated = tmp_path / "tx.csv.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError) as err:
        load_transactions(truncated)
    assert str(err.value) == (
        f"{truncated}: the gzip data is truncated or damaged (Truncated compressed stream). "
        "Copy or compress the file again (`gzip -t FILE` checks it)."
    )
    repeated = _csv(
        tmp_path, "dup.csv", "customer_id,timestamp,amount,note,note\na,2024-01-01,1,x,y\n"
    )
    with pytest.raises(InputError) as err:
        load_transactions(repeated)
    assert str(err.value) == (
        f"{repeated}: column name(s) ['note'] appear more than once in the header (line 1). "
        "Rename the columns so that each has its own name."
    )
    latin = _csv(
        tmp_path, "l.csv.gz", (HEADER + "a,2024-01-01,1\nJosé,2024-01-02,2\n").encode("latin-1")
    )
    with pytest.raises(InputError) as err:
        load_transactions(latin)
    assert str(err.value) == (
        f"{latin}: the text is not UTF-8; first: line 3 (b'Jos\\xe9,2024-01-02,2'). Save the "
        "file as UTF-8 (a spreadsheet's 'CSV UTF-8', or e.g. `iconv -f latin1 -t utf-8 in.csv > "
        "out.csv` for a Latin-1 file)."
    )


def test_cli_exits_2_without_traceback_on_unreadable_files(tmp_path):
    """Issue 9 item 7: the real command (a subprocess) on a truncated .csv.gz and a repeated
    header: exit 2, the message on stderr, no traceback."""
    whole = gzip.compress((HEADER + "a,2024-01-01,1\n" * 5000).encode())
    truncated = tmp_path / "tx.csv.gz"
    truncated.write_bytes(whole[:200])
    repeated = _csv(tmp_path, "dup.csv", "customer_id,timestamp,amount,amount\na,2024-01-01,1,2\n")
    for path, message in [
        (truncated, "the gzip data is truncated or damaged"),
        (repeated, "column name(s) ['amount'] appear more than once in the header (line 1)"),
    ]:
        argv = ["features", "--transactions", str(path), "--output", str(tmp_path / "f.csv")]
        done = subprocess.run(
            [sys.executable, "-m", "clvflow.cli.main", *argv], capture_output=True, text=True
        )
        assert done.returncode == 2, done.stderr
        assert f"clvflow features: error: {path}: {message}" in done.stderr
        assert "Traceback" not in done.stderr


def test_training_on_a_handful_of_customers_is_refused_cleanly(tmp_path, monkeypatch, capsys):
    """Issue 9 item 7: 3 customers in training ("hyp2f1 failed" before the snapshot rule) exit 2
    with the rule's message, and no MLflow run."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    rows = [
        f"c{c},{day.date()},{10 + c}\n"
        for c in range(3)
        for day in pd.date_range("2024-01-01", periods=8, freq="20D")
    ]
    path = _csv(tmp_path, "tx.csv", HEADER + "".join(rows))
    err = _refused(capsys, ["train", "--transactions", path, "--horizon-days", "30"])
    assert "no usable training snapshot before the cutoff 2024-05-21 with horizon_days=30" in err
    assert "2024-04-21 (111 days of history, 3 buyers, 3 active): dropped, fewer than 50" in err
    assert "use more data (a later cutoff) or another horizon" in err
    assert not (tmp_path / "mlflow.db").exists()
