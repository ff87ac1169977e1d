"""Atomic outputs are created with the user's umask, like any other file they write."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

from clvflow.data.files import write_table


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        for name in ("t.csv", "t.parquet"):
            path = write_table(pd.DataFrame({"a": [1]}), tmp_path / name)
            assert stat.S_IMODE(path.stat().st_mode) == mode
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.parquet"]  # no temp files


def test_report_folder_and_files_follow_the_umask(tmp_path):
    from clvflow.scoring.report import write_report
    from tests.scores_fixture import synthetic_scores

    old = os.umask(0o027)
    try:
        page = write_report(synthetic_scores(200, seed=1), tmp_path / "r")
    finally:
        os.umask(old)
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o750
    assert stat.S_IMODE(page.stat().st_mode) == 0o640
