"""A self-contained HTML report of one or more scores tables (one per as_of).

`write_report` writes ``index.html`` (inline CSS, figures embedded as base64 PNG, no JavaScript, no
network resources) plus the same figures as PNG files. Every number in it is computed from the
scores tables: headline sums, per-segment tables (clvflow.scoring.economics) and the retention list
(clvflow.scoring.segments). The report is built in a staging folder and moved into place
(clvflow.data.files.Outputs), so an interrupted run leaves no partial report.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, PercentFormatter

from clvflow.data.files import Outputs, check_owned_folder, write_folder_marker
from clvflow.scoring.economics import clv_cac_by_segment
from clvflow.scoring.segments import (
    CHURN_RISKS,
    REQUIRED_COLUMNS,
    SEGMENT_COLUMNS,
    VALUE_TIERS,
    WINBACK_P_ALIVE,
    add_segments,
    check_scores,
)

logger = logging.getLogger(__name__)

REPORT_COLUMNS = (*REQUIRED_COLUMNS, "as_of", "horizon_days", "p_active")
HEADLINE_METRICS = (
    "customers",
    "clv_total",
    "clv_lifetime_total",
    "expected_active",
    "value_at_risk_total",
)
FIGURE_DPI = 110
#: A table cell's formatter (the values are numbers; Any: a column's cells are not typed).
Formatter = Callable[[Any], str]
_THOUSANDS = FuncFormatter(lambda v, _pos: f"{v:,.0f}")


# --- numbers ----------------------------------------------------------------------------------


def headline(scores: pd.DataFrame) -> dict[str, float]:
    """Headline sums of a segmented scores table (money in the input currency).

    Returns:
        customers, clv_total (horizon CLV), clv_lifetime_total, expected_active (sum of
        p_active: customers expected to buy in the window), value_at_risk_total.
    """
    return {
        "customers": float(len(scores)),
        "clv_total": float(scores["clv"].sum()),
        "clv_lifetime_total": float(scores["clv_lifetime"].sum()),
        "expected_active": float(scores["p_active"].sum()),
        "value_at_risk_total": float(scores["value_at_risk"].sum()),
    }


def trend_table(
    tables: Sequence[pd.DataFrame], cacs: Sequence[float | pd.Series] | None = None
) -> pd.DataFrame:
    """One row per scores table, indexed by as_of: customers, clv/lifetime totals and means;
    with ``cacs`` (one CAC per table, as in :func:`clvflow.scoring.economics.clv_cac_by_segment`) also
    ``clv_cac_ratio`` = mean lifetime CLV / mean CAC of the customers scored that day."""
    rows = []
    for i, t in enumerate(tables):
        row = {
            "as_of": t["as_of"].iloc[0],
            "customers": len(t),
            "clv_total": t["clv"].sum(),
            "clv_mean": t["clv"].mean(),
            "clv_lifetime_total": t["clv_lifetime"].sum(),
            "p_churn_mean": t["p_churn"].mean(),
        }
        if cacs is not None:
            everyone = clv_cac_by_segment(t.assign(_all="all"), cacs[i], by="_all")
            row["clv_cac_ratio"] = float(everyone["clv_cac_ratio"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows).set_index("as_of").sort_index()


# --- figures ----------------------------------------------------------------------------------


#: The CLV histogram's x-range: these quantiles of positive CLV (a few extreme customers would
#: otherwise stretch the axis and leave much of it empty); customers outside are counted.
HISTOGRAM_QUANTILES = (0.005, 0.995)
HISTOGRAM_BINS = 40


def histogram_range(positive: np.ndarray) -> tuple[float, float]:
    """The plotted range of the CLV histogram: ``HISTOGRAM_QUANTILES`` of the positive values
    (all of them when they span no range)."""
    lo, hi = np.quantile(positive, HISTOGRAM_QUANTILES)
    if not hi > lo:
        lo, hi = positive.min(), positive.max()
    return float(lo), float(hi)


def clv_distribution_figure(
    clv: pd.Series, horizon_days: int, currency: str | None = None
) -> Figure:
    """Histogram of positive horizon CLV on log-spaced bins over its 0.5th-99.5th percentiles
    (``HISTOGRAM_QUANTILES``), with the VIP threshold marked.

    Args:
        clv: horizon CLV per customer (currency).
        horizon_days: the prediction window, for the labels.
        currency: currency code for the axis and the threshold, or None (plain numbers).

    Returns:
        Figure; customers with CLV <= 0 (not drawable on a log axis) and those outside the
        plotted range are counted in the title.
    """
    values = clv.to_numpy("float64")
    positive = values[values > 0]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    title = f"Predicted {horizon_days}-day CLV per customer"
    notes = []
    if positive.size:
        lo, hi = histogram_range(positive)
        inside = positive[(positive >= lo) & (positive <= hi)]
        if hi > lo:
            bins = np.geomspace(lo, hi, HISTOGRAM_BINS)
            below, above = int((positive < lo).sum()), int((positive > hi).sum())
            if below or above:
                notes.append(
                    f"x-axis: {HISTOGRAM_QUANTILES[0]:.1%}-{HISTOGRAM_QUANTILES[1]:.1%} "
                    f"quantiles; {below:,} below, {above:,} above not shown"
                )
        else:
            bins = np.array([lo * 0.9, lo * 1.1])
        # (matplotlib takes an array of edges; its annotation says Sequence[float])
        ax.hist(inside, bins=bins, color="#3b6ea8", edgecolor="white", linewidth=0.4)  # type: ignore[arg-type]
        ax.set_xscale("log")
        ax.set_xlim(bins[0], bins[-1])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.10g}"))
        vip = np.quantile(values, 0.95)
        if vip > 0:
            shown = f"{currency} {vip:,.0f}" if currency else f"{vip:,.0f}"
            ax.axvline(vip, color="#c0392b", ls="--", lw=1.2, label=f"VIP threshold ({shown})")
            ax.legend(loc="upper left", frameon=False)
    n_nonpos = int((values <= 0).sum())
    if n_nonpos:
        notes.insert(0, f"{n_nonpos:,} with CLV <= 0 not shown")
    if notes:
        title += "\n(" + "; ".join(notes) + ")"
    label = _in("Horizon CLV", currency) + " (log scale)"
    ax.set(title=title, xlabel=label, ylabel="Customers")
    ax.title.set_fontsize(10)
    ax.yaxis.set_major_formatter(_THOUSANDS)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def histogram_data(fig: Figure) -> dict[str, list[float]]:
    """The drawn histogram of :func:`clv_distribution_figure`: bar left edges, widths and heights
    (customers) and the axis x-limits, read from the figure itself."""
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    return {
        "xlim": [float(v) for v in ax.get_xlim()],
        "left": [float(b.get_x()) for b in bars],
        "width": [float(b.get_width()) for b in bars],
        "count": [float(b.get_height()) for b in bars],
    }


def tier_risk_figure(scores: pd.DataFrame, currency: str | None = None) -> Figure:
    """Value tier x churn risk heatmaps: customer counts and total horizon CLV per cell.

    Args:
        scores: segmented scores table (value_tier, churn_risk, clv).

    Returns:
        Figure with two annotated heatmaps (rows VIP..low, columns risk low..high).
    """
    counts = pd.crosstab(scores["value_tier"], scores["churn_risk"])
    totals = pd.crosstab(scores["value_tier"], scores["churn_risk"], scores["clv"], aggfunc="sum")
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    panels = [
        (counts, "Customers", "Blues"),
        (totals.fillna(0.0), _in("Total horizon CLV", currency), "Greens"),
    ]
    for ax, (table, label, cmap) in zip(axes, panels, strict=True):
        grid = table.reindex(index=VALUE_TIERS, columns=CHURN_RISKS, fill_value=0).to_numpy(float)
        ax.imshow(grid, cmap=cmap, aspect="auto", vmin=0, vmax=max(grid.max(), 1e-9))
        for (i, j), v in np.ndenumerate(grid):
            color = "white" if v > 0.6 * grid.max() else "#222222"
            ax.text(j, i, f"{v:,.0f}", ha="center", va="center", color=color, fontsize=9)
        ax.set(title=label, xticks=range(3), xticklabels=CHURN_RISKS, xlabel="Churn risk")
        ax.set_yticks(range(len(VALUE_TIERS)), labels=VALUE_TIERS)
    axes[0].set_ylabel("Value tier")
    return fig


def trend_figure(trend: pd.DataFrame, currency: str | None = None) -> Figure:
    """Total and mean horizon CLV and mean p_churn over as_of (output of `trend_table`); every
    y-axis starts at 0 (P(churn) spans 0-100%), so a change is drawn to scale."""
    fig = Figure(figsize=(11, 3.0), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [
        ("clv_total", _in("Total horizon CLV", currency), _THOUSANDS),
        (
            "clv_mean",
            _in("Mean horizon CLV per customer", currency),
            FuncFormatter(lambda v, _p: f"{v:,.2f}"),
        ),
        ("p_churn_mean", "Mean P(churn)", PercentFormatter(1.0)),
    ]
    for ax, (col, label, fmt) in zip(axes, panels, strict=True):
        ax.plot(trend.index, trend[col], marker="o", color="#3b6ea8")
        ax.set_title(label)
        top = 1.0 if col == "p_churn_mean" else max(float(trend[col].max()) * 1.1, 1e-9)
        ax.set_ylim(0.0, top)
        ax.yaxis.set_major_formatter(fmt)
        ax.set_xticks(trend.index, labels=[d.date().isoformat() for d in trend.index])
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig


# --- HTML -------------------------------------------------------------------------------------

_CSS = """
body{margin:0;background:#f4f6f9;color:#1f2933;font:14px/1.45 -apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
.sub{color:#52606d;margin:0 0 22px}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:14px;margin-bottom:22px}
.card{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);
border-top:3px solid #3b6ea8}.card.warn{border-top-color:#c0392b}
.card .label{color:#52606d;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .value{font-size:24px;font-weight:600;margin:4px 0 2px;font-variant-numeric:tabular-nums}
.card .note{color:#7b8794;font-size:12px}
section{background:#fff;border-radius:8px;padding:18px 20px;margin-bottom:18px;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
.row{display:grid;grid-template-columns:1fr 1fr;gap:18px}.row section{margin-bottom:0}
.row+section,.row+.row{margin-top:18px}
img{max-width:100%;height:auto;display:block;margin:0 auto}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid #e4e7eb;white-space:nowrap}
th{background:#f0f3f7;text-align:left;font-weight:600}td.n,th.n{text-align:right}
tbody tr:nth-child(even){background:#fafbfc}tfoot td{font-weight:600;border-top:2px solid #cbd2d9}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0;font-size:13px}
dt{font-weight:600}dd{margin:0;color:#3e4c59}
footer{color:#7b8794;font-size:12px;margin-top:8px}
#priorities th{white-space:normal}
#priorities td:nth-last-child(-n+2){white-space:normal;min-width:14em;font-size:12px}
.scroll{overflow-x:auto}
"""

_SEGMENT_NOTES = {
    "CLV": "predicted value of the horizon window: expected spend x margin, discounted",
    "lifetime CLV": "discounted expected purchases over the customer's remaining life "
    "(MBG/NBD) x spend per purchase x margin, at the yearly discount rate shown on its card",
    "P(alive)": "the model's MBG/NBD probability that the customer has not left for good",
    "value at risk": "P(churn) x lifetime CLV: the lifetime value of customers not expected to "
    "buy in the window; part of total lifetime CLV (never more), the long gone count for little",
    "win-back target": f"P(alive) < {WINBACK_P_ALIVE:.0%}: ranked by spend to date "
    "(winback_priority), after everyone else in retention_priority",
    "value tier": "by horizon CLV: VIP top 5%, high next 15%, medium next 30%, low the rest "
    "and every customer without net spend to date",
    "churn risk": "P(churn) in the window: low < 50%, medium 50-80%, high >= 80%",
    "segment": "RFM quintiles of recency, purchase days and net spend to date plus churn risk "
    "(rules in clvflow.scoring.segments); new = first purchase < 90 days ago",
    "why (reasons)": "the three inputs that move the customer's P(buy) / spend if they buy most "
    "away from BG/NBD's own estimate (TreeSHAP of each booster), with the customer's values; "
    "(+) raises the prediction, (-) lowers it",
}


def _in(label: str, currency: str | None) -> str:
    """A money label with its currency code, e.g. "Total CLV (GBP)"; unchanged without one."""
    return f"{label} ({currency})" if currency else label


def _money(v: float) -> str:
    return f"{v:,.0f}"


def _money2(v: float) -> str:
    return f"{v:,.2f}"


def _pct(v: float) -> str:
    return f"{v:.1%}"


def _three(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.3f}"


def _ratio(v: float) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:,.2f}"


def _table_html(
    table_id: str,
    columns: Sequence[tuple[str, str, Formatter | None]],
    rows: pd.DataFrame,
    footer: Mapping[Hashable, Any] | None = None,
) -> str:
    """An HTML table; columns are (column, header, formatter or None for text)."""
    num = ' class="n"'

    def cells(record: Mapping[Hashable, Any], tag: str) -> str:
        out = []
        for col, _h, fmt in columns:
            value = record.get(col, "")
            text = fmt(value) if fmt is not None and value != "" else str(value)
            cls = num if fmt is not None else ""
            out.append(f"<{tag}{cls}>{html.escape(text)}</{tag}>")
        return "".join(out)

    head = "".join(f"<th{num if fmt else ''}>{html.escape(h)}</th>" for _c, h, fmt in columns)
    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows.to_dict("records"))
    foot = f"<tfoot><tr>{cells(footer, 'td')}</tr></tfoot>" if footer else ""
    return (
        f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>{foot}</table>'
    )


def _segment_section(
    scores: pd.DataFrame, cac: float | pd.Series | None, currency: str | None = None
) -> str:
    table = clv_cac_by_segment(scores, cac, by="segment")
    table["share"] = table["customers"] / len(scores)
    table["value_at_risk_total"] = scores.groupby("segment")["value_at_risk"].sum()
    table = table.reset_index()
    columns: list[tuple[str, str, Formatter | None]] = [
        ("segment", "Segment", None),
        ("customers", "Customers", _money),
        ("share", "Share", _pct),
        ("clv_total", _in("Total CLV", currency), _money),
        ("clv_mean", _in("Mean CLV", currency), _money2),
        ("clv_lifetime_total", _in("Total lifetime CLV", currency), _money),
        ("clv_lifetime_mean", _in("Mean lifetime CLV", currency), _money2),
        ("churn_rate", "Churn rate", _pct),
        ("value_at_risk_total", _in("Value at risk", currency), _money),
    ]
    if cac is not None:
        columns += [
            ("cac_mean", _in("Mean CAC", currency), _money2),
            ("clv_cac_ratio", "CLV:CAC", _ratio),
        ]
    total = clv_cac_by_segment(scores.assign(_all="All customers"), cac, by="_all").iloc[0]
    footer = {"segment": "All customers", "share": 1.0, **total.to_dict()}
    footer["value_at_risk_total"] = scores["value_at_risk"].sum()
    note = (
        '<p class="sub">Churn rate = mean P(churn) in the window. CLV:CAC = mean lifetime CLV / '
        "mean acquisition cost.</p>"
        if cac is not None
        else '<p class="sub">Churn rate = mean P(churn) in the window.</p>'
    )
    return (
        "<section><h2>Segments</h2>"
        + note
        + _table_html("segments", columns, table, footer)
        + "</section>"
    )


def _priority_section(scores: pd.DataFrame, top_n: int, currency: str | None = None) -> str:
    alive = scores[scores["winback_priority"] == 0]
    top = alive.sort_values("retention_priority").head(top_n)
    columns: list[tuple[str, str, Formatter | None]] = [
        ("retention_priority", "#", _money),
        ("customer_id", "Customer", None),
        ("segment", "Segment", None),
        ("value_tier", "Tier", None),
        ("churn_risk", "Churn risk", None),
        ("p_churn", "P(churn)", _pct),
        ("p_alive", "P(alive)", _pct),
        ("clv", _in("CLV", currency), _money2),
        ("clv_lifetime", _in("Lifetime CLV", currency), _money2),
        ("value_at_risk", _in("Value at risk", currency), _money2),
        ("recency_days", "Days since last", _money),
        ("purchase_days", "Purchase days", _money),
        ("historical_clv", _in("Spend to date", currency), _money2),
        *_reason_columns(scores, currency),
    ]
    return (
        f"<section><h2>Top {len(top):,} retention priorities</h2>"
        '<p class="sub">Customers still alive (P(alive) >= '
        f"{WINBACK_P_ALIVE:.0%}) ranked by value at risk: P(churn) x lifetime CLV, the "
        "lifetime value of those not expected to buy in the window.</p>"
        + f'<div class="scroll">{_table_html("priorities", columns, top)}</div>'
        + "</section>"
    )


def _winback_section(scores: pd.DataFrame, top_n: int, currency: str | None = None) -> str:
    gone = scores[scores["winback_priority"] > 0].sort_values("winback_priority")
    columns: list[tuple[str, str, Formatter | None]] = [
        ("winback_priority", "#", _money),
        ("customer_id", "Customer", None),
        ("segment", "Segment", None),
        ("p_alive", "P(alive)", _pct),
        ("historical_clv", _in("Spend to date", currency), _money2),
        ("recency_days", "Days since last", _money),
        ("purchase_days", "Purchase days", _money),
    ]
    return (
        f"<section><h2>Top {min(len(gone), top_n):,} win-back targets</h2>"
        f'<p class="sub">{len(gone):,} customers most likely gone for good (P(alive) < '
        f"{WINBACK_P_ALIVE:.0%}), ranked by spend to date: a win-back campaign, not retention."
        "</p>" + _table_html("winback", columns, gone.head(top_n)) + "</section>"
    )


def _outlook_section(
    scores: pd.DataFrame, total: tuple[float, float] | None, currency: str | None = None
) -> str:
    """Purchases expected in the window, next purchase dates and how sure the CLV is."""
    code = f"{currency} " if currency else ""
    horizon = int(scores["horizon_days"].iloc[0])
    dated = pd.to_datetime(scores["next_purchase_date"]).dropna()  # (text when read from CSV)
    lines = [
        f"Expected purchase days in the next {horizon} days: "
        f"{scores['expected_purchases'].sum():,.0f} (column expected_purchases).",
        f"{len(dated):,} customers are expected to buy again within the horizon "
        + (
            f"(median next purchase date {pd.Timestamp(dated.median()).date()}); "
            if len(dated)
            else "; "
        )
        + "the others have no next_purchase_date (not expected within the horizon).",
    ]
    if total is not None:
        lines.append(
            f"Horizon CLV {code}{_money(scores['clv'].sum())}, 80% interval "
            f"[{code}{_money(total[0])}, {code}{_money(total[1])}] for the total; each customer's 10th-90th "
            "percentiles are in the scores file (clv_p10, clv_p90)."
        )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return f'<section id="outlook"><h2>Next purchases and how sure</h2><ul>{items}</ul></section>'


def _lifetime_rate_note(scores: pd.DataFrame) -> str:
    """The lifetime card's note on its discount rate (tables without the column: none)."""
    if "lifetime_discount_rate" not in scores or scores.empty:
        return ""
    return f", discounted at {float(scores['lifetime_discount_rate'].iloc[0]):.0%} a year"


def _cards(
    numbers: dict[str, float],
    horizon_days: int,
    currency: str | None = None,
    lifetime_note: str = "",
) -> str:
    n = max(numbers["customers"], 1.0)
    code = f"{currency} " if currency else ""

    def money(v: float) -> str:
        return code + _money(v)

    cards = [
        ("customers", "Customers", _money, "known before as_of", ""),
        (
            "clv_total",
            f"Horizon CLV ({horizon_days} days)",
            money,
            f"{code}{numbers['clv_total'] / n:,.2f} per customer",
            "",
        ),
        (
            "clv_lifetime_total",
            "Lifetime CLV",
            money,
            f"{code}{numbers['clv_lifetime_total'] / n:,.2f} per customer{lifetime_note}",
            "",
        ),
        (
            "expected_active",
            "Expected active customers",
            _money,
            f"{numbers['expected_active'] / n:.1%} buy in the window",
            "",
        ),
        (
            "value_at_risk_total",
            "Value at risk",
            money,
            f"{numbers['value_at_risk_total'] / max(numbers['clv_lifetime_total'], 1e-9):.0%} "
            "of lifetime CLV: P(churn) x lifetime CLV, held by customers not expected to buy",
            " warn",
        ),
    ]
    out = []
    for key, label, fmt, note, cls in cards:
        value = numbers[key]
        out.append(
            f'<div class="card{cls}" data-metric="{key}" data-value="{value!r}">'
            f'<div class="label">{html.escape(label)}</div>'
            f'<div class="value">{fmt(value)}</div><div class="note">{html.escape(note)}</div></div>'
        )
    return '<div class="cards">' + "".join(out) + "</div>"


def _model_section(card: dict, currency: str | None = None) -> str:
    """The model behind the scores: name/version, cutoff, exported method and why, and its
    internal backtest table (``card``: see :func:`clvflow.mlops.jobs.model_card`)."""
    facts = [
        f"Model {card.get('model', '?')}",
        f"trained on {card.get('data', '?')} before {card.get('cutoff', '?')}",
        f"exported method: {card.get('method', 'boosters')}",
    ]
    parts = [f"<p>{html.escape(' · '.join(facts))}</p>"]
    backtest = card.get("backtest")
    if not backtest:
        reason = card.get("no_backtest", "no internal backtest")
        parts.append(
            f"<p>Not backtested: {html.escape(str(reason))}. "
            f"{html.escape(str(card.get('reason', '')))}.</p>"
        )
    else:
        rows = pd.DataFrame(backtest["table"])
        columns: list[tuple[str, str, Formatter | None]] = [("method", "Method", None)]
        columns += [
            (
                c,
                _in(c.replace("_", " "), currency) if c in ("rmse", "mae") else c.replace("_", " "),
                {"agg_bias": _pct, "rmse": _money2, "mae": _money2}.get(c, _three),
            )
            for c in rows.columns
            if c != "method"
        ]
        parts.append(
            f"<p>Internal backtest on [{html.escape(backtest['window'][0])}, "
            f"{html.escape(backtest['window'][1])}), the horizon before the cutoff; chosen "
            f"because: {html.escape(str(card.get('reason', '')))}.</p>"
        )
        parts.append(_table_html("backtest", columns, rows))
    return "<section><h2>Model and its backtest</h2>" + "".join(parts) + "</section>"


# --- header: the model and its backtest; reasons; currency -----------------------------------


def check_currency(code: str | None) -> str | None:
    """A currency code as shown (upper case), None for none; ValueError unless three letters."""
    if code is None or code == "":
        return None
    if not (len(code) == 3 and code.isascii() and code.isalpha()):
        raise ValueError(
            f"currency {code!r} is not a three-letter ISO 4217 code; use e.g. GBP, EUR or USD"
        )
    return code.upper()


def _currency_words(currency: str | None) -> str:
    return currency if currency else "the currency of the input amounts (no --currency given)"


def _reason_columns(
    scores: pd.DataFrame, currency: str | None
) -> list[tuple[str, str, Formatter | None]]:
    """The priority table's reason columns (clvflow.scoring.reasons), when the scores have them."""
    unit = f", money in {currency}" if currency else ""
    wanted = [
        ("reasons_p_active", f"Why P(buy) (top 3{unit})"),
        ("reasons_spend", f"Why spend (top 3{unit})"),
    ]
    return [(c, h, None) for c, h in wanted if c in scores.columns]


def _backtest_summary(card: dict) -> str:
    """One line of the internal backtest's accuracy (model vs BG/NBD), or why there is none."""
    backtest = card.get("backtest")
    if not backtest:
        why = card.get("no_backtest") or "the model has no internal backtest"
        return f"not available: {why}"
    rows = {r.get("method"): r for r in backtest["table"]}
    model, bgnbd = rows.get("model", {}), rows.get("BG/NBD × Gamma-Gamma", {})
    shown = []
    for key, label, fmt in (
        ("gini_norm", "spend Gini", "{:.3f}"),
        ("top_decile", "top-decile capture", "{:.1%}"),
        ("roc_auc", "P(buy) ROC AUC", "{:.3f}"),
        ("agg_bias", "total spend bias", "{:+.1%}"),
    ):
        value = model.get(key)
        if value is None or not np.isfinite(value):
            continue
        text = f"{label} {fmt.format(value)}"
        base = bgnbd.get(key)
        if base is not None and np.isfinite(base):
            text += f" (BG/NBD {fmt.format(base)})"
        shown.append(text)
    window = backtest.get("window", ["?", "?"])
    return f"{', '.join(shown) or 'no figures'} on [{window[0]}, {window[1]})"


def _model_facts(card: dict | None, scores: pd.DataFrame) -> tuple[str, str, str]:
    """(name, version, trained) from the model card, else the scores' provenance columns;
    "not recorded" where neither says."""
    card = card or {}
    missing = "not recorded"

    def first(column: str) -> str:
        if column not in scores.columns or scores[column].isna().all():
            return ""
        return str(scores[column].dropna().iloc[0])

    name = str(card.get("model_name") or first("model_name") or missing)
    version = str(card.get("model_version") or first("model_version") or missing)
    created = str(card.get("created_at") or "")
    trained = created[:10] if created else missing
    if card.get("cutoff"):
        trained += f" on {card.get('data', '?')} before {card['cutoff']}"
    return name, version, trained


def _header_section(card: dict | None, scores: pd.DataFrame) -> str:
    """The model behind the scores (name, version, when trained) and its backtest accuracy,
    at the top of the report; says so where the metadata is absent rather than guess."""
    name, version, trained = _model_facts(card, scores)
    if card:
        accuracy = _backtest_summary(card)
    else:
        accuracy = (
            "not available: the report was built without the model's bundle "
            "(`clvflow report --model` or `clvflow score --report` show it)"
        )
    items = [
        ("model", "Model", f"{name} · version {version}"),
        ("trained", "Trained", trained),
        ("backtest", "Backtest accuracy", accuracy),
    ]
    body = "".join(
        f'<dt>{html.escape(label)}</dt><dd id="header-{key}">{html.escape(text)}</dd>'
        for key, label, text in items
    )
    return f'<section id="model-header"><dl>{body}</dl></section>'


def _img(png: bytes, alt: str, data: Mapping[str, Any] | None = None) -> str:
    """An embedded PNG; ``data``: the figure's drawn numbers, as ``data-*`` JSON attributes (so
    checks read what was plotted, not pixels)."""
    encoded = base64.b64encode(png).decode("ascii")
    attrs = "".join(
        f' data-{k}="{html.escape(json.dumps(v), quote=True)}"' for k, v in (data or {}).items()
    )
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}"{attrs}>'


def _html_page(title: str, subtitle: str, parts: Sequence[str], currency: str | None = None) -> str:
    notes = "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in _SEGMENT_NOTES.items()
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
        f'<h1>{html.escape(title)}</h1><p class="sub">{html.escape(subtitle)}</p>'
        + "".join(parts)
        + f"<section><h2>Definitions</h2><dl>{notes}</dl></section>"
        f"<footer>Money in {_currency_words(currency)}; CLV is margin-based and "
        "discounted as scored. Generated by clvflow from the scores table(s) only.</footer>"
        "</main></body></html>\n"
    )


def _prepare(scores: pd.DataFrame | list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Validated tables sorted by as_of, the latest segmented; raise ValueError if invalid."""
    tables = [scores] if isinstance(scores, pd.DataFrame) else list(scores)
    if not tables:
        raise ValueError("`scores` is an empty list; pass at least one scores table")
    dates = []
    for i, table in enumerate(tables):
        check_scores(table, REPORT_COLUMNS)
        if table.empty:
            raise ValueError(f"scores table {i} has no rows")
        as_of = table["as_of"].unique()
        if len(as_of) != 1:
            raise ValueError(
                f"scores table {i} mixes as_of dates {sorted(as_of)[:5]}; pass one per date"
            )
        dates.append(pd.Timestamp(as_of[0]))
    if len(set(dates)) != len(dates):
        raise ValueError(f"several scores tables share an as_of: {sorted(map(str, dates))}")
    tables = [t for _d, t in sorted(zip(dates, tables, strict=True), key=lambda p: p[0])]
    if not set(SEGMENT_COLUMNS) <= set(tables[-1].columns):
        tables[-1] = add_segments(tables[-1])
    return tables


def _figures(
    tables: list[pd.DataFrame], currency: str | None = None
) -> dict[str, tuple[Figure, str]]:
    current = tables[-1]
    horizon_days = int(current["horizon_days"].iloc[0])
    figures = {
        "clv_distribution": (
            clv_distribution_figure(current["clv"], horizon_days, currency),
            "Histogram of predicted horizon CLV",
        ),
        "tier_risk": (tier_risk_figure(current, currency), "Value tier by churn risk heatmaps"),
    }
    if len(tables) > 1:
        figures["trend"] = (
            trend_figure(trend_table(tables), currency),
            "CLV and churn over as_of",
        )
    return figures


def _build(
    tables: list[pd.DataFrame],
    out: Path,
    cac: float | pd.Series | None,
    top_n: int,
    title: str,
    model_card: dict | None = None,
    currency: str | None = None,
    clv_total_interval: tuple[float, float] | None = None,
) -> None:
    """Write the figures and index.html of the report into the directory `out`."""
    current = tables[-1]
    horizon_days = int(current["horizon_days"].iloc[0])
    images: dict[str, str] = {}
    for name, (fig, alt) in _figures(tables, currency).items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=FIGURE_DPI)
        data = histogram_data(fig) if name == "clv_distribution" else None
        images[name] = _img(path.read_bytes(), alt, data)
    numbers = headline(current)
    as_of = pd.Timestamp(current["as_of"].iloc[0]).date().isoformat()
    subtitle = f"Scores as of {as_of} · horizon {horizon_days} days · {len(current):,} customers"
    if len(tables) > 1:
        subtitle += f" · {len(tables)} scoring dates"
    parts = [
        _header_section(model_card, current),
        _cards(numbers, horizon_days, currency, _lifetime_rate_note(current)),
        '<div class="row">'
        f"<section><h2>CLV distribution</h2>{images['clv_distribution']}</section>"
        f"<section><h2>Value tier x churn risk</h2>{images['tier_risk']}</section></div>",
    ]
    if "trend" in images:
        parts.append(f"<section><h2>Trend over scoring dates</h2>{images['trend']}</section>")
    parts += [
        _segment_section(current, cac, currency),
        _priority_section(current, top_n, currency),
        _winback_section(current, top_n, currency),
    ]
    if "expected_purchases" in current.columns:
        parts.append(_outlook_section(current, clv_total_interval, currency))
    if model_card:
        parts.append(_model_section(model_card, currency))
    page = _html_page(title, subtitle, parts, currency)
    (out / "index.html").write_text(page, encoding="utf-8")


def write_report(
    scores: pd.DataFrame | list[pd.DataFrame],
    output_dir: str | os.PathLike[str],
    *,
    cac: float | pd.Series | None = None,
    top_n: int = 25,
    title: str = "clvflow report",
    overwrite: bool = False,
    model_card: dict | None = None,
    currency: str | None = None,
    clv_total_interval: tuple[float, float] | None = None,
) -> Path:
    """Write an HTML report (index.html + PNG figures) of scores tables into `output_dir`.

    Headline numbers (customers, total horizon and lifetime CLV, expected active customers,
    value at risk), CLV histogram, value tier x churn risk heatmaps, segment table (with CLV:CAC
    when `cac` is given), the top-N retention priorities and, with several tables, trends over
    as_of. Numbers describe the latest as_of. Built in a staging folder beside `output_dir` and
    moved into place (clvflow.data.files.Outputs).

    Args:
        scores: a scores table, or several (one per as_of); segment columns are added when
            missing (clvflow.scoring.segments.add_segments).
        output_dir: directory to create (its parent is created if needed).
        cac: acquisition cost (currency): one number or a Series by customer_id; None: no CAC.
        top_n: rows of the retention priority table.
        title: page title.
        overwrite: replace a non-empty existing `output_dir`.
        model_card: the model's facts and internal backtest (a bundle manifest's
            ``model_card``), shown in the header and a section of their own; None: the
            header says the model and its backtest are not recorded.
        currency: ISO 4217 code (e.g. ``GBP``) shown on every money figure, table header and
            axis (:func:`check_currency`); None: plain numbers.
            ``model_card``), shown in a section of their own; None: no such section.
        clv_total_interval: 10th / 90th percentiles of the total horizon CLV
            (:func:`clvflow.models.uncertainty.total_clv_interval`), shown with the outlook.

    Returns:
        Path of the written index.html.

    Raises:
        ValueError: invalid tables or arguments.
        FileExistsError: `output_dir` exists, is not empty and `overwrite` is False.
        clvflow.core.errors.InputError: another run created `output_dir` while this one worked.
    """
    output_dir = Path(output_dir)
    check_report_dir(output_dir, overwrite)
    with Outputs(overwrite=overwrite) as outputs:
        out = outputs.required_folder(output_dir, "report folder", check_report_dir)
        build_report(
            scores,
            outputs.staged(out),
            cac=cac,
            top_n=top_n,
            title=title,
            model_card=model_card,
            currency=currency,
            clv_total_interval=clv_total_interval,
        )
        outputs.commit()
    return output_dir / "index.html"


def build_report(
    scores: pd.DataFrame | list[pd.DataFrame],
    folder: Path,
    *,
    cac: float | pd.Series | None = None,
    top_n: int = 25,
    title: str = "clvflow report",
    model_card: dict | None = None,
    currency: str | None = None,
    clv_total_interval: tuple[float, float] | None = None,
) -> Path:
    """Create the new folder ``folder`` and write the report into it (arguments as
    :func:`write_report`, which builds it in a staging folder and moves it into place).

    Returns:
        Path of the written index.html.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    currency = check_currency(currency)
    tables = _prepare(scores)
    folder.mkdir()  # with the user's umask
    _build(tables, folder, cac, top_n, title, model_card, currency, clv_total_interval)
    _write_marker(folder)
    logger.info("built report for %d customers", len(tables[-1]))
    return folder / "index.html"


#: The list of files a report folder holds, written by clvflow into the folder itself: only a
#: folder whose every file is on it may be replaced.
REPORT_MARKER = ".clvflow-report.json"


def check_report_dir(output_dir: Path, overwrite: bool) -> None:
    """Raise FileExistsError unless ``output_dir`` is absent, empty, or (with ``overwrite``) a
    report clvflow wrote that holds nothing else (:func:`clvflow.data.files.check_owned_folder`)."""
    check_owned_folder(output_dir, overwrite, REPORT_MARKER, "a report")


def _write_marker(build: Path) -> None:
    write_folder_marker(build, REPORT_MARKER)
