"""Scoring warns only about what the user can act on: a material seasonal correction used in
another part of the year, and drift beyond a population merely getting older."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from clvflow.cli.main import main
from clvflow.features.build import build_features
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from clvflow.scoring.batch import score_transactions, season_mismatch
from clvflow.scoring.drift import DEFAULT_PSI_THRESHOLD, reference_profile
from tests.model_fixture import small_log, small_model


def _with_season(spend_ratio: float, churn_shift: float):
    """The small model with a given same-season correction from the 2022-07-01 snapshot."""
    model = copy.deepcopy(small_model()[0])
    model.level_["season"] = {
        "snapshot": "2022-07-01",
        "churn_shift": churn_shift,
        "spend_ratio": spend_ratio,
    }
    return model, model.season_window_start()


@pytest.mark.parametrize(
    ("days_after_start", "warns"),
    [(0, False), (31, False), (-31, False), (32, True), (182, True), (-150, True)]
    + [(365, False), (-365, False), (730, False), (365 + 40, True), (-365 - 40, True)],
)
def test_season_warning_only_in_another_part_of_the_year(days_after_start, warns):
    """Issue 9 item 14: the same season a year earlier or later is not "another season" (the
    warning fired for any date more than 31 days from the training window)."""
    model, start = _with_season(spend_ratio=1.30, churn_shift=0.0)
    note = season_mismatch(model, start + pd.Timedelta(days=days_after_start))
    assert (note is not None) == warns
    if warns:
        assert "total spend x1.30, odds of buying x1.00" in note


@pytest.mark.parametrize(
    ("spend_ratio", "churn_shift", "warns"),
    [(1.05, 0.05, False), (0.95, -0.09, False), (1.0, 0.0, False)]
    + [(1.10, 0.0, True), (1 / 1.10, 0.0, True), (1.0, 0.0954, True), (1.0, -0.0954, True)],
)
def test_season_warning_only_for_a_material_correction(spend_ratio, churn_shift, warns):
    """Issue 9 item 14: a correction that moved total spend and the odds of buying by less than
    10% is not worth a warning in another season (exp(0.0954) = 1.1001)."""
    model, start = _with_season(spend_ratio, churn_shift)
    assert (season_mismatch(model, start + pd.Timedelta(days=182)) is not None) == warns


def test_a_cohort_that_only_aged_shows_no_age_drift(caplog):
    """Issue 9 item 14: scored 85 days after the training cutoff on the same customers with no
    new purchases, tenure_days and T_days are exactly the reference aged by 85 days: PSI 0, no
    warning for them (the plain PSI, kept as psi_unaged, is large); recency, which the user can
    act on (nobody bought for 85 days), is still warned about."""
    model, cutoff = small_model()
    tx = small_log()
    past = tx.loc[tx["timestamp"] < cutoff]
    profile = reference_profile(
        build_features(past, cutoff), ["tenure_days", "T_days", "recency_days"]
    )
    later = cutoff + pd.Timedelta(days=85)
    result = score_transactions(
        model, past, later, reference_profile=profile, reference_as_of=cutoff
    )
    drift = result.drift.set_index("column")
    assert drift.loc["tenure_days", "psi"] == 0.0 and drift.loc["T_days", "psi"] == 0.0
    assert not drift.loc["tenure_days", "drifted"] and not drift.loc["T_days", "drifted"]
    assert drift.loc["tenure_days", "psi_unaged"] > DEFAULT_PSI_THRESHOLD
    assert drift.loc["T_days", "psi_unaged"] > DEFAULT_PSI_THRESHOLD
    assert drift.loc["recency_days", "drifted"]
    assert drift.loc["recency_days", "psi"] == drift.loc["recency_days", "psi_unaged"]
    (drift_note,) = [w for w in result.warnings if w.startswith("population drift")]
    assert "for 1 column(s)" in drift_note and "recency_days" in drift_note
    assert "tenure_days" not in drift_note and "T_days" not in drift_note


def test_trend_does_not_warn_per_date_about_the_season(tmp_path, caplog):
    """Issue 9 item 14: `trend` scores every date at the model's one level, so the dates compare
    at that level: one info line, no season warning per date (it warned on each date away from
    the trained season, e.g. 3 of 4 quarterly dates)."""
    model, start = _with_season(spend_ratio=1.30, churn_shift=0.2)
    write_bundle_files(model, tmp_path / "bundle", build_manifest(model, cutoff="2023-07-01"))
    small_log().to_parquet(tmp_path / "tx.parquet")
    dates = ["2022-10-01", "2023-01-01", "2023-04-01", "2023-07-01"]
    assert sum(season_mismatch(model, pd.Timestamp(d)) is not None for d in dates) == 3
    caplog.set_level("INFO")
    argv = ["trend", "--model", tmp_path / "bundle", "--transactions", tmp_path / "tx.parquet"]
    argv += ["--as-of", *dates, "--output", tmp_path / "trend.csv"]
    assert main([str(a) for a in argv]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    one_level = [r for r in caplog.records if "scored at the model's one level" in r.getMessage()]
    assert len(one_level) == 1 and str(start.date()) in one_level[0].getMessage()
