"""Why each customer scores as they do: the top drivers of P(active) and of spend, from
XGBoost's own TreeSHAP contributions (``Booster.predict(..., pred_contribs=True)``).

What is explained, and on which scale (the model's design is in :mod:`clvflow.models.clv`):

- Each booster starts from BG/NBD x Gamma-Gamma (its ``base_margin``) and its trees add a
  correction. TreeSHAP splits one booster's margin exactly:
  ``margin = base_margin + E[trees] + sum over inputs of contribution``. The contributions are
  taken **per booster, on its margin scale**: log-odds of P(active) for the churn booster, log of
  E[spend | active] for the spend booster. They are never summed across boosters. Adding the
  constant level of :meth:`clvflow.models.clv.ClvModel.predict` (a logit shift, a spend factor)
  changes no contribution.
- ``reasons_p_active``: the churn booster's inputs with the largest |contribution|.
  ``reasons_spend``: the spend booster's, i.e. the drivers of E[spend | active]; since
  expected_spend = p_active x E[spend | active], the drivers of expected spend are the two lists
  together (log expected_spend = log p_active + log E[spend | active]).
- The BG/NBD start itself (the bias column) is not a reason: the reasons say what moves the
  customer away from BG/NBD's own estimate. The BG/NBD predictions are also inputs of the trees
  (``bg_p_alive`` ...); when a tree uses one, it appears as "BG/NBD P(alive) 12%".
- When the exported blend gives the boosters weight 0 for a target, the trees play no part in it:
  the column then names the three numbers BG/NBD x Gamma-Gamma uses (one phrase). With a weight
  between 0 and 1 the reasons explain the boosters' part of the blend.
- A customer with only returns (no purchase day) gets P(active) 0 by rule, and says so.

Each reason is a phrase built from the customer's own value of that input, followed by ``(+)``
when it raises the prediction and ``(-)`` when it lowers it; up to ``TOP_REASONS`` per target
joined by ``"; "`` (inputs with a zero contribution are never reasons). Money is written as a
plain number, in the currency of the input amounts.

Cost: contributions are computed in chunks of ``CHUNK_ROWS`` rows, so memory stays bounded
(rows x inputs x 4 bytes per chunk) whatever the population.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import xgboost as xgb

from clvflow.models.clv import ClvModel
from clvflow.models.selection import Blend

#: Reasons per target.
TOP_REASONS = 3
#: The scores-table columns this module adds.
REASON_COLUMNS = ["reasons_p_active", "reasons_spend"]
#: Rows per TreeSHAP call (bounds memory: CHUNK_ROWS x (inputs + 1) float32 per booster).
CHUNK_ROWS = 50_000
#: Rows used for the global picture logged by training (a fixed seeded sample above this).
GLOBAL_SAMPLE_ROWS = 20_000
SEPARATOR = "; "
NO_PURCHASE_REASON = "no purchase day yet, only returns (P(active) is 0)"


# ---- phrases --------------------------------------------------------------------------------


def _money(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def _days(v: float) -> str:
    return f"{v:,.0f} day" if round(v) == 1 else f"{v:,.0f} days"


def _count(v: float, what: str) -> str:
    return f"{v:,.0f} {what}" if round(v) != 1 else f"1 {what.removesuffix('s')}"


def _spent(v: float) -> str:
    return "no spend" if v == 0 else f"spend {_money(v)}"


def _trend(t: float) -> str:
    """spend_trend t = (last 180 - previous 180) / (|last| + |previous|): ratio (1 + t) / (1 - t)."""
    if t >= 1:
        return "spend in the last 180 days, none in the 180 before"
    if t <= -1:
        return "no spend in the last 180 days, some in the 180 before"
    if t == 0:
        return "spend flat on the previous 180 days"
    ratio = (1 + t) / (1 - t)
    if ratio >= 1:
        return f"spend up {ratio:.1f}x on the previous 180 days"
    return f"spend down {1 / ratio:.1f}x on the previous 180 days"


def _gap(template: str, what: str) -> Callable[[float], str]:
    """A phrase of a gap feature; NaN (fewer than two purchase days) says which gap is missing."""

    def phrase(v: float) -> str:
        return f"{what}: none yet (one purchase day)" if np.isnan(v) else template.format(v)

    return phrase


def _recent_days(window: int) -> Callable[[float], str]:
    return lambda v: f"{_count(v, 'purchase days')} in the last {window} days"


def _recent_spend(window: int) -> Callable[[float], str]:
    return lambda v: f"{_spent(v)} in the last {window} days"


def _btyd(phrase: Callable[[float], str]) -> Callable[[float], str]:
    def guarded(v: float) -> str:
        return "no BG/NBD estimate" if np.isnan(v) else phrase(v)

    return guarded


_PHRASES: dict[str, Callable[[float], str]] = {
    "recency_days": lambda v: f"no purchase for {_days(v)}",
    "tenure_days": lambda v: f"customer for {_days(v)}",
    "n_purchase_days": lambda v: _count(v, "purchase days in all"),
    "frequency": lambda v: _count(v, "repeat purchase days"),
    "t_x_days": lambda v: f"{_days(v)} from first to last purchase",
    "T_days": lambda v: f"first purchase {_days(v)} ago",
    "mean_repeat_spend": lambda v: (
        f"repeat purchases average {_money(v)}" if v else "no repeat purchase yet"
    ),
    "total_spend": lambda v: f"net spend to date {_money(v)}",
    "gross_spend": lambda v: f"gross spend to date {_money(v)}",
    "mean_spend_per_day": lambda v: f"average order {_money(v)}",
    "max_spend_per_day": lambda v: f"largest order {_money(v)}",
    "first_purchase_spend": lambda v: f"first order {_money(v)}",
    "last_purchase_spend": lambda v: f"last order {_money(v)}",
    **{f"purchase_days_{w}d": _recent_days(w) for w in (30, 90, 180, 365)},
    **{f"spend_{w}d": _recent_spend(w) for w in (30, 90, 180, 365)},
    "spend_prev_180d": lambda v: f"{_spent(v)} 360 to 180 days ago",
    "spend_trend": _trend,
    "purchase_days_per_30d": lambda v: f"{v:.2f} purchase days a month",
    "gap_mean_days": _gap("{:,.0f} days between purchases on average", "average gap"),
    "gap_std_days": _gap("gaps between purchases vary by {:,.0f} days", "gap spread"),
    "gap_max_days": _gap("longest gap {:,.0f} days", "longest gap"),
    "gap_last_days": _gap("last gap {:,.0f} days", "last gap"),
    "recency_over_gap_mean": _gap("silent for {:.1f}x the usual gap", "usual gap"),
    "return_amount": lambda v: f"returned {_money(v)}",
    "n_return_days": lambda v: _count(v, "days with returns"),
    "returns_share": lambda v: f"returns {v:.0%} of spend",
    "bg_p_alive": _btyd(lambda v: f"BG/NBD P(alive) {v:.0%}"),
    "bg_expected_purchases": _btyd(lambda v: f"BG/NBD expects {v:.1f} purchases"),
    "bg_p_active": _btyd(lambda v: f"BG/NBD P(buy) {v:.0%}"),
    "gg_expected_spend": _btyd(lambda v: f"Gamma-Gamma order value {_money(v)}"),
    "bg_expected_spend": _btyd(lambda v: f"BG/NBD expected spend {_money(v)}"),
}


def phrase(feature: str, value: float) -> str:
    """A readable phrase for one model input at the customer's value (the input's name and value
    for an input without a template)."""
    make = _PHRASES.get(feature)
    if make is None:
        return f"{feature} {value:.4g}"
    return make(float(value))


# ---- contributions and reasons ---------------------------------------------------------------


def booster_contributions(
    booster: xgb.Booster, inputs: np.ndarray, base_margin: np.ndarray, names: list[str]
) -> np.ndarray:
    """TreeSHAP contributions of one booster: shape (rows, inputs + 1), the last column the bias
    (base margin + the trees' expected value); each row sums to the booster's margin."""
    matrix = xgb.DMatrix(inputs, base_margin=base_margin, feature_names=names, nthread=-1)
    return np.asarray(booster.predict(matrix, pred_contribs=True, validate_features=False))


def top_inputs(contributions: np.ndarray, k: int = TOP_REASONS) -> np.ndarray:
    """Per row, the column indices of the ``k`` largest |contributions| (largest first, ties
    by column order); -1 where fewer than ``k`` inputs contribute anything."""
    size = np.abs(contributions)
    order = np.argsort(-size, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(size, order, axis=1)
    return np.where(picked > 0, order, -1)


def reason_text(
    contributions: np.ndarray, values: np.ndarray, names: list[str], k: int = TOP_REASONS
) -> list[str]:
    """Per row, the phrases of the ``k`` inputs with the largest |contribution| (module
    docstring). ``contributions`` and ``values``: (rows, len(names)), without the bias column."""
    top = top_inputs(contributions, k)
    rows = np.arange(len(top))
    slots: list[np.ndarray] = []
    for j in range(top.shape[1]):
        col = top[:, j]
        text = np.full(len(top), "", dtype=object)
        for f in np.unique(col[col >= 0]):
            at = rows[col == f]
            make = _PHRASES.get(names[f])
            signs = contributions[at, f] > 0
            text[at] = [
                f"{make(v) if make else phrase(names[f], v)} ({'+' if up else '-'})"
                for v, up in zip(values[at, f].tolist(), signs.tolist(), strict=True)
            ]
        slots.append(text)
    return [SEPARATOR.join(p for p in parts if p) for parts in zip(*slots, strict=True)]


def _bgnbd_only(x: pd.DataFrame) -> list[str]:
    """The one phrase for a target the exported blend leaves to BG/NBD x Gamma-Gamma alone."""
    freq = x["frequency"].to_numpy("float64").tolist()
    rec = x["recency_days"].to_numpy("float64").tolist()
    age = x["T_days"].to_numpy("float64").tolist()
    return [
        f"BG/NBD only: {_count(f, 'repeat purchase days')}, no purchase for {_days(r)}, "
        f"first purchase {_days(t)} ago"
        for f, r, t in zip(freq, rec, age, strict=True)
    ]


def reasons(model: ClvModel, features: pd.DataFrame, chunk_rows: int = CHUNK_ROWS) -> pd.DataFrame:
    """``REASON_COLUMNS`` for every row of a feature table, in row order (module docstring)."""
    model._check_fitted()
    blend = getattr(model, "blend_", Blend())
    bgnbd_only = {
        "reasons_p_active": blend.active_weight == 0.0 and model.btyd_ is not None,
        "reasons_spend": blend.spend_weight == 0.0 and model.btyd_ is not None,
    }
    names = list(model.model_input_columns_)
    parts: dict[str, list[str]] = {c: [] for c in REASON_COLUMNS}
    for start in range(0, len(features), chunk_rows):
        chunk = features.iloc[start : start + chunk_rows]
        x, inputs, churn_base, spend_base = model.model_inputs(chunk)
        values = x[names].to_numpy("float64")
        for column, booster, base in (
            ("reasons_p_active", model.churn_booster_, churn_base),
            ("reasons_spend", model.spend_booster_, spend_base),
        ):
            if bgnbd_only[column]:
                parts[column] += _bgnbd_only(x)
                continue
            contrib = booster_contributions(booster, inputs, base, names)
            parts[column] += reason_text(contrib[:, :-1], values, names)
    out = pd.DataFrame(parts, index=features.index, columns=REASON_COLUMNS)
    no_purchase = features["n_purchase_days"].to_numpy("float64") <= 0
    out.loc[no_purchase, "reasons_p_active"] = NO_PURCHASE_REASON
    return out.reset_index(drop=True)


def mean_abs_contributions(
    model: ClvModel, features: pd.DataFrame, *, sample_rows: int = GLOBAL_SAMPLE_ROWS, seed: int = 0
) -> pd.DataFrame:
    """The global picture: mean |contribution| of each model input per booster, on its margin
    scale (``churn``: log-odds of P(active); ``spend``: log E[spend | active]), over the customers
    with a purchase day (a seeded sample of ``sample_rows`` when there are more). Rows sorted by
    the churn column, largest first; ``attrs`` say the scale and the rows used."""
    model._check_fitted()
    buyers = features.loc[features["n_purchase_days"].to_numpy("float64") > 0]
    if len(buyers) > sample_rows:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(buyers), sample_rows, replace=False))
        buyers = buyers.iloc[keep]
    names = list(model.model_input_columns_)
    sums = {"churn": np.zeros(len(names)), "spend": np.zeros(len(names))}
    for start in range(0, len(buyers), CHUNK_ROWS):
        _x, inputs, churn_base, spend_base = model.model_inputs(
            buyers.iloc[start : start + CHUNK_ROWS]
        )
        for name, booster, base in (
            ("churn", model.churn_booster_, churn_base),
            ("spend", model.spend_booster_, spend_base),
        ):
            contrib = booster_contributions(booster, inputs, base, names)[:, :-1]
            sums[name] += np.abs(contrib.astype("float64")).sum(axis=0)
    n = max(len(buyers), 1)
    table = pd.DataFrame(
        {
            "feature": names,
            "churn_mean_abs_shap": sums["churn"] / n,
            "spend_mean_abs_shap": sums["spend"] / n,
        }
    ).sort_values(["churn_mean_abs_shap", "feature"], ascending=[False, True], kind="stable")
    table = table.reset_index(drop=True)
    table.attrs["scale"] = (
        "mean |TreeSHAP contribution| per booster on its margin scale: churn = log-odds of "
        "P(active), spend = log E[spend | active]"
    )
    table.attrs["rows"] = str(len(buyers))
    return table
