"""benchmarks.bench_threads: ``make bench-threads`` runs end to end on a tiny log."""

from __future__ import annotations

import pytest
from benchmarks.bench_threads import Row

from benchmarks import bench_threads
from clvflow.core.cores import available_cores


@pytest.mark.slow
def test_quick_bench_runs_the_three_settings_with_their_environment(tmp_path, capsys) -> None:
    """Issue 11 item 1: the quick benchmark fits under a burner and idle, and each setting's
    child really ran with its wait policy and thread count (clvflow's default: passive, the
    available cores; the old default: active as the user set it, 2 threads)."""
    argv = ["--quick", "--customers", "600", "--n-estimators", "10", "--data-dir", str(tmp_path)]
    status = bench_threads.main(argv)
    out = capsys.readouterr().out.splitlines()
    table = [line for line in out if line.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    assert head[:5] == ["load", "setting", "OMP_WAIT_POLICY", "n_jobs", "runs"]
    assert set(table[1]) <= set("|-")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table[2:]]
    cores = str(available_cores())
    expected = [
        ["default", "passive", cores, "1"],
        ["n-jobs 1", "passive", "1", "1"],
        ["old default", "active", "2", "1"],
    ]
    assert [r[:2] for r in rows] == [
        [load, s] for load in ("burner", "idle") for s in bench_threads.SETTINGS
    ]
    assert [r[1:5] for r in rows] == expected * 2
    assert all(float(r[5]) > 0 and float(r[6]) > 0 for r in rows)
    checks = [r[head.index("check")] for r in rows]
    assert checks[0].startswith(("PASS", "FAIL")) and checks[1:] == ["-"] * 5
    assert status == (1 if checks[0].startswith("FAIL") else 0)
    assert (tmp_path / "sim_600_seed0_stacked.parquet").exists()


def _row(setting: str, wall: list[float], cpu: list[float]) -> Row:
    return Row("burner", setting, "passive", 1, wall, cpu, cpu)


def test_check_takes_the_median_of_paired_ratios() -> None:
    """Issue 11 item 1: default / n-jobs 1 is paired run by run; PASS at most 1.0, else FAIL."""
    rows = [
        _row("default", [2.0, 3.0, 9.0], [1.0, 1.0, 1.0]),
        _row("n-jobs 1", [4.0, 3.0, 6.0], [2.0, 2.0, 2.0]),
        _row("old default", [8.0, 6.0, 6.0], [4.0, 4.0, 4.0]),
    ]
    bench_threads._check(rows, enforce=True)
    # ratios 0.5, 1.0, 1.5 -> median 1.0: PASS; the noise is 6 / 3 - 1 = 100 %
    assert rows[0].check == "PASS: 1.00x (max 1x)"
    assert rows[0].note == "1.00x n-jobs 1 wall (runs: 0.50, 1.00, 1.50); 0.50x its CPU"
    assert rows[1].note == "noise (max/min-1 of wall) 100%" and rows[1].check == ""
    assert rows[2].check == "" and rows[2].note.startswith("2.00x n-jobs 1 wall")
    rows[0].wall = [2.0, 3.3, 9.0]  # ratios 0.5, 1.1, 1.5 -> 1.10
    bench_threads._check(rows, enforce=True)
    assert rows[0].check == "FAIL: 1.10x (max 1x)"
    rows[0].check = ""
    bench_threads._check(rows, enforce=False)  # idle: for information only
    assert rows[0].check == ""
