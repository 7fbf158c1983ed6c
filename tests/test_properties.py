"""Properties of the language front end, checked on random input with hypothesis.

- Any text gives a Program or a StrategyError, never another exception, in bounded work
  (counted in Python calls, not seconds).
- Random valid programs survive formatting: parse(fmt(p)) == p, fmt is idempotent, check passes
  with the same warm-up.
- The canonical hash ignores layout (spaces, comments, redundant parentheses, names) and changes
  when a literal or a param's value in a rule changes; it agrees with an independent reference
  that inlines names and params.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.errors import StrategyError
from autostrat.lang.fmt import canonical_hash, fmt, number
from autostrat.lang.parse import parse
from strategies import program_texts, programs
from work import python_calls

# Text properties are cheap; each random program costs a few milliseconds to draw and parse.
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PROGRAMS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Work for any input up to a few kilobytes, in Python calls (tests/work.py): the same on every
# machine, unlike seconds. Linear handling costs a bounded number of calls per character.
CALLS_BASE, CALLS_PER_CHAR = 20_000, 200


# --- any text -----------------------------------------------------------------------------------

TOKENS = [
    "buy", "sell", "short", "cover", "when", "param", "strategy", "in", "..", "=", "==", "!=", "<", "<=", ">", ">=",
    "and", "or", "not", "true", "false", "(", ")", "[", "]", ",", "+", "-", "*", "/", "%", "5", "0.5", "1e5", "5%",
    "close", "open", "high", "low", "volume", "sma", "ema", "rsi", "tr", "x", "y", "n", "stop_loss", "take_profit",
    "trailing_stop", "max_hold", '"name"', "#", "# c", "\n", "\n\n", " ", "\t", "\r\n",
    # nearby junk: other languages' operators and habits, odd characters
    "&&", "||", "!", "**", "^", "=>", "<>", "def", "import", "if", ":", "```", "df['close']", ".rolling(", "'", '"',
    "\ufeff", "\u0663", "1e999", "9" * 30, "[-1]", "[n]", "...", "\\", "{", "}", ";", "AND", "True", "\x00", "\u2028",
]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(
    lambda ts: " ".join(ts) if len(ts) % 2 else "".join(ts)
)


@st.composite
def damaged_programs(draw):
    """A valid program's text with a few characters deleted, inserted or replaced."""
    text = draw(program_texts(layout=False))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        action = draw(st.integers(0, 2))
        if action == 0:
            text = text[:i] + text[i + 1:]
        elif action == 1:
            text = text[:i] + draw(st.sampled_from(TOKENS)) + text[i:]
        else:
            text = text[:i] + draw(st.text(max_size=3)) + text[i + 1:]
    return text


def _front_end(text: str) -> None:
    try:
        program = parse(text, "fuzz.strat")
    except StrategyError as exc:
        assert exc.diagnostics and all(d.message for d in exc.diagnostics)
        exc.format()
        return
    out = fmt(program)  # whatever parses, formats, and the format parses back the same
    assert parse(out) == program
    canonical_hash(program)
    try:
        check(program)
    except StrategyError as exc:
        assert exc.diagnostics
        exc.format()


@FAST
@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "replace")), token_soup, damaged_programs()))
def test_any_text_gives_a_program_or_a_strategy_error(text):
    error, calls = python_calls(_front_end, text)
    assert error is None, error
    assert calls < CALLS_BASE + CALLS_PER_CHAR * len(text), (calls, len(text))


@SLOW
@given(st.integers(1, 12), st.sampled_from(TOKENS), st.randoms(use_true_random=False))
def test_long_token_runs_stay_fast(repeat_log, token, rnd):
    # Runs of one token are what make parsers slow (deep nesting, long chains, many lines).
    text = token * min(2 ** repeat_log, 30_000 // max(len(token), 1))
    text = text[: rnd.randint(0, len(text))] + "\nbuy when close > open\nsell when close < open\n"
    error, calls = python_calls(_front_end, text)
    assert error is None, error
    assert calls < CALLS_BASE + CALLS_PER_CHAR * len(text), (calls, len(text))


# --- valid programs -----------------------------------------------------------------------------

@PROGRAMS
@given(programs())
def test_fmt_round_trips_and_is_idempotent(program):
    text = fmt(program)
    again = parse(text)
    assert again == program
    assert fmt(again) == text
    typed = check(again)
    assert typed.warmup == check(program).warmup
    assert {"buy", "sell"} <= set(typed.rules)


# --- the canonical hash -------------------------------------------------------------------------

def _noisy_expr(e: N.Expr, rnd: random.Random) -> str:
    """An independent printer: every compound operand in parentheses, random extra parentheses
    and spaces. It never relies on precedence, so it cannot share fmt's mistakes."""
    sp = lambda: " " * rnd.randint(0, 2)  # noqa: E731
    if isinstance(e, N.Num):
        text = number(e)
    elif isinstance(e, N.Bool):
        text = "true" if e.value else "false"
    elif isinstance(e, N.Name):
        text = e.id
    elif isinstance(e, N.Call):
        text = f"{e.func}({sp()}" + f",{sp()}".join(_noisy_expr(a, rnd) for a in e.args) + f"{sp()})"
    elif isinstance(e, N.Lag):
        text = f"({_noisy_expr(e.expr, rnd)})[{sp()}{e.n}{sp()}]"
    elif isinstance(e, N.Unary):
        text = f"{e.op} ({sp()}{_noisy_expr(e.operand, rnd)}{sp()})"
    else:
        text = f"({_noisy_expr(e.left, rnd)}){sp()}{e.op}{sp()}({_noisy_expr(e.right, rnd)})"
    return f"({text})" if rnd.random() < 0.2 else text


def _noisy_program(program: N.Program, rnd: random.Random) -> str:
    lines = []
    for s in program.statements:
        if rnd.random() < 0.3:
            lines.append("# " + "noise " * rnd.randint(0, 3))
        if rnd.random() < 0.3:
            lines.append("")
        if isinstance(s, N.Assign):
            line = f"{s.name} = {_noisy_expr(s.expr, rnd)}"
        elif isinstance(s, N.Rule):
            line = f"{s.kind}  when {_noisy_expr(s.expr, rnd)}"
        else:
            line = fmt(dataclasses.replace(program, statements=(s,), end_comments=())).strip()
        lines.append(" " * rnd.randint(0, 3) + line + ("   # trailing" if rnd.random() < 0.3 else ""))
    return "\n".join(lines) + "\n"


@PROGRAMS
@given(programs(layout=False), st.randoms(use_true_random=False))
def test_hash_ignores_spaces_comments_and_parentheses(program, rnd):
    noisy = _noisy_program(program, rnd)
    assert canonical_hash(parse(noisy)) == canonical_hash(program), noisy


def _meaning(program: N.Program):
    """A reference for what the hash should identify: rules with names and params inlined (a
    negated literal folded into a literal), and the exit values; names, layout and ranges gone."""
    params = {s.name: s.value.value for s in program.statements if isinstance(s, N.Param)}
    bound: dict[str, object] = {}

    def inline(e):
        if isinstance(e, N.Num):
            return ("num", e.value + 0.0)
        if isinstance(e, N.Bool):
            return ("bool", e.value)
        if isinstance(e, N.Name):
            if e.id in params:
                return ("num", params[e.id] + 0.0)
            return bound.get(e.id, ("series", e.id))
        if isinstance(e, N.Unary):
            inner = inline(e.operand)
            if e.op == "-" and isinstance(e.operand, N.Num):
                return ("num", -e.operand.value + 0.0)
            return (e.op, inner)
        if isinstance(e, N.Lag):
            return inline(e.expr) if e.n == 0 else ("lag", e.n, inline(e.expr))  # x[0] is x
        if isinstance(e, N.Binary):
            return (e.op, inline(e.left), inline(e.right))
        return (e.func, tuple(inline(a) for a in e.args))

    rules, exits = {}, {}
    for s in program.statements:
        if isinstance(s, N.Assign):
            bound[s.name] = inline(s.expr)
        elif isinstance(s, N.Rule):
            rules[s.kind] = inline(s.expr)
        elif isinstance(s, N.Exit):
            exits[s.kind] = params[s.value.id] if isinstance(s.value, N.Name) else s.value.value
    return rules, exits


@SLOW
@given(programs(layout=False), programs(layout=False))
def test_hash_agrees_with_the_reference_on_pairs(a, b):
    assert (canonical_hash(a) == canonical_hash(b)) == (_meaning(a) == _meaning(b))


def _rule_literals(program: N.Program):
    """(statement index, node) of every number literal inside a rule."""
    found = []
    for i, s in enumerate(program.statements):
        if isinstance(s, N.Rule):
            for node in N.walk(s.expr):
                if isinstance(node, N.Num):
                    found.append((i, node))
    return found


def _replace_node(e: N.Expr, old: N.Expr, new: N.Expr) -> N.Expr:
    if e is old:
        return new
    if isinstance(e, N.Call):
        return dataclasses.replace(e, args=tuple(_replace_node(a, old, new) for a in e.args))
    if isinstance(e, N.Lag):
        return dataclasses.replace(e, expr=_replace_node(e.expr, old, new))
    if isinstance(e, N.Unary):
        return dataclasses.replace(e, operand=_replace_node(e.operand, old, new))
    if isinstance(e, N.Binary):
        return dataclasses.replace(e, left=_replace_node(e.left, old, new), right=_replace_node(e.right, old, new))
    return e


@PROGRAMS
@given(programs(layout=False), st.data())
def test_changing_one_literal_in_a_rule_changes_the_hash(program, data):
    if not _rule_literals(program):  # give the buy rule a literal to change
        program = dataclasses.replace(program, statements=tuple(
            dataclasses.replace(s, expr=N.Binary("and", s.expr, N.Binary(">", N.Name("close"), N.Num(1.0))))
            if isinstance(s, N.Rule) and s.kind == "buy" else s for s in program.statements))
    i, old = data.draw(st.sampled_from(_rule_literals(program)))
    new = N.Num(old.literal + 1, old.percent)  # windows included: the hash does not need a valid program
    stmt = program.statements[i]
    changed = dataclasses.replace(stmt, expr=_replace_node(stmt.expr, old, new))
    other = dataclasses.replace(program, statements=program.statements[:i] + (changed,) + program.statements[i + 1:])
    assert canonical_hash(other) != canonical_hash(program)


@PROGRAMS
@given(programs(layout=False), st.data())
def test_changing_a_used_param_changes_the_hash(program, data):
    used = set()
    for s in program.statements:
        if isinstance(s, (N.Rule, N.Assign)):
            used |= {n.id for n in N.walk(s.expr) if isinstance(n, N.Name)}
        elif isinstance(s, N.Exit) and isinstance(s.value, N.Name):
            used.add(s.value.id)
    # A param reaches the hash when a rule uses it (through names or directly) or an exit does.
    reachable = [s for s in program.statements if isinstance(s, N.Param) and s.name in used]
    if not reachable:
        return
    p = data.draw(st.sampled_from(reachable))
    before = _meaning(program)
    changed = dataclasses.replace(p, value=N.Num(p.value.literal + 1, p.value.percent), lo=None, hi=None)
    other = dataclasses.replace(program, statements=tuple(changed if s is p else s for s in program.statements))
    if _meaning(other) == before:  # used only by a name that no rule reads
        assert canonical_hash(other) == canonical_hash(program)
    else:
        assert canonical_hash(other) != canonical_hash(program)
