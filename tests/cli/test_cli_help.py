"""What a new user sees: `clvflow --help`, the flags' help and defaults, and economics flags that
either act or are not offered."""

from __future__ import annotations

import argparse

import pandas as pd
import pytest

from clvflow.cli.main import DESCRIPTION, build_parser, main
from clvflow.mlops.bundle import build_manifest, write_bundle_files
from tests.model_fixture import small_log, small_model


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_top_level_help_describes_the_tool_not_the_module(capsys):
    """Issue 9 item 15: `clvflow --help` shows a user-facing description (it showed the cli
    module's developer docstring, "Parses flags, configures logging, ...")."""
    text = _help(capsys)
    assert " ".join(DESCRIPTION.split()) in text
    assert "Parses flags" not in text and "configures logging" not in text


@pytest.mark.parametrize("command", ["train", "backtest"])
def test_every_model_flag_has_help_and_its_default(command, capsys):
    """Issue 9 item 15: each flag of the `model` group says what it does and its default."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    group = next(g for g in sub.choices[command]._action_groups if g.title == "model")
    text = _help(capsys, command)
    for action in group._group_actions:
        flag = action.option_strings[0]
        assert action.help, flag
        shown = action.help % {"default": action.default}
        assert "default" in shown, flag
        assert " ".join(shown.split()) in text, flag
    defaults = {a.option_strings[0]: a.default for a in group._group_actions}
    assert defaults["--n-estimators"] == 400 and "(default 400)" in text
    assert defaults["--max-depth"] == 3 and "(default 3)" in text


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("help")
    model, cutoff = small_model()
    small_log().to_parquet(root / "tx.parquet")
    write_bundle_files(model, root / "bundle", build_manifest(model, cutoff=str(cutoff.date())))
    return root


def _trend(root, out, *extra) -> pd.DataFrame:
    argv = ["trend", "--model", root / "bundle", "--transactions", root / "tx.parquet"]
    argv += ["--as-of", "2023-06-01", "2023-07-01", "--output", out, *extra]
    assert main([str(a) for a in argv]) == 0
    return pd.read_csv(out)


def test_trend_cac_gives_clv_to_cac_per_date(bundle):
    """Issue 9 item 15: `trend --cac` takes effect (it was accepted and ignored): each date gets
    clv_cac_ratio = mean lifetime CLV / CAC, as the score command's segment table defines it."""
    plain = _trend(bundle, bundle / "plain.csv")
    with_cac = _trend(bundle, bundle / "cac.csv", "--cac", "30")
    assert "clv_cac_ratio" not in plain.columns
    want = with_cac["clv_lifetime_total"] / with_cac["customers"] / 30
    assert with_cac["clv_cac_ratio"].tolist() == pytest.approx(want.tolist(), rel=1e-12)
    assert with_cac.drop(columns="clv_cac_ratio").equals(plain)


def test_report_offers_no_margin_it_cannot_apply(capsys):
    """Issue 9 item 15: `report --margin` (ignored: the scores already carry CLV) is refused as
    an unknown flag instead of silently doing nothing; so is --annual-discount-rate."""
    for flag in ("--margin", "--annual-discount-rate"):
        with pytest.raises(SystemExit) as done:
            main(["report", "--scores", "s.parquet", "--output", "rep", flag, "0.5"])
        assert done.value.code == 2
        assert f"unrecognized arguments: {flag} 0.5" in capsys.readouterr().err
