"""What train exports when no internal backtest can judge the boosters (CDNOW, counts only)."""

from __future__ import annotations

import pandas as pd
import pytest

from clvflow.data.ingest import load_cdnow
from clvflow.models.training import SnapshotSettings, internal_backtest_possible, unjudged_choice


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return load_cdnow()


@pytest.mark.parametrize(
    ("cutoff", "horizon_days", "history", "method"),
    [
        ("1997-08-01", 181, 31, "bgnbd"),  # 30 days of customers predicting 181: extrapolation
        ("1997-06-01", 90, 61, "bgnbd"),
        ("1997-07-01", 90, 91, "boosters"),
        ("1998-01-01", 181, 184, "boosters"),
        ("1997-04-01", 30, 60, "boosters"),
    ],
)
def test_unjudged_boosters_only_with_a_horizon_of_history(
    cdnow, cutoff, horizon_days, history, method
):
    day = pd.Timestamp(cutoff)
    past = cdnow.loc[cdnow["timestamp"] < day]
    snapshots = SnapshotSettings()
    assert not internal_backtest_possible(past, day, horizon_days, snapshots)[0]
    blend = unjudged_choice(past, day, horizon_days, snapshots)
    assert blend.method == method
    assert f" {history} days of history" in blend.reason


def test_internal_backtest_needs_two_horizons_and_a_month(cdnow):
    snapshots = SnapshotSettings()
    day = pd.Timestamp("1998-07-01")
    ok, why = internal_backtest_possible(cdnow.loc[cdnow["timestamp"] < day], day, 181, snapshots)
    assert ok and why == ""
    day = pd.Timestamp("1998-01-01")
    ok, why = internal_backtest_possible(cdnow.loc[cdnow["timestamp"] < day], day, 181, snapshots)
    assert not ok and "365 days before 1998-01-01, 393 needed" in why


def test_boosters_fitted_on_the_whole_log_equal_those_fitted_on_the_log_cut_at_the_cutoff():
    """Issue 11 item 4: ``fit_boosters`` keeps no copy of the rows before the cutoff (each step
    reads only those rows of the log it is given), and what it fits from the whole log (text
    ids, rows after the cutoff) is byte for byte what it fits from the log cut at the cutoff:
    boosters, BTYD fits, level, features and snapshot checks."""
    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.models.clv import ModelParams
    from clvflow.models.training import fit_boosters

    tx = simulate(1500, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=4)
    tx = tx.transactions
    cutoff = pd.Timestamp("2023-01-01")
    assert (tx["timestamp"] >= cutoff).sum() > 1000  # rows after the cutoff are present
    cut = tx.loc[tx["timestamp"] < cutoff].reset_index(drop=True)

    def fit(log: pd.DataFrame):
        return fit_boosters(
            log,
            cutoff,
            90,
            params=ModelParams(n_estimators=15, seed=0, n_jobs=1),
            snapshots=SnapshotSettings(n_snapshots=3, spacing_days=30),
        )

    (whole, whole_features), (want, want_features) = fit(tx), fit(cut)
    for booster in ("churn_booster_", "spend_booster_"):
        got, expected = getattr(whole, booster), getattr(want, booster)
        assert bytes(got.save_raw("ubj")) == bytes(expected.save_raw("ubj"))
    assert whole.n_trees_ == want.n_trees_ and whole.level_ == want.level_
    assert whole.btyd_ == want.btyd_ and whole.n_training_rows_ == want.n_training_rows_
    assert whole.snapshot_checks_ == want.snapshot_checks_
    pd.testing.assert_frame_equal(whole_features, want_features)
    np.testing.assert_array_equal(
        whole.predict(want_features).to_numpy(), want.predict(want_features).to_numpy()
    )


def test_boosters_fitted_on_inputs_built_on_another_thread_are_the_same():
    """Issue 11: ``clvflow train`` builds the refit's inputs (:func:`booster_inputs`) on a second
    thread beside the internal backtest's bootstrap. Fitted on them, the boosters, BTYD fits,
    level and snapshot checks are byte for byte those ``fit_boosters`` builds itself; the
    inputs give up their matrix to the fit, and a second fit on them is refused."""
    import threading

    from clvflow.data.simulate import simulate
    from clvflow.models.clv import ModelParams
    from clvflow.models.training import booster_inputs, fit_boosters

    tx = simulate(1200, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=5)
    tx = tx.transactions
    cutoff = pd.Timestamp("2023-01-01")
    params = ModelParams(n_estimators=15, seed=0, n_jobs=1)
    snapshots = SnapshotSettings(n_snapshots=3, spacing_days=30)
    built: list = []
    thread = threading.Thread(
        target=lambda: built.append(
            booster_inputs(tx, cutoff, 90, params=params, snapshots=snapshots)
        )
    )
    thread.start()
    thread.join()
    inputs = built[0]
    got, got_features = fit_boosters(
        tx, cutoff, 90, params=params, snapshots=snapshots, inputs=inputs
    )
    want, want_features = fit_boosters(tx, cutoff, 90, params=params, snapshots=snapshots)
    for booster in ("churn_booster_", "spend_booster_"):
        assert bytes(getattr(got, booster).save_raw("ubj")) == bytes(
            getattr(want, booster).save_raw("ubj")
        )
    assert got.n_trees_ == want.n_trees_ and got.level_ == want.level_ and got.btyd_ == want.btyd_
    assert got.n_training_rows_ == want.n_training_rows_
    assert got.snapshot_checks_ == want.snapshot_checks_
    pd.testing.assert_frame_equal(got_features, want_features)
    assert inputs.stacked is None
    with pytest.raises(ValueError, match="fitted already"):
        fit_boosters(tx, cutoff, 90, params=params, snapshots=snapshots, inputs=inputs)


def test_judging_a_blend_reuses_the_boosters_judgement_and_equals_a_fresh_one():
    """Issue 11: judging the exported blend on the internal backtest's window takes the
    boosters' and the baselines' metrics from the boosters' judgement just made (the same
    predictions of the same customers); every one equals the metric computed afresh."""
    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.evaluation.metrics import METRIC_NAMES, evaluate_predictions
    from clvflow.models.clv import ModelParams
    from clvflow.models.selection import Blend
    from clvflow.models.training import BASELINE_PREFIXES, fit_boosters, judge

    tx = simulate(1200, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=6)
    tx = tx.transactions
    start = pd.Timestamp("2022-10-03")
    model, features = fit_boosters(
        tx,
        start,
        90,
        params=ModelParams(n_estimators=15, seed=0, n_jobs=1),
        snapshots=SnapshotSettings(n_snapshots=3, spacing_days=30),
        early_stopped=True,
    )
    first = judge(model, features, tx, start)
    model.blend_ = Blend(0.5, 0.3, "test")
    blended = judge(model, features, tx, start, boosters=first)
    assert set(blended.predictions) == {"model", "boosters", "bgnbd", "historical"}
    expected = {}
    for name, pred in blended.predictions.items():
        prefix = BASELINE_PREFIXES.get(name, "")
        fresh = evaluate_predictions(blended.actuals, pred)
        expected.update({f"{prefix}{key}": fresh[key] for key in METRIC_NAMES})
    np.testing.assert_equal(blended.metrics, expected)  # (bit for bit; NaN where undefined)
    assert blended.metrics["spend_rmse"] != blended.metrics["boosters_spend_rmse"]


@pytest.mark.parametrize("threads", [1, 2])
def test_snapshots_stacked_as_they_are_built_equal_the_stacked_list(threads: int):
    """Issue 11: the training snapshots are stacked one at a time as they are built (on
    ``threads``, two at most ahead) instead of all built first: the matrix, its feature types,
    the rows, the base margins and the BTYD fits are those of stacking the built list, bit for
    bit; the matrix ends at the last row stacked although room was made for every customer in
    every snapshot (early snapshots know fewer customers)."""
    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.features.build import customer_days
    from clvflow.features.snapshots import snapshot_parts, snapshot_stream
    from clvflow.models.clv import ClvModel, ModelParams

    tx = simulate(1500, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=7)
    tx = tx.transactions
    cutoff = pd.Timestamp("2023-01-01")
    layout = {"n_snapshots": 4, "spacing_days": 60}
    days = customer_days(tx.loc[tx["timestamp"] < cutoff], cutoff)
    stream, stream_checks = snapshot_stream(tx, cutoff, 90, days, threads=threads, **layout)
    parts, checks = snapshot_parts(tx, cutoff, 90, days=days, **layout)
    assert stream_checks == checks and stream.n_snapshots == len(parts) == 4
    n_rows = sum(len(part) for part in parts)
    assert stream.max_rows > n_rows
    params = ModelParams(n_estimators=5, n_jobs=1)
    got = ClvModel(90, params).stack_inputs(stream)
    want = ClvModel(90, params).stack_inputs(parts)
    assert got.x.shape == (n_rows, want.x.shape[1]) and got.x.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got.x, want.x)
    assert got.feature_types == want.feature_types
    pd.testing.assert_frame_equal(got.rows, want.rows)
    np.testing.assert_array_equal(got.churn_base, want.churn_base)
    np.testing.assert_array_equal(got.spend_base, want.spend_base)
    assert got.latest_fit == want.latest_fit


def test_fit_boosters_equals_the_plain_fit_of_the_stacked_snapshots():
    """Issue 11: ``fit_boosters`` stacks the snapshots as they are built and makes the cutoff's
    BTYD, MBG/NBD and seasonal fits apart from the boosters (:func:`clvflow.models.clv.fit_cutoff`);
    ``ClvModel.fit`` on the stacked frame makes them after, in one go. Same model: boosters byte
    for byte, BTYD and MBG/NBD fits, level (with its seasonal correction) and predictions."""
    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.features.build import build_features
    from clvflow.features.snapshots import same_season_snapshot, stack_snapshots
    from clvflow.models.clv import ClvModel, ModelParams
    from clvflow.models.training import fit_boosters

    tx = simulate(1500, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=9)
    tx = tx.transactions
    cutoff = pd.Timestamp("2023-01-01")
    past = tx.loc[tx["timestamp"] < cutoff].reset_index(drop=True)
    params = ModelParams(n_estimators=15, seed=0, n_jobs=2)
    got, features = fit_boosters(
        tx, cutoff, 90, params=params, snapshots=SnapshotSettings(n_snapshots=3, spacing_days=30)
    )
    stacked, _ = stack_snapshots(past, cutoff, 90, n_snapshots=3, spacing_days=30)
    want = ClvModel(90, params).fit(
        stacked, build_features(past, cutoff), same_season_snapshot(past, cutoff, 90)
    )
    for booster in ("churn_booster_", "spend_booster_"):
        assert bytes(getattr(got, booster).save_raw("ubj")) == bytes(
            getattr(want, booster).save_raw("ubj")
        )
    assert got.btyd_ == want.btyd_ and got.long_run_ == want.long_run_
    assert got.level_ == want.level_ and "season" in got.level_
    np.testing.assert_array_equal(
        got.predict(features).to_numpy(), want.predict(features).to_numpy()
    )


def test_inputs_from_customer_days_built_to_a_later_cutoff_are_the_same():
    """Issue 11: ``clvflow train`` sorts the customer-days once, to its cutoff, and builds the
    internal backtest's inputs (a horizon earlier) from them too: the same stacked matrix,
    rows, features, checks and cutoff fits as from customer-days built to the backtest's own
    cutoff."""
    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.features.build import customer_days
    from clvflow.models.clv import ModelParams
    from clvflow.models.training import booster_inputs

    tx = simulate(1200, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=10)
    tx = tx.transactions
    cutoff, start = pd.Timestamp("2023-01-01"), pd.Timestamp("2022-10-03")
    past = tx.loc[tx["timestamp"] < cutoff]
    settings = {
        "params": ModelParams(n_estimators=5, n_jobs=1),
        "snapshots": SnapshotSettings(n_snapshots=3, spacing_days=30),
    }
    got = booster_inputs(past, start, 90, days=customer_days(past, cutoff), **settings)
    want = booster_inputs(past, start, 90, **settings)
    np.testing.assert_array_equal(got.stacked.x, want.stacked.x)
    pd.testing.assert_frame_equal(got.stacked.rows, want.stacked.rows)
    pd.testing.assert_frame_equal(got.features, want.features)
    assert got.checks == want.checks and got.n_rows == want.n_rows
    assert got.cutoff == want.cutoff


def test_predicting_the_frame_fitted_on_takes_the_fits_predictions_bit_for_bit():
    """Issue 11: the fit predicts its cutoff population anyway (to anchor the level); judging
    and profiling that very frame take those predictions instead of running the trees again.
    They equal a fresh prediction of a copy to the bit, blended or not; another frame (the
    copy) gets its own."""
    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.models.clv import ModelParams
    from clvflow.models.selection import Blend
    from clvflow.models.training import fit_boosters

    tx = simulate(1000, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=6)
    cutoff = pd.Timestamp("2023-01-01")
    model, features = fit_boosters(
        tx.transactions,
        cutoff,
        90,
        params=ModelParams(n_estimators=12, seed=0, n_jobs=1),
        snapshots=SnapshotSettings(n_snapshots=3, spacing_days=30),
    )
    fresh = features.copy()
    calls: list[int] = []
    run_trees = model._raw
    model._raw = lambda f: calls.append(len(f)) or run_trees(f)  # type: ignore[method-assign]
    for blend in (Blend(), Blend(0.4, 0.7, "test")):
        model.blend_ = blend
        taken, computed = model.predict(features), model.predict(fresh)
        pd.testing.assert_frame_equal(taken, computed, check_exact=True)
    assert calls == [len(fresh), len(fresh)]  # (the trees ran for the copy only)
    assert np.isfinite(taken[["p_active", "expected_spend"]].to_numpy()).all()


def test_cutoff_fits_made_beside_the_boosters_are_the_same():
    """Issue 11: ``cutoff_beside`` makes the features and fits at the cutoff on another thread
    while the boosters fit (``clvflow train`` with two threads). They are those made in line,
    and the fitted model is the same, bit for bit; the boosters' half alone cannot complete a
    model before it is fitted."""
    import threading

    import numpy as np

    from clvflow.data.simulate import simulate
    from clvflow.models import training
    from clvflow.models.clv import ClvModel, ModelParams, NotFittedError

    tx = simulate(1500, start="2021-01-01", as_of="2023-01-01", horizon_days=90, seed=9)
    past = tx.transactions
    cutoff = pd.Timestamp("2023-01-01")
    settings = {
        "params": ModelParams(n_estimators=5, n_jobs=1),
        "snapshots": SnapshotSettings(n_snapshots=3, spacing_days=30),
    }
    made_on = []
    fit_cutoff = training.fit_cutoff

    def recording(*args, **kwargs):
        made_on.append(threading.current_thread().name)
        return fit_cutoff(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "fit_cutoff", recording)
        got = training.booster_inputs(past, cutoff, 90, cutoff_beside=True, **settings)
        want = training.booster_inputs(past, cutoff, 90, **settings)
        pd.testing.assert_frame_equal(got.features, want.features)
    assert got.cutoff == want.cutoff and got.cutoff.season is not None
    assert sorted(name[:14] for name in made_on) == ["MainThread", "clvflow-beside"]
    models = [training.fit_boosters(past, cutoff, 90, inputs=i)[0] for i in (got, want)]
    for booster in ("churn_booster_", "spend_booster_"):
        assert bytes(getattr(models[0], booster).save_raw("ubj")) == bytes(
            getattr(models[1], booster).save_raw("ubj")
        )
    assert models[0].level_ == models[1].level_ and models[0].btyd_ == models[1].btyd_
    np.testing.assert_array_equal(
        models[0].predict(want.features).to_numpy(), models[1].predict(want.features).to_numpy()
    )
    with pytest.raises(NotFittedError, match="fit_trees first"):
        ClvModel(90).fit_level(want.features, want.cutoff)
