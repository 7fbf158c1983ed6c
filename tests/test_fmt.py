"""The formatter and the canonical hash: case files of input and expected output, idempotence,
clean examples, and what the hash does and does not see."""

from __future__ import annotations

from pathlib import Path

import pytest

from autostrat.lang import nodes as N
from autostrat.lang.fmt import canonical_hash, expr, fmt, number
from autostrat.lang.parse import parse
from autostrat.resources import examples_dir

EXAMPLES = sorted(examples_dir().glob("*.strat"))
GOLDEN_OK = sorted((Path(__file__).parent / "programs").glob("ok_*.strat"))


def formatted(text: str) -> str:
    return fmt(parse(text))


def fmt_expr(text: str) -> str:
    """The canonical text of the expression in `x = text`."""
    return formatted(f"x = {text}\n")[len("x = "):-1]


# --- whole programs -----------------------------------------------------------------------------

LAYOUT_IN = """


# hypothesis: the gap closes


strategy   "demo"    #  trailing  ,  kept


param  n=5   in 1 .. 10
  x = close-open
# about buy



buy when ((x>0))#tight
sell when not(x>0)
stop_loss   8%
# the end


"""

LAYOUT_OUT = """# hypothesis: the gap closes

strategy "demo"  #  trailing  ,  kept

param n = 5 in 1..10
x = close - open
# about buy

buy when x > 0  #tight
sell when not (x > 0)
stop_loss 8%
# the end
"""


def test_layout_comments_kept_blank_lines_collapsed():
    assert formatted(LAYOUT_IN) == LAYOUT_OUT


def test_comment_only_and_empty_files():
    assert formatted("") == ""
    assert formatted("\n\n\n") == ""
    assert formatted("  # one\n\n\n# two\n\n") == "# one\n\n# two\n"


def test_blank_line_between_comment_and_statement_survives():
    assert formatted("# a\n\nbuy when true\n") == "# a\n\nbuy when true\n"
    assert formatted("buy when true\n\n\n\nsell when false\n") == "buy when true\n\nsell when false\n"


def test_statement_forms():
    text = ('strategy "x"\nparam a = -5 in -10..-1\nparam b = 2%\nparam c=0.50\nbuy when true\n'
            "sell when false\nshort when false\ncover when true\nstop_loss 8%\ntake_profit b\n"
            "trailing_stop 0.10\nmax_hold 10\n")
    assert formatted(text) == text.replace("c=0.50", "c = 0.5").replace("0.10", "0.1")


# --- expressions --------------------------------------------------------------------------------

@pytest.mark.parametrize("source, canonical", [
    ("a+b*c", "a + b * c"),
    ("(a + b) * c", "(a + b) * c"),
    ("a + (b * c)", "a + b * c"),
    ("(a - b) - c", "a - b - c"),
    ("a - (b - c)", "a - (b - c)"),
    ("a - (b + c)", "a - (b + c)"),
    ("a / (b * c)", "a / (b * c)"),
    ("(a * b) / c", "a * b / c"),
    ("a * (b / c)", "a * (b / c)"),
    ("-(a)", "-a"),
    ("-(a + b)", "-(a + b)"),
    ("-(a * b)", "-(a * b)"),
    ("(-a) * b", "-a * b"),
    ("a * -b", "a * -b"),
    ("a - -b", "a - -b"),
    ("- -a", "-(-a)"),
    ("-(-a)", "-(-a)"),
    ("-5", "-5"),
    ("- 5", "-5"),
    ("-(5)", "-5"),
    ("(-a)[1]", "(-a)[1]"),
    ("-a[1]", "-a[1]"),
    ("(a[1])[2]", "a[1][2]"),
    ("(a + b)[1]", "(a + b)[1]"),
    ("(highest(high,55))[1]", "highest(high, 55)[1]"),
    ("highest( high , 55 )[ 1 ]", "highest(high, 55)[1]"),
    ("tr( )", "tr()"),
    ("macd_hist(close,12,26,9)", "macd_hist(close, 12, 26, 9)"),
    ("(a > b) and (c < d)", "a > b and c < d"),
    ("a or (b and c)", "a or b and c"),
    ("(a or b) and c", "(a or b) and c"),
    ("(a and b) or c", "a and b or c"),
    ("a and (b and c)", "a and (b and c)"),
    ("(a and b) and c", "a and b and c"),
    ("not(a>b)", "not (a > b)"),
    ("not (a and b)", "not (a and b)"),
    ("not(a)", "not a"),
    ("not (not a)", "not not a"),
    ("a and (not b)", "a and not b"),
    ("not a[1]", "not a[1]"),
    ("not cross_above(a, b)", "not cross_above(a, b)"),
    ("(a + b) > (c * d)", "a + b > c * d"),
    ("((((a))))", "a"),
    ("true and (false)", "true and false"),
    ("if_else(a > b, -1, (c))", "if_else(a > b, -1, c)"),
])
def test_minimal_parentheses(source, canonical):
    assert fmt_expr(source) == canonical
    assert parse(f"x = {canonical}\n") == parse(f"x = {source}\n")


@pytest.mark.parametrize("source, canonical", [
    ("5%", "5%"),
    ("5.0%", "5%"),
    ("12.50%", "12.5%"),
    ("0.5", "0.5"),
    ("0.50", "0.5"),
    ("0.00001", "1e-5"),
    ("1e-05", "1e-5"),
    ("1.5e-7", "1.5e-7"),
    ("1E3", "1000"),
    ("2.5e+2", "250"),
    ("007", "7"),
    ("123456.789", "123456.789"),
    ("1e15", "1000000000000000"),
    ("0.1%", "0.1%"),
    ("1e-3%", "0.001%"),
])
def test_numbers(source, canonical):
    assert fmt_expr(source) == canonical


def test_number_prints_literals_built_as_ast():
    assert number(N.Num(5.0, True)) == "5%"
    assert number(N.Num(-2.5)) == "-2.5"
    assert number(N.Num(1e-7)) == "1e-7"
    assert expr(N.Lag(N.Call("highest", (N.Name("high"), N.Num(55.0))), 1)) == "highest(high, 55)[1]"


# --- the guarantees -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", EXAMPLES + GOLDEN_OK, ids=lambda p: p.name)
def test_idempotent_and_meaning_preserving(path):
    program = parse(path.read_text(encoding="utf-8"))
    once = fmt(program)
    assert parse(once) == program
    assert fmt(parse(once)) == once


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_fmt_clean(path):
    text = path.read_text(encoding="utf-8")
    assert fmt(parse(text)) == text, f"run `autostrat fmt {path}`"


def test_fmt_of_an_ast_without_layout():
    prog = N.Program((N.Rule("buy", N.Unary("not", N.Binary(">", N.Name("a"), N.Num(1.0)))),
                      N.Rule("sell", N.Bool(False))))
    assert fmt(prog) == "buy when not (a > 1)\nsell when false\n"


# --- canonical hash -----------------------------------------------------------------------------

BASE = """param n = 20 in 5..100
f = sma(close, n)
buy when close > f and rsi(close, 14) < 30
sell when close < f
stop_loss 8%
"""


def h(text: str) -> str:
    return canonical_hash(parse(text))


@pytest.mark.parametrize("variant", [
    BASE.replace("param n = 20 in 5..100", "param n = 20 in 10..30"),                  # a param's range
    'strategy "renamed"\n' + BASE,                                                     # the name
    "# a comment\n\n" + BASE.replace("\n", "   # more\n"),                             # comments
    BASE.replace(" > f", ">f").replace("close <", "close     <"),                      # spaces
    BASE.replace("close > f and rsi(close, 14) < 30", "((close > f) and (rsi(close, 14) < 30))"),  # parentheses
    BASE.replace("f", "fast_avg").replace("fast_avgast", "fast"),                      # a bound name
    BASE.replace("sma(close, n)", "sma(close, 20)"),                                   # a param inlined
    BASE.replace("f = sma(close, n)\n", "").replace(" f", " sma(close, n)"),           # a name inlined
    BASE.replace("8%", "0.08"),                                                        # 8% is 0.08
    BASE.replace("stop_loss 8%", "param s = 8%\nstop_loss s"),                         # an exit param
    BASE + "unused = ema(close, 5)\n",                                                 # an unused name
    "stop_loss 8%\n" + BASE.replace("stop_loss 8%\n", ""),                             # statement order
    BASE.replace("buy when", "buy  when").replace("30", "30.0"),                       # a literal's spelling
])
def test_hash_ignores_layout_names_and_spelling(variant):
    assert h(variant) == h(BASE), variant


@pytest.mark.parametrize("variant", [
    BASE.replace("param n = 20", "param n = 21"),                   # a param's value
    BASE.replace("rsi(close, 14) < 30", "rsi(close, 14) < 31"),     # a literal
    BASE.replace("rsi(close, 14)", "rsi(close, 15)"),               # a window
    BASE.replace("close > f", "f > close"),                         # operand order
    BASE.replace("< 30", "<= 30"),                                  # an operator
    BASE.replace("and", "or"),                                      # a connective
    BASE.replace("buy when", "sell_not_used = 1\nbuy when").replace("sell when close < f", "sell when close < f[1]"),
    BASE.replace("8%", "9%"),                                       # an exit value
    BASE.replace("stop_loss", "trailing_stop"),                     # an exit kind
    BASE.replace("stop_loss 8%\n", ""),                             # an exit removed
    BASE + "short when close < f\ncover when close > f\n",          # a pair of rules added
    BASE.replace("buy when close > f and rsi(close, 14) < 30\nsell when close < f",
                 "buy when close < f\nsell when close > f and rsi(close, 14) < 30"),  # rules swapped
    BASE.replace("sma(close, n)", "ema(close, n)"),                 # a function
    BASE.replace("close > f", "close[1] > f"),                      # a lag
])
def test_hash_sees_every_change_of_meaning(variant):
    assert h(variant) != h(BASE), variant


def test_hash_treats_negative_literals_and_zero_alike():
    assert h("param p = -5\nbuy when close > p\nsell when false\n") == h("buy when close > -5\nsell when false\n")
    assert h("buy when close > -0\nsell when false\n") == h("buy when close > 0\nsell when false\n")


def test_hash_is_a_short_hex_digest():
    digest = h(BASE)
    assert len(digest) == 20 and int(digest, 16) >= 0
