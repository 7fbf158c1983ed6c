"""Robustness checks: which numbers are jittered and by how much, the grid, doubled costs and both fills,
each against an independent evaluation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from autostrat.lang import nodes as N
from autostrat.sim.backtest import backtest, load_strategy
from autostrat.sim.bulk import sweep
from autostrat.lang.fmt import fmt
from autostrat.sim.evaluator import Evaluator
from autostrat.sim.objective import Objective
from autostrat.lang.parse import parse
from autostrat.resources import example_path
from autostrat.honest.robustness import MAX_POINTS, grid, jitter, knobs, robustness

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import small_settings  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures

TEXT = """strategy "knobs"
param fast = 10 in 5..50
param level = 2.5
f = sma(close, fast)
buy when f > sma(close, 30) and rsi(close, 14) < 70 and close > bb_lower(close, 20, 2)
sell when f < sma(close, 30) or close[5] > 0
stop_loss 8%
max_hold 10
"""


def test_knobs_are_params_windows_constants_thresholds_and_exits():
    ks = knobs(parse(TEXT))
    assert [(k.kind, k.value, k.integer) for k in ks] == [
        ("param", 10.0, True), ("param", 2.5, False),
        ("window", 30.0, True), ("window", 14.0, True), ("threshold", 70.0, False),
        ("window", 20.0, True), ("constant", 2.0, False),
        ("window", 30.0, True),  # `close[5] > 0`: a zero threshold and a lag are not moved
        ("exit", 0.08, False), ("exit", 10.0, True)]
    assert [k.text for k in ks][-2:] == ["8%", "10"] and ks[4].label == "threshold 70 against rsi(close, 14)"


def test_jitter_scales_each_number_by_its_factor():
    program = parse(TEXT)
    up = jitter(program, [1.2] * 10)
    text = fmt(up)
    assert "param fast = 12 in 5..50" in text and "param level = 3" in text
    assert "sma(close, 36)" in text and "rsi(close, 17)" in text and "< 84" in text  # 14 * 1.2 = 16.8 -> 17
    assert "bb_lower(close, 24, 2.4)" in text and "close[5] > 0" in text
    assert "stop_loss 9.6%" in text and "max_hold 12" in text
    down = fmt(jitter(program, [0.8] + [1.0] * 9))
    assert "param fast = 8 in 5..50" in down and "sma(close, 30)" in down
    one = parse('buy when sma(close, 1) > 0.5\nsell when false\n')
    assert "sma(close, 1) > 0.4" in fmt(jitter(one, [0.8, 0.8]))  # a window of 1 stays 1
    wide = fmt(jitter(parse("param n = 48 in 5..50\nbuy when sma(close, n) > 1\nsell when false\n"), [1.2, 1]))
    assert "param n = 58 in 5..58" in wide  # the range widens to hold the jittered value
    assert isinstance(up.statements[0], N.StrategyName)


def test_grid_full_for_few_numbers_and_bounded_for_many():
    g = grid(2)
    assert g[0] == (1.0, 1.0) and len(g) == 9 and len(set(g)) == 9
    assert set(g) == {(a, b) for a in (0.8, 1.0, 1.2) for b in (0.8, 1.0, 1.2)}
    assert len(grid(4)) == 81
    big = grid(10)
    assert len(big) == MAX_POINTS and len(set(big)) == MAX_POINTS and big[0] == (1.0,) * 10
    ones = {p for p in big if sum(f != 1.0 for f in p) == 1}
    assert len(ones) == 20  # every number alone, up and down
    assert (0.8,) * 10 in big and (1.2,) * 10 in big
    assert grid(10) == big  # seeded: the same grid every time
    assert len(grid(50, max_points=81)) == 103  # at least each number alone, up and down, and all together


def test_robustness_against_independent_evaluations(warm):
    settings = small_settings(objective="validation.sharpe")
    text = example_path("sma_cross").read_text()
    rob = robustness(text, warm, settings)
    jittered, costs, next_open, close = rob["rows"]
    # the jitter grid of sma_cross is fast x slow in {0.8, 1, 1.2}: a sweep evaluates the same points
    ref = sweep(text, {"fast": [16, 20, 24], "slow": [40, 50, 60]}, warm, settings)
    sharpe = np.sort(ref["validation.sharpe"].to_numpy())
    assert jittered["n"] == 9 == rob["points"]
    assert jittered["objective"] == pytest.approx([sharpe[0], np.median(sharpe), sharpe[-1]], rel=1e-12)
    returns = ref["validation.total_return"].to_numpy()
    assert jittered["validation_return"] == pytest.approx([returns.min(), np.median(returns), returns.max()])
    assert jittered["beats_buy_hold"] == pytest.approx(np.mean(ref["validation.excess_return"] > 0))
    doubled = backtest(text, warm, settings, commission_bps=2.0, slippage_bps=2.0).metrics["validation"]
    assert costs["objective"] == [pytest.approx(doubled["sharpe"])] * 3 and costs["detail"].startswith("2 + 2 bps")
    for row, fill in ((next_open, "next_open"), (close, "close")):
        want = backtest(text, warm, settings, fill=fill).metrics["validation"]
        assert row["validation_return"][1] == pytest.approx(want["total_return"], rel=1e-12)
    base = backtest(text, warm, settings).metrics["validation"]
    assert rob["found"]["objective"] == pytest.approx(base["sharpe"])
    assert next_open["objective"][0] != close["objective"][0]  # the fill matters, a little


def test_robustness_uses_the_walk_forward_objective_and_skips_refused_variants(warm):
    settings = small_settings(folds=2, objective="validation.total_return")
    objective = Objective.from_settings(settings.search)
    text = example_path("sma_cross").read_text()
    rob = robustness(text, warm, settings, objective)
    want = objective.value(Evaluator(warm, settings)(load_strategy(text)).metrics)
    assert rob["found"]["objective"] == pytest.approx(want) and not np.isnan(want)
    long = "param n = 2100 in 5..2520\nbuy when close > sma(close, n)\nsell when close < sma(close, n)\n"
    assert robustness(long, warm, settings)["points"] == 3  # 2100 x 1.2 = 2520: the longest lookback allowed
    assert robustness(long.replace("2100", "2200"), warm, settings)["points"] == 2  # 2640 is refused, skipped
