"""The checker: types, names, windows, constants, exits, the reported errors and the static warm-up.

The warm-up table below is worked out by hand from the definitions in docs/builtins.md and
grammar/LANGUAGE.md (leading NaN bars of each function for NaN-free input), not read from the
registry's formulas.
"""

from __future__ import annotations

import pytest

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, check, load
from autostrat.errors import StrategyError
from autostrat.lang.parse import parse
from autostrat.lang.registry import BOOL, BUILTINS, KEYWORDS, MAX_LOOKBACK, NUM, SERIES


def checked(text: str, **kw) -> TypedProgram:
    return check(parse(text, "t.strat"), **kw)


def errors(text: str, **kw) -> list:
    with pytest.raises(StrategyError) as info:
        checked(text, **kw)
    return info.value.diagnostics


def warmup_of(call: str) -> int:
    """The static warm-up of a program whose only non-trivial rule uses `call`."""
    func = call.split("(")[0]
    is_bool = func in BUILTINS and BUILTINS[func].result == BOOL
    rule = call if is_bool else f"{call} > 0"
    return checked(f"buy when {rule}\nsell when false\n").warmup


# (call, warm-up): every built-in at least once, several with more than one window.
WARMUPS = [
    ("sma(close, 10)", 9), ("sma(close, 1)", 0), ("ema(close, 10)", 9), ("wma(close, 10)", 9),
    ("rma(close, 10)", 9), ("stdev(close, 10)", 9), ("zscore(close, 20)", 19), ("highest(high, 55)", 54),
    ("lowest(low, 20)", 19), ("sum(volume, 5)", 4), ("percent_rank(close, 10)", 10), ("slope(close, 10)", 9),
    ("corr(close, volume, 30)", 29), ("bars_since_high(close, 40)", 39), ("bars_since_low(close, 60)", 59),
    ("change(close, 10)", 10), ("roc(close, 126)", 126), ("rsi(close, 14)", 14), ("rsi(close, 2)", 2),
    ("stoch_k(14)", 13), ("stoch_d(14, 3)", 15), ("williams_r(14)", 13), ("cci(20)", 19), ("mfi(14)", 14),
    ("macd(close, 12, 26)", 25), ("macd(close, 26, 12)", 25), ("macd_signal(close, 12, 26, 9)", 33),
    ("macd_hist(close, 12, 26, 9)", 33), ("tr()", 1), ("atr(14)", 14), ("bb_upper(close, 20, 2)", 19),
    ("bb_lower(close, 20, -1.5)", 19), ("keltner_upper(20, 2)", 20), ("keltner_lower(10, 1.5)", 10),
    ("obv()", 0), ("vwap(20)", 19), ("adx(14)", 27), ("adx(1)", 1), ("plus_di(14)", 14), ("minus_di(14)", 14),
    ("abs(close)", 0), ("log(close)", 0), ("sqrt(close)", 0), ("exp(close)", 0), ("sign(close)", 0),
    ("min(close, open)", 0), ("max(close, open)", 0), ("clip(close, low, high)", 0),
    ("if_else(close > open, close, open)", 0), ("cross_above(close, open)", 1), ("cross_below(close, open)", 1),
    ("bars_since(close > open)", 0),
]


@pytest.mark.parametrize("call, warmup", WARMUPS, ids=[c for c, _ in WARMUPS])
def test_builtin_warmup(call, warmup):
    assert warmup_of(call) == warmup


# Cross-sectional built-ins add no warm-up of their own; they exist only in portfolio strategies.
PORTFOLIO_WARMUPS = [("rank(sma(close, 10))", 9), ("percentile(roc(close, 5))", 5), ("demean(close[3])", 3),
                     ("standardize(volume)", 0)]


@pytest.mark.parametrize("call, warmup", PORTFOLIO_WARMUPS, ids=[c for c, _ in PORTFOLIO_WARMUPS])
def test_cross_sectional_builtin_warmup(call, warmup):
    assert checked(f"s = {call}\nhold long top 10% by s\nrebalance every 5 bars\n", portfolio=True).warmup == warmup


def test_the_warmup_table_covers_every_builtin():
    assert {c.split("(")[0] for c, _ in WARMUPS + PORTFOLIO_WARMUPS} == set(BUILTINS)


@pytest.mark.parametrize("call, warmup", [
    ("close[5]", 5),
    ("close[0]", 0),
    ("sma(close[5], 10)", 14),
    ("sma(close, 10)[5]", 14),
    ("sma(rsi(close, 14), 10)", 23),
    ("highest(high, 55)[1]", 55),
    ("ema(ema(ema(close, 10), 10), 10)", 27),
    ("corr(sma(close, 5), close[10], 3)", 12),  # the longer input, then the window
    ("if_else(close[3] > open, close[5], open)", 5),
    ("macd_signal(sma(close, 10), 12, 26, 9)", 42),
    ("stoch_d(14, 3)[2] + atr(30)", 30),
    ("-sma(close, 8)", 7),
    ("clip(close, sma(low, 30), high[40])", 40),
    ("bars_since(cross_above(close, sma(close, 10)))", 10),
])
def test_warmups_compose(call, warmup):
    assert warmup_of(call) == warmup


def test_warmup_follows_names_params_and_all_rules():
    text = """param n = 30 in 10..50
param m = 5
f = sma(close, n)
g = f[5]
unused = sma(close, 2000)
buy when g > close
sell when false
short when cross_below(close, ema(close, 100))
cover when true
"""
    tp = checked(text)
    assert tp.warmup == 100  # the short rule: ema 99, then one bar for the cross
    assert checked(text.replace("ema(close, 100)", "ema(close, 10)")).warmup == 29 + 5
    # A window param's current value sets the warm-up, not its range.
    assert checked(text.replace("param n = 30", "param n = 40").replace("ema(close, 100)", "close")).warmup == 44


def test_lag_of_a_condition_and_nested_names():
    text = "a = close > sma(close, 20)\nb = a[3]\nc = b and a\nbuy when c\nsell when not c\n"
    assert checked(text).warmup == 22


# --- the typed program --------------------------------------------------------------------------

def test_typed_program_fields():
    text = """strategy "t"
param fast = 10 in 5..50
param stop = 8%
param hold = 20
f = sma(close, fast)
up = f > close
buy when up
sell when not up
stop_loss stop
take_profit 25%
trailing_stop 0.1
max_hold hold
"""
    tp = checked(text)
    assert tp.name == "t"
    assert set(tp.params) == {"fast", "stop", "hold"}
    assert tp.param_values == {"fast": 10.0, "stop": 0.08, "hold": 20.0}
    assert tp.bindings == {"f": parse("x = sma(close, fast)\n").statements[0].expr,
                           "up": parse("x = f > close\n").statements[0].expr}
    assert tp.types == {"fast": NUM, "stop": NUM, "hold": NUM, "f": NUM, "up": BOOL}
    assert set(tp.rules) == {"buy", "sell"}
    assert tp.exits == {"stop_loss": 0.08, "take_profit": 0.25, "trailing_stop": 0.1, "max_hold": 20.0}
    assert tp.warmup == 9
    assert tp.max_lookback == MAX_LOOKBACK
    assert tp.program.statements[0] == N.StrategyName("t")


def test_load_parses_and_checks():
    assert load("buy when true\nsell when false\n").warmup == 0
    with pytest.raises(StrategyError):
        load("buy when 1\nsell when false\n")


def test_check_accepts_a_program_built_as_an_ast():
    prog = N.Program((N.Rule("buy", N.Binary(">", N.Name("close"), N.Call("sma", (N.Name("close"), N.Num(5.0))))),
                      N.Rule("sell", N.Bool(False))))
    assert check(prog).warmup == 4
    bad = N.Program((N.Rule("buy", N.Num(1.0)), N.Rule("sell", N.Bool(False))))
    with pytest.raises(StrategyError) as info:
        check(bad)
    assert info.value.first.message == "the buy rule is a number, not a condition"


# --- windows, constants and lags ----------------------------------------------------------------

RULES = "sell when false\n"


@pytest.mark.parametrize("window, ok", [("1", True), ("2520", True), ("2521", False), ("0", False),
                                        ("2.5", False), ("5%", False), ("-3", False), ("1e3", True)])
def test_window_literals(window, ok):
    text = f"buy when sma(close, {window}) > 0\n" + RULES
    if ok:
        checked(text)
    else:
        (d,) = errors(text)
        assert d.message.startswith("window n of sma is ")


@pytest.mark.parametrize("param, ok", [
    ("param n = 20 in 5..100", True),
    ("param n = 20", True),
    ("param n = 20 in 1..2520", True),
    ("param n = 20 in 0..100", False),
    ("param n = 20 in 5..2521", False),
    ("param n = 20.5 in 5..100", False),
    ("param n = 20 in 5..100.5", False),
    ("param n = 20%", False),
])
def test_window_params(param, ok):
    text = f"{param}\nbuy when sma(close, n) > 0\n" + RULES
    if ok:
        checked(text)
    else:
        (d,) = errors(text)
        assert "window n of sma uses param n" in d.message


@pytest.mark.parametrize("arg", ["close", "sma(close, 5)", "1 + 2", "x"])
def test_windows_must_be_constants(arg):
    (d,) = errors(f"x = 5\nbuy when sma(close, {arg}) > 0\n" + RULES)
    assert d.message == "window n of sma must be a constant: an integer literal or an integer param"


@pytest.mark.parametrize("k, ok", [("2", True), ("-2", True), ("0.5%", True), ("p", True), ("w", True),
                                   ("close", False), ("2 * 1", False), ("-p", False), ("x", False)])
def test_constant_arguments(k, ok):
    text = f"param p = 1.5\nparam w = 3 in 1..5\nx = close\nbuy when bb_upper(close, 20, {k}) > 0\n" + RULES
    if ok:
        checked(text)
    else:
        (d,) = errors(text)
        assert d.message == "argument k of bb_upper must be a number constant (a literal or a param)"


def test_lag_limit_follows_max_lookback():
    checked(f"buy when close[{MAX_LOOKBACK}] > 0\n" + RULES)
    (d,) = errors(f"buy when close[{MAX_LOOKBACK + 1}] > 0\n" + RULES)
    assert d.message == f"lag [{MAX_LOOKBACK + 1}] is longer than the maximum lookback {MAX_LOOKBACK}"
    (d,) = errors("buy when close[101] > 0\n" + RULES, max_lookback=100)
    assert "maximum lookback 100" in d.message
    (d,) = errors("buy when sma(close, 200) > 0\n" + RULES, max_lookback=100)
    assert d.message == "window n of sma is 200; it must be from 1 to 100"


# --- types --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule, message", [
    ("close", "the buy rule is a number, not a condition"),
    ("1", "the buy rule is a number, not a condition"),
    ("sma(close, 5)", "the buy rule is a number, not a condition"),
    ("close > open and volume", "`and` combines conditions; this side is a number"),
    ("volume or close > open", "`or` combines conditions; this side is a number"),
    ("not close", "`not` needs a condition, got a number"),
    ("-(close > open) > 0", "'-' negates a number, not a condition"),
    ("(close > open) > 0", "'>' compares numbers; this side is a condition"),
    ("true == false", "'==' compares numbers; this side is a condition"),
    ("(close > open) * 2 > 0", "'*' works on numbers; this side is a condition"),
    ("sma(close > open, 5) > 0", "argument x of sma must be a number series, got a condition"),
    ("bars_since(close) > 0", "argument c of bars_since must be a condition, got a number series"),
    ("if_else(close, 1, 0) > 0", "argument c of if_else must be a condition, got a number series"),
    ("cross_above(close > open, open)", "argument x of cross_above must be a number series, got a condition"),
    ("sma(close) > 0", "sma takes 2 arguments (x, n), got 1"),
    ("tr(close) > 0", "tr takes 0 arguments (), got 1"),
    ("abs(close, open) > 0", "abs takes 1 argument (x), got 2"),
    ("sma > 0", "'sma' is a function; call it: sma(x, n)"),
])
def test_type_errors(rule, message):
    (d,) = errors(f"buy when {rule}\n" + RULES)
    assert d.message == message


def test_a_lag_keeps_the_type():
    assert checked("c = (close > open)[1]\nbuy when c\nsell when not c\n").types["c"] == BOOL


def test_errors_do_not_cascade_from_an_unknown_name():
    (d,) = errors("x = nope + 1\ny = x * 2 > 3\nbuy when y and x > 0\n" + RULES)
    assert d.message == "unknown name 'nope'"


# --- names --------------------------------------------------------------------------------------

@pytest.mark.parametrize("word", sorted(KEYWORDS - {"strategy", "param", "buy", "sell", "short", "cover", "stop_loss",
                                                    "take_profit", "trailing_stop", "max_hold"}))
def test_keywords_cannot_be_params(word):
    (d,) = errors(f"param {word} = 5\nbuy when true\n" + RULES)
    assert d.message == f"'{word}' is a keyword; choose another name"


@pytest.mark.parametrize("word", list(SERIES))
def test_series_cannot_be_bound(word):
    (d,) = errors(f"param {word} = 5\nbuy when true\n" + RULES)
    assert d.message == f"'{word}' is a price series; choose another name"


@pytest.mark.parametrize("word", sorted(BUILTINS))
def test_builtins_cannot_be_bound(word):
    diags = errors(f"{word} = close\nbuy when true\n" + RULES)
    assert diags[0].message == f"'{word}' is a built-in function; choose another name"


def test_names_are_bound_once_and_before_use():
    (d,) = errors("x = close\nparam x = 5\nbuy when true\n" + RULES)
    assert d.message == "'x' is already bound on line 1; names are bound once"
    (d,) = errors("buy when x > 0\nx = close\n" + RULES)
    assert d.message == "'x' is used before it is bound (on line 2)"
    (d,) = errors("x = x[1] + 1\nbuy when x > 0\n" + RULES)
    assert d.message == "'x' is used in its own definition"


def test_name_suggestions():
    (d,) = errors("param fast = 10\nbuy when sma(close, fsat) > 0\n" + RULES)
    assert d.message == "unknown name 'fsat'" and d.hint == "did you mean 'fast'?"
    (d,) = errors("buy when volumn > 0\n" + RULES)
    assert d.hint == "did you mean 'volume'?"
    (d,) = errors("buy when HIGH > 0\n" + RULES)
    assert d.hint == "names are case-sensitive: write 'high'"
    (d,) = errors("buy when macd_sig(close, 12, 26, 9) > 0\n" + RULES)
    assert d.message == "unknown function 'macd_sig'" and d.hint == "did you mean 'macd_signal'?"
    (d,) = errors("buy when zzz > 0\n" + RULES)
    assert "open high low close volume" in d.hint


def test_a_keyword_in_value_position():
    (d,) = errors("buy when and > 1\n" + RULES)
    assert d.message == "'and' is a keyword, not a value"


# --- rules and exits ----------------------------------------------------------------------------

def test_rules_required_and_paired():
    assert [d.message for d in errors("x = close\n")] == ["missing `buy when` rule", "missing `sell when` rule"]
    (d,) = errors("buy when true\nsell when true\nshort when true\n")
    assert d.message == "`short when` needs a `cover when` rule too"
    assert (d.line, d.column) == (3, 1)
    (d,) = errors("buy when true\nsell when true\nbuy when false\n")
    assert d.message == "second `buy when` rule (the first is on line 1)"


def test_a_missing_rule_points_below_the_last_line():
    (d,) = errors("buy when true\n\n# trailing comment\n\n\n")
    assert (d.line, d.column) == (4, 1)
    assert [(d.line, d.column) for d in errors("")] == [(1, 1), (1, 1)]


@pytest.mark.parametrize("exit, ok", [
    ("stop_loss 8%", True), ("stop_loss 100%", True), ("stop_loss 0.0001", True), ("stop_loss 1", True),
    ("stop_loss 100.5%", False), ("stop_loss 0", False), ("stop_loss -5%", False), ("stop_loss 8", False),
    ("take_profit 1000%", True), ("take_profit 10", True), ("take_profit 1000.1%", False),
    ("trailing_stop 100%", True), ("trailing_stop 101%", False),
    ("max_hold 1", True), ("max_hold 100000", True), ("max_hold 100001", False), ("max_hold 0", False),
    ("max_hold 2.5", False), ("max_hold 5%", False),
])
def test_exit_ranges(exit, ok):
    text = "buy when true\nsell when false\n" + exit + "\n"
    if ok:
        checked(text)
    else:
        (d,) = errors(text)
        assert d.line == 3 and d.column == len(exit.split()[0]) + 2


def test_exit_hints():
    (d,) = errors("buy when true\nsell when false\nstop_loss 8\n")
    assert d.message == "stop_loss 8 is out of range (more than 0, at most 100%)"
    assert d.hint == "8 means 800%; write 8% for 8 percent"
    (d,) = errors("buy when true\nsell when false\ntake_profit 0\n")
    assert d.hint == "write a percentage, e.g. take_profit 8%"


def test_exit_params_are_checked_where_they_are_used():
    (d,) = errors("param s = 8\nbuy when true\nsell when false\nstop_loss s\n")
    assert (d.line, d.column) == (4, 11)
    assert d.message == "stop_loss 8 (param s) is out of range (more than 0, at most 100%)"
    (d,) = errors("buy when true\nsell when false\nstop_loss s\n")
    assert d.message == "stop_loss takes a number or a param; 's' is not a param"
    (d,) = errors("s = 5%\nbuy when true\nsell when false\nstop_loss s\n")
    assert d.message == "stop_loss takes a number or a param; 's' is not a param"


def test_one_of_each_exit():
    (d,) = errors("buy when true\nsell when false\nmax_hold 5\nmax_hold 6\n")
    assert d.message == "second `max_hold` exit; a strategy has at most one of each"


def test_every_problem_is_reported_at_once():
    text = """strategy "a"
strategy "b"
param n = 500 in 1..100
x = unknown_thing
x = close
buy when sma(close, 0) > nope
sell when 1
stop_loss 8
max_hold 0
"""
    diags = errors(text)
    assert [d.line for d in diags] == [2, 3, 4, 5, 6, 6, 7, 8, 9]
    assert len({d.message for d in diags}) == len(diags)


def test_check_does_not_change_the_program():
    text = "param n = 5\nf = sma(close, n)\nbuy when f > 0\nsell when f < 0\n"
    program = parse(text)
    before = repr(program)
    check(program)
    check(program)
    assert repr(program) == before
