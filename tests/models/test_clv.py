"""ClvModel level anchoring: exact totals against BG/NBD x Gamma-Gamma, with and without the
same-season correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.data.simulate import simulate
from clvflow.features.snapshots import same_season_snapshot
from clvflow.models.btyd import btyd_predictions
from clvflow.models.clv import ModelParams, _logit, _season_correction, _sigmoid
from clvflow.models.training import SnapshotSettings, fit_model
from clvflow.scoring.batch import score_transactions
from tests.model_fixture import seasonal_log

CUTOFF, HORIZON = pd.Timestamp("2023-01-01"), 90
SMALL = {"n_estimators": 30, "seed": 0}


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return seasonal_log()


def _fit(log, **params):
    return fit_model(
        log,
        CUTOFF,
        HORIZON,
        params=ModelParams(**SMALL, **params),
        snapshots=SnapshotSettings(n_snapshots=2, spacing_days=30),
    )


def _bg_and_pred(model, features):
    bg = btyd_predictions(model.btyd_, features, HORIZON)
    pred = model.predict(features)
    buyers = features["n_purchase_days"].to_numpy() > 0
    return bg[buyers], pred[buyers]


def test_anchored_level_equals_bgnbd(log):
    model, features = _fit(log, seasonal_level=False)
    assert "season" not in model.level_
    bg, pred = _bg_and_pred(model, features)
    assert pred["p_active"].mean() == pytest.approx(bg["bg_p_active"].mean(), rel=1e-9)
    assert pred["expected_spend"].sum() == pytest.approx(bg["bg_expected_spend"].sum(), rel=1e-9)


def test_seasonal_level_is_bgnbd_corrected_by_last_years_error(log):
    model, features = _fit(log)
    season = model.level_["season"]
    assert season["snapshot"] == "2022-01-02"  # 52 weeks before the cutoff
    bg, pred = _bg_and_pred(model, features)
    target_p = _sigmoid(_logit(bg["bg_p_active"]) + season["churn_shift"]).mean()
    assert pred["p_active"].mean() == pytest.approx(target_p, rel=1e-9)
    total = bg["bg_expected_spend"].sum() * season["spend_ratio"]
    assert pred["expected_spend"].sum() == pytest.approx(total, rel=1e-9)
    # The correction moves the level only: P(active) keeps its order, E[spend | active] its ratios.
    plain, _ = _fit(log, seasonal_level=False)
    ours, theirs = model.predict(features), plain.predict(features)
    assert ours["p_active"].rank().equals(theirs["p_active"].rank())
    ratio = ours["expected_spend_if_active"] / theirs["expected_spend_if_active"]
    np.testing.assert_allclose(ratio, ratio.iloc[0], rtol=1e-9)


def test_season_correction_measures_bgnbd_error_on_the_snapshot(log):
    reference = same_season_snapshot(log.loc[log["timestamp"] < CUTOFF], CUTOFF, HORIZON)
    base = _season_correction(reference, HORIZON)
    doubled = _season_correction(reference.assign(spend=2 * reference["spend"]), HORIZON)
    assert doubled["spend_ratio"] == pytest.approx(2 * base["spend_ratio"], rel=1e-12)
    assert doubled["churn_shift"] == base["churn_shift"]
    busier = reference.assign(active=np.maximum(reference["active"], reference.index % 2))
    assert _season_correction(busier, HORIZON)["churn_shift"] > base["churn_shift"]


def test_scoring_far_from_the_corrected_season_warns(log):
    model, _ = _fit(log)
    assert model.season_window_start() == CUTOFF
    at_cutoff = score_transactions(model, log, CUTOFF + pd.Timedelta(days=31))
    assert not any("season" in w for w in at_cutoff.warnings)
    # this log's correction is small (spend x1.05, odds x1.02): as season-neutral as no
    # correction, so nothing to warn about; a material one (x1.30) warns
    later = score_transactions(model, log, CUTOFF + pd.Timedelta(days=60))
    assert not any("season" in w for w in later.warnings)
    model.level_["season"] = {**model.level_["season"], "spend_ratio": 1.3}
    later = score_transactions(model, log, CUTOFF + pd.Timedelta(days=60))
    (note,) = [w for w in later.warnings if "season" in w]
    assert "window starting 2023-01-01" in note and "total spend x1.30" in note
    plain, _ = _fit(log, seasonal_level=False)
    assert plain.season_window_start() is None
    assert not score_transactions(plain, log, CUTOFF + pd.Timedelta(days=60)).warnings


def test_no_season_correction_when_btyd_cannot_be_fitted(log, caplog):
    reference = same_season_snapshot(log.loc[log["timestamp"] < CUTOFF], CUTOFF, HORIZON)
    one_timers = reference.assign(frequency=0.0, t_x_days=0.0, mean_repeat_spend=0.0)
    assert _season_correction(one_timers, HORIZON) is None
    assert "no seasonal level correction" in caplog.text


# ---- degenerate BTYD fits degrade, never crash ----------------------------------------------


@pytest.fixture(scope="module")
def young_log():
    """Three months of a new shop: a snapshot 3 days after the first sale has almost no repeat
    buyers (BTYD degenerate there), one 60 days in is fine."""
    return simulate(1500, start="2023-01-01", as_of="2023-04-01", horizon_days=30, seed=5)


def _young_training_set(young_log):
    from clvflow.features.snapshots import SnapshotRule, stack_snapshots

    past = young_log.transactions
    past = past.loc[past["timestamp"] < pd.Timestamp("2023-04-01")]
    rows, checks = stack_snapshots(
        past, "2023-04-01", 30, n_snapshots=2, spacing_days=57, rule=SnapshotRule(1, 1, 0)
    )
    assert [c.snapshot_date.date().isoformat() for c in checks] == ["2023-03-02", "2023-01-04"]
    return past, rows


def test_a_degenerate_snapshot_drops_its_btyd_base_with_a_logged_reason(young_log, caplog):
    from clvflow.features.build import build_features
    from clvflow.models.clv import ClvModel

    past, rows = _young_training_set(young_log)
    model = ClvModel(30, ModelParams(**SMALL))
    with caplog.at_level("WARNING"):
        model.fit(rows, build_features(past, "2023-04-01"))
    assert list(model.btyd_fallbacks_) == ["2023-01-04"]
    assert "repeat buyers" in model.btyd_fallbacks_["2023-01-04"]
    assert "snapshot 2023-01-04: BTYD base dropped" in caplog.text
    assert model.btyd_ is not None  # the cutoff itself has enough history
    pred = model.predict(build_features(past, "2023-04-01"))
    assert np.isfinite(pred[["p_active", "expected_spend"]].to_numpy()).all()


def test_without_btyd_at_the_cutoff_the_model_scores_at_the_latest_snapshots_level(
    young_log, tmp_path
):
    from clvflow.features.build import build_features
    from clvflow.models.clv import ClvModel

    past, rows = _young_training_set(young_log)
    early = build_features(past, "2023-01-04")  # 3 days of history: BTYD degenerate
    model = ClvModel(30, ModelParams(**SMALL)).fit(rows, early)
    assert model.btyd_ is None and "cutoff" in model.btyd_fallbacks_
    latest = rows[rows["snapshot_date"] == rows["snapshot_date"].max()]
    rate = latest["active"].mean()
    assert model.level_["churn_logit_shift"] == pytest.approx(np.log(rate / (1 - rate)))
    pred = model.predict(early)
    assert np.isfinite(pred[["p_active", "expected_spend"]].to_numpy()).all()
    model.save(tmp_path / "m")
    again = ClvModel.load(tmp_path / "m")
    assert again.btyd_ is None
    pd.testing.assert_frame_equal(again.predict(early), pred)


def test_a_blended_model_mixes_boosters_and_bgnbd_exactly(log):
    from clvflow.models.selection import Blend

    model, features = _fit(log, seasonal_level=False)
    boosters = model.predict(features)
    bg = btyd_predictions(model.btyd_, features, HORIZON)
    model.blend_ = Blend(0.3, 0.6)
    mixed = model.predict(features)
    np.testing.assert_allclose(
        mixed["p_active"], 0.3 * boosters["p_active"] + 0.7 * bg["bg_p_active"], rtol=1e-12
    )
    np.testing.assert_allclose(
        mixed["expected_spend"],
        0.6 * boosters["expected_spend"] + 0.4 * bg["bg_expected_spend"],
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        mixed["p_active"] * mixed["expected_spend_if_active"], mixed["expected_spend"], rtol=1e-9
    )


def test_a_blend_from_the_boosters_own_predictions_is_the_full_prediction_to_the_bit(log):
    """Issue 11 item 3: given the boosters' own predictions of the same features (the internal
    backtest judged them just before), a blended model's predictions are those of running the
    trees again, bit for bit; predictions of other rows are refused."""
    from clvflow.models.selection import Blend

    model, features = _fit(log, seasonal_level=False)
    boosters = model.predict(features)
    model.blend_ = Blend(0.3, 0.6)
    pd.testing.assert_frame_equal(
        model.predict(features, boosters=boosters), model.predict(features), check_exact=True
    )
    with pytest.raises(ValueError, match="predictions of these very features"):
        model.predict(features, boosters=boosters.iloc[1:])


def test_snapshot_fits_start_from_the_previous_snapshots(log, monkeypatch):
    """Issue 11 item 2: each snapshot's BTYD fit is warm-started from the previous snapshot's,
    and the cutoff's from the latest snapshot's."""
    from clvflow.models import clv

    calls = []
    fit_checked = clv.fit_btyd_checked

    def recording(features, horizon_days, init=None, fitter=None):
        fit, why = fit_checked(features, horizon_days, init, fitter)
        calls.append((init, fit))
        return fit, why

    monkeypatch.setattr(clv, "fit_btyd_checked", recording)
    model, _ = _fit(log, seasonal_level=False)
    assert len(calls) == 3  # two snapshots, then the cutoff
    assert calls[0][0] is None
    assert calls[1][0] is calls[0][1] and calls[0][1] is not None
    assert calls[2][0] is calls[1][1] and calls[1][1] is not None
    assert model.btyd_ is calls[2][1]


def test_float32_stacked_inputs_train_the_boosters_of_the_float64_frame(log):
    """Issue 11 item 4: the boosters trained from the float32 stacked inputs (the early-stopping
    split as row ranges of one matrix, the spend rows picked by index) are byte for byte those
    XGBoost trained from the float64 pandas frame of features and BTYD predictions."""
    import xgboost as xgb

    from clvflow.features.snapshots import stack_snapshots
    from clvflow.models.btyd import fit_btyd_checked
    from clvflow.models.clv import MODEL_INPUT_COLUMNS, ClvModel

    past = log.loc[log["timestamp"] < CUTOFF]
    training_set, _ = stack_snapshots(past, CUTOFF, HORIZON, n_snapshots=2, spacing_days=30)
    params = ModelParams(**SMALL, n_jobs=1)
    model = ClvModel(HORIZON, params)
    stacked = model.stack_inputs(training_set)
    # The float64 frame the boosters were trained from before: per snapshot (oldest first) its
    # features and the BTYD predictions of its own (warm-started) fit.
    frames, latest = [], None
    for _, snap in training_set.groupby("snapshot_date", sort=True):
        fit, _ = fit_btyd_checked(snap, HORIZON, latest)
        latest = fit or latest
        frames.append(pd.concat([snap, btyd_predictions(fit, snap, HORIZON)], axis=1))
    rows = pd.concat(frames)
    assert stacked.x.dtype == np.float32 and stacked.x.shape == (
        len(rows),
        len(MODEL_INPUT_COLUMNS),
    )
    np.testing.assert_array_equal(stacked.x, rows[MODEL_INPUT_COLUMNS].to_numpy("float32"))
    assert stacked.x.nbytes == rows[MODEL_INPUT_COLUMNS].to_numpy().nbytes // 2

    def old(objective, part, label, margin, valid=None):
        dtrain = xgb.DMatrix(part[MODEL_INPUT_COLUMNS], label=label(part), base_margin=margin)
        train_params = {**params.xgb_params(), **objective}
        if valid is None:
            return xgb.train(train_params, dtrain, num_boost_round=SMALL["n_estimators"])
        vpart, vmargin = valid
        dvalid = xgb.DMatrix(vpart[MODEL_INPUT_COLUMNS], label=label(vpart), base_margin=vmargin)
        return xgb.train(
            train_params,
            dtrain,
            num_boost_round=SMALL["n_estimators"],
            evals=[(dvalid, "valid")],
            early_stopping_rounds=params.early_stopping_rounds,
            verbose_eval=False,
        )

    churn = {"objective": "binary:logistic", "eval_metric": "logloss"}
    latest_rows = (rows["snapshot_date"] == rows["snapshot_date"].max()).to_numpy()
    k = int((~latest_rows).sum())
    want = old(
        churn,
        rows[~latest_rows],
        lambda part: part["active"].to_numpy(),
        stacked.churn_base[:k],
        (rows[latest_rows], stacked.churn_base[k:]),
    )
    got, _ = model._fit_churn(stacked, slice(0, k), slice(k, len(rows)))
    assert bytes(got.save_raw("ubj")) == bytes(want.save_raw("ubj"))
    buyers = (rows["active"] == 1).to_numpy()
    want = old(
        {"objective": "reg:gamma", "eval_metric": "gamma-deviance"},
        rows[buyers],
        lambda part: np.maximum(part["spend"].to_numpy(), 0.01),
        stacked.spend_base[buyers],
    )
    got, _ = model._fit_spend(stacked, slice(0, len(rows)), None, SMALL["n_estimators"])
    assert bytes(got.save_raw("ubj")) == bytes(want.save_raw("ubj"))


def test_stacked_inputs_from_snapshot_parts_equal_those_of_the_stacked_frame(log):
    """Issue 11 item 4: the training rows taken one snapshot at a time (consuming the list, so
    no stacked copy of all rows is ever held) are those of the stacked frame, to the bit."""
    from clvflow.features.snapshots import snapshot_parts, stack_snapshots
    from clvflow.models.clv import ClvModel

    past = log.loc[log["timestamp"] < CUTOFF]
    layout = {"n_snapshots": 3, "spacing_days": 30}
    parts, _ = snapshot_parts(past, CUTOFF, HORIZON, **layout)
    stacked_rows, _ = stack_snapshots(past, CUTOFF, HORIZON, **layout)
    assert len(parts) == 3 and sum(len(p) for p in parts) == len(stacked_rows)
    params = ModelParams(**SMALL, n_jobs=1)
    from_parts = ClvModel(HORIZON, params).stack_inputs(parts)
    from_frame = ClvModel(HORIZON, params).stack_inputs(stacked_rows)
    assert parts == []  # consumed
    np.testing.assert_array_equal(from_parts.x, from_frame.x)
    pd.testing.assert_frame_equal(from_parts.rows, from_frame.rows)
    np.testing.assert_array_equal(from_parts.churn_base, from_frame.churn_base)
    np.testing.assert_array_equal(from_parts.spend_base, from_frame.spend_base)
    assert from_parts.feature_types == from_frame.feature_types
    assert from_parts.rows["snapshot_date"].is_monotonic_increasing


def test_snapshot_rows_fill_the_matrix_as_column_by_column_writes() -> None:
    """Issue 11 item 4: the boosters' matrix, written a block of rows at a time, holds exactly the
    float32 values of each column (floats, whole numbers, flags and Arrow floats with gaps), over
    more rows than one block."""
    from clvflow.models import clv

    rng = np.random.default_rng(2)
    n = clv._FILL_ROWS + 7
    columns = [
        pd.Series(rng.random(n) * 1e6),
        pd.Series(rng.integers(0, 400, n)),
        pd.Series(rng.random(n) < 0.5),
        pd.Series(np.where(rng.random(n) < 0.1, np.nan, rng.random(n)), dtype="float64[pyarrow]"),
    ]
    out = np.full((n, len(columns)), -1.0, dtype="float32")
    clv._fill_rows(out, columns)
    for j, column in enumerate(columns):
        np.testing.assert_array_equal(out[:, j], column.to_numpy(dtype="float32"))
