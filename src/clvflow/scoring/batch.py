"""Batch scoring of a customer file: transactions in, the full scores table out.

One straight-line function per job; reading files, loading models and writing outputs stay in
the CLI. Every customer with a transaction before ``as_of`` appears exactly once in the output.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clvflow.core.dates import DateLike, default_as_of, to_day
from clvflow.features.build import build_features
from clvflow.models.clv import ClvModel
from clvflow.models.uncertainty import total_clv_interval
from clvflow.scoring.drift import AGE_COLUMNS, DEFAULT_PSI_THRESHOLD, drift_table
from clvflow.scoring.scores import score_features
from clvflow.scoring.segments import add_segments

log = logging.getLogger(__name__)

MODEL_INFO_COLUMNS = ["model_name", "model_version", "scored_at"]
#: Scoring this many days or fewer from the window a seasonal level was set for (on the
#: calendar: a year later is the same season): no warning.
SEASON_TOLERANCE_DAYS = 31
#: A seasonal correction that moved total spend and the odds of buying by less than this
#: factor changes too little to warn about when scoring in another season.
SEASON_MATERIAL_FACTOR = 1.10
YEAR_DAYS = 365.25


@dataclass
class ScoreResult:
    """The scores table plus what a user should know about the run."""

    scores: pd.DataFrame
    as_of: pd.Timestamp
    drift: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    #: 10th / 90th percentiles of the total horizon CLV (None: the model has no calibration)
    clv_total_interval: tuple[float, float] | None = None


def resolve_as_of(tx: pd.DataFrame, as_of: DateLike | None) -> pd.Timestamp:
    """The scoring date: given, or the day after the last transaction.

    Raises:
        ValueError: ``as_of`` is on or before the first transaction's day (nobody is known).
    """
    day = to_day(as_of, "as_of") if as_of is not None else default_as_of(tx)
    first = tx["timestamp"].min()
    if day <= first:
        raise ValueError(
            f"as-of date {day.date()} is not after the first transaction ({first}): no customer "
            "is known before it. Use a later --as-of."
        )
    return day


def season_mismatch(model: ClvModel, as_of: pd.Timestamp) -> str | None:
    """A warning when the model's level carries a material seasonal correction (total spend or
    the odds of buying moved by ``SEASON_MATERIAL_FACTOR`` or more) and ``as_of`` lies more than
    ``SEASON_TOLERANCE_DAYS`` from that window's start on the calendar (None otherwise)."""
    start = model.season_window_start()
    if start is None:
        return None
    season = model.level_["season"]
    spend, odds = season["spend_ratio"], float(np.exp(season["churn_shift"]))
    if max(spend, 1 / spend, odds, 1 / odds) < SEASON_MATERIAL_FACTOR:
        return None
    gap = (as_of - start).days
    off = abs(gap) % YEAR_DAYS
    if min(off, YEAR_DAYS - off) <= SEASON_TOLERANCE_DAYS:
        return None
    return (
        f"the model's level is corrected for the season of the window starting {start.date()} "
        f"(its training cutoff: total spend x{spend:.2f}, odds of buying x{odds:.2f}); scoring "
        f"as of {as_of.date()} falls in another part of the year, so totals may be off by "
        "that season's factor. Retrain with a cutoff near the scoring date, or train with "
        "--seasonal-level false for a season-neutral level."
    )


def score_transactions(
    model: ClvModel,
    tx: pd.DataFrame,
    as_of: DateLike | None = None,
    *,
    model_name: str = "",
    model_version: str = "",
    scored_at: pd.Timestamp | None = None,
    margin: float = 1.0,
    annual_discount_rate: float = 0.0,
    reference_profile: dict | None = None,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    reference_as_of: DateLike | None = None,
    season_check: bool = True,
    with_reasons: bool = True,
) -> ScoreResult:
    """Score every customer known before ``as_of`` with the model's own horizon.

    Args:
        model: fitted model.
        tx: transactions table (rows on or after ``as_of`` are ignored).
        as_of: scoring date; default the day after the last transaction.
        model_name, model_version: recorded in the output (registry name / version or run id).
        scored_at: timestamp recorded in the output (the CLI passes the current time).
        margin, annual_discount_rate: CLV economics (see :mod:`clvflow.scoring.value`).
        reference_profile: the model's training population profile, for drift (PSI) checks.
        psi_threshold: PSI above which a feature or prediction counts as drifted.
        reference_as_of: the date the profile was taken (the training cutoff): customer ages
            are compared with the reference aged to ``as_of`` (see :mod:`clvflow.scoring.drift`).
        season_check: warn when a seasonal level is used in another season (:func:`season_mismatch`);
            off for a trend, whose dates all share the model's one level.
        with_reasons: add the reason columns (see :func:`clvflow.scoring.score_features`).

    Returns:
        :class:`ScoreResult` with the scores table (docs/architecture.md columns, history,
        ``clv_lifetime``, segments and priorities, model columns).
    """
    day = resolve_as_of(tx, as_of)
    steps = _Steps()
    features = build_features(tx, day)
    steps.done(f"features as of {day.date()}: {len(features):,} customers")
    scores = score_features(
        model,
        features,
        day,
        margin=margin,
        annual_discount_rate=annual_discount_rate,
        with_reasons=with_reasons,
    )
    steps.done(f"predicted {model.horizon_days}-day activity and spend")
    scores = add_segments(scores)
    scores["model_name"] = model_name
    scores["model_version"] = str(model_version)
    scores["scored_at"] = pd.Timestamp(scored_at) if scored_at is not None else pd.NaT
    steps.done("segments and priorities")
    result = ScoreResult(scores=scores, as_of=day)
    result.clv_total_interval = total_clv_interval(
        getattr(model, "spend_calibration_", None), scores
    )
    season_note = season_mismatch(model, day) if season_check else None
    if season_note:
        result.warnings.append(season_note)
    if reference_profile:
        table = pd.concat([features, scores[["p_active", "expected_spend"]]], axis=1)
        aged = (day - to_day(reference_as_of, "reference_as_of")).days if reference_as_of else 0
        result.drift = drift_table(reference_profile, table, psi_threshold, age_days=aged)
        if aged:
            log.info(
                "drift: customer ages (%s) compared with the training population aged %+d days",
                ", ".join(AGE_COLUMNS),
                aged,
            )
        result.warnings.extend(drift_warnings(result.drift, psi_threshold))
        steps.done("drift check (PSI)")
    for w in result.warnings:
        log.warning(w)
    return result


def drift_warnings(drift: pd.DataFrame, psi_threshold: float) -> list[str]:
    """The warning for the drifted columns of a drift table (none: no warning)."""
    drifted = drift[drift["drifted"]]
    if not len(drifted):
        return []
    listed = ", ".join(f"{r.column} ({r.psi:.2f})" for r in drifted.head(8).itertuples())
    return [
        f"population drift: PSI > {psi_threshold} for {len(drifted)} column(s) vs the "
        f"training population: {listed}. Scores may be less reliable; consider retraining."
    ]


class _Steps:
    """Progress: one log line per finished step with its duration."""

    def __init__(self) -> None:
        self.t = time.perf_counter()

    def done(self, what: str) -> None:
        now = time.perf_counter()
        log.info("%s (%.1f s)", what, now - self.t)
        self.t = now
