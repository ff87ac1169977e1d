"""Backtest metrics for CLV predictions, as defined in docs/evaluation.md.

Pure functions of arrays: no I/O and no MLflow. Ties in a prediction are always treated as the
expectation over random tie-breaking, so a constant prediction carries no ranking information
(normalized Gini exactly 0) and results never depend on row order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from clvflow.core.cores import map_in_order, one_blas_thread
from clvflow.core.progress import track
from clvflow.evaluation import resampling
from clvflow.features.labels import LABEL_COLUMNS

ArrayLike = Any  # numpy array, pandas Series, list: anything np.asarray turns into a 1-D array

CUSTOMER_ID = "customer_id"
ACTUAL_COLUMNS = (CUSTOMER_ID, *LABEL_COLUMNS)
PRED_COLUMNS = (CUSTOMER_ID, "p_active", "expected_spend")

SPEND_METRICS = ("gini_norm", "top_decile_capture", "spearman", "mae", "rmse", "agg_bias")
CHURN_METRICS = ("roc_auc", "pr_auc", "brier")
# Stable contract: MLflow metric names are built from these.
METRIC_NAMES = tuple(f"spend_{m}" for m in SPEND_METRICS) + tuple(
    f"churn_{m}" for m in CHURN_METRICS
)

TOP_SHARE = 0.10


# --- input checks -----------------------------------------------------------------------------


def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    """Return `values` as a finite 1-D float array; raise ValueError naming `name` otherwise."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`{name}` must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(
            f"`{name}` must be 1-D, got shape {arr.shape}; pass one value per customer"
        )
    if arr.size == 0:
        raise ValueError(f"`{name}` is empty; evaluate at least one customer")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(
            f"`{name}` has {bad.size} NaN/inf values (first at positions {bad[:5].tolist()}); "
            "fill or drop those customers before evaluating"
        )
    return arr


def _check_pair(
    actual: ArrayLike, pred: ArrayLike, actual_name: str, pred_name: str
) -> tuple[np.ndarray, np.ndarray]:
    a = _as_float_array(actual, actual_name)
    p = _as_float_array(pred, pred_name)
    if a.shape != p.shape:
        raise ValueError(
            f"`{actual_name}` has {a.size} rows but `{pred_name}` has {p.size}; "
            "pass one actual and one prediction per customer"
        )
    return a, p


def _check_spend(
    actual: ArrayLike, pred: ArrayLike, actual_name: str = "actual", pred_name: str = "pred"
) -> tuple[np.ndarray, np.ndarray]:
    a, p = _check_pair(actual, pred, actual_name, pred_name)
    neg = np.flatnonzero(a < 0)
    if neg.size:
        raise ValueError(
            f"`{actual_name}` has {neg.size} negative values (first at {neg[:5].tolist()}); "
            "window spend is net of returns, floored at 0"
        )
    if a.sum() <= 0:
        raise ValueError(
            f"`{actual_name}` sums to 0: ranking metrics are undefined for a window without spend"
        )
    return a, p


def _check_active(
    active: ArrayLike,
    p_active: ArrayLike,
    active_name: str = "active",
    p_name: str = "p_active",
) -> tuple[np.ndarray, np.ndarray]:
    y, p = _check_pair(active, p_active, active_name, p_name)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError(f"`{active_name}` must hold only 0/1 (or False/True) flags")
    if y.min() == y.max():
        raise ValueError(
            f"`{active_name}` holds a single class; churn metrics need both active and "
            "inactive customers"
        )
    if (p < 0).any() or (p > 1).any():
        raise ValueError(f"`{p_name}` must be probabilities in [0, 1]")
    return y, p


# --- ranking helpers --------------------------------------------------------------------------


def _tie_groups(values: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group `values` by equal `score`, groups in descending score order.

    Returns:
        (group sums of `values`, group sizes).
    """
    order = np.argsort(-score, kind="stable")
    s_sorted = score[order]
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    sizes = np.diff(np.r_[starts, s_sorted.size])
    return np.add.reduceat(values[order], starts), sizes


def _tie_averaged_sorted(values: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Sort `values` by `score` descending, replacing each tie group by its mean.

    Within a tie group the expected cumulative sum under random tie-breaking is linear, which is
    exactly what the group mean gives.
    """
    sums, sizes = _tie_groups(values, score)
    return np.repeat(sums / sizes, sizes)


def _gain_points(actual: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = actual.size
    cum = np.cumsum(_tie_averaged_sorted(actual, pred))
    x = np.arange(n + 1) / n
    y = np.r_[0.0, cum / cum[-1]]
    return x, y


def _gini_raw(actual: np.ndarray, score: np.ndarray) -> float:
    """Unnormalised Gini up to a positive factor that cancels in `gini_norm`.

    With average ranks r (1 = highest score), 2 * AUC(gain) - 1 equals
    2 / (n * total) * sum(actual * ((n + 1) / 2 - r)). Average ranks are the tie-averaging; summing
    per tie group keeps a constant score at exactly 0.
    """
    n = actual.size
    sums, sizes = _tie_groups(actual, score)
    mean_rank = np.cumsum(sizes) - (sizes - 1) / 2.0
    return float(np.dot(sums, (n + 1) / 2.0 - mean_rank))


# --- spend metrics ----------------------------------------------------------------------------


def gini_norm(actual: ArrayLike, pred: ArrayLike) -> float:
    """Normalized Gini of `pred` as a ranking of `actual` spend.

    Gini = 2 * area under the gain curve (share of customers by `pred` descending vs cumulative
    share of actual spend, from the origin) - 1, divided by the same for sorting by `actual`. This
    is 2 * mean(gain) - 1 with the gain's origin point included (docs/evaluation.md), which makes a
    constant or random prediction score 0 and a reversed one -1. Ties in `pred` count as the
    expectation over random tie-breaking. O(n log n).

    Args:
        actual: actual window spend per customer (currency, >= 0).
        pred: predicted spend (or any score; only its order matters).

    Returns:
        Normalized Gini in [-1, 1]; 1 = perfect ranking.

    Raises:
        ValueError: bad input (see module checks), or all `actual` values equal (no ranking exists).
    """
    a, p = _check_spend(actual, pred)
    best = _gini_raw(a, a)
    if best <= 0:
        raise ValueError("all `actual` values are equal: a normalized Gini is undefined")
    # Mathematically within [-1, 1]; clip the last-ulp overshoot of floating point sums.
    return float(np.clip(_gini_raw(a, p) / best, -1.0, 1.0))


def gain_curve(actual: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Gain (cumulative lift) curve, tie-averaged, for plotting.

    Args:
        actual: actual window spend per customer (currency, >= 0).
        pred: predicted spend or score; customers are taken in descending order of it.

    Returns:
        (x, y), each of length n + 1 starting at (0, 0): x = share of customers taken, y = share of
        total actual spend they hold. Linear between points.

    Raises:
        ValueError: bad input.
    """
    a, p = _check_spend(actual, pred)
    return _gain_points(a, p)


def top_decile_capture(actual: ArrayLike, pred: ArrayLike) -> float:
    """Share of actual spend held by the 10% of customers with the highest `pred`.

    A tie group straddling the 10% boundary contributes its mean per customer (expectation over
    random tie-breaking). When 0.1 * n is not a whole number the gain curve is interpolated.

    Args:
        actual: actual window spend per customer (currency, >= 0).
        pred: predicted spend or score.

    Returns:
        Share in [0, 1].

    Raises:
        ValueError: bad input.
    """
    x, y = gain_curve(actual, pred)
    return float(np.interp(TOP_SHARE, x, y))


def spend_metrics(actual: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """All spend metrics of docs/evaluation.md.

    Args:
        actual: actual window spend per customer (currency, >= 0).
        pred: predicted window spend per customer (same currency).

    Returns:
        Dict with keys `SPEND_METRICS`: gini_norm, top_decile_capture, spearman (nan when either
        input is constant), mae, rmse (currency), agg_bias = sum(pred) / sum(actual) - 1.

    Raises:
        ValueError: bad input.
    """
    a, p = _check_spend(actual, pred)
    err = p - a
    if a.min() == a.max() or p.min() == p.max():
        spearman = float("nan")
    else:
        spearman = float(spearmanr(a, p).statistic)
    return {
        "gini_norm": gini_norm(a, p),
        "top_decile_capture": top_decile_capture(a, p),
        "spearman": spearman,
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "agg_bias": float(p.sum() / a.sum() - 1.0),
    }


def decile_table(actual: ArrayLike, pred: ArrayLike) -> pd.DataFrame:
    """Mean predicted vs mean actual spend per predicted decile.

    Customers are sorted by `pred` descending and cut into 10 groups whose sizes differ by at most
    one (decile 1 = highest predictions). Tie groups split by a cut count as the expectation over
    random tie-breaking (their actual spend is spread evenly).

    Args:
        actual: actual window spend per customer (currency, >= 0).
        pred: predicted window spend per customer (same currency).

    Returns:
        DataFrame indexed by `decile` (1..10) with columns n, mean_pred, mean_actual (currency per
        customer), share_pred, share_actual (share of the column's total), abs_pct_error =
        |mean_pred - mean_actual| / mean_actual (nan where mean_actual is 0). `df.attrs["mape"]` is
        the mean of abs_pct_error over deciles where it is defined.

    Raises:
        ValueError: bad input, or fewer than 10 customers.
    """
    a, p = _check_spend(actual, pred)
    n = a.size
    if n < 10:
        raise ValueError(f"decile_table needs at least 10 customers, got {n}")
    decile = np.arange(n) * 10 // n + 1
    frame = pd.DataFrame(
        {
            "decile": decile,
            "pred": np.sort(p)[::-1],
            "actual": _tie_averaged_sorted(a, p),
        }
    )
    table = frame.groupby("decile").agg(
        n=("pred", "size"),
        mean_pred=("pred", "mean"),
        mean_actual=("actual", "mean"),
        sum_pred=("pred", "sum"),
        sum_actual=("actual", "sum"),
    )
    sum_pred = table.pop("sum_pred")
    table["share_pred"] = sum_pred / p.sum() if p.sum() != 0 else np.nan
    table["share_actual"] = table.pop("sum_actual") / a.sum()
    mean_actual = table["mean_actual"].where(table["mean_actual"] > 0)
    table["abs_pct_error"] = (table["mean_pred"] - mean_actual).abs() / mean_actual
    table.attrs["mape"] = float(table["abs_pct_error"].mean())
    return table


# --- churn metrics ----------------------------------------------------------------------------


def churn_metrics(active: ArrayLike, p_active: ArrayLike) -> dict[str, float]:
    """Activity metrics: ranking and calibration of P(at least one purchase in the window).

    Args:
        active: 1 if the customer bought in the window, else 0.
        p_active: predicted probability of being active, in [0, 1].

    Returns:
        Dict with keys `CHURN_METRICS`: roc_auc, pr_auc (average precision), brier.

    Raises:
        ValueError: bad input, or only one class in `active`.
    """
    y, p = _check_active(active, p_active)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
    }


def reliability_table(active: ArrayLike, p_active: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Calibration table: observed activity rate per quantile bin of predicted probability.

    Customers are sorted by `p_active` and cut into `n_bins` equal-count bins (sizes differ by at
    most one); tied probabilities split by a cut count as the expectation over tie-breaking.

    Args:
        active: 1 if the customer bought in the window, else 0.
        p_active: predicted probability of being active, in [0, 1].
        n_bins: number of bins (at most the number of customers).

    Returns:
        DataFrame indexed by `bin` (1 = lowest probabilities) with columns n, mean_pred,
        observed_rate.

    Raises:
        ValueError: bad input, or `n_bins` < 1 or larger than the number of customers.
    """
    y, p = _check_active(active, p_active)
    n = y.size
    if not 1 <= n_bins <= n:
        raise ValueError(
            f"n_bins must be between 1 and the number of customers ({n}), got {n_bins}"
        )
    frame = pd.DataFrame(
        {
            "bin": np.arange(n) * n_bins // n + 1,
            "pred": np.sort(p),
            "active": _tie_averaged_sorted(y, -p),
        }
    )
    return frame.groupby("bin").agg(
        n=("pred", "size"), mean_pred=("pred", "mean"), observed_rate=("active", "mean")
    )


# --- frames -----------------------------------------------------------------------------------


def _check_frame(frame: pd.DataFrame, name: str, columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"`{name}` is missing column(s) {missing}; expected {list(columns)}, "
            f"got {list(frame.columns)}"
        )
    dup = frame[CUSTOMER_ID][frame[CUSTOMER_ID].duplicated()]
    if len(dup):
        raise ValueError(
            f"`{name}` has {len(dup)} duplicated {CUSTOMER_ID} values "
            f"(first: {dup.head(5).tolist()}); keep one row per customer"
        )


def evaluate_predictions(actual: pd.DataFrame, pred: pd.DataFrame) -> dict[str, float]:
    """Join actuals and predictions on customer_id and compute every backtest metric.

    Args:
        actual: one row per scored customer with columns customer_id, active (0/1), spend
            (window spend, currency, >= 0).
        pred: one row per customer with columns customer_id, p_active (probability),
            expected_spend (currency).

    Returns:
        Flat dict keyed by `METRIC_NAMES` (`spend_<metric>`, `churn_<metric>`).

    Raises:
        ValueError: a column is missing, customer_id is duplicated, the two frames do not hold
            the same customers, or a metric input is invalid.
    """
    merged = _checked_pair(actual, pred)
    spend = spend_metrics(merged["spend"], merged["expected_spend"])
    churn = churn_metrics(merged["active"], merged["p_active"])
    metrics = {f"spend_{k}": v for k, v in spend.items()}
    metrics.update({f"churn_{k}": v for k, v in churn.items()})
    return metrics


def _same_sorted_ids(actual: pd.DataFrame, pred: pd.DataFrame) -> bool:
    """Both frames have their columns and the same ids in the same strictly increasing order."""
    if any(c not in actual.columns for c in ACTUAL_COLUMNS) or any(
        c not in pred.columns for c in PRED_COLUMNS
    ):
        return False
    ids = actual[CUSTOMER_ID]
    if not ids.array.equals(pred[CUSTOMER_ID].array) or not ids.is_monotonic_increasing:
        return False
    return bool((ids.array[1:] != ids.array[:-1]).all())  # (strictly: no duplicate)


def _checked_pair(
    actual: pd.DataFrame, pred: pd.DataFrame, aligned: bool | None = None
) -> pd.DataFrame:
    """Actuals and predictions joined on customer_id, after :func:`evaluate_predictions`'
    checks (same errors). ``aligned``: :func:`_same_sorted_ids` of the two, when known."""
    if _same_sorted_ids(actual, pred) if aligned is None else aligned:
        # (the usual case, labels and predictions both sorted by id: the outer join would
        # give these very rows, in this order, after hashing every id three times)
        merged = actual[list(ACTUAL_COLUMNS)].reset_index(drop=True)
        for column in PRED_COLUMNS[1:]:
            merged[column] = pred[column].to_numpy()
    else:
        merged = _joined_pair(actual, pred)
    # Check with the frames' column names so errors point at the right place.
    _check_spend(merged["spend"], merged["expected_spend"], "actual.spend", "pred.expected_spend")
    _check_active(merged["active"], merged["p_active"], "actual.active", "pred.p_active")
    return merged


def _joined_pair(actual: pd.DataFrame, pred: pd.DataFrame) -> pd.DataFrame:
    """Actuals and predictions joined on customer_id (outer), after the checks of the frames,
    their id types and their customers."""
    _check_frame(actual, "actual", ACTUAL_COLUMNS)
    _check_frame(pred, "pred", PRED_COLUMNS)
    id_types = (actual[CUSTOMER_ID].dtype, pred[CUSTOMER_ID].dtype)
    if pd.api.types.is_numeric_dtype(id_types[0]) != pd.api.types.is_numeric_dtype(id_types[1]):
        raise ValueError(
            f"{CUSTOMER_ID} is {id_types[0]} in `actual` but {id_types[1]} in `pred`; "
            "cast both to str (labels use str ids)"
        )
    merged = actual[list(ACTUAL_COLUMNS)].merge(
        pred[list(PRED_COLUMNS)], on=CUSTOMER_ID, how="outer", indicator=True
    )
    only_actual = merged.loc[merged["_merge"] == "left_only", CUSTOMER_ID]
    only_pred = merged.loc[merged["_merge"] == "right_only", CUSTOMER_ID]
    if len(only_actual) or len(only_pred):
        raise ValueError(
            f"mismatched customers: {len(only_actual)} in `actual` only "
            f"(first: {only_actual.head(5).tolist()}), {len(only_pred)} in `pred` only "
            f"(first: {only_pred.head(5).tolist()}); score exactly the customers in the actuals"
        )
    return merged


def prediction_arrays(actual: pd.DataFrame, pred: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``pred``'s p_active and expected_spend (float64) in the order of ``actual``'s customers
    (``pred`` holds each of them once)."""
    return _prediction_arrays(actual, pred, _same_sorted_ids(actual, pred))


def _prediction_arrays(
    actual: pd.DataFrame, pred: pd.DataFrame, aligned: bool
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`prediction_arrays`, given :func:`_same_sorted_ids` of the two."""
    if aligned:  # (rows already aligned: no index on the ids)
        rows = pred[["p_active", "expected_spend"]]
    else:
        order = actual[CUSTOMER_ID].to_numpy()
        rows = pred.set_index(CUSTOMER_ID).loc[order, ["p_active", "expected_spend"]]
    return rows["p_active"].to_numpy(dtype=float), rows["expected_spend"].to_numpy(dtype=float)


# --- uncertainty ------------------------------------------------------------------------------

#: Metrics given bootstrap intervals: the ones the backtest bar is stated in.
BOOTSTRAP_METRICS = (
    "spend_gini_norm",
    "spend_top_decile_capture",
    "spend_rmse",
    "spend_agg_bias",
    "churn_roc_auc",
)


def _bootstrap_point(active: np.ndarray, spend: np.ndarray, p: np.ndarray, s: np.ndarray) -> dict:
    err = s - spend
    return {
        "spend_gini_norm": gini_norm(spend, s),
        "spend_top_decile_capture": top_decile_capture(spend, s),
        "spend_rmse": float(np.sqrt(np.mean(err**2))),
        "spend_agg_bias": float(s.sum() / spend.sum() - 1.0),
        "churn_roc_auc": float(roc_auc_score(active, p)),
    }


def _known_point(
    known: Mapping[str, Mapping[str, float]] | None, name: str, aligned: bool
) -> dict[str, float] | None:
    """``known[name]``'s :data:`BOOTSTRAP_METRICS` when :func:`evaluate_predictions` computed
    them on the arrays :func:`_bootstrap_point` gets (``aligned``: the frames' ids in the same
    order, :func:`_same_sorted_ids`), else None."""
    metrics = (known or {}).get(name)
    if not aligned or metrics is None or any(k not in metrics for k in BOOTSTRAP_METRICS):
        return None
    return {k: float(metrics[k]) for k in BOOTSTRAP_METRICS}


def bootstrap_draws(
    actual: pd.DataFrame,
    preds: dict[str, pd.DataFrame],
    *,
    n_resamples: int = 200,
    seed: int = 0,
    threads: int | None = None,
    known: Mapping[str, Mapping[str, float]] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, pd.DataFrame]]:
    """Each method's :data:`BOOTSTRAP_METRICS` on all customers and on the same bootstrap
    resamples of the customers (see :func:`paired_bootstrap`). ``threads``: resamples judged at
    once (default: the cores available); the draws and the numbers do not depend on it.
    ``known``: methods' metrics on all customers from :func:`evaluate_predictions` of the same
    frames, taken as they are where that computed them on the very arrays used here (actuals
    and predictions in the same id order): the same numbers, not computed again.

    Returns:
        (estimates: method -> metric -> value, draws: method -> frame of one row per resample).
    """
    if n_resamples < 10:
        raise ValueError(f"need n_resamples >= 10 (got {n_resamples})")
    # (whether each method's ids are the actuals', in order: asked once, a pass over the ids)
    aligned = {name: _same_sorted_ids(actual, pred) for name, pred in preds.items()}
    for name, pred in preds.items():
        _checked_pair(actual, pred, aligned[name])  # same checks and messages as the point metrics
    active = actual["active"].to_numpy(dtype=int)
    spend = actual["spend"].to_numpy(dtype=float)
    arrays = {name: _prediction_arrays(actual, pred, aligned[name]) for name, pred in preds.items()}
    n = len(actual)
    # Each score is sorted once; a resample is a count per customer (clvflow.evaluation.resampling).
    # (the actuals in each ranking's order: a resample then costs one gather per ranking)
    by_spend = resampling.Ranking(spend)
    spend_by_spend = by_spend.ranked(spend)
    prepared = {}
    for name, (p, s) in arrays.items():
        by_p, by_s = resampling.Ranking(p), resampling.Ranking(s)
        ranked = (by_p.ranked(active.astype(np.uint8)), by_s.ranked(spend))
        prepared[name] = (by_p, by_s, ranked, s, (s - spend) ** 2)

    def judged(draw: np.ndarray) -> dict[str, dict[str, float]] | None:
        """Every method's metrics on one resample; None when they are undefined there (a
        degenerate resample: tiny samples only)."""
        counts = resampling.resample_counts(draw, n)
        w = counts.astype("float64")
        n_active, total = float(np.dot(w, active)), float(np.dot(w, spend))
        if n_active in (0.0, float(n)) or total <= 0:
            return None
        best = by_spend.spend_groups(counts, spend_by_spend).gini_raw(n)
        if best <= 0:
            raise ValueError("all `actual` values are equal: a normalized Gini is undefined")
        metrics = {}
        for name, (by_p, by_s, (active_by_p, spend_by_s), s, err2) in prepared.items():
            groups = by_s.spend_groups(counts, spend_by_s)
            gini = groups.gini_raw(n) / best
            metrics[name] = {
                "spend_gini_norm": float(np.clip(gini, -1.0, 1.0)),
                "spend_top_decile_capture": groups.top_share_capture(n, TOP_SHARE),
                "spend_rmse": float(np.sqrt(np.dot(w, err2) / n)),
                "spend_agg_bias": float(np.dot(w, s) / total - 1.0),
                "churn_roc_auc": by_p.roc_auc(counts, active_by_p),
            }
        return metrics

    rng = np.random.default_rng(seed)
    # (drawn here, in order, whatever the threads: the same resamples on every machine)
    resamples = (rng.integers(0, n, n) for _ in range(n_resamples))
    draws: dict[str, list[dict]] = {name: [] for name in preds}
    with one_blas_thread():  # (many n-sized dot products: BLAS threads only spin)
        judgements = map_in_order(judged, resamples, threads)
        for metrics in track(judgements, "bootstrap resamples", n_resamples):
            for name, row in (metrics or {}).items():
                draws[name].append(row)
    full = {
        name: _known_point(known, name, aligned[name]) or _bootstrap_point(active, spend, p, s)
        for name, (p, s) in arrays.items()
    }
    frames = {name: pd.DataFrame(d, columns=list(BOOTSTRAP_METRICS)) for name, d in draws.items()}
    return full, frames


def intervals_from_draws(
    estimates: dict[str, dict[str, float]],
    draws: dict[str, pd.DataFrame],
    *,
    reference: str,
    level: float = 0.95,
) -> pd.DataFrame:
    """Percentile intervals of :func:`bootstrap_draws`, with each method's paired difference to
    ``reference`` (table layout of :func:`paired_bootstrap`)."""
    if reference not in draws:
        raise ValueError(f"reference {reference!r} is not one of the methods {sorted(draws)}")
    if not 0 < level < 1:
        raise ValueError(f"need 0 < level < 1 (got {level})")
    tail = 100 * (1 - level) / 2
    others = [name for name in draws if name != reference]
    series = [(name, draws[name], estimates[name]) for name in draws] + [
        (
            f"{name} - {reference}",
            draws[name] - draws[reference],
            {k: estimates[name][k] - estimates[reference][k] for k in BOOTSTRAP_METRICS},
        )
        for name in others
    ]
    rows = []
    for label, frame, estimate in series:
        for metric in BOOTSTRAP_METRICS:
            low, high = np.percentile(frame[metric].to_numpy(), [tail, 100 - tail])
            rows.append(
                {
                    "method": label,
                    "metric": metric,
                    "estimate": estimate[metric],
                    "low": float(low),
                    "high": float(high),
                }
            )
    return pd.DataFrame(rows)


def paired_bootstrap(
    actual: pd.DataFrame,
    preds: dict[str, pd.DataFrame],
    *,
    reference: str,
    n_resamples: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Percentile bootstrap intervals over customers for each method's metrics, and for each
    method's difference to ``reference`` on the *same* resamples (paired: the shared noise of
    the window cancels, so a difference can be significant when the intervals overlap).

    Args:
        actual: customer_id, active, spend (as for :func:`evaluate_predictions`).
        preds: method name -> frame with customer_id, p_active, expected_spend (same customers).
        reference: the key of ``preds`` that differences are taken against.
        n_resamples: bootstrap resamples (customers drawn with replacement).
        level: interval coverage.
        seed: seed of the resampling; the same inputs and seed give the same table.

    Returns:
        DataFrame with columns ``method`` (a key of ``preds``, or ``"<key> - <reference>"``),
        ``metric`` (:data:`BOOTSTRAP_METRICS`), ``estimate`` (on all customers), ``low``,
        ``high``.

    Raises:
        ValueError: ``reference`` missing, mismatched customers, bad inputs or settings.
    """
    if reference not in preds:
        raise ValueError(f"reference {reference!r} is not one of the methods {sorted(preds)}")
    if n_resamples < 10 or not 0 < level < 1:
        raise ValueError(f"need n_resamples >= 10 and 0 < level < 1 (got {n_resamples}, {level})")
    estimates, draws = bootstrap_draws(actual, preds, n_resamples=n_resamples, seed=seed)
    return intervals_from_draws(estimates, draws, reference=reference, level=level)


def mean_gain_intervals(
    gains: list[tuple[dict[str, float], pd.DataFrame]], level: float = 0.95
) -> pd.DataFrame:
    """Mean paired gain over several backtests (e.g. cutoffs) with a percentile interval.

    Each backtest gives its gain on all customers and its gain on each bootstrap resample (from
    :func:`bootstrap_draws`: method minus reference). Resample ``i`` of every backtest is
    averaged into resample ``i`` of the mean; resamples are drawn independently per backtest,
    so the interval treats the backtests' noise as independent (customers shared between
    cutoffs make it somewhat too narrow).

    Returns:
        DataFrame ``metric``, ``estimate`` (mean of the estimates), ``low``, ``high``,
        ``n_backtests``, ``n_positive`` (backtests whose estimate is > 0).
    """
    if not gains:
        raise ValueError("no backtest to summarise")
    n = min(len(frame) for _, frame in gains)
    tail = 100 * (1 - level) / 2
    rows = []
    for metric in BOOTSTRAP_METRICS:
        estimates = np.array([estimate[metric] for estimate, _ in gains])
        mean_draws = np.mean([frame[metric].to_numpy()[:n] for _, frame in gains], axis=0)
        low, high = np.percentile(mean_draws, [tail, 100 - tail])
        rows.append(
            {
                "metric": metric,
                "estimate": float(estimates.mean()),
                "low": float(low),
                "high": float(high),
                "n_backtests": len(gains),
                "n_positive": int((estimates > 0).sum()),
            }
        )
    return pd.DataFrame(rows)
