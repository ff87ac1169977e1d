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
from matplotlib.ticker import FuncFormatter, PercentFormatter

from clvflow.data.files import Outputs
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


def clv_distribution_figure(clv: pd.Series, horizon_days: int) -> Figure:
    """Histogram of positive horizon CLV on log-spaced bins, with the VIP threshold marked.

    Args:
        clv: horizon CLV per customer (currency).
        horizon_days: the prediction window, for the labels.

    Returns:
        Figure; customers with CLV <= 0 (not drawable on a log axis) are counted in the title.
    """
    values = clv.to_numpy("float64")
    positive = values[values > 0]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    title = f"Predicted {horizon_days}-day CLV per customer"
    if positive.size:
        lo, hi = positive.min(), positive.max()
        bins = np.geomspace(lo, hi * 1.0001, 40) if hi > lo else np.array([lo * 0.9, lo * 1.1])
        # (matplotlib takes an array of edges; its annotation says Sequence[float])
        ax.hist(positive, bins=bins, color="#3b6ea8", edgecolor="white", linewidth=0.4)  # type: ignore[arg-type]
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.10g}"))
        vip = np.quantile(values, 0.95)
        if vip > 0:
            ax.axvline(vip, color="#c0392b", ls="--", lw=1.2, label=f"VIP threshold ({vip:,.0f})")
            ax.legend(loc="upper left", frameon=False)
    n_nonpos = int((values <= 0).sum())
    if n_nonpos:
        title += f" ({n_nonpos:,} with CLV <= 0 not shown)"
    ax.set(title=title, xlabel="Horizon CLV (log scale)", ylabel="Customers")
    ax.yaxis.set_major_formatter(_THOUSANDS)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def tier_risk_figure(scores: pd.DataFrame) -> Figure:
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
    panels = [(counts, "Customers", "Blues"), (totals.fillna(0.0), "Total horizon CLV", "Greens")]
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


def trend_figure(trend: pd.DataFrame) -> Figure:
    """Total and mean horizon CLV and mean p_churn over as_of (output of `trend_table`)."""
    fig = Figure(figsize=(11, 3.0), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [
        ("clv_total", "Total horizon CLV", _THOUSANDS),
        ("clv_mean", "Mean horizon CLV per customer", FuncFormatter(lambda v, _p: f"{v:,.2f}")),
        ("p_churn_mean", "Mean P(churn)", PercentFormatter(1.0)),
    ]
    for ax, (col, label, fmt) in zip(axes, panels, strict=True):
        ax.plot(trend.index, trend[col], marker="o", color="#3b6ea8")
        ax.set_title(label)
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
"""

_SEGMENT_NOTES = {
    "CLV": "predicted value of the horizon window: expected spend x margin, discounted",
    "lifetime CLV": "expected value over the remaining lifetime (geometric retention)",
    "P(alive)": "the model's BG/NBD probability that the customer has not left for good",
    "value at risk": "(P(alive) - P(buy in the window)) x horizon CLV if the customer buys: "
    "what retaining the customers still alive would add; CLV + value at risk = the value if all "
    "were retained, so the long gone count for almost nothing",
    "win-back target": f"P(alive) < {WINBACK_P_ALIVE:.0%}: ranked by spend to date "
    "(winback_priority), after everyone else in retention_priority",
    "value tier": "by horizon CLV: VIP top 5%, high next 15%, medium next 30%, low the rest "
    "and every customer without net spend to date",
    "churn risk": "P(churn) in the window: low < 50%, medium 50-80%, high >= 80%",
    "segment": "RFM quintiles of recency, purchase days and net spend to date plus churn risk "
    "(rules in clvflow.scoring.segments); new = first purchase < 90 days ago",
}


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


def _segment_section(scores: pd.DataFrame, cac: float | pd.Series | None) -> str:
    table = clv_cac_by_segment(scores, cac, by="segment")
    table["share"] = table["customers"] / len(scores)
    table["value_at_risk_total"] = scores.groupby("segment")["value_at_risk"].sum()
    table = table.reset_index()
    columns: list[tuple[str, str, Formatter | None]] = [
        ("segment", "Segment", None),
        ("customers", "Customers", _money),
        ("share", "Share", _pct),
        ("clv_total", "Total CLV", _money),
        ("clv_mean", "Mean CLV", _money2),
        ("clv_lifetime_total", "Total lifetime CLV", _money),
        ("clv_lifetime_mean", "Mean lifetime CLV", _money2),
        ("churn_rate", "Churn rate", _pct),
        ("value_at_risk_total", "Value at risk", _money),
    ]
    if cac is not None:
        columns += [("cac_mean", "Mean CAC", _money2), ("clv_cac_ratio", "CLV:CAC", _ratio)]
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


def _priority_section(scores: pd.DataFrame, top_n: int) -> str:
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
        ("clv", "CLV", _money2),
        ("clv_lifetime", "Lifetime CLV", _money2),
        ("value_at_risk", "Value at risk", _money2),
        ("recency_days", "Days since last", _money),
        ("purchase_days", "Purchase days", _money),
        ("historical_clv", "Spend to date", _money2),
    ]
    return (
        f"<section><h2>Top {len(top):,} retention priorities</h2>"
        '<p class="sub">Customers still alive (P(alive) >= '
        f"{WINBACK_P_ALIVE:.0%}) ranked by value at risk: (P(alive) - P(buy)) x horizon CLV if "
        "they buy, the value retention can still save.</p>"
        + _table_html("priorities", columns, top)
        + "</section>"
    )


def _winback_section(scores: pd.DataFrame, top_n: int) -> str:
    gone = scores[scores["winback_priority"] > 0].sort_values("winback_priority")
    columns: list[tuple[str, str, Formatter | None]] = [
        ("winback_priority", "#", _money),
        ("customer_id", "Customer", None),
        ("segment", "Segment", None),
        ("p_alive", "P(alive)", _pct),
        ("historical_clv", "Spend to date", _money2),
        ("recency_days", "Days since last", _money),
        ("purchase_days", "Purchase days", _money),
    ]
    return (
        f"<section><h2>Top {min(len(gone), top_n):,} win-back targets</h2>"
        f'<p class="sub">{len(gone):,} customers most likely gone for good (P(alive) < '
        f"{WINBACK_P_ALIVE:.0%}), ranked by spend to date: a win-back campaign, not retention."
        "</p>" + _table_html("winback", columns, gone.head(top_n)) + "</section>"
    )


def _cards(numbers: dict[str, float], horizon_days: int) -> str:
    n = max(numbers["customers"], 1.0)
    cards = [
        ("customers", "Customers", _money, "known before as_of", ""),
        (
            "clv_total",
            f"Horizon CLV ({horizon_days} days)",
            _money,
            f"{numbers['clv_total'] / n:,.2f} per customer",
            "",
        ),
        (
            "clv_lifetime_total",
            "Lifetime CLV",
            _money,
            f"{numbers['clv_lifetime_total'] / n:,.2f} per customer",
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
            _money,
            "customers still alive who will not buy: CLV + value at risk = value if all retained",
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


def _model_section(card: dict) -> str:
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
                c.replace("_", " "),
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


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _html_page(title: str, subtitle: str, parts: Sequence[str]) -> str:
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
        "<footer>Money in the currency of the input amounts; CLV is margin-based and "
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


def _figures(tables: list[pd.DataFrame]) -> dict[str, tuple[Figure, str]]:
    current = tables[-1]
    horizon_days = int(current["horizon_days"].iloc[0])
    figures = {
        "clv_distribution": (
            clv_distribution_figure(current["clv"], horizon_days),
            "Histogram of predicted horizon CLV",
        ),
        "tier_risk": (tier_risk_figure(current), "Value tier by churn risk heatmaps"),
    }
    if len(tables) > 1:
        figures["trend"] = (trend_figure(trend_table(tables)), "CLV and churn over as_of")
    return figures


def _build(
    tables: list[pd.DataFrame],
    out: Path,
    cac: float | pd.Series | None,
    top_n: int,
    title: str,
    model_card: dict | None = None,
) -> None:
    """Write the figures and index.html of the report into the directory `out`."""
    current = tables[-1]
    horizon_days = int(current["horizon_days"].iloc[0])
    images: dict[str, str] = {}
    for name, (fig, alt) in _figures(tables).items():
        path = out / f"{name}.png"
        fig.savefig(path, dpi=FIGURE_DPI)
        images[name] = _img(path.read_bytes(), alt)
    numbers = headline(current)
    as_of = pd.Timestamp(current["as_of"].iloc[0]).date().isoformat()
    subtitle = f"Scores as of {as_of} · horizon {horizon_days} days · {len(current):,} customers"
    if len(tables) > 1:
        subtitle += f" · {len(tables)} scoring dates"
    parts = [
        _cards(numbers, horizon_days),
        '<div class="row">'
        f"<section><h2>CLV distribution</h2>{images['clv_distribution']}</section>"
        f"<section><h2>Value tier x churn risk</h2>{images['tier_risk']}</section></div>",
    ]
    if "trend" in images:
        parts.append(f"<section><h2>Trend over scoring dates</h2>{images['trend']}</section>")
    parts += [
        _segment_section(current, cac),
        _priority_section(current, top_n),
        _winback_section(current, top_n),
    ]
    if model_card:
        parts.append(_model_section(model_card))
    (out / "index.html").write_text(_html_page(title, subtitle, parts), encoding="utf-8")


def write_report(
    scores: pd.DataFrame | list[pd.DataFrame],
    output_dir: str | os.PathLike[str],
    *,
    cac: float | pd.Series | None = None,
    top_n: int = 25,
    title: str = "clvflow report",
    overwrite: bool = False,
    model_card: dict | None = None,
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
            ``model_card``), shown in a section of their own; None: no such section.

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
            scores, outputs.staged(out), cac=cac, top_n=top_n, title=title, model_card=model_card
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
) -> Path:
    """Create the new folder ``folder`` and write the report into it (arguments as
    :func:`write_report`, which builds it in a staging folder and moves it into place).

    Returns:
        Path of the written index.html.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    tables = _prepare(scores)
    folder.mkdir()  # with the user's umask
    _build(tables, folder, cac, top_n, title, model_card)
    _write_marker(folder)
    logger.info("built report for %d customers", len(tables[-1]))
    return folder / "index.html"


#: The list of files a report folder holds, written by clvflow into the folder itself: only a
#: folder whose every file is on it may be replaced.
REPORT_MARKER = ".clvflow-report.json"


def check_report_dir(output_dir: Path, overwrite: bool) -> None:
    """Raise FileExistsError unless ``output_dir`` is absent, empty, or (with ``overwrite``) a
    report clvflow wrote that holds nothing else: ``--overwrite`` never deletes a file clvflow
    did not write there (an input, the scores, notes)."""
    if not output_dir.exists():
        return
    if not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a directory")
    present = {p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*")}
    if not present:
        return
    if not overwrite:
        raise FileExistsError(
            f"{output_dir} is not empty; pass overwrite=True (--overwrite) to replace a report "
            "clvflow wrote there"
        )
    try:
        ours = set(json.loads((output_dir / REPORT_MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        ours = set()
    foreign = sorted(present - ours - {REPORT_MARKER})
    if foreign or REPORT_MARKER not in present:
        shown = ", ".join(foreign[:5]) or "(no clvflow report marker)"
        raise FileExistsError(
            f"{output_dir} holds files clvflow did not write ({shown}); refusing to replace "
            "it even with overwrite: choose another folder or move them"
        )


def _write_marker(build: Path) -> None:
    files = sorted(p.relative_to(build).as_posix() for p in build.rglob("*"))
    (build / REPORT_MARKER).write_text(json.dumps({"files": files}, indent=1) + "\n")
