from clvflow.data.ingest import load_cdnow, load_transactions


def test_cdnow_loads_with_documented_counts():
    tx = load_cdnow()
    assert len(tx) == 69_659
    assert tx["customer_id"].nunique() == 23_570
    days = tx.assign(day=tx["timestamp"].dt.normalize()).groupby(["customer_id", "day"]).ngroups
    assert days == 67_591
    assert tx["customer_id"].iloc[0] == "00001"
    assert tx["timestamp"].min().isoformat() == "1997-01-01T00:00:00"
    assert tx["timestamp"].max().isoformat() == "1998-06-30T00:00:00"


def test_cdnow_name_works_as_a_path_with_report():
    _, report = load_transactions("cdnow", as_of="1998-01-01")
    assert report.rows_used == 69_659
    assert report.zero_amounts == 80
    assert report.rows_on_or_after_as_of == 12_757
