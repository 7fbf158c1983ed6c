"""The portfolio statements: parse, check, format, hash; cross-sectional built-ins only in portfolios."""

from __future__ import annotations

import pytest

from autostrat.errors import StrategyError
from autostrat.lang.check import load as load_checked

from autostrat.lang.fmt import canonical_hash, fmt
from autostrat.lang.parse import parse
from autostrat.lang.portfolio import PortfolioSpec, Side
from autostrat.lang.registry import BUILTINS
from autostrat.resources import examples_dir


def load(text: str):
    """Parse and check where portfolio strategies are allowed."""
    return load_checked(text, portfolio=True)


PORTFOLIO = """\
# hypothesis: winners keep winning
strategy "momentum"

param lookback = 120 in 20..250
param every = 21 in 5..63
score = rank(roc(close, lookback)[21]) - rank(stdev(close, 63))
hold long top 10% by score
hold short bottom 20% by score  # the losers
rebalance every every bars
weight by score capped at 15%
"""


def test_parse_check_and_format_round_trip():
    program = parse(PORTFOLIO)
    assert program.is_portfolio
    assert fmt(program) == PORTFOLIO
    assert parse(fmt(program)) == program
    typed = load(PORTFOLIO)
    assert typed.portfolio == PortfolioSpec(Side("top", 0.1, "score"), Side("bottom", 0.2, "score"), 21, "score", 0.15)
    assert typed.rules == {} and typed.warmup == 141  # roc 120 + lag 21; stdev 62


def test_the_example_checks_and_is_formatted():
    for path in sorted((examples_dir() / "portfolio").glob("*.strat")):
        text = path.read_text()
        assert fmt(parse(text)) == text
        assert load(text).portfolio is not None


def test_canonical_hash_sees_the_portfolio_statements():
    base = canonical_hash(parse(PORTFOLIO))
    assert canonical_hash(parse(PORTFOLIO.replace("# the losers", ""))) == base
    for old, new in (("top 10%", "top 20%"), ("every every", "every 5"), ("capped at 15%", ""),
                     ("weight by score", "weight equal"), ("long top", "long bottom")):
        assert canonical_hash(parse(PORTFOLIO.replace(old, new))) != base, (old, new)
    equal = "s = close\nhold long top 10% by s\nrebalance every 5 bars\n"
    assert canonical_hash(parse(equal)) == canonical_hash(parse(equal + "weight equal\n"))


def test_words_inside_the_statements_stay_free_as_names():
    typed = load("top = roc(close, 5)\nat = top * 2\nhold long top 10% by at\nrebalance every 5 bars\n")
    assert typed.portfolio.long == Side("top", 0.1, "at")


@pytest.mark.parametrize("text, message", [
    ("hold long middle 10% by close\nrebalance every 5 bars", "unexpected 'middle' (expected 'top' or 'bottom')"),
    ("hold long top 10% with close\nrebalance every 5 bars", "unexpected 'with' (expected 'by')"),
    ("hold long top 10% by close\nrebalance each 5 bars", "unexpected 'each' (expected 'every')"),
    ("hold long top 10% by close\nrebalance every 5 days", "unexpected 'days' (expected 'bars')"),
    ("hold long top 10% by close\nrebalance every 5 bars\nweight equal capped 5%", "the statement ends too early"),
    ("hold long top 10% by close\nrebalance every 5 bars\nweight equal capped at 5% 6%", "unexpected '6%'"),
    ("hold long top 10% by close\nrebalance every 5 bars\nweight by s capped on 5%", "unexpected 'on' (expected 'at')"),
    ("hold long top 10%\nrebalance every 5 bars", "the statement ends too early"),
    ("hld long top 10% by close", "unknown statement starting with 'hld'"),
    ("hold long top 10% by close\nrebalance every 5 bars\nweight heavy", "unexpected 'heavy' (expected 'equal' or 'by')"),
])
def test_parse_errors(text, message):
    with pytest.raises(StrategyError) as exc:
        parse(text)
    assert message in str(exc.value)


@pytest.mark.parametrize("text, message", [
    ("hold long top 10% by close", "missing `rebalance every N bars`"),
    ("rebalance every 5 bars", "missing `hold` statement"),
    ("hold long top 60% by close\nhold short bottom 10% by close\nrebalance every 5 bars",
     "hold long top 60% is out of range (more than 0, at most 50% with a long and a short side)"),
    ("hold long top 10% by close\nhold long top 20% by close\nrebalance every 5 bars", "second `hold long`"),
    ("hold long top 10% by close\nrebalance every 0 bars", "rebalance every takes a whole number of bars"),
    ("hold long top 10% by close\nrebalance every 5 bars\nbuy when close > open", "a portfolio strategy has no `buy` rule"),
    ("hold long top 10% by close\nrebalance every 5 bars\nstop_loss 5%", "a portfolio strategy has no `stop_loss` exit"),
    ("c = close > open\nhold long top 10% by c\nrebalance every 5 bars", "ranks by 'c', a condition"),
    ("param p = 3\nhold long top 10% by p\nrebalance every 5 bars", "ranks by a param, 'p'"),
    ("hold long top 10% by scor\nrebalance every 5 bars", "unknown name 'scor'"),
    ("hold long top 10% by close\nrebalance every 5 bars\nweight equal capped at 0%", "capped at 0% is out of range"),
    ("hold long top 10% by close\nrebalance every n bars", "'n' is not a param"),
])
def test_check_errors(text, message):
    with pytest.raises(StrategyError) as exc:
        load(text)
    assert message in str(exc.value)


@pytest.mark.parametrize("func", sorted(f for f, b in BUILTINS.items() if b.cross_sectional))
def test_cross_sectional_builtins_only_in_portfolios(func):
    with pytest.raises(StrategyError) as exc:
        load(f"x = {func}(close)\nbuy when x > 0\nsell when x < 0")
    assert f"{func}() compares the assets of a universe; it works only in a portfolio strategy" in str(exc.value)
    assert exc.value.diagnostics[0].line == 1
    typed = load(f"x = {func}(close)\nhold long top 10% by x\nrebalance every 5 bars")
    assert typed.warmup == 0


def test_single_asset_strategies_are_unchanged():
    typed = load("buy when close > open\nsell when close < open")
    assert typed.portfolio is None and set(typed.rules) == {"buy", "sell"}


def test_a_portfolio_strategy_is_refused_where_one_market_is_expected():
    import autostrat

    with pytest.raises(StrategyError) as exc:
        load_checked(PORTFOLIO)
    d = exc.value.diagnostics[0]
    assert "this is a portfolio strategy; here a single-market strategy" in d.message and d.line == 7
    with pytest.raises(StrategyError, match="this is a portfolio strategy"):
        autostrat.backtest(PORTFOLIO, "synthetic:bars=300")
    with pytest.raises(StrategyError, match="this is a portfolio strategy"):
        autostrat.backtest(load(PORTFOLIO), "synthetic:bars=300")
