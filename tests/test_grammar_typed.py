"""The typed grammar: everything it matches checks, in GBNF (read by the test's own GBNF matcher
and sampler, tests/test_grammar_export.Gbnf), in Lark (read by lark itself) and in llguidance's
grammar engine (the one OpenAI's custom-tool grammars and vLLM's guidance backend run).

The two printings come from one expression tree; the tests show the languages agree on samples,
on the covered examples and golden files, and on texts that break one checker rule each.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import LarkError
from test_grammar_export import EXAMPLES, GOLDEN_OK, Gbnf, LlamaGrammarCheck

from autostrat.cli import main
from autostrat.config import LlmSettings
from autostrat.errors import ConfigError
from autostrat.lang import grammar_tree as tree
from autostrat.lang import grammar_typed as gt
from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.lang.fmt import expr as fmt_expr
from autostrat.lang.fmt import number as fmt_number
from autostrat.lang.parse import MAX_DEPTH, MAX_NODES, parse


@lru_cache(maxsize=1)
def typed() -> Gbnf:
    return Gbnf(gt.gbnf())


@lru_cache(maxsize=1)
def lark_typed() -> Lark:
    return Lark(gt.lark_grammar(), parser="earley", lexer="dynamic")


def lark_accepts(text: str) -> bool:
    try:
        lark_typed().parse(text)
    except LarkError:
        return False
    return True


def checks(text: str) -> N.Program:
    program = parse(text, "sample.strat")
    check(program)
    return program


# --- canonical forms of the examples and golden files: the typed names, fmt's spacing ---------------


def canonical(path: Path) -> str:
    """The program in the typed grammar's names, order and spacing: whole-number params renamed
    p1.., other params f1.., number values x1.., conditions c1..; a `strategy` line added when it
    has none; params first (whole ones, then the others), then the values in their order, the
    rules and the exits in the grammar's order (none of these statements depends on where the
    others are). Whether the result fits the grammar's bounds is for the grammar to say."""
    program = parse(path.read_text(encoding="utf-8"), str(path))
    typed_prog = check(program)
    rename: dict[str, str] = {}
    head, whole, other, values, rules, exits = [], [], [], [], {}, {}
    for s in program.statements:
        if isinstance(s, N.StrategyName):
            head.append(f'strategy "{s.name}"')
        elif isinstance(s, N.Param):
            family = whole if s.is_int else other
            rename[s.name] = f"{'p' if s.is_int else 'f'}{len(family) + 1}"
            bounds = f" in {fmt_number(s.lo)}..{fmt_number(s.hi)}" if s.lo is not None else ""
            family.append(f"param {rename[s.name]} = {fmt_number(s.value)}{bounds}")
        elif isinstance(s, N.Assign):
            kind = "c" if typed_prog.types[s.name] == "boolean" else "x"
            rename[s.name] = f"{kind}{sum(1 for v in rename.values() if v[0] == kind) + 1}"
            values.append(f"{rename[s.name]} = {fmt_expr(s.expr)}")
        elif isinstance(s, N.Rule):
            rules[s.kind] = f"{s.kind} when {fmt_expr(s.expr)}"
        else:
            exits[s.kind] = f"{s.kind} {fmt_expr(s.value)}"
    lines = (head or [f'strategy "{path.stem}"']) + whole + other + values
    lines += [rules[k] for k in gt.RULE_KINDS if k in rules] + [exits[k] for k in gt.EXITS if k in exits]
    text = "\n".join(lines) + "\n"
    for old, new in rename.items():  # names only: the strategy's name is on the first line
        first, _, body = text.partition("\n")
        text = first + "\n" + re.sub(rf"(?<![\w\"]){re.escape(old)}\b", new, body)
    checks(text)
    return text


# Files the typed grammar covers once renamed. The others are outside it: a negative param, two
# params that are not whole numbers, or one in take_profit, or an exit written as a fraction
# (ok_exit_params, ok_statements, keltner_params), more than 4 named values
# (ok_keyword_like_names, ok_operators), 10 operands in a condition (ok_math_events), a call
# inside a call (stochastic_pullback).
COVERED = {"ok_averages.strat", "ok_change_oscillators.strat", "ok_lag_of_call.strat", "ok_layout.strat",
           "ok_nested_warmup.strat", "ok_statistics.strat", "ok_volatility_volume_trend.strat",
           "bollinger_reversion.strat", "donchian_atr.strat", "long_short.strat", "macd_trend.strat",
           "momentum_roc.strat", "rsi_reversion.strat", "sma_cross.strat", "volatility_filter.strat"}


# --- every sample checks ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_program_sampled_from_the_typed_grammar_checks(data):
    text = typed().generate(data.draw)
    assert typed().accepts(text)
    checks(text)  # raises StrategyError if a typed-constrained answer could fail the checker
    assert len(text.encode()) <= gt.longest_text()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_lark_printing_accepts_every_gbnf_sample(data):
    assert lark_accepts(typed().generate(data.draw))


def test_the_largest_expressions_stay_within_the_checkers_limits():
    b = gt._Builder(gt.TypedBounds())
    b.program()
    tops = [n for n in b.size if n.startswith(("cond0-", "num0-"))]
    assert max(b.size[n] for n in tops) <= MAX_NODES and max(b.depth[n] for n in tops) <= MAX_DEPTH
    assert gt.longest_text() <= MAX_NODES * 8  # the checker's size limit is far above what the bounds allow
    with pytest.raises(ValueError, match="lower the bounds"):
        gt.gbnf(gt.TypedBounds(levels=6))
    with pytest.raises(ValueError, match="levels"):
        gt.gbnf(gt.TypedBounds(levels=1))


# --- the longest text: a cut-off is impossible at max_tokens >= longest_text ----------------------


def longest_witness(g: Gbnf, node=("ref", "root"), memo=None) -> str:
    """The longest text of a GBNF grammar as the test's own reader reads it, built choice by choice:
    the longest alternative, the most repetitions, a class's highest character."""
    memo = {} if memo is None else memo
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "cls":
        assert not node[2], "a negated class: the typed grammar is printable ASCII"
        return max(hi for _, hi in node[1])
    if kind == "ref":
        if node[1] not in memo:
            memo[node[1]] = longest_witness(g, g.rules[node[1]], memo)
        return memo[node[1]]
    if kind == "seq":
        return "".join(longest_witness(g, n, memo) for n in node[1])
    if kind == "alt":
        return max((longest_witness(g, n, memo) for n in node[1]), key=len)
    _, item, lo, hi = node
    assert hi is not None, "an unbounded repetition"
    return longest_witness(g, item, memo) * hi


@pytest.mark.parametrize("index", [0, len(gt.LADDER) - 1])
def test_the_longest_text_is_reached_accepted_and_checks(index):
    bounds = gt.LADDER[index]
    g = typed() if index == 0 else Gbnf(gt.gbnf(bounds))
    witness = longest_witness(g)
    assert witness.isascii() and len(witness) == gt.longest_text(bounds)
    assert g.accepts(witness) and not g.accepts(witness + "\n")
    checks(witness)
    assert f"at most {len(witness)} characters" in gt.gbnf(bounds)


def _strings(node, rules, depth=0) -> set[str]:
    """Every string a small tree matches, by brute force (Refs followed; refuses deep recursion)."""
    assert depth < 12
    if isinstance(node, tree.Lit):
        return {node.text}
    if isinstance(node, tree.Chars):
        return {chr(c) for lo, hi in node.ranges for c in range(lo, hi + 1)}
    if isinstance(node, tree.Ref):
        return _strings(rules[node.name], rules, depth + 1)
    if isinstance(node, tree.Alt):
        return set().union(*(_strings(i, rules, depth) for i in node.items))
    if isinstance(node, tree.Seq):
        out = {""}
        for i in node.items:
            out = {a + b for a in out for b in _strings(i, rules, depth)}
        return out
    one, out, current = _strings(node.item, rules, depth), set(), {""}
    for count in range(node.hi + 1):
        if count >= node.lo:
            out |= current
        current = {a + b for a in current for b in one}
    return out


def _trees(depth: int):
    leaf = st.one_of(st.text("ab\u00e9\u20ac", max_size=3).map(tree.Lit),
                     st.sampled_from([tree.Chars(((97, 99),)), tree.Chars(((48, 49), (233, 233))), tree.Ref("r")]))
    if depth == 0:
        return leaf
    sub = _trees(depth - 1)
    return st.one_of(leaf, st.lists(sub, min_size=1, max_size=3).map(lambda xs: tree.Seq(tuple(xs))),
                     st.lists(sub, min_size=1, max_size=3).map(lambda xs: tree.Alt(tuple(xs))),
                     st.tuples(sub, st.integers(0, 2), st.integers(0, 2)).map(
                         lambda t: tree.Rep(t[0], min(t[1], t[2]), max(t[1], t[2]))))


@settings(max_examples=200, deadline=None)
@given(_trees(3), _trees(1))
def test_longest_agrees_with_brute_force_enumeration(node, rule):
    rules = {"r": rule if "Ref" not in repr(rule) else tree.Lit("z")}
    strings = _strings(node, rules)
    assert tree.longest(node, rules) == max(len(t.encode()) for t in strings)


def test_an_unbounded_grammar_has_no_longest_text():
    assert tree.longest(tree.Rep(tree.Lit("a"), 0, None), {}) is None
    assert tree.longest(tree.Rep(tree.Lit(""), 1, None), {}) == 0  # nothing repeated is still nothing
    loop = {"r": tree.Alt((tree.Lit("y"), tree.Ref("r")))}  # r ::= "y" | r: a rule that refers to itself
    assert tree.longest(tree.Seq((tree.Lit("x"), tree.Ref("r"))), loop) is None
    assert tree.longest(tree.Chars(((10, 10),), True), {}) == 4  # any code point: up to 4 bytes


def test_bounds_for_picks_the_largest_that_fits_max_tokens():
    sizes = [gt.longest_text(b) for b in gt.LADDER]
    assert gt.LADDER[0] == gt.TypedBounds() and sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)
    assert gt.bounds_for(sizes[0]) == gt.LADDER[0] and gt.bounds_for(10**6) == gt.LADDER[0]
    for k in range(1, len(sizes)):
        assert gt.bounds_for(sizes[k - 1] - 1) == gt.LADDER[k] and gt.bounds_for(sizes[k]) == gt.LADDER[k]
    with pytest.raises(ConfigError, match=rf"max_tokens 300: .* set \[llm\] max_tokens to at least {sizes[-1]}"):
        gt.bounds_for(300)
    with pytest.raises(ConfigError, match=f"at least {sizes[-1]}"):
        gt.bounds_for(sizes[-1] - 1)


def test_the_bounds_for_the_default_max_tokens_take_the_shipped_long_only_examples():
    bounds = gt.bounds_for(LlmSettings().max_tokens)
    assert bounds.factors >= 4  # `a > b and c < d`
    g = Gbnf(gt.gbnf(bounds))
    for path in EXAMPLES:
        if path.name in COVERED and path.name not in ("long_short.strat", "volatility_filter.strat"):
            assert g.accepts(canonical(path)), path.name  # short rules and 4 values need a larger max_tokens


def test_llama_cpp_loads_every_bounded_grammar_and_takes_the_longest_text():
    llama = LlamaGrammarCheck()  # skips without the local extra
    try:
        for bounds in gt.LADDER:
            sampler = llama.sampler(gt.gbnf(bounds))
            assert sampler, bounds
            llama.ll.llama_sampler_free(sampler)
        small = gt.LADDER[-1]
        witness = longest_witness(Gbnf(gt.gbnf(small)))
        assert llama.accepts(gt.gbnf(small), witness)
        assert not llama.accepts(gt.gbnf(small), witness + "\n")
    finally:
        llama.llm.close()


# --- the covered examples and golden files ----------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN_OK + EXAMPLES, ids=lambda p: p.name)
def test_covered_examples_and_golden_files_are_accepted(path):
    text = canonical(path)
    accepted = typed().accepts(text)
    assert accepted == (path.name in COVERED), text
    if accepted:
        assert lark_accepts(text)


# --- each checker rule, broken once ---------------------------------------------------------------

BASE = ('strategy "t"\nparam p1 = 20 in 10..60\nparam p2 = 2 in 1..3\nparam f1 = 6% in 2%..15%\n'
        'x1 = sma(close, p1)\nc1 = close > bb_lower(close, p1, f1)\nbuy when c1 and rsi(close, 14) < 30\n'
        'sell when close < x1\nstop_loss 8%\ntrailing_stop f1\n')
BROKEN = {
    "a number as the rule": ("buy when c1 and rsi(close, 14) < 30", "buy when rsi(close, 14)"),
    "a condition compared": ("sell when close < x1", "sell when c1 > 1"),
    "and on numbers": ("buy when c1 and", "buy when x1 and"),
    "unknown function": ("rsi(close, 14)", "rsx(close, 14)"),
    "too few arguments": ("rsi(close, 14)", "rsi(close)"),
    "too many arguments": ("rsi(close, 14)", "rsi(close, 14, 2)"),
    "a series as a window": ("rsi(close, 14)", "rsi(close, close)"),
    "a value as a window": ("rsi(close, 14)", "rsi(close, x1)"),
    "window 0": ("rsi(close, 14)", "rsi(close, 0)"),
    "window too long": ("rsi(close, 14)", "rsi(close, 2521)"),
    "fractional window": ("rsi(close, 14)", "rsi(close, 1.5)"),
    "undefined name": ("sell when close < x1", "sell when close < x2"),
    "condition used as a number": ("sell when close < x1", "sell when close < c1"),
    "used before defined": ("x1 = sma(close, p1)", "x1 = sma(close, p3)"),
    "stop loss not a percentage": ("stop_loss 8%", "stop_loss 8"),
    "stop loss over 100%": ("stop_loss 8%", "stop_loss 150%"),
    "an exit twice": ("stop_loss 8%\n", "stop_loss 8%\nstop_loss 9%\n"),
    "a second buy rule": ("sell when", "buy when true\nsell when"),
    "short without cover": ("stop_loss", "short when c1\nstop_loss"),
    "text after the end": ("stop_loss 8%\n", "stop_loss 8%\nbuy more\n"),
    "no strategy line": ('strategy "t"\n', ""),
    "a fence": ('strategy "t"\n', '```strat\nstrategy "t"\n'),
    "a range above its value": ("20 in 10..60", "20 in 25..60"),
    "a range below its value": ("20 in 10..60", "20 in 10..15"),
    "an empty range": ("20 in 10..60", "20 in 60..10"),
    "a window's range too long": ("20 in 10..60", "20 in 10..3000"),
    "a window's range from 0": ("20 in 10..60", "20 in 0..60"),
    "a percentage range without its value": ("6% in 2%..15%", "6% in 7%..15%"),
    "a whole range without its value": ("2 in 1..3", "2 in 3..3"),
    "a percentage param as a window": ("bb_lower(close, p1, f1)", "bb_lower(close, f1, f1)"),
    "a fraction as a stop": ("param f1 = 6% in 2%..15%", "param f1 = 6 in 2..15"),
    "a percentage as bars": ("trailing_stop f1\n", "trailing_stop f1\nmax_hold f1\n"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_text_that_breaks_a_checker_rule_is_refused(name):
    assert typed().accepts(BASE) and lark_accepts(BASE)
    old, new = BROKEN[name]
    assert old in BASE
    text = BASE.replace(old, new, 1)
    assert not typed().accepts(text)
    assert not lark_accepts(text)


def test_bounds_limit_params_values_and_the_end():
    g = typed()
    rules = "buy when close > open\nsell when close < open\n"
    params = "".join(f"param p{k} = {k + 1}\n" for k in range(1, 4))
    assert g.accepts('strategy "t"\n' + params + rules)
    assert not g.accepts('strategy "t"\n' + params + "param p4 = 5\n" + rules)
    assert not g.accepts('strategy "t"\nparam p2 = 3\n' + rules)  # in order
    fraction = "param f1 = 2.5 in 0.5..4\n"
    assert g.accepts('strategy "t"\n' + params + fraction + "x1 = bb_upper(close, p1, f1)\n" + rules)
    percent = "param f1 = 99.9% in 0.1%..99.9%\n"
    assert g.accepts('strategy "t"\n' + params + percent + rules + "stop_loss f1\ntake_profit f1\n")
    assert not g.accepts('strategy "t"\n' + params + fraction + rules + "stop_loss f1\n")
    assert not g.accepts('strategy "t"\n' + percent + params + rules)  # whole params first
    assert not g.accepts('strategy "t"\n' + fraction + "param f2 = 1\n" + rules)
    values = "".join(f"x{k} = close\n" for k in range(1, 5))
    assert g.accepts('strategy "t"\n' + values + rules)
    assert not g.accepts('strategy "t"\n' + values + "x5 = close\n" + rules)
    assert g.accepts('strategy "t"\n' + rules + "max_hold 20\n")
    assert not g.accepts('strategy "t"\n' + rules + "max_hold 20")  # every line ends
    assert not g.accepts('strategy "t"\n' + rules + "max_hold 20\n\n")  # and nothing follows


# --- the command and llguidance --------------------------------------------------------------------


def test_grammar_command_prints_the_typed_grammar(capsys):
    assert main(["grammar", "--typed", "--format", "gbnf"]) == 0
    assert capsys.readouterr().out == gt.gbnf()
    assert main(["grammar", "--typed", "--format", "lark"]) == 0
    assert capsys.readouterr().out == gt.lark_grammar()


def test_grammar_command_prints_the_bounds_a_max_tokens_gets(capsys):
    assert main(["grammar", "--typed", "--max-tokens", "2048"]) == 0
    text = capsys.readouterr().out
    assert text == gt.gbnf(gt.bounds_for(2048)) and text != gt.gbnf()
    assert gt.longest_text(gt.bounds_for(2048)) <= 2048
    assert main(["grammar", "--typed", "--max-tokens", "100"]) == 2
    assert "max_tokens to at least" in capsys.readouterr().err
    assert main(["grammar", "--max-tokens", "2048"]) == 2
    assert "add --typed" in capsys.readouterr().err


class _Bytes:
    """A byte-level vocabulary for llguidance: token i is byte i, 256 ends the text."""

    eos_token_id = 256
    bos_token_id = None
    tokens = [bytes([i]) for i in range(256)] + [b"<eos>"]
    special_token_ids = [256]

    def __call__(self, text):
        return list(text)


@pytest.fixture(scope="module")
def llg():
    llguidance = pytest.importorskip("llguidance", reason="pip install llguidance to check the Lark "
                                                          "grammar with OpenAI's grammar engine")
    tok = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))

    def accepts(text: str, bounds: gt.TypedBounds = gt.TypedBounds()) -> bool:
        m = llguidance.LLMatcher(tok, gt.lark_grammar(bounds), log_level=0)
        assert not m.is_error(), m.get_error()
        return m.consume_tokens(list(text.encode())) and m.consume_token(256) and not m.is_error()

    assert llguidance.LLMatcher.validate_grammar(gt.lark_grammar(), tok) == ""
    return accepts


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_llguidance_matches_every_sample(llg, data):
    assert llg(typed().generate(data.draw))


@lru_cache(maxsize=2)
def bounded(index: int) -> Gbnf:
    return Gbnf(gt.gbnf(gt.LADDER[index]))


@pytest.mark.parametrize("index", [2, len(gt.LADDER) - 1])  # the default max_tokens' bounds; the smallest
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_samples_of_the_smaller_bounds_check_fit_and_match_llguidance(llg, index, data):
    text = bounded(index).generate(data.draw)
    assert bounded(index).accepts(text) and len(text) <= gt.longest_text(gt.LADDER[index])
    checks(text)
    assert llg(text, gt.LADDER[index])


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_llguidance_refuses_what_breaks_a_checker_rule(llg, name):
    assert llg(BASE)
    old, new = BROKEN[name]
    assert not llg(BASE.replace(old, new, 1))
