"""Tests for clvflow.scoring.report: numbers traceable to the scores, self-contained, atomic, renders."""

from __future__ import annotations

import os
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

import clvflow.scoring.report as report
from clvflow.scoring.report import HEADLINE_METRICS, write_report
from clvflow.scoring.segments import add_segments
from tests.scores_fixture import synthetic_scores

AS_OFS = ("2023-07-01", "2023-10-01", "2024-01-01")
ECONOMICS = {"horizon_days": 90, "margin": 0.3, "annual_discount_rate": 0.1}
CHROMIUM = "/usr/bin/chromium"
WINDOW = (1280, 2000)


class ReportParser(HTMLParser):
    """Collects headline cards (data-metric, data-value, shown text) and table cells by id."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, str]] = {}
        self.tables: dict[str, dict[str, list[list[str]]]] = {}
        self.images: list[str] = []
        self.tags: set[str] = set()
        self._card: str | None = None
        self._in_value = False
        self._table: str | None = None
        self._part = "tbody"
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if "data-metric" in a:
            self._card = str(a["data-metric"])
            self.cards[self._card] = {"data-value": str(a["data-value"])}
        elif self._card and a.get("class") == "value":
            self._in_value = True
        elif tag == "table":
            self._table = str(a["id"])
            self.tables[self._table] = {"thead": [], "tbody": [], "tfoot": []}
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = tag
        elif tag == "tr" and self._table:
            self.tables[self._table][self._part].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(str(a["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._in_value:
            self._in_value = False
            self._card = None
        elif tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][self._part][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._in_value and self._card:
            self.cards[self._card]["text"] = self.cards[self._card].get("text", "") + data
        if self._cell is not None:
            self._cell.append(data)


def parse(index: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def _number(text: str) -> float:
    return float(text.replace(",", "").rstrip("%"))


@pytest.fixture(scope="module")
def tables() -> list[pd.DataFrame]:
    return [synthetic_scores(3000, seed=i, as_of=d, **ECONOMICS) for i, d in enumerate(AS_OFS)]


@pytest.fixture(scope="module")
def single_report(tables, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "report"
    return write_report(tables[-1], out, cac=12.5, top_n=10)


@pytest.fixture(scope="module")
def trend_report(tables, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trend") / "report"
    return write_report(list(reversed(tables)), out, title="Quarterly CLV")  # any order


def test_headline_numbers_match_the_scores(single_report: Path, tables) -> None:
    scores = add_segments(tables[-1])
    expected = {
        "customers": len(scores),
        "clv_total": scores["clv"].sum(),
        "clv_lifetime_total": scores["clv_lifetime"].sum(),
        "expected_active": scores["p_active"].sum(),
        "value_at_risk_total": scores["value_at_risk"].sum(),
    }
    cards = parse(single_report).cards
    assert list(cards) == list(HEADLINE_METRICS)
    for key, value in expected.items():
        assert float(cards[key]["data-value"]) == pytest.approx(value, rel=1e-12)
        assert cards[key]["text"] == f"{value:,.0f}"  # thousands separators
    assert "," in cards["clv_total"]["text"]


def test_segment_and_priority_tables_match_the_scores(single_report: Path, tables) -> None:
    scores = add_segments(tables[-1])
    parsed = parse(single_report).tables
    header = parsed["segments"]["thead"][0]
    assert header[-2:] == ["Mean CAC", "CLV:CAC"]
    rows = {r[0]: r for r in parsed["segments"]["tbody"]}
    counts = scores["segment"].value_counts()
    assert {k: _number(r[1]) for k, r in rows.items()} == counts.to_dict()
    total = parsed["segments"]["tfoot"][0]
    assert total[0] == "All customers" and _number(total[1]) == len(scores)
    assert total[header.index("Total CLV")] == f"{scores['clv'].sum():,.0f}"
    assert total[header.index("Value at risk")] == f"{scores['value_at_risk'].sum():,.0f}"
    ratio = scores["clv_lifetime"].mean() / 12.5
    assert total[header.index("CLV:CAC")] == f"{ratio:,.2f}"
    top = scores.sort_values("retention_priority").head(10)
    shown = parsed["priorities"]["tbody"]
    assert [r[1] for r in shown] == top["customer_id"].tolist()
    assert [r[0] for r in shown] == [str(i) for i in range(1, 11)]


def test_winback_targets_listed_apart_from_retention(single_report: Path, tables) -> None:
    """Issue 10 item 2: the retention table lists only customers with P(alive) >= 5%; the
    win-back table lists the others by winback_priority; the value-at-risk card says what it is."""
    scores = add_segments(tables[-1])
    parsed = parse(single_report)
    gone = scores[scores["p_alive"] < 0.05].sort_values("winback_priority")
    assert len(gone) > 0  # the fixture has win-back targets, so the split is exercised
    shown = parsed.tables["priorities"]["tbody"]
    assert not set(r[1] for r in shown) & set(gone["customer_id"])
    winback = parsed.tables["winback"]["tbody"]
    assert [r[1] for r in winback] == gone["customer_id"].head(10).tolist()
    assert [r[0] for r in winback] == [str(i) for i in range(1, min(len(gone), 10) + 1)]
    note = "customers still alive who will not buy: CLV + value at risk = value if all retained"
    assert f'<div class="note">{note}</div>' in single_report.read_text(encoding="utf-8")


def test_self_contained_and_pngs_kept(single_report: Path) -> None:
    text = single_report.read_text(encoding="utf-8")
    parsed = parse(single_report)
    assert "script" not in parsed.tags and "link" not in parsed.tags
    assert "http://" not in text and "https://" not in text and "url(" not in text
    assert len(parsed.images) == 2
    assert all(src.startswith("data:image/png;base64,") for src in parsed.images)
    files = sorted(p.name for p in single_report.parent.iterdir())
    assert files == [".clvflow-report.json", "clv_distribution.png", "index.html", "tier_risk.png"]
    assert "Mean CAC" in text


def test_trend_from_several_tables(trend_report: Path, tables) -> None:
    assert (trend_report.parent / "trend.png").stat().st_size > 1000
    parsed = parse(trend_report)
    assert len(parsed.images) == 3
    assert float(parsed.cards["clv_total"]["data-value"]) == pytest.approx(tables[-1]["clv"].sum())
    text = trend_report.read_text(encoding="utf-8")
    assert "<title>Quarterly CLV</title>" in text
    assert "Scores as of 2024-01-01 · horizon 90 days · 3,000 customers · 3 scoring dates" in text
    assert "Mean CAC" not in text  # no CAC given
    trend = report.trend_table(tables)
    assert trend.index.tolist() == [pd.Timestamp(d) for d in AS_OFS]
    assert trend["clv_total"].tolist() == pytest.approx([t["clv"].sum() for t in tables])


def test_refuses_non_empty_dir_and_overwrites(tables, tmp_path: Path) -> None:
    small = tables[0].head(200)
    out = tmp_path / "r"
    out.mkdir()
    write_report(small, out)  # an empty directory is fine
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        write_report(small, out)
    write_report(small, out, overwrite=True, title="second")  # its own report: replaced
    assert "<title>second</title>" in (out / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temp dirs left behind
    (out / "notes.txt").write_text("keep me")  # a file clvflow did not write: never deleted
    with pytest.raises(FileExistsError, match=r"files clvflow did not write \(notes.txt\)"):
        write_report(small, out, overwrite=True, title="third")
    assert (out / "notes.txt").read_text() == "keep me"
    assert "<title>second</title>" in (out / "index.html").read_text(encoding="utf-8")


def test_overwrite_never_empties_a_folder_clvflow_did_not_write(tables, tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "transactions.csv").write_text("customer_id,timestamp,amount\n")
    with pytest.raises(FileExistsError, match="no clvflow report marker|did not write"):
        write_report(tables[0].head(50), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["transactions.csv"]


def test_interrupted_run_leaves_no_partial_report(tables, tmp_path: Path, monkeypatch) -> None:
    small = tables[0].head(200)
    out = tmp_path / "r"

    def boom(*_args, **_kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(report, "tier_risk_figure", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_report(small, out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_report(small, out, title="old")
    monkeypatch.setattr(report, "tier_risk_figure", boom)
    with pytest.raises(RuntimeError):
        write_report(small, out, overwrite=True, title="new")
    assert "<title>old</title>" in (out / "index.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_bad_input(tables, tmp_path: Path) -> None:
    small = tables[0].head(50)
    with pytest.raises(ValueError, match="share an as_of"):
        write_report([small, small], tmp_path / "a")
    mixed = pd.concat([small, tables[1].head(50).assign(customer_id="x")])
    with pytest.raises(ValueError, match="mixes as_of dates"):
        write_report(mixed, tmp_path / "b")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['p_active'\]"):
        write_report(small.drop(columns="p_active"), tmp_path / "c")
    with pytest.raises(ValueError, match="top_n must be >= 1"):
        write_report(small, tmp_path / "d", top_n=0)
    with pytest.raises(ValueError, match="empty list"):
        write_report([], tmp_path / "e")
    assert list(tmp_path.iterdir()) == []


# --- headless Chromium ------------------------------------------------------------------------


def _require_chromium(path: str = CHROMIUM) -> None:
    """Fail (skip only with CLVFLOW_SKIP_BROWSER=1) when the browser is not installed."""
    if Path(path).exists():
        return
    if os.environ.get("CLVFLOW_SKIP_BROWSER") == "1":
        pytest.skip("CLVFLOW_SKIP_BROWSER=1: browser rendering check skipped")
    pytest.fail(
        f"{path} not found: run `make test` (installs chromium) or apt-get install chromium "
        "(or set CLVFLOW_SKIP_BROWSER=1 to skip this check)"
    )


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_renders_in_headless_chromium(trend_report: Path, tables, tmp_path: Path) -> None:
    _require_chromium()
    url = trend_report.resolve().as_uri()
    shot = tmp_path / "shot.png"
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    run = _chromium(f"--screenshot={shot}", size, url, profile=tmp_path / "profile")
    assert shot.exists(), f"chromium wrote no screenshot: {run.stderr[-2000:]}"
    pixels = imread(shot)
    assert pixels.shape[:2] == (WINDOW[1], WINDOW[0])
    rgb = np.round(pixels[..., :3] * 255).astype("uint32")  # PNG as float 0-1
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert len(colours) > 500, f"screenshot looks blank ({len(colours)} colours)"
    dom = _chromium("--dump-dom", url, profile=tmp_path / "profile").stdout
    assert "Quarterly CLV" in dom
    latest = tables[-1]
    for value in (len(latest), latest["clv"].sum(), latest["clv_lifetime"].sum()):
        assert f">{value:,.0f}<" in dom


def test_missing_browser_fails_unless_skipped(monkeypatch) -> None:
    monkeypatch.delenv("CLVFLOW_SKIP_BROWSER", raising=False)
    with pytest.raises(pytest.fail.Exception, match="run `make test` .* apt-get install chromium"):
        _require_chromium("/nonexistent/chromium")
    monkeypatch.setenv("CLVFLOW_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception):
        _require_chromium("/nonexistent/chromium")
