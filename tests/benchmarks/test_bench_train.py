"""benchmarks.bench_train: ``make bench-train`` runs end to end on a tiny log; its checks by hand."""

from __future__ import annotations

import pytest
from benchmarks.bench_train import Row

from benchmarks import bench_train
from tests.benchmarks.test_bench_btyd import fake_lifetimes  # noqa: F401  (a fixture)


@pytest.mark.slow
@pytest.mark.usefixtures("fake_lifetimes")
def test_quick_bench_trains_splits_the_time_and_measures_both_floors(tmp_path) -> None:
    """Issue 11 (acceptance, bench-train): a real `clvflow train` in a child process with its
    time split by step, the XGBoost floor rebuilding exactly the exported boosters, and the
    BTYD fit timed against (a stand-in for) lifetimes on the same summary."""
    rows = bench_train.run_bench([1_000], tmp_path, n_estimators=10, log=lambda _: None)
    steps = [r.step for r in rows]
    assert steps[0] == "train" and steps[-4:] == [
        "xgboost floor",
        "lower bound",
        "btyd fit (clvflow)",
        "btyd fit (lifetimes)",
    ]
    split = {r.step.strip(): r for r in rows if r.step.startswith("  ")}
    for kind in ("btyd fits", "xgboost", "bootstrap", "i/o and logging", "other"):
        assert kind in split, kind
    # backtest + refit: 2 boosters each (the backtest's early-stopping ones, the refit's final
    # ones with their tree counts); 6 + 6 snapshot fits, 2 cutoffs, 2 same-season ones at most
    assert split["xgboost"].note == "4 calls"
    train = rows[0]
    assert train.wall and train.cpu and train.peak_rss_gb and train.peak_rss_gb > 0.1
    assert sum(r.wall or 0.0 for r in split.values()) == pytest.approx(train.wall)
    assert train.check == ""  # targets apply from 1M customers; the ratio is a note
    assert train.note.startswith(f"{train.share.split('x')[0]}x floor (max 2.5x; CPU ")
    floor = rows[-4]
    assert "10+10 trees, byte-identical to the exported boosters" in floor.note
    # Issue 11 item 3: the train's booster fits by phase, and the lower bound they give.
    fits = {r.step: r for r in rows if r.step.startswith("xgboost: ")}
    assert list(fits) == ["xgboost: backtest early stopping", "xgboost: refit final"]
    assert fits["xgboost: refit final"].note.startswith("churn/spend: 10+10 trees, ")
    total = sum(r.cpu or 0.0 for r in fits.values())
    assert total == pytest.approx(split["xgboost"].cpu, rel=0.2, abs=0.5)
    bound = rows[-3]
    assert bound.cpu == pytest.approx(floor.cpu + fits["xgboost: backtest early stopping"].cpu)
    assert bound.share == f"{bound.cpu / floor.cpu:.2f}x floor (CPU)"
    assert rows[-2].check.startswith(("PASS: ", "FAIL: ")) and rows[-1].wall is not None
    table = bench_train.format_table(rows).splitlines()
    assert table[0].startswith("| customers | step | wall s | CPU s | peak RSS GB |")
    assert "| 1,000 | - btyd fits |" in table[3]
    assert (tmp_path / "sim_1000_seed0.parquet").exists()
    assert not list(tmp_path.glob("*.tmp"))  # cache files written whole, then renamed


def _rows(customers: int, train_wall: float, rss: float, ours: float, theirs: float) -> list[Row]:
    return [
        Row(customers, "train", train_wall, train_wall / 2, rss),
        Row(customers, "  btyd fits", 12.0, 10.0, note="17 calls"),
        Row(customers, "xgboost floor", 100.0, 50.0, 1.0),
        Row(customers, "btyd fit (clvflow)", ours, note="cold fit"),
        Row(customers, "btyd fit (lifetimes)", theirs),
    ]


def test_check_applies_the_targets_from_a_million_customers() -> None:
    """Issue 11 (acceptance): train <= 2.5x the XGBoost floor and <= 6 GB at 1M; the BTYD fit
    <= 1x lifetimes at every size; below 1M the train ratio is only a note."""
    rows = _rows(1_000_000, 250.0, 6.0, 3.0, 3.0)
    bench_train._check(rows)
    assert rows[0].check == "PASS: 2.5x floor (max 2.5x; CPU 2.5x), 6.0 GB (max 6)"
    assert rows[3].check == "PASS: 1.00x lifetimes (max 1x)"
    assert rows[3].note == "cold fit; train's 17 calls took 4.00x one lifetimes fit"
    rows = _rows(1_000_000, 260.0, 5.0, 3.3, 3.0)
    bench_train._check(rows)
    assert rows[0].check.startswith("FAIL: 2.6x floor")
    assert rows[3].check == "FAIL: 1.10x lifetimes (max 1x)"
    rows = _rows(1_000_000, 100.0, 6.5, 1.0, 3.0)
    bench_train._check(rows)
    assert rows[0].check == "FAIL: 1.0x floor (max 2.5x; CPU 1.0x), 6.5 GB (max 6)"
    rows = _rows(100_000, 900.0, 9.0, 1.0, 3.0)
    bench_train._check(rows)
    assert rows[0].check == "" and rows[0].note.startswith("9.0x floor (max 2.5x; CPU 9.0x)")
