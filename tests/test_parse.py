"""The parser: AST shapes, precedence, numbers, positions, comments, limits and error text."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from autostrat.lang import nodes as N
from autostrat.errors import StrategyError
from autostrat.lang.parse import MAX_DEPTH, MAX_NODES, MAX_SOURCE_BYTES, MAX_STATEMENTS, parse
from work import python_calls

RULES = "buy when close > open\nsell when close < open\n"


def expr_of(text: str) -> N.Expr:
    """The expression of `x = text`."""
    return parse(f"x = {text}\n").statements[0].expr


def error_of(text: str) -> StrategyError:
    with pytest.raises(StrategyError) as info:
        parse(text, "t.strat")
    return info.value


def name(i):
    return N.Name(i)


def num(v, percent=False):
    return N.Num(float(v), percent)


def b(op, left, right):
    return N.Binary(op, left, right)


a, c, d, e = name("a"), name("c"), name("d"), name("e")


# --- precedence and associativity ---------------------------------------------------------------

@pytest.mark.parametrize("text, tree", [
    ("a + c * d", b("+", a, b("*", c, d))),
    ("a * c + d", b("+", b("*", a, c), d)),
    ("a - c - d", b("-", b("-", a, c), d)),
    ("a / c / d", b("/", b("/", a, c), d)),
    ("a - (c - d)", b("-", a, b("-", c, d))),
    ("a * c / d * e", b("*", b("/", b("*", a, c), d), e)),
    ("-a * c", b("*", N.Unary("-", a), c)),
    ("-a[1]", N.Unary("-", N.Lag(a, 1))),
    ("(-a)[1]", N.Lag(N.Unary("-", a), 1)),
    ("a[1][2]", N.Lag(N.Lag(a, 1), 2)),
    ("- - a", N.Unary("-", N.Unary("-", a))),
    ("a * -c", b("*", a, N.Unary("-", c))),
    ("a - -c", b("-", a, N.Unary("-", c))),
    ("a + c < d * e", b("<", b("+", a, c), b("*", d, e))),
    ("a < c and d > e", b("and", b("<", a, c), b(">", d, e))),
    ("a or c and d", b("or", a, b("and", c, d))),
    ("a and c or d", b("or", b("and", a, c), d)),
    ("a or c or d", b("or", b("or", a, c), d)),
    ("a and c and d", b("and", b("and", a, c), d)),
    ("not a and c", b("and", N.Unary("not", a), c)),
    ("not a < c", N.Unary("not", b("<", a, c))),
    ("not not a", N.Unary("not", N.Unary("not", a))),
    ("a and not c or d", b("or", b("and", a, N.Unary("not", c)), d)),
    ("(a or c) and d", b("and", b("or", a, c), d)),
    ("((a))", a),
    ("highest(high, 55)[1]", N.Lag(N.Call("highest", (name("high"), num(55))), 1)),
    ("tr()", N.Call("tr", ())),
    ("f(a, c + d, -1)", N.Call("f", (a, b("+", c, d), N.Unary("-", num(1))))),
    ("true and false", b("and", N.Bool(True), N.Bool(False))),
    ("a == c", b("==", a, c)),
    ("a != c", b("!=", a, c)),
    ("a <= c", b("<=", a, c)),
    ("a >= c", b(">=", a, c)),
])
def test_precedence(text, tree):
    assert expr_of(text) == tree


def test_spaces_do_not_matter():
    assert expr_of("a+c*d") == expr_of("  a   +   c *d  ") == expr_of("a\t+\tc\t*\td")


# --- literals -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, literal, percent, value", [
    ("0", 0.0, False, 0.0),
    ("5", 5.0, False, 5.0),
    ("0.5", 0.5, False, 0.5),
    ("5%", 5.0, True, 0.05),
    ("12.5%", 12.5, True, 0.125),
    ("1e-3", 0.001, False, 0.001),
    ("1E3", 1000.0, False, 1000.0),
    ("2.5e+2", 250.0, False, 250.0),
    ("1e2%", 100.0, True, 1.0),
    ("007", 7.0, False, 7.0),
    ("1000000000000000", 1e15, False, 1e15),
])
def test_numbers(text, literal, percent, value):
    n = expr_of(text)
    assert n == N.Num(literal, percent)
    assert n.value == value


def test_a_negative_literal_is_negation_in_expressions_and_a_number_in_params():
    assert expr_of("-5") == N.Unary("-", num(5))
    p = parse("param x = -5 in -10..-1\n").statements[0]
    assert p == N.Param("x", num(-5), num(-10), num(-1))


def test_number_magnitude_limit():
    expr_of("1e15")
    assert "out of range" in error_of("x = 1.000001e15\n").first.message
    assert "out of range" in error_of("x = 1e999\n").first.message
    assert "out of range" in error_of("param p = -2e15\n").first.message


def test_only_ascii_digits_are_numbers():
    # Python's \d would accept other scripts' digits; the language does not.
    assert "unexpected character" in error_of("x = \u0663\n").first.message


# --- statements ---------------------------------------------------------------------------------

def test_statements():
    text = ('strategy "demo: 50/50"\nparam n = 20 in 5..100\nparam k = 2%\nx = sma(close, n)\n'
            "buy when close > x\nsell when close < x\nshort when false\ncover when true\n"
            "stop_loss 8%\ntake_profit k\ntrailing_stop 0.1\nmax_hold 10\n")
    p = parse(text)
    assert p.statements == (
        N.StrategyName("demo: 50/50"),
        N.Param("n", num(20), num(5), num(100)),
        N.Param("k", num(2, True)),
        N.Assign("x", N.Call("sma", (name("close"), name("n")))),
        N.Rule("buy", b(">", name("close"), name("x"))),
        N.Rule("sell", b("<", name("close"), name("x"))),
        N.Rule("short", N.Bool(False)),
        N.Rule("cover", N.Bool(True)),
        N.Exit("stop_loss", num(8, True)),
        N.Exit("take_profit", name("k")),
        N.Exit("trailing_stop", num(0.1)),
        N.Exit("max_hold", num(10)),
    )
    assert p.name == "demo: 50/50"
    assert set(p.rules()) == {"buy", "sell", "short", "cover"}
    assert set(p.params()) == {"n", "k"}
    assert set(p.exits()) == set(N.EXIT_KINDS)


def test_empty_and_comment_only_programs_parse():
    assert parse("").statements == ()
    assert parse("\n\n  \n").statements == ()
    p = parse("# just a thought\n")
    assert p.statements == () and p.end_comments == ("# just a thought",)


@pytest.mark.parametrize("word", ["buyer", "sell_", "notable", "andy", "order", "truth", "falsey", "in_", "whenever",
                                  "stop_loss2", "closes", "params", "strategy_a"])
def test_words_that_start_like_keywords_are_names(word):
    assert expr_of(word) == name(word)


@pytest.mark.parametrize("text, col, word", [
    ("buy when close > open orb\n", 23, "orb"),
    ("buy when close > open andvolume > 0\n", 23, "andvolume"),
    ("buy whenclose > open\n", 5, "whenclose"),
    ("param fast = 5 in_ 1..10\n", 16, "in_"),
    ("param fast = 5 in1 1..10\n", 16, "in1"),
])
def test_a_keyword_glued_to_a_word_is_not_read_as_the_keyword(text, col, word):
    # The contextual lexer would otherwise read `orb` as `or b` where no name can follow.
    err = error_of(text)
    assert err.first.message == f"unexpected '{word}'"
    assert (err.first.line, err.first.column) == (1, col)


@pytest.mark.parametrize("text", ["buy when\n", "param p = x\n", "stop_loss\n", "x = 1 2\n",
                                  "buy when a orb\n", "buy when close > open @\n"])
def test_hints_name_tokens_only(text):
    # The parse table's rows hold rule gotos too (and_expr, postfix, signed...): never shown.
    hint = error_of(text).first.hint
    assert hint.startswith("expected ")
    rules = {"expr", "or_expr", "and_expr", "not_expr", "comparison", "sum", "product", "unary",
             "postfix", "atom", "paren", "signed", "exit_param", "statement"}
    assert not rules & set(hint[len("expected "):].split(", ")), hint
    assert not ("end of file" in hint and "end of line" in hint), hint


def test_keywords_still_lex_as_keywords_next_to_symbols():
    assert parse("buy when (close > open)or(close > 1)\n").statements[0].expr.op == "or"
    assert parse("param fast = 5 in 1..10\n").statements[0].hi is not None


def test_keywords_lex_as_names_where_only_a_name_fits():
    # The checker, not the parser, refuses these as names (tests/test_check.py).
    assert parse("param and = 5\n").statements[0].name == "and"


def test_python_words_may_be_bound_but_python_lines_are_refused():
    assert parse("from = close\n").statements[0] == N.Assign("from", name("close"))
    assert "Python" in error_of("from x import y\n").first.message


# --- positions ----------------------------------------------------------------------------------

def test_spans_point_at_the_source():
    p = parse("# c\n\nparam n = 5\nbuy when not (close > -open)\nsell when true\n")
    param, buy, sell = p.statements
    assert (param.span.line, param.span.column) == (3, 7)  # a param's span starts at its name
    assert (param.value.span.line, param.value.span.column) == (3, 11)
    assert (buy.span.line, buy.span.column) == (4, 1)
    not_ = buy.expr
    assert (not_.span.line, not_.span.column) == (4, 10)  # at `not`, not at its operand
    paren = not_.operand
    assert paren.span.column == 14  # a parenthesised expression starts at its `(`
    assert paren.right.span.column == 23  # unary minus starts at the `-`
    assert paren.right.operand.span.column == 24
    assert (sell.expr.span.line, sell.expr.span.column) == (5, 11)  # `true` has a position too


def test_call_and_lag_spans():
    e = expr_of("highest(high, 55)[1]")
    assert e.span.column == 5 and e.expr.span.column == 5
    assert e.expr.args[1].span.column == 19


# --- comments and layout ------------------------------------------------------------------------

def test_comments_attach_to_the_statement_below_and_at_line_end():
    text = "\n\n# hypothesis\n# second line\n\n\nx = 1  # one\n# about buy\nbuy when true\nsell when false\n\n# the end\n"
    p = parse(text)
    x, buy, sell = p.statements
    assert x.comments == ("# hypothesis", "# second line", "")  # blank runs collapse, leading ones go
    assert x.trailing == "# one"
    assert buy.comments == ("# about buy",)
    assert sell.comments == ()
    assert p.end_comments == ("", "# the end")
    assert p.header_comments == x.comments


def test_hash_inside_a_string_is_not_a_comment():
    p = parse('strategy "a # b"  # real\n')
    assert p.statements[0].name == "a # b"
    assert p.statements[0].trailing == "# real"


def test_layout_is_not_part_of_equality():
    assert parse("# a\nx = 1 # b\n") == parse("x = 1\n")


def test_crlf_bom_tabs_and_bytes():
    base = parse(RULES)
    assert parse(RULES.replace("\n", "\r\n")) == base
    assert parse("\ufeff" + RULES) == base
    assert parse(RULES.replace(" ", "\t")) == base
    assert parse(RULES.encode("utf-8")) == base


def test_crlf_errors_show_the_line_without_carriage_return():
    err = error_of("buy when close > open\r\nsell when close <\r\n")
    assert err.first.source_line == "sell when close <"
    assert "\r" not in err.format()


def test_source_and_path_are_kept():
    p = parse(RULES, "my.strat")
    assert p.source == RULES and p.path == "my.strat"
    assert parse(RULES).path == "<strategy>"


# --- the error format ---------------------------------------------------------------------------

def test_full_error_text_assign_for_compare():
    err = error_of("buy when close = open\nsell when close < open\n")
    assert err.format() == (
        "t.strat:1:16: error: '=' binds a name; to compare two values write '=='\n"
        "    buy when close = open\n"
        "                   ^\n"
        "hint: e.g. buy when close == open"
    )
    assert str(err) == err.format()


def test_full_error_text_unclosed_parenthesis():
    err = error_of("buy when (close > open and volume > 0\nsell when close < open\n")
    assert err.format() == (
        "t.strat:1:10: error: unbalanced parentheses: this '(' is never closed\n"
        "    buy when (close > open and volume > 0\n"
        "             ^\n"
        "hint: add the missing ')' (a statement must fit on one line)"
    )


def test_full_error_text_negative_lag_with_tab():
    err = error_of("buy when\tclose[-2] > open\nsell when close < open\n")
    assert err.format() == (
        "t.strat:1:16: error: negative lag [-2] would read a later bar\n"
        "    buy when close[-2] > open\n"
        "                   ^\n"
        "hint: strategies can only look back: x[1] is the previous bar's value"
    )


def test_full_error_text_unexpected_token():
    err = error_of("buy when close > open sell when close < open\n")
    text = err.format()
    assert text.startswith("t.strat:1:23: error: unexpected 'sell'\n    buy when close > open sell when close < open\n"
                           + " " * 26 + "^\nhint: expected ")
    assert "end of line" in text


@pytest.mark.parametrize("text, col, message", [
    ("x = .5\n", 5, "a number needs a digit before the point"),
    ("buy when close > open & volume > 0\n", 23, "'&' is not an operator here; write 'and'"),
    ("buy when close > open | volume > 0\n", 23, "'|' is not an operator here; write 'or'"),
    ("x = close % 2\n", 11, "'%' is not an operator"),
    ('strategy "unclosed\n', 10, "unexpected character '\"'"),
    ("x = sma(close, 20,)\n", 19, "unexpected ')'"),
    ("param x\n", 8, "the statement ends too early"),
    ("param = 5\n", 1, "'param' starts a statement"),
    ("stop_loss\n", 10, "the statement ends too early"),
    ("buy when close >", 17, "the statement ends too early"),
    ("foo\n", 1, "unknown statement starting with 'foo'"),
    ("x = df.close\n", 7, "attribute access like df.close is not part of the language"),
])
def test_named_parse_errors(text, col, message):
    err = error_of(text)
    assert message in err.first.message
    assert (err.first.line, err.first.column) == (1, col)


def test_only_one_parse_error_is_reported():
    err = error_of("buy when (close\nsell when close <\n")
    assert len(err.diagnostics) == 1 and err.first.line == 1


# --- limits -------------------------------------------------------------------------------------

def _balanced(leaves: list[str]) -> str:
    if len(leaves) == 1:
        return leaves[0]
    mid = len(leaves) // 2
    return f"({_balanced(leaves[:mid])} + {_balanced(leaves[mid:])})"


def test_statement_limit():
    assert len(parse("x = 1\n" + "y = 2\n" * (MAX_STATEMENTS - 1)).statements) == MAX_STATEMENTS
    err = error_of("# header\n" + "y = 2\n" * (MAX_STATEMENTS + 1))
    assert err.first.message == f"strategy has {MAX_STATEMENTS + 1} statements; the limit is {MAX_STATEMENTS}"
    assert err.first.line == MAX_STATEMENTS + 2  # the first statement over the limit


def test_depth_limit():
    assert expr_of("-" * (MAX_DEPTH - 1) + "c").depth == MAX_DEPTH
    assert expr_of("(" * MAX_DEPTH + "c" + ")" * MAX_DEPTH) == c
    err = error_of("x = " + "-" * MAX_DEPTH + "c\n")
    assert err.first.message == f"expression nested {MAX_DEPTH + 1} levels deep; the limit is {MAX_DEPTH}"
    err = error_of("x = " + "c" + "[1]" * MAX_DEPTH + "\n")
    assert err.first.message == f"expression nested {MAX_DEPTH + 1} levels deep; the limit is {MAX_DEPTH}"
    err = error_of("x = " + "(" * (MAX_DEPTH + 1) + "c" + ")" * (MAX_DEPTH + 1) + "\n")
    assert err.first.message == f"parentheses nested more than {MAX_DEPTH} deep"
    err = error_of("x = " + "not " * (MAX_DEPTH + 1) + "c\n")
    assert "nested more than 64 deep" in err.first.message


def test_node_limit():
    ok = expr_of("-" + _balanced(["c"] * 1000))  # 1999 nodes of the sum and one negation
    assert ok.size == MAX_NODES
    err = error_of("x = " + _balanced(["c"] * 1001) + "\n")
    assert err.first.message == f"expression has more than {MAX_NODES} parts"


def test_source_size_limit():
    filler = "# " + "x" * (MAX_SOURCE_BYTES - len(RULES) - 3) + "\n"
    text = filler + RULES
    assert len(text.encode()) == MAX_SOURCE_BYTES
    parse(text)
    err = error_of(text + " ")
    assert err.first.message == f"strategy is {MAX_SOURCE_BYTES + 1} bytes; the limit is {MAX_SOURCE_BYTES}"
    # Bytes, not characters: two-byte letters count twice.
    assert "the limit is" in error_of("# " + "é" * (MAX_SOURCE_BYTES // 2) + "\n").first.message


def _counted(text: str) -> tuple[StrategyError, int]:
    """The error that parse + check give for `text`, and the Python calls it took (tests/work.py)."""
    from autostrat.lang.check import check

    parse(RULES)  # the parser is built once per process; do not count that
    error, calls = python_calls(lambda: check(parse(text, "big.strat")))
    assert isinstance(error, StrategyError), error
    return error, calls


# Bounds on the work, in Python calls (tests/work.py), about ten times what the limits cost today:
# a limit found by the pre-scan costs tens of calls, one found by the checker a few thousand; a
# parser that went through 10,000 nested parentheses or statements would make hundreds of thousands.
PATHOLOGICAL_CALLS = 30_000
LARGE_FILE_CALLS = 5_000  # about 430 today for 30,000 blank and comment lines: one token per run

PATHOLOGICAL = {
    "10,000 nested parentheses": ("buy when " + "(" * 10_000 + "close" + ")" * 10_000 + " > open\n" + RULES[22:],
                                  f"parentheses nested more than {MAX_DEPTH} deep"),
    "a 1 MiB file": ("# " + "x" * (1 << 20) + "\n" + RULES, f"the limit is {MAX_SOURCE_BYTES}"),
    "a 100,000-term sum": ("x = " + " + ".join(["close"] * 100_000) + "\n" + RULES, f"the limit is {MAX_SOURCE_BYTES}"),
    "a window of 10**12": (f"buy when sma(close, {10**12}) > open\n" + RULES[22:],
                           "window n of sma is 1000000000000; it must be from 1 to 2520"),
    "an expression with 10,000 names": ("x = " + "+".join(f"v{i}" for i in range(10_000)) + "\n" + RULES,
                                        f"expression has more than {MAX_NODES} parts"),
    "10,000 arguments": ("x = max(" + ",".join(["c"] * 10_000) + ")\n" + RULES,
                         f"expression has more than {MAX_NODES} parts"),
    "20,000 unary minus": ("x = " + "-" * 20_000 + "c\n" + RULES, f"nested more than {MAX_DEPTH} deep"),
    "10,000 statements": ("x = 1\n" * 10_000, f"the limit is {MAX_STATEMENTS}"),
    "a 60 KB name": ("buy when " + "a" * 60_000 + " > 1\n" + RULES[22:], "unknown name"),
}


@pytest.mark.parametrize("case", list(PATHOLOGICAL), ids=list(PATHOLOGICAL))
def test_pathological_inputs_fail_fast_with_the_limit_error(case):
    # "Fast" as work, not seconds: a limit is found before the input is parsed in earnest.
    text, message = PATHOLOGICAL[case]
    err, calls = _counted(text)
    assert message in err.format()
    assert calls < PATHOLOGICAL_CALLS, f"{case}: {calls} Python calls"


def test_a_large_legal_file_parses_in_bounded_time():
    # 64 KiB of blank lines and comments around a program: one line-break token per run.
    text = ("\n" * 20_000 + "# note\n" * 5_000 + "\n" * 5_000)[: MAX_SOURCE_BYTES - 200] + RULES
    parse(RULES)
    program, calls = python_calls(parse, text)
    assert len(program.statements) == 2
    assert calls < LARGE_FILE_CALLS, calls


def test_the_parser_tables_are_cached_in_the_users_folder_and_a_bad_cache_is_rebuilt(tmp_path):
    code = ("from autostrat.lang.parse import parse; from autostrat.resources import example_path; "
            "print(parse(example_path('sma_cross').read_text()).name)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    caches = list((tmp_path / "autostrat").glob("lark-*.pickle"))
    assert len(caches) == 1 and caches[0].stat().st_size > 0
    caches[0].write_bytes(b"not a pickle")  # a stale or damaged file costs a rebuild, not an error
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert first.stdout == second.stdout == "sma 20/50 crossover\n"
