"""The strategy card: every built-in has a phrase, rules and definitions read as written, params,
exits, warm-up and trading activity come from the program and its metrics."""

from __future__ import annotations

import re

import pytest

from autostrat.sim.backtest import load_strategy
from autostrat.report.card import PHRASES, card, card_text
from autostrat.lang.registry import BUILTINS
from autostrat.resources import example_path


def test_every_builtin_has_a_phrase_with_its_own_arguments():
    assert set(PHRASES) == set(BUILTINS)
    for name, phrase in PHRASES.items():
        assert set(re.findall(r"\{(\w+)\}", phrase)) == set(BUILTINS[name].params), name


def test_sma_cross_card():
    typed = load_strategy(example_path("sma_cross"))
    c = card(typed)
    assert c.name == "sma 20/50 crossover" and c.direction.startswith("long only")
    assert c.hypothesis.startswith("a fast average above a slow one")
    assert c.rules == [("Enter long when", "f is above s"), ("Exit long when", "f is below s")]
    assert c.definitions == [("f", "the 20-bar simple moving average of the close"),
                             ("s", "the 50-bar simple moving average of the close")]
    assert c.parameters == [("fast", "20", "5..100", "f"), ("slow", "50", "20..250", "s")]
    assert c.warmup.startswith(f"{typed.warmup} bars")
    assert c.activity == []


def test_exits_params_and_formulas():
    typed = load_strategy(example_path("keltner_params"))
    c = card(typed)
    assert "Stop loss: exit when the price falls 6% below the entry price." in c.exits
    assert "Time exit: close the position 20 bars after the entry." in c.exits
    assert ("stop", "6%", "2%..15%", "stop_loss") in c.parameters
    assert ("n", "20", "10..50", "upper, the sell rule") in c.parameters
    assert dict(c.definitions)["upper"] == "the upper Keltner channel (20 bars, 2 ATRs)"
    rules = dict(c.rules)
    assert rules["Enter long when"] == "the close is above upper and loud and the 14-bar stochastic %K is above 80"
    donchian = card(load_strategy(example_path("donchian_atr")))
    defs = dict(donchian.definitions)
    assert defs["trail"] == "`highest(close, exit_n) - atr_mult * atr(14)`"  # arithmetic stays a formula
    assert defs["breakout"] == ("the close is above the highest value of the high over the last 55 bars, "
                                "as of 1 bar ago")
    short = card(load_strategy(example_path("long_short")))
    assert short.direction == "long and short" and [label for label, _ in short.rules] == [
        "Enter long when", "Exit long when", "Enter short when", "Exit short when"]
    assert dict(short.rules)["Exit short when"] == "f is above s or strength is below 15"
    text = """strategy "x"
buy when (close > open or close > high[1]) and not (volume < 5)
sell when true
trailing_stop 12%
"""
    logic = card(load_strategy(text))
    assert dict(logic.rules)["Enter long when"] == ("(the close is above the open or the close is above the high, "
                                                   "as of 1 bar ago) and not (the volume is below 5)")
    assert dict(logic.rules)["Exit long when"] == "always"
    assert logic.exits[0].startswith("Trailing stop: exit when the price falls 12% below the highest high")


def test_trades_per_year_from_the_metrics():
    typed = load_strategy(example_path("sma_cross"))
    metrics = {"train": {"num_trades": 30, "exposure": 0.5}, "validation": {"num_trades": 6, "exposure": 0.25}}
    c = card(typed, metrics, {"train": 1260, "validation": 504})
    assert c.activity[0] == "5.1 trades a year over 7.0 years"  # 36 trades / (1764 / 252) years
    assert c.activity[1] == "train: 30 trades, 6.0 a year, in the market 50% of the days"
    assert c.activity[2] == "validation: 6 trades, 3.0 a year, in the market 25% of the days"
    text = card_text(c)
    assert "Rules (checked at each close):" in text and "Activity:" in text and "fast = 20 (range 5..100)" in text
    assert 36 / (1764 / 252) == pytest.approx(5.142857, rel=1e-6)


def test_a_universe_counts_trades_per_market_year():
    typed = load_strategy(example_path("sma_cross"))
    by_market = {"A": {"train": {"num_trades": 10, "exposure": 0.5}, "validation": {"num_trades": 4, "exposure": 0.2}},
                 "B": {"train": {"num_trades": 20, "exposure": 0.3}, "validation": {"num_trades": 2, "exposure": 0.4}}}
    mean = {"train": {"num_trades": 15, "exposure": 0.4}, "validation": {"num_trades": 3, "exposure": 0.3}}
    # bars summed over the two markets: 2 x 1260 train, 2 x 504 validation
    c = card(typed, mean, {"train": 2520, "validation": 1008}, by_market)
    # 36 trades over (2520 + 1008) / 252 = 14 market-years
    assert c.activity[0] == "2.6 trades a year per market over 14.0 market-years (2 markets)"
    assert c.activity[1] == ("train: 30 trades over 2 markets, 3.0 a year per market, in the market 40% of the days "
                             "(mean over the markets)")
    assert c.activity[2].startswith("validation: 6 trades over 2 markets, 1.5 a year per market")
    assert not any(" years" in line and "market-years" not in line for line in c.activity)
