"""clvflow.evaluation.resampling: bootstrap metrics from counts per customer equal the metrics of the
expanded resample (clvflow.evaluation.metrics' own functions), ties included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvflow.evaluation import resampling
from clvflow.evaluation.metrics import (
    BOOTSTRAP_METRICS,
    TOP_SHARE,
    _bootstrap_point,
    bootstrap_draws,
    evaluate_predictions,
    gini_norm,
    top_decile_capture,
)
from tests.float_resampling import FloatRanking, gini_raw, roc_auc, top_share_capture


def test_weighted_metrics_of_a_hand_made_resample() -> None:
    """Issue 11 item 3: customers counted (2, 0, 1, 1) are the expanded rows a, a, c, d;
    scores tie in pairs. Expected values by hand: spend [5, 5, 0, 3] by prediction
    [0.9, 0.9, 0.1, 0.1]; the positives of P(active) [0.8, 0.8, 0.8, 0.2] are a, a, d."""
    spend = np.array([5.0, 1.0, 0.0, 3.0])
    pred = np.array([0.9, 0.9, 0.1, 0.1])
    w = np.array([2, 0, 1, 1], dtype=np.uint8)
    rows = np.array([0, 0, 2, 3])
    by_pred = resampling.Ranking(pred)
    by_spend = resampling.Ranking(spend)
    groups = by_pred.spend_groups(w, by_pred.ranked(spend))
    assert list(groups.sums) == [10.0, 3.0] and list(groups.sizes) == [2, 2]  # groups 0.9, 0.1
    assert list(groups.cum_sizes) == [2, 4]
    best = by_spend.spend_groups(w, by_spend.ranked(spend)).gini_raw(4)
    gini = groups.gini_raw(4) / best
    assert gini == pytest.approx(gini_norm(spend[rows], pred[rows]), abs=1e-15)
    # top 10% of 4 rows = 0.4 of the first tie group (two 5s, mean 5): 2 / 13 of the spend
    capture = groups.top_share_capture(4, TOP_SHARE)
    assert capture == pytest.approx(2.0 / 13.0, abs=1e-15)
    assert capture == pytest.approx(top_decile_capture(spend[rows], pred[rows]), abs=1e-15)
    active = np.array([1, 0, 0, 1], dtype=np.uint8)
    by_p = resampling.Ranking(np.array([0.8, 0.8, 0.8, 0.2]))
    # positives a, a (0.8), d (0.2); negative c (0.8): pairs (a,c) tie twice, (d,c) lost: 1/3
    assert by_p.roc_auc(w, by_p.ranked(active)) == pytest.approx(1.0 / 3.0, abs=1e-15)


def test_resample_counts_take_one_byte_unless_a_count_exceeds_it() -> None:
    """Issue 11 item 3: counts per customer are bytes (what a resample's gathers move), and a
    customer drawn more than 255 times keeps its true count."""
    counts = resampling.resample_counts(np.array([0, 0, 2, 3, 0]), 5)
    assert counts.dtype == np.uint8 and list(counts) == [3, 0, 1, 1, 0]
    many = resampling.resample_counts(np.r_[np.zeros(300, dtype=int), 1], 3)
    assert list(many) == [300, 1, 0] and many.dtype != np.uint8


def _old_draws(actual: pd.DataFrame, preds: dict, n_resamples: int, seed: int) -> dict:
    """bootstrap_draws as it was: every resample expanded and every metric recomputed."""
    active = actual["active"].to_numpy(dtype=int)
    spend = actual["spend"].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    n = len(actual)
    draws: dict[str, list[dict]] = {name: [] for name in preds}
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        if active[idx].min() == active[idx].max() or spend[idx].sum() <= 0:
            continue
        for name, pred in preds.items():
            p = pred["p_active"].to_numpy(dtype=float)
            s = pred["expected_spend"].to_numpy(dtype=float)
            draws[name].append(_bootstrap_point(active[idx], spend[idx], p[idx], s[idx]))
    return {name: pd.DataFrame(d, columns=list(BOOTSTRAP_METRICS)) for name, d in draws.items()}


@pytest.mark.parametrize("n", [12, 3_000])
def test_bootstrap_draws_equal_the_expanded_resamples(n: int) -> None:
    """Issue 11 item 3 (bootstrap without re-sorting): the same resamples (same seed) give the
    same draws as expanding each resample, to 1e-12, with heavy ties in every score and
    degenerate resamples skipped alike (n = 12)."""
    rng = np.random.default_rng(7)
    active = (rng.random(n) < 0.3).astype(int)
    spend = np.where(active == 1, np.round(rng.gamma(2.0, 20.0, n)), 0.0)
    actual = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "active": active})
    actual["spend"] = spend
    preds = {
        name: pd.DataFrame(
            {
                "customer_id": actual["customer_id"],
                "p_active": np.round(rng.random(n), 1),  # ten values: ties
                "expected_spend": np.round(rng.gamma(2.0, 20.0, n), -1),
            }
        )
        for name in ("model", "bgnbd")
    }
    _, new = bootstrap_draws(actual, preds, n_resamples=60, seed=3)
    old = _old_draws(actual, preds, 60, 3)
    for name in preds:
        assert len(new[name]) == len(old[name]) > 0
        if n == 12:
            assert len(new[name]) < 60  # some resamples were degenerate
        pd.testing.assert_frame_equal(new[name], old[name], rtol=1e-12, atol=1e-12)


def test_bootstrap_draws_do_not_depend_on_the_threads() -> None:
    """Issue 11: the resamples are judged on several threads at once; the draws, the skipped
    degenerate resamples and every number are those of one thread, bit for bit."""
    rng = np.random.default_rng(8)
    n = 12
    active = (rng.random(n) < 0.2).astype(int)
    actual = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "active": active})
    actual["spend"] = np.where(active == 1, np.round(rng.gamma(2.0, 20.0, n)), 0.0)
    preds = {
        name: actual[["customer_id"]].assign(
            p_active=np.round(rng.random(n), 1), expected_spend=np.round(rng.random(n) * 50)
        )
        for name in ("model", "bgnbd")
    }
    one = bootstrap_draws(actual, preds, n_resamples=200, seed=1, threads=1)
    for threads in (2, 3):
        many = bootstrap_draws(actual, preds, n_resamples=200, seed=1, threads=threads)
        assert many[0] == one[0]
        for name in preds:
            assert 0 < len(one[1][name]) < 200  # (some resamples had no active customer)
            pd.testing.assert_frame_equal(many[1][name], one[1][name], check_exact=True)


@pytest.mark.parametrize("kind", ["auc", "gini"])
def test_blend_gains_equal_the_expanded_resamples(kind: str) -> None:
    """Issue 11 item 3: choose_blend's gain per weight on each resample, from counts, equals
    the metric recomputed on every expanded resample (as before), to 1e-12."""
    from scipy.stats import rankdata

    from clvflow.models import selection

    rng = np.random.default_rng(11)
    n = 2_000
    active = (rng.random(n) < 0.4).astype(int)
    spend = np.where(active == 1, np.round(rng.gamma(2.0, 10.0, n)), 0.0)
    truth = active if kind == "auc" else spend
    boosters, bgnbd = np.round(rng.random(n), 2), np.round(rng.random(n), 2)
    draws = selection._valid_draws(active, spend, seed=0)

    def auc(y: np.ndarray, score: np.ndarray) -> float:
        ranks = rankdata(score)
        n1 = int(y.sum())
        return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1)))

    metric = auc if kind == "auc" else gini_norm
    old = np.array(
        [
            [metric(truth[i], w * boosters[i] + (1 - w) * bgnbd[i]) for w in selection.WEIGHT_GRID]
            for i in draws
        ]
    )
    old -= old[:, [0]]
    full, sure = selection._gains(kind, truth, boosters, bgnbd, draws)
    np.testing.assert_allclose(sure, np.quantile(old, selection.GAIN_QUANTILE, axis=0), atol=1e-12)
    assert full[0] == 0.0 and len(full) == len(selection.WEIGHT_GRID)


def test_resample_loops_run_blas_on_one_thread(monkeypatch) -> None:
    """Issue 11 item 3: the bootstrap intervals and the blend choice (thousands of n-sized dot
    products) run BLAS on one thread even where it may use more: OpenBLAS's threads woke and
    spun for each product (4x the CPU on the shared 2-core machine)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from clvflow.models import selection

    seen: list[int] = []
    gini_raw = resampling.SpendGroups.gini_raw

    def recording(self, n):
        seen.append(max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"))
        return gini_raw(self, n)

    monkeypatch.setattr(resampling.SpendGroups, "gini_raw", recording)
    rng = np.random.default_rng(5)
    n = 500
    active = (rng.random(n) < 0.4).astype(int)
    spend = np.where(active == 1, rng.gamma(2.0, 10.0, n), 0.0)
    actual = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "active": active})
    actual["spend"] = spend
    pred = actual[["customer_id"]].assign(p_active=rng.random(n), expected_spend=rng.random(n))
    with threadpool_limits(limits=2, user_api="blas"):  # as on any machine with 2+ cores
        bootstrap_draws(actual, {"model": pred}, n_resamples=10)
        n_bootstrap = len(seen)
        selection._gains("gini", spend, rng.random(n), rng.random(n), [np.arange(n)] * 3)
    assert n_bootstrap >= 10 and len(seen) > n_bootstrap
    assert set(seen) == {1}


def _draws_in_floating_point(actual: pd.DataFrame, preds: dict, n_resamples: int, seed: int):
    """The count-based bootstrap loop as it was before integer counts (and before the
    one-gather ranking): every group sum a floating-point sum gathered from the original order."""
    active = actual["active"].to_numpy(dtype=int)
    spend = actual["spend"].to_numpy(dtype=float)
    rng = np.random.default_rng(seed)
    n = len(actual)
    by_spend = FloatRanking(spend)
    prepared = {}
    for name, pred in preds.items():
        p = pred["p_active"].to_numpy(dtype=float)
        s = pred["expected_spend"].to_numpy(dtype=float)
        prepared[name] = (FloatRanking(p), FloatRanking(s), s, (s - spend) ** 2)
    rows: dict[str, list[list[float]]] = {name: [] for name in preds}
    for _ in range(n_resamples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype("float64")
        n_active, total = float(np.dot(w, active)), float(np.dot(w, spend))
        if n_active in (0.0, float(n)) or total <= 0:
            continue
        w_spend, w_active = w * spend, w * active
        best = gini_raw(by_spend.sums(w_spend), by_spend.sums(w), n)
        for name, (by_p, by_s, s, err2) in prepared.items():
            sums, sizes = by_s.sums(w_spend), by_s.sums(w)
            rows[name].append(
                [
                    float(np.clip(gini_raw(sums, sizes, n) / best, -1.0, 1.0)),
                    top_share_capture(sums, sizes, n, TOP_SHARE),
                    float(np.sqrt(np.dot(w, err2) / n)),
                    float(np.dot(w, s) / total - 1.0),
                    roc_auc(by_p.sums(w_active), by_p.sums(w)),
                ]
            )
    return {name: pd.DataFrame(r, columns=list(BOOTSTRAP_METRICS)) for name, r in rows.items()}


@pytest.mark.parametrize("ties", ["tied", "distinct"])
def test_integer_count_metrics_are_the_floating_point_ones_to_the_bit(ties: str) -> None:
    """Issue 11 item 3: group sizes, Gini, top-decile capture and ROC AUC from integer counts
    equal, bit for bit, the floating-point group sums they replace, with tied scores (groups
    summed) and distinct ones (no group sums)."""
    rng = np.random.default_rng(3)
    n = 5000
    x = rng.gamma(0.5, 40.0, n) * (rng.random(n) < 0.3)
    y = (rng.random(n) < 0.4).astype(np.uint8)
    counts = resampling.resample_counts(rng.integers(0, n, n), n)
    w = counts.astype("float64")
    score = np.round(rng.random(n), 2) if ties == "tied" else rng.random(n)
    ranking, reference = resampling.Ranking(score), FloatRanking(score)
    assert ranking.distinct == (ties == "distinct")
    groups = ranking.spend_groups(counts, ranking.ranked(x))
    sums, sizes = reference.sums(w * x), reference.sums(w)
    assert np.array_equal(groups.sums, sums) and np.array_equal(groups.sizes, sizes)
    assert np.array_equal(groups.cum_sizes, np.cumsum(sizes))
    assert groups.gini_raw(n) == gini_raw(sums, sizes, n)
    for share in (0.0, TOP_SHARE, 0.5, 1.0):
        assert groups.top_share_capture(n, share) == top_share_capture(sums, sizes, n, share)
    auc = ranking.roc_auc(counts, ranking.ranked(y))
    assert auc == roc_auc(reference.sums(w * y), sizes)
    # hand-made: scores (0.5, 0.5, 0.1), counts (2, 1, 0), x (1.5, 2, 7): groups 0.5 and 0.1
    small = resampling.Ranking(np.array([0.5, 0.5, 0.1]))
    few = small.spend_groups(np.array([2, 1, 0], dtype=np.uint8), np.array([1.5, 2.0, 7.0]))
    assert list(few.sums) == [5.0, 0.0] and list(few.sizes) == [3, 0]


def test_bootstrap_draws_are_unchanged_to_the_bit() -> None:
    """Issue 11 item 3: the bootstrap draws (one gather per ranking, integer counts) equal, bit
    for bit, those of the floating-point loop before them (tied and distinct scores, two
    methods)."""
    rng = np.random.default_rng(7)
    n = 3000
    ids = [f"c{i:05d}" for i in range(n)]
    active = (rng.random(n) < 0.3).astype(int)
    spend = np.round(active * rng.gamma(0.6, 50.0, n), 2)
    actual = pd.DataFrame({"customer_id": ids, "active": active, "spend": spend})
    preds = {
        "model": pd.DataFrame(
            {
                "customer_id": ids,
                "p_active": np.clip(0.3 + 0.5 * active - 0.4 * rng.random(n), 0, 1),
                "expected_spend": spend * 0.5 + rng.gamma(1.0, 10.0, n),  # distinct
            }
        ),
        "bgnbd": pd.DataFrame(
            {
                "customer_id": ids,
                "p_active": np.round(rng.random(n), 1),  # heavy ties
                "expected_spend": np.round(rng.gamma(1.0, 10.0, n), 0),
            }
        ),
    }
    _, draws = bootstrap_draws(actual, preds, n_resamples=40, seed=5)
    before = _draws_in_floating_point(actual, preds, 40, 5)
    for name in preds:
        assert len(draws[name]) == 40
        pd.testing.assert_frame_equal(draws[name], before[name], check_exact=True)


def test_bootstrap_draws_check_the_customers_as_the_point_metrics_do() -> None:
    """Issue 11 item 3: the bootstrap checks its inputs without computing the point metrics
    first, with the same messages (here: a customer missing from the predictions)."""
    actual = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "active": [1, 0, 1], "spend": [3.0, 0, 1]}
    )
    pred = pd.DataFrame(
        {"customer_id": ["a", "b"], "p_active": [0.5, 0.5], "expected_spend": [1.0, 1]}
    )
    with pytest.raises(
        ValueError, match=r"mismatched customers: 1 in `actual` only \(first: \['c'\]\)"
    ):
        bootstrap_draws(actual, {"model": pred}, n_resamples=10)


def test_bootstrap_draws_take_the_judges_point_metrics_only_where_they_are_the_same() -> None:
    """Issue 11: the point estimates on all customers are the judge's metrics
    (evaluate_predictions of the same frames, ids in the same order), not computed again:
    bit for bit the numbers computed here. Frames whose ids are not in that order (the judge
    joins them) get their own; a value given here is then visibly not taken."""
    rng = np.random.default_rng(3)
    n = 300
    active = (rng.random(n) < 0.5).astype(int)
    actual = pd.DataFrame({"customer_id": [f"c{i:03d}" for i in range(n)], "active": active})
    actual["spend"] = np.where(active == 1, np.round(rng.gamma(2.0, 20.0, n), 2), 0.0)
    preds = {
        name: actual[["customer_id"]].assign(
            p_active=np.round(rng.random(n), 2), expected_spend=np.round(rng.random(n) * 50, 1)
        )
        for name in ("model", "bgnbd")
    }
    judged = {
        name: {
            k: v for k, v in evaluate_predictions(actual, pred).items() if k in BOOTSTRAP_METRICS
        }
        for name, pred in preds.items()
    }
    alone = bootstrap_draws(actual, preds, n_resamples=20, seed=2, threads=1)
    taken = bootstrap_draws(actual, preds, n_resamples=20, seed=2, threads=1, known=judged)
    assert taken[0] == alone[0]  # (exact: the same floats)
    for name in preds:
        pd.testing.assert_frame_equal(taken[1][name], alone[1][name], check_exact=True)
    marked = {name: dict.fromkeys(BOOTSTRAP_METRICS, -7.0) for name in preds}
    assert bootstrap_draws(actual, preds, n_resamples=20, seed=2, known=marked)[0] == {
        name: dict.fromkeys(BOOTSTRAP_METRICS, -7.0) for name in preds
    }  # (the same id order: taken as given)
    shuffled = {name: pred.sample(frac=1.0, random_state=0) for name, pred in preds.items()}
    own = bootstrap_draws(actual, shuffled, n_resamples=20, seed=2, known=marked)[0]
    assert own == alone[0]  # (another order: computed here, the marked values ignored)


@pytest.mark.parametrize("seed", range(6))
def test_tie_group_sums_are_reduceats_to_the_bit(seed: int) -> None:
    """Issue 11: the money sums of the tie groups are reduceat's over every group, bit for bit,
    with reduceat called only over the groups of two or more: groups side by side, a shared
    group at either end, long groups (numpy's pairwise sums) and sums of values with cents."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    score = np.round(rng.random(n), int(rng.integers(1, 3)))  # (1 or 2 decimals: many ties)
    if seed % 2:
        score[-int(rng.integers(1, 20)) :] = score.min() - 1.0  # a shared group at the end
    spend = np.round(rng.gamma(1.5, 30.0, n), 2) * (rng.random(n) < 0.6)
    ranking = resampling.Ranking(score)
    assert not ranking.distinct and len(ranking.shared) > 0
    counts = rng.integers(0, 4, n).astype(np.uint8)
    ranked = ranking.ranked(spend)
    groups = ranking.spend_groups(counts, ranked)
    want = np.add.reduceat(counts[ranking.order] * ranked, ranking.starts)
    assert groups.sums.tobytes() == want.tobytes()


def test_the_aucs_dot_product_of_counts_is_exact_on_both_paths() -> None:
    """The AUC's sum of positives x negatives is an integer: BLAS while every partial sum stays
    below 2**53, 64-bit integers past that (over 2**26 customers)."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, 5000).astype(np.int32)
    b = rng.integers(0, 2**30, 5000).astype(np.int32)
    want = sum(int(x) * int(y) for x, y in zip(a, b, strict=True))
    assert resampling._exact_dot(a, b, 2**26) == want  # (integers: past 2**53 in all)
    small = b % 4096
    want_small = sum(int(x) * int(y) for x, y in zip(a, small, strict=True))
    assert resampling._exact_dot(a, small, 5000) == want_small
