"""Where the boosters' tree counts come from: the internal backtest's early stopping (judged on its
early-stopped boosters) sets the refit's; without an internal backtest the refit early-stops on
its own. Every ``xgb.train`` call is recorded (real fits on a small simulated log)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pytest
import xgboost as xgb

from clvflow.models.clv import ClvModel, ModelParams, Selection
from clvflow.models.selection import Blend
from clvflow.models.training import SnapshotSettings, fit_model, refit, select_method
from tests.model_fixture import seasonal_log

CUTOFF, HORIZON = pd.Timestamp("2023-01-01"), 90
#: A high learning rate and short patience, so early stopping stops well before n_estimators.
PARAMS = ModelParams(n_estimators=60, learning_rate=0.5, early_stopping_rounds=5, n_jobs=1)
TWO = SnapshotSettings(n_snapshots=2, spacing_days=30)


@dataclass
class Call:
    rounds: int
    early_stopping: bool
    rows: int
    booster: xgb.Booster


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return seasonal_log()


@pytest.fixture
def calls(monkeypatch) -> list[Call]:
    """Every ``xgb.train`` call of the test, in order."""
    recorded: list[Call] = []
    train = xgb.train

    def recording(params, dtrain, num_boost_round=10, evals=None, **kwargs):  # type: ignore[no-untyped-def]
        booster = train(params, dtrain, num_boost_round=num_boost_round, evals=evals, **kwargs)
        recorded.append(Call(num_boost_round, bool(evals), dtrain.num_row(), booster))
        return booster

    monkeypatch.setattr(xgb, "train", recording)
    return recorded


def _raw(booster: xgb.Booster) -> bytes:
    return bytes(booster.save_raw("ubj"))


def test_the_refit_takes_its_tree_counts_from_the_internal_backtest(log, calls, tmp_path):
    """Issue 11 item (a): with an internal backtest, the refit fits each booster once, on all
    its snapshots, with the tree count the backtest's early stopping found (4 fits in all, was 8),
    and the model records (and saves) where its counts came from."""
    model, _ = fit_model(log, CUTOFF, HORIZON, params=PARAMS, snapshots=TWO, method="auto")
    backtest = model.selection_.backtest
    assert backtest is not None
    found = backtest.model.n_trees_
    assert found == {"churn": 26, "spend": 6}  # stopped early: 60 allowed
    assert [c.early_stopping for c in calls] == [True, True, False, False]
    assert [c.rounds for c in calls[2:]] == [26, 6]
    assert model.n_trees_ == found and model.n_trees_source_ == "internal backtest"
    assert backtest.model.n_trees_source_ == "early stopping"
    assert model.churn_booster_.num_boosted_rounds() == 26
    assert model.spend_booster_.num_boosted_rounds() == 6
    # the refit's rows: both snapshots before the cutoff, more than the backtest trained on
    assert calls[2].rows > calls[0].rows
    model.save(tmp_path)
    assert json.loads((tmp_path / "model.json").read_text())["n_trees_source"] == (
        "internal backtest"
    )
    assert ClvModel.load(tmp_path).n_trees_source_ == "internal backtest"


def test_the_internal_backtest_judges_its_early_stopped_boosters(log, calls):
    """Issue 11 item (b): the internal backtest fits no final boosters: the ones it judges are
    its early-stopping boosters (trained on all but the latest snapshot), cut at their best
    iteration, so the rounds XGBoost ran past it are not used."""
    selection = select_method(log, CUTOFF, HORIZON, params=PARAMS, snapshots=TWO)
    assert selection.backtest is not None
    judged = selection.backtest.model
    assert len(calls) == 2 and all(c.early_stopping for c in calls)
    churn, spend = calls
    assert churn.booster.num_boosted_rounds() == 31  # 26 + the 5 rounds of patience
    assert _raw(judged.churn_booster_) == _raw(churn.booster[:26])
    assert _raw(judged.spend_booster_) == _raw(spend.booster[:6])
    assert judged.n_trees_ == {"churn": 26, "spend": 6}
    # trained on the earlier of the two snapshots only (the latest one stopped them): its
    # customers, those who bought before 2022-06-05 (3,681 of the log's)
    assert judged.snapshots_ == ["2022-06-05", "2022-07-05"]
    first = log.loc[log["timestamp"] < pd.Timestamp("2022-06-05"), "customer_id"].nunique()
    assert churn.rows == first == 3681


@pytest.mark.parametrize("how", ["library default", "no internal backtest"])
def test_without_an_internal_backtest_the_refit_early_stops_on_its_own(log, calls, how):
    """Issue 11 item (a): without an internal backtest (``fit_model(method="boosters")``, or a
    selection without a backtest: short history, a forced method) the refit keeps its own early
    stopping on the latest snapshot, then refits on all snapshots with the counts found."""
    if how == "library default":
        model, _ = fit_model(log, CUTOFF, HORIZON, params=PARAMS, snapshots=TWO)
    else:
        selection = Selection(Blend(1.0, 1.0, "forced"), None, "history too short")
        model, _ = refit(log, CUTOFF, HORIZON, selection, params=PARAMS, snapshots=TWO)
    assert [c.early_stopping for c in calls] == [True, True, False, False]
    best = [c.booster.best_iteration + 1 for c in calls[:2]]
    assert [c.rounds for c in calls[2:]] == best
    assert model.n_trees_ == dict(zip(("churn", "spend"), best, strict=True))
    assert model.n_trees_source_ == "early stopping"
    assert calls[2].rows > calls[0].rows  # the final fits use both snapshots


def test_one_snapshot_fits_n_estimators_trees_and_the_refit_early_stops_itself(log, calls):
    """Issue 11 item (a): an internal backtest with a single training snapshot has nothing to
    early-stop on (n_estimators trees, one fit per booster); the refit then runs its own early
    stopping rather than take those counts."""
    one = SnapshotSettings(n_snapshots=1, spacing_days=30)
    selection = select_method(log, CUTOFF, HORIZON, params=PARAMS, snapshots=one)
    assert selection.backtest is not None
    assert selection.backtest.model.n_trees_source_ == "n_estimators"
    assert selection.backtest.model.n_trees_ == {"churn": 60, "spend": 60}
    assert [(c.rounds, c.early_stopping) for c in calls] == [(60, False), (60, False)]
    model, _ = refit(log, CUTOFF, HORIZON, selection, params=PARAMS, snapshots=TWO)
    assert [c.early_stopping for c in calls[2:]] == [True, True, False, False]
    assert model.n_trees_source_ == "early stopping"


def test_given_tree_counts_and_keeping_the_early_stopped_boosters_exclude_each_other(log):
    """Issue 11 item (b): the early-stopped boosters exist only with the model's own early
    stopping."""
    model = ClvModel(HORIZON, PARAMS)
    with pytest.raises(ValueError, match="early_stopped needs the model's own early stopping"):
        model.fit_stacked(
            None,  # type: ignore[arg-type]  (refused before it is read)
            pd.DataFrame(),
            n_trees={"churn": 3, "spend": 3},
            early_stopped=True,
        )
