"""Hypothesis strategies that generate random valid strategy programs from the grammar and registry.

`programs()` draws Program ASTs that pass `check()`: params (window params with integer ranges
inside 1..max_lookback, number params, percent params), names bound in order and used only after
they are bound, typed expressions over every operator and every built-in of the registry (windows
and constants where the registry asks for them), buy/sell rules, sometimes short/cover, exits given
as literals or params, and layout (comments, blank lines, trailing comments) that fmt must keep.
`program_texts()` draws the canonical text of such programs. Other test files import both.

The expressions are kept shallow (a depth budget well inside the parser's limits) so that a few
hundred examples run in seconds.
"""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from autostrat.lang import nodes as N
from autostrat.lang.fmt import fmt
from autostrat.lang.registry import BOOL, BUILTINS, MAX_LOOKBACK, NUM, SERIES, is_reserved

MAX_EXPR_DEPTH = 4

# Identifiers: a fixed pool (cheap to draw) with short names, long ones, names that start like
# keywords, series or numbers, and Python words, which the language lets a strategy bind.
_NAMES = sorted(
    {"a", "b", "c", "x", "y", "z", "n", "k", "m", "e", "e5", "inf", "nan", "fast", "slow", "trend", "signal",
     "mom", "vol", "upper", "lower", "breakout", "buy_x", "sell_y", "not_z", "andy", "order", "closes",
     "open_gap", "high2", "when_", "in_", "truth", "from", "for", "print", "lambda", "AND", "Close",
     "a_very_long_name_for_a_series_0123456789", "_hidden", "x1", "x2", "x3", "t0", "t1"}
)
assert not any(is_reserved(n) for n in _NAMES)
_NAME = st.sampled_from(_NAMES)

# Comment and name text: ASCII punctuation the language uses, tabs, and a few non-ASCII letters.
_TEXT_CHARS = st.sampled_from(list("abcxyzABC 0123456789#\"'()[]-+*/<>=!&|%^.,:;`~\\_\téπ€中"))
_COMMENT_TEXT = st.text(_TEXT_CHARS, max_size=24)
_STRATEGY_NAME = st.text(_TEXT_CHARS.filter(lambda ch: ch != '"'), max_size=24)


# Strategies are built once: drawing from a fixed strategy is cheap, building one per node is not.
_WHOLE = st.integers(0, 10**6).map(float)
# Down to 1e-307: smaller literals are subnormal, where a written number can underflow to 0.
_FRACTION = st.floats(0, 1e6, allow_nan=False, allow_infinity=False).filter(lambda v: v == 0 or v >= 1e-307)
_SPECIAL = st.sampled_from([1e-05, 2.5e-07, 0.5, 0.001, 1e14, 123456789.125])
_LITERAL = st.builds(N.Num, st.one_of(_WHOLE, _FRACTION, _SPECIAL), st.booleans())
_SIGNED = st.integers(-1000, 1000).map(float) | st.floats(-1000, 1000, allow_nan=False).map(lambda v: round(v, 3))
_BOOLS = st.booleans()
_LAGS = st.integers(0, 5) | st.sampled_from([0, 1, 250, MAX_LOOKBACK])
_WINDOWS = st.integers(1, 60) | st.integers(1, MAX_LOOKBACK)
# Single-asset programs: the cross-sectional built-ins belong to portfolio strategies.
_BY_RESULT = {kind: sorted(n for n, b in BUILTINS.items() if b.result == kind and not b.cross_sectional)
              for kind in (NUM, BOOL)}


def _pick(draw, seq):
    return seq[draw(st.integers(0, len(seq) - 1))]


def _window(draw, env) -> N.Expr:
    """A window argument: an integer literal in 1..max_lookback or an integer param."""
    if env["windows"] and draw(_BOOLS):
        return N.Name(_pick(draw, env["windows"]))
    return N.Num(float(draw(_WINDOWS)))


def _constant(draw, env) -> N.Expr:
    """A `k` argument: a literal, a negated literal or any param."""
    choice = draw(st.integers(0, 2))
    if choice == 0 and env["params"]:
        return N.Name(_pick(draw, env["params"]))
    lit = draw(_LITERAL)
    return N.Unary("-", lit) if choice == 1 else lit


def expression(draw, kind: str, env, depth: int = MAX_EXPR_DEPTH) -> N.Expr:
    """A random expression of type `kind` (NUM or BOOL) over the names bound in `env`.

    `draw` is a hypothesis draw function (from st.composite or st.data()); `env` maps "params",
    "windows", NUM and BOOL to the names bound so far.
    """
    if depth <= 1:
        return _leaf(draw, kind, env)
    sub = depth - 1
    choice = draw(st.integers(0, 6))
    if kind == NUM:
        if choice == 0:
            return _leaf(draw, NUM, env)
        if choice == 1:
            return N.Unary("-", expression(draw, NUM, env, sub))
        if choice == 2:
            op = _pick(draw, N.ARITHMETIC)
            return N.Binary(op, expression(draw, NUM, env, sub), expression(draw, NUM, env, sub))
        if choice == 3:
            return N.Lag(expression(draw, NUM, env, sub), draw(_LAGS))
        return _call(draw, NUM, env, sub)
    if choice == 0:
        return _leaf(draw, BOOL, env)
    if choice == 1:
        return N.Unary("not", expression(draw, BOOL, env, sub))
    if choice == 2:
        op = _pick(draw, N.LOGIC)
        return N.Binary(op, expression(draw, BOOL, env, sub), expression(draw, BOOL, env, sub))
    if choice == 3:
        return N.Lag(expression(draw, BOOL, env, sub), draw(_LAGS))
    if choice == 4:
        return _call(draw, BOOL, env, sub)
    op = _pick(draw, N.COMPARISONS)
    return N.Binary(op, expression(draw, NUM, env, sub), expression(draw, NUM, env, sub))


def _leaf(draw, kind: str, env) -> N.Expr:
    if kind == NUM:
        if draw(_BOOLS):
            return draw(_LITERAL)
        return N.Name(_pick(draw, list(SERIES) + env["params"] + env[NUM]))
    if env[BOOL] and draw(_BOOLS):
        return N.Name(_pick(draw, env[BOOL]))
    return N.Bool(draw(_BOOLS))


def _call(draw, kind: str, env, depth: int) -> N.Call:
    b = BUILTINS[_pick(draw, _BY_RESULT[kind])]
    args = []
    for arg_kind in b.kinds:
        if arg_kind == "n":
            args.append(_window(draw, env))
        elif arg_kind == "k":
            args.append(_constant(draw, env))
        else:
            args.append(expression(draw, BOOL if arg_kind == "c" else NUM, env, depth))
    return N.Call(b.name, tuple(args))


def _param(draw, name: str) -> tuple[N.Param, bool]:
    """A param and whether it is usable as a window (whole numbers inside 1..max_lookback)."""
    style = _pick(draw, ("window", "number", "percent", "bare"))
    if style == "window":
        lo = draw(st.integers(1, 200))
        hi = draw(st.integers(lo, MAX_LOOKBACK))
        value = draw(st.integers(lo, hi))
        return N.Param(name, N.Num(float(value)), N.Num(float(lo)), N.Num(float(hi))), True
    if style == "percent":
        lo = draw(st.integers(1, 20))
        hi = draw(st.integers(lo, 100))
        value = draw(st.integers(lo, hi))
        return N.Param(name, N.Num(float(value), True), N.Num(float(lo), True), N.Num(float(hi), True)), False
    value = draw(_SIGNED)
    if style == "bare":
        return N.Param(name, N.Num(value)), False
    lo, hi = min(draw(_SIGNED), value), max(draw(_SIGNED), value)
    return N.Param(name, N.Num(value), N.Num(lo), N.Num(hi)), False


def _exit(draw, kind: str, env) -> N.Exit:
    if kind == "max_hold":
        if env["holds"] and draw(_BOOLS):
            return N.Exit(kind, N.Name(_pick(draw, env["holds"])))
        return N.Exit(kind, N.Num(float(draw(st.integers(1, 100_000)))))
    if env["fractions"] and draw(_BOOLS):
        return N.Exit(kind, N.Name(_pick(draw, env["fractions"])))
    top = 1000 if kind == "take_profit" else 100
    if draw(_BOOLS):
        return N.Exit(kind, N.Num(float(draw(st.integers(1, top))), True))
    return N.Exit(kind, N.Num(draw(st.floats(0.001, top / 100, allow_nan=False))))


_COMMENT = _COMMENT_TEXT.map(lambda t: "# " + t)
_COMMENT_LINES = st.lists(st.just("") | _COMMENT, max_size=2).map(tuple)
_TRAILING = st.just("") | _COMMENT


def _layout(draw, stmt):
    return dataclasses.replace(stmt, comments=draw(_COMMENT_LINES), trailing=draw(_TRAILING))


@st.composite
def programs(draw, layout: bool = True) -> N.Program:
    """A random Program that passes check(): the strategy draws names, types and windows so that it does."""
    env = {"params": [], "windows": [], "holds": [], "fractions": [], NUM: [], BOOL: []}
    used: set[str] = set()
    body: list[N.Statement] = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(_NAME)
        if name in used:
            continue
        used.add(name)
        if draw(st.integers(0, 2)) == 0:
            param, window = _param(draw, name)
            body.append(param)
            env["params"].append(name)
            value = param.value
            if window:
                env["windows"].append(name)
                if 1 <= value.literal <= 100_000:
                    env["holds"].append(name)
            if 0 < value.value <= 1:
                env["fractions"].append(name)
        else:
            kind = draw(st.sampled_from([NUM, BOOL]))
            body.append(N.Assign(name, expression(draw, kind, env)))
            env[kind].append(name)
    tail = [N.Rule(kind, expression(draw, BOOL, env)) for kind in ("buy", "sell")]
    if draw(_BOOLS):
        tail += [N.Rule(kind, expression(draw, BOOL, env)) for kind in ("short", "cover")]
    for kind in N.EXIT_KINDS:
        if draw(_BOOLS):
            tail.append(_exit(draw, kind, env))
    body += draw(st.permutations(tail))
    if draw(_BOOLS):
        body.insert(draw(st.integers(0, len(body))), N.StrategyName(draw(_STRATEGY_NAME)))
    if layout:
        body = [_layout(draw, s) for s in body]
    end = draw(st.lists(_COMMENT, max_size=2).map(tuple)) if layout else ()
    return N.Program(tuple(body), end_comments=end)


def program_texts(layout: bool = True) -> st.SearchStrategy[str]:
    """The canonical text (fmt) of a random valid program, comments included."""
    return programs(layout).map(fmt)
