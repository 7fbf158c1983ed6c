"""Null runs: the same search and budget on a market with the data's volatility, linked from the real run
and shown in its report."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from autostrat.search.nullrun import daily_volatility, null_market, rebuild_market
from autostrat.search.runs import RunFolder, read_results_tsv

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import evolve  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures


def test_null_market_matches_the_volatility_but_not_the_prices(market):
    null = null_market(market, 3)
    assert daily_volatility(null) == pytest.approx(daily_volatility(market), rel=1e-9)
    r, q = np.diff(np.log(market.close)), np.diff(np.log(null.close))
    assert q.mean() == pytest.approx(r.mean(), rel=1e-9)
    assert (null.dates == market.dates).all() and abs(np.corrcoef(r, q)[0, 1]) < 0.1
    assert null.sha256 != market.sha256 and null_market(market, 3).sha256 == null.sha256
    assert null_market(market, 4).sha256 != null.sha256
    assert rebuild_market({}, market) is market


def test_null_run_same_budget_matched_and_linked(clean_env, warm, capsys):
    args = ["--run", "n", "--iterations", "7", "--max-fails", "7", "--seed", "2"]
    assert evolve(clean_env, *args, "--null") == 0
    out = capsys.readouterr().out
    real, null = clean_env / "runs" / "n", clean_env / "runs" / "n-null"
    real_cfg, null_cfg = (json.loads((p / "config.json").read_text()) for p in (real, null))
    assert real_cfg["null_run"] == "n-null" and null_cfg["null_of"]["run"] == "n"
    assert null_cfg["settings"]["search"] == real_cfg["settings"]["search"]  # same search, same budget
    assert null_cfg["settings"]["backtest"] == real_cfg["settings"]["backtest"]
    assert null_cfg["baseline"] == real_cfg["baseline"]
    assert null_cfg["data"]["sha256"] != real_cfg["data"]["sha256"]
    assert null_cfg["null_of"]["data_sha256"] == real_cfg["data"]["sha256"]
    assert null_cfg["null_of"]["null_daily_vol"] == pytest.approx(daily_volatility(warm), rel=1e-9)
    assert null_cfg["null_of"]["daily_vol"] == pytest.approx(daily_volatility(warm), rel=1e-12)
    assert len(read_results_tsv(real / "results.tsv")) == len(read_results_tsv(null / "results.tsv")) == 7
    assert len(re.findall(r"^null iter \d+ status=", out, re.M)) == 7
    null_best = max(r["objective"] for r in RunFolder.open(null).load_records() if r["status"] == "keep")
    assert f"null_best_objective: {null_best:.4f}" in out
    html = (real / "report.html").read_text()
    assert "Null run: the same search on noise" in html and "n-null" in html
    report = json.loads((real / "report.json").read_text())
    assert report["null"]["best_objective"] == pytest.approx(null_best)
    assert report["null"]["trials"] == sum(r["status"] in ("keep", "discard")
                                           for r in RunFolder.open(null).load_records())
    # resuming with a larger budget extends both runs; the null run can also be resumed on its own
    assert evolve(clean_env, "--run", "n", "--iterations", "8", "--null", "--no-report") == 0
    assert len(read_results_tsv(null / "results.tsv")) == 8
    assert json.loads((null / "config.json").read_text())["settings"]["search"]["iterations"] == 8
    assert evolve(clean_env, "--run", "n-null", "--iterations", "9", "--no-report") == 0
    assert len(read_results_tsv(null / "results.tsv")) == 9
    capsys.readouterr()


def test_a_run_without_a_null_run_says_how_to_make_one(clean_env, warm):
    assert evolve(clean_env, "--run", "plain", "--iterations", "3") == 0
    html = (clean_env / "runs" / "plain" / "report.html").read_text()
    assert "No null run" in html and "autostrat evolve --run plain --null" in html
    assert not (clean_env / "runs" / "plain-null").exists()
