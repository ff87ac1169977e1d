"""Information-ceiling diagnostic (``make ceiling``): how well can boosters of the model's family
rank customers at a cutoff when they are fitted on the evaluation window itself?

An honest model never sees the window it is judged on. This diagnostic does, on purpose: it
fits the churn and spend boosters on the customers' features *as of the cutoff* against their
*actual* window labels, with K-fold cross-validation (each customer is predicted by boosters
that did not see that customer). No out-of-time model built on the same inputs can be expected
to rank better, so the result bounds what the inputs (the features, plus any extra columns tried)
carry about the window. It is a diagnostic only: nothing in the product uses it.

Run as ``python -m benchmarks.ceiling [--cutoff 1998-01-01] [--horizon-days 181]`` on the embedded
CDNOW data. It prints the evaluation table (docs/evaluation.md) for the honest model and BG/NBD x
Gamma-Gamma, the in-window boosters on the model's inputs, and the same with CDNOW's per-order
number of CDs (which the transactions contract does not carry) added as features.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.model_selection import StratifiedKFold

from clvflow.core.dates import DateLike, to_day
from clvflow.data.datasets import read_cdnow_raw
from clvflow.evaluation.metrics import evaluate_predictions
from clvflow.features.build import build_features
from clvflow.features.labels import build_labels, validate_horizon
from clvflow.models.btyd import btyd_predictions, fit_btyd
from clvflow.models.clv import MODEL_INPUT_COLUMNS, ModelParams
from clvflow.models.tables import TABLE_METRICS, format_evaluation_table
from clvflow.models.training import BASELINE_PREFIXES, backtest

log = logging.getLogger(__name__)

#: Quantity features built from CDNOW's number of CDs per order (history before the cutoff).
QUANTITY_COLUMNS = [
    "units_total",
    "units_per_day",
    "units_max_day",
    "units_first_day",
    "units_last_day",
    "units_180d",
    "price_per_unit",
]
_MIN_SPEND = 0.01  # gamma deviance needs a positive target; active customers may net to 0


def model_inputs(tx: pd.DataFrame, cutoff: DateLike, horizon_days: int) -> pd.DataFrame:
    """The model's inputs as of ``cutoff``: features and BG/NBD x Gamma-Gamma predictions (both
    from transactions dated before it), one row per customer, keyed by ``customer_id``."""
    cutoff_day = to_day(cutoff, "cutoff")
    features = build_features(tx.loc[(tx["timestamp"] < cutoff_day).to_numpy()], cutoff_day)
    btyd = btyd_predictions(fit_btyd(features), features, horizon_days)
    return pd.concat([features, btyd], axis=1)[["customer_id", *MODEL_INPUT_COLUMNS]]


def quantity_features(tx: pd.DataFrame, cutoff: DateLike, quantity: str) -> pd.DataFrame:
    """Per-customer unit counts from column ``quantity`` of rows dated before ``cutoff``.

    Columns ``customer_id`` and :data:`QUANTITY_COLUMNS`: total units, units per transaction day,
    largest / first / last purchase day's units, units in the 180 days before the cutoff, and
    gross spend per unit (0 when no units).
    """
    cutoff_day = to_day(cutoff, "cutoff")
    past = tx.loc[(tx["timestamp"] < cutoff_day).to_numpy()]
    days = (
        past.assign(day=past["timestamp"].dt.normalize())
        .groupby(["customer_id", "day"], sort=True)
        .agg(units=(quantity, "sum"), spend=("amount", "sum"))
        .reset_index()
    )
    by_customer = days.groupby("customer_id", sort=True)
    recent = days["day"] >= cutoff_day - pd.Timedelta(days=180)
    out = pd.DataFrame(
        {
            "units_total": by_customer["units"].sum(),
            "units_per_day": by_customer["units"].mean(),
            "units_max_day": by_customer["units"].max(),
            "units_first_day": by_customer["units"].first(),
            "units_last_day": by_customer["units"].last(),
            "units_180d": days.loc[recent].groupby("customer_id")["units"].sum(),
        }
    ).fillna({"units_180d": 0.0})
    gross = days.loc[days["spend"] > 0].groupby("customer_id")["spend"].sum()
    units = out["units_total"].to_numpy(dtype=float)
    out["price_per_unit"] = np.where(
        units > 0, gross.reindex(out.index, fill_value=0.0) / np.maximum(units, 1), 0.0
    )
    return out.reset_index()[["customer_id", *QUANTITY_COLUMNS]]


def in_window_cv(
    inputs: pd.DataFrame,
    actuals: pd.DataFrame,
    *,
    params: ModelParams | None = None,
    n_rounds: int = 300,
    folds: int = 5,
) -> pd.DataFrame:
    """Cross-validated predictions of boosters fitted on the evaluation window itself.

    Args:
        inputs: ``customer_id`` plus numeric input columns, one row per customer.
        actuals: ``customer_id``, ``active``, ``spend`` (window labels), the same customers.
        params: booster settings (default: the model's :class:`ModelParams`).
        n_rounds: trees per booster.
        folds: number of stratified folds (on ``active``).

    Returns:
        ``customer_id``, ``p_active``, ``expected_spend`` (= p_active x E[spend | active], the
        model's hurdle form), every customer predicted by boosters that did not see them.
    """
    params = params or ModelParams()
    rows = inputs.merge(
        actuals[["customer_id", "active", "spend"]], on="customer_id", validate="one_to_one"
    )
    if len(rows) != len(inputs) or len(rows) != len(actuals):
        raise ValueError("inputs and actuals must hold the same customers")
    x = rows.drop(columns=["customer_id", "active", "spend"]).to_numpy(dtype=float)
    active = rows["active"].to_numpy(dtype=int)
    spend = np.maximum(rows["spend"].to_numpy(dtype=float), _MIN_SPEND)
    base = params.xgb_params()
    p_active = np.zeros(len(rows))
    spend_if_active = np.zeros(len(rows))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=params.seed)
    for train, test in splitter.split(x, active):
        churn = xgb.train(
            {**base, "objective": "binary:logistic"},
            xgb.DMatrix(x[train], label=active[train]),
            n_rounds,
        )
        buyers = train[active[train] == 1]
        amount = xgb.train(
            {**base, "objective": "reg:gamma"},
            xgb.DMatrix(x[buyers], label=spend[buyers]),
            n_rounds,
        )
        held_out = xgb.DMatrix(x[test])
        p_active[test] = churn.predict(held_out)
        spend_if_active[test] = amount.predict(held_out)
    return pd.DataFrame(
        {
            "customer_id": rows["customer_id"].to_numpy(),
            "p_active": p_active,
            "expected_spend": p_active * spend_if_active,
        }
    )


def _row(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    return {col: metrics[f"{prefix}{name}"] for col, name in TABLE_METRICS.items()}


def ceiling_table(
    tx: pd.DataFrame, cutoff: DateLike, horizon_days: int, *, quantity: str | None = None
) -> pd.DataFrame:
    """Evaluation table (docs/evaluation.md): the model and BG/NBD x Gamma-Gamma (honest, out of
    time), then in-window CV boosters on the model's inputs, and on the inputs plus
    :func:`quantity_features` of column ``quantity``."""
    horizon_days = validate_horizon(horizon_days)
    inputs = model_inputs(tx, cutoff, horizon_days)
    actuals = build_labels(tx, to_day(cutoff, "cutoff"), horizon_days)
    honest = backtest(tx, cutoff, horizon_days).metrics
    rows = {
        "clvflow model (out of time)": _row(honest),
        "BG/NBD × Gamma-Gamma (out of time)": _row(honest, BASELINE_PREFIXES["bgnbd"]),
    }
    rows["in-window CV: model inputs"] = _row(
        evaluate_predictions(actuals, in_window_cv(inputs, actuals))
    )
    if quantity is not None:
        with_units = inputs.merge(
            quantity_features(tx, cutoff, quantity), on="customer_id", how="left"
        )
        rows["in-window CV: + units per order"] = _row(
            evaluate_predictions(actuals, in_window_cv(with_units, actuals))
        )
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument("--cutoff", default="1998-01-01")
    parser.add_argument("--horizon-days", type=int, default=181)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    raw = read_cdnow_raw().rename(columns={"__number_of_cds": "units"})
    table = ceiling_table(raw, args.cutoff, args.horizon_days, quantity="units")
    print(f"CDNOW, cutoff {args.cutoff}, horizon {args.horizon_days} days")
    print(format_evaluation_table(table))
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
