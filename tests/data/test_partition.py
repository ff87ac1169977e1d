"""Customer-hash parts of a transactions file (clvflow.data.partition) and the whole-file
facts gathered block by block."""

import numpy as np
import pandas as pd
import pyarrow as pa

from clvflow.core.idcodes import stable_hash
from clvflow.data.ingest import DayCounts, far_dates
from clvflow.data.partition import ROW_COLUMN, estimate_rows, partition_file, parts_needed


def test_stable_hash_depends_on_the_value_alone():
    """Issue 11 item 4: an id hashes the same alone, among ids of other lengths, with a missing
    id beside it, or held as Python objects: its part never depends on its block."""
    ids = ["17850", "C0000001", "a-very-long-customer-identifier-of-41-chars", "7"]
    mixed = stable_hash(pd.Series([*ids, None], dtype="str"))
    alone = [int(stable_hash(pd.Series([v], dtype="str"))[0]) for v in ids]
    assert mixed[:4].tolist() == alone
    assert stable_hash(pd.Series(ids, dtype=object)).tolist() == alone
    assert len(set(alone)) == 4
    many = stable_hash(pd.Series([f"C{i:07d}" for i in range(40_000)], dtype="str"))
    sizes = np.bincount((many % np.uint64(4)).astype(int), minlength=4)
    assert sizes.min() > 9_000 and sizes.max() < 11_000  # evenly spread


def test_day_counts_added_block_by_block_find_the_same_far_dates():
    """Issue 11 item 4: the far-date rule from counts added in blocks (any order) equals the
    rule on the whole column: a typo year 2999 is cut off; rows without an id are not counted
    but set the span."""
    stamps = pd.to_datetime(
        ["2023-01-05", "2023-03-01", "2999-01-01", "2023-06-30", "2023-09-01", "2024-02-01"]
        + ["2023-04-04"] * 20
    ).to_numpy()
    rows = np.ones(len(stamps), dtype=bool)
    rows[1] = False
    whole, bulk = far_dates(stamps, rows)
    counts = DayCounts()
    for block in (slice(10, None), slice(3, 10), slice(0, 3)):
        counts.add(stamps[block], rows[block])
    cut = counts.far_cut()
    assert cut is not None and cut.bulk == bulk
    assert cut.above == (np.datetime64("2999-01-01") - np.datetime64("1970-01-01")).astype(int)
    assert cut.below is None
    assert cut.mask(stamps, rows).tolist() == whole.tolist()
    assert np.flatnonzero(whole).tolist() == [2]


def test_parts_needed_fits_each_part_in_half_the_memory():
    """Issue 11 item 4: one frame while rows x 100 bytes fit half the memory; else parts of at
    most half the memory and 8M rows each."""
    assert parts_needed(1_000_000, 10**9) == 1  # 0.1 GB of 0.5 GB
    assert parts_needed(20_000_000, 2 * 10**9) == 3  # 2 GB > 1 GB: 2 by memory, 3 by rows
    assert parts_needed(100_000_000, 4 * 10**9) == 13  # 10 GB / 2 GB = 5; 100M / 8M -> 13
    assert parts_needed(10_000_000, 10**9) == 2  # 1 GB > 0.5 GB: 2 by memory and by rows


def test_every_row_lands_in_exactly_one_part_with_all_its_customers_rows(tmp_path):
    """Issue 11 item 4: each row of the file is in exactly one part (its position recorded),
    every customer's rows in one part ('17.0' and '17' are one customer), rows without an id
    or excluded in part 0."""
    ids = ["17", "17.0", "", "C1", "C2", "C3", "C1", "x9", "C2", "17 "]
    log = pd.DataFrame(
        {
            "customer_id": ids,
            "timestamp": [f"2024-01-{d:02d}" for d in range(1, 11)],
            "amount": ["5"] * 10,
            "channel": ["web"] * 7 + ["test", "web", "web"],
        }
    )
    path = tmp_path / "tx.csv"
    log.to_csv(path, index=False)
    split = partition_file(path, tmp_path / "parts", 4, exclude=["channel=test"])
    assert split.rows_read == 10 and split.line_offset == 2
    assert split.last_day == pd.Timestamp("2024-01-10")
    part_of = {}
    for k, p in enumerate(sorted(split.paths)):
        with pa.ipc.open_file(p) as reader:
            table = reader.read_all()
        for row in table.column(ROW_COLUMN).to_pylist():
            assert row not in part_of
            part_of[row] = int(p.stem.split("-")[1])
        assert k <= 3
    assert sorted(part_of) == list(range(10))
    assert part_of[0] == part_of[1] == part_of[9]  # '17', '17.0' and ' 17 ' (stripped)
    assert part_of[3] == part_of[6] and part_of[4] == part_of[8]
    assert part_of[2] == 0 and part_of[7] == 0  # no id; excluded


def test_estimate_rows_reads_parquet_metadata_and_sizes_csv(tmp_path):
    """Issue 11 item 4: the automatic part count starts from the rows: exact for Parquet (its
    metadata), the size / 40 bytes for CSV (x4 gzipped), 0 for the embedded CDNOW log."""
    frame = pd.DataFrame({"customer_id": ["a"] * 1234, "timestamp": ["2024-01-01"] * 1234})
    frame.to_parquet(tmp_path / "tx.parquet")
    (tmp_path / "tx.csv").write_bytes(b"x" * 4000)
    (tmp_path / "tx.csv.gz").write_bytes(b"x" * 1000)
    assert estimate_rows(tmp_path / "tx.parquet") == 1234
    assert estimate_rows(tmp_path / "tx.csv") == 100
    assert estimate_rows(tmp_path / "tx.csv.gz") == 100
    assert estimate_rows("cdnow") == 0
