"""The value operators of the `mutate` proposer (move, swap, flip, exit) and the Draft they share.

Each operator takes a Draft (a program's statements without its header comments, and what its rules
reach) and a seeded random.Random, and returns the new statement list with a one-line description,
or None when the program gives it nothing to work on. Operators build nodes the way the parser does
(a negative number inside an expression is Unary("-", Num(positive))), so the formatted text parses
back to an equal AST. Validity (windows, ranges, types) is left to the checker, which the caller
runs on every result; operators only aim to make rejections rare.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from autostrat.lang import nodes as N
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.fmt import number
from autostrat.lang.registry import BUILTINS, MAX_LOOKBACK

# Functions of one signature (kinds and result) and one scale, so thresholds stay meaningful.
FAMILIES = (
    ("sma", "ema", "wma", "rma"),
    ("highest", "lowest"),
    ("bars_since_high", "bars_since_low"),
    ("rsi", "percent_rank"),
    ("stoch_k", "mfi"),
    ("plus_di", "minus_di"),
    ("cross_above", "cross_below"),
    ("bb_upper", "bb_lower"),
    ("keltner_upper", "keltner_lower"),
    ("min", "max"),
)
FAMILY_OF = {f: fam for fam in FAMILIES for f in fam}
PRICES = ("open", "high", "low", "close")
# Oscillators on a 0..100 scale (williams_r: -100..0, its thresholds are written negated).
BOUNDED = frozenset("rsi percent_rank stoch_k stoch_d williams_r mfi adx plus_di minus_di".split())
FLIPS = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "==": "!=", "!=": "=="}
EXIT_VALUES = {
    "stop_loss": (3, 4, 5, 6, 7, 8, 10, 12, 15, 20),
    "take_profit": (5, 8, 10, 15, 20, 25, 30, 40, 50, 75, 100),
    "trailing_stop": (3, 5, 7, 8, 10, 12, 15, 20, 25),
    "max_hold": (3, 5, 10, 15, 20, 30, 40, 60, 90, 120),
}
EXIT_TOP = {"stop_loss": 1.0, "trailing_stop": 1.0, "take_profit": 10.0}  # as fractions


class Site(NamedTuple):
    """One node of a statement's expression, with where it sits."""

    stmt: int  # index into Draft.statements
    path: tuple[int, ...]  # child indices from the statement's expression down to the node
    node: N.Expr
    parent: N.Expr | None
    index: int  # position among the parent's children


@dataclass
class Draft:
    """The program being mutated: its statements (header comments removed) and derived views."""

    statements: list
    donors: list = field(default_factory=list)  # (label, Program) for crossover

    def __post_init__(self):
        self.params = {s.name: s for s in self.statements if isinstance(s, N.Param)}
        self.assigns = {s.name: s for s in self.statements if isinstance(s, N.Assign)}
        self.reach = reachable(self.statements)
        self.sites: list[Site] = []
        for i, s in enumerate(self.statements):
            if isinstance(s, N.Rule) or (isinstance(s, N.Assign) and s.name in self.reach):
                self.sites.extend(_sites(i, s.expr))

    def where(self, i: int) -> str:
        """How a description names statement i: `f` for a binding, `buy rule` for a rule."""
        s = self.statements[i]
        return f"{s.kind} rule" if isinstance(s, N.Rule) else s.name

    def with_node(self, site: Site, new: N.Expr) -> list:
        """The statements with the node at `site` replaced by `new`."""
        out = list(self.statements)
        s = out[site.stmt]
        out[site.stmt] = replace(s, expr=replace_at(s.expr, site.path, new))
        return out

    def with_stmt(self, i: int, stmt) -> list:
        """The statements with statement i replaced by `stmt`."""
        out = list(self.statements)
        out[i] = stmt
        return out


# --- expression helpers ---------------------------------------------------------------------------


def _sites(stmt: int, root: N.Expr):
    stack = [(root, (), None, 0)]
    while stack:
        node, path, parent, index = stack.pop()
        yield Site(stmt, path, node, parent, index)
        kids = N.children(node)
        for j in range(len(kids) - 1, -1, -1):
            stack.append((kids[j], path + (j,), node, j))


def rebuild(node: N.Expr, kids) -> N.Expr:
    """A copy of `node` with new children (depth and size recomputed, span dropped)."""
    if isinstance(node, N.Call):
        return N.Call(node.func, tuple(kids))
    if isinstance(node, N.Lag):
        return N.Lag(kids[0], node.n)
    if isinstance(node, N.Unary):
        return N.Unary(node.op, kids[0])
    if isinstance(node, N.Binary):
        return N.Binary(node.op, kids[0], kids[1])
    return node


def replace_at(root: N.Expr, path: tuple[int, ...], new: N.Expr) -> N.Expr:
    """`root` with the node at `path` replaced by `new`."""
    if not path:
        return new
    kids = list(N.children(root))
    kids[path[0]] = replace_at(kids[path[0]], path[1:], new)
    return rebuild(root, kids)


def rename(e: N.Expr, mapping: dict[str, str]) -> N.Expr:
    """`e` with every Name in `mapping` renamed."""
    if isinstance(e, N.Name):
        return N.Name(mapping[e.id]) if mapping.get(e.id, e.id) != e.id else e
    kids = N.children(e)
    if not kids:
        return e
    new = [rename(k, mapping) for k in kids]
    return e if all(a is b for a, b in zip(new, kids)) else rebuild(e, new)


def references(e: N.Expr) -> list[str]:
    """The names an expression reads, in order."""
    return [n.id for n in N.walk(e) if isinstance(n, N.Name)]


def reachable(statements) -> set[str]:
    """Names of params and bindings that a rule, an exit or a portfolio statement depends on, directly or not."""
    defs = {}
    for s in statements:
        if isinstance(s, (N.Assign, N.Param)):
            defs.setdefault(s.name, s)
    stack: list[str] = []
    for s in statements:
        if isinstance(s, N.Rule):
            stack += references(s.expr)
        elif isinstance(s, N.Exit) and isinstance(s.value, N.Name):
            stack.append(s.value.id)
        elif isinstance(s, (N.Hold, N.Weight)) and s.by is not None:  # a portfolio's rankings are its roots
            stack.append(s.by.id)
        elif isinstance(s, N.Rebalance) and isinstance(s.every, N.Name):
            stack.append(s.every.id)
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        if isinstance(defs[name], N.Assign):
            stack += references(defs[name].expr)
    return seen


def flatten(e: N.Expr, op: str) -> list[N.Expr]:
    """The operands of a chain of one logic operator: `a and b and c` -> [a, b, c]."""
    out, stack = [], [e]
    while stack:
        node = stack.pop()
        if isinstance(node, N.Binary) and node.op == op:
            stack += [node.right, node.left]
        else:
            out.append(node)
    return out


def chain(op: str, parts: list[N.Expr]) -> N.Expr:
    """Join operands with a logic operator, left-associative as the parser builds it."""
    out = parts[0]
    for p in parts[1:]:
        out = N.Binary(op, out, p)
    return out


def conditions(e: N.Expr) -> int:
    """How many conditions a rule combines with and/or at its top level."""
    return sum(conditions(p) for p in flatten(e, e.op)) if isinstance(e, N.Binary) and e.op in N.LOGIC else 1


def short(e: N.Expr, limit: int = 60) -> str:
    """An expression's text, cut to fit in a one-line description."""
    text = expr_text(e)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def nice(x: float, sig: int = 2) -> float:
    """x rounded to `sig` significant digits."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, sig - 1 - math.floor(math.log10(abs(x)))))


def _factor(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _pick(rng: random.Random, options: dict[str, float]) -> str | None:
    names = [k for k, w in options.items() if w > 0]
    if not names:
        return None
    return rng.choices(names, weights=[options[k] for k in names])[0]


# --- move -----------------------------------------------------------------------------------------


def move(d: Draft, rng: random.Random):
    """Move a param within its range, a literal window, a threshold or a lag."""
    params = [p for p in d.params.values() if p.name in d.reach and _movable(p)]
    windows, thresholds, lags = [], [], []
    for s in d.sites:
        parent = s.parent
        if isinstance(s.node, N.Lag) and s.node.n >= 1:
            lags.append(s)
        if isinstance(parent, N.Call) and parent.func in BUILTINS:
            kind = BUILTINS[parent.func].kinds[s.index] if s.index < len(BUILTINS[parent.func].kinds) else ""
            if kind == "n" and isinstance(s.node, N.Num):
                windows.append(s)
            elif kind == "k":
                thresholds += [(t, None) for t in _threshold(s)]
        elif isinstance(parent, N.Binary) and parent.op in N.COMPARISONS:
            other = parent.right if s.index == 0 else parent.left
            thresholds += [(t, other) for t in _threshold(s)]
    what = _pick(rng, {"param": 3 * bool(params), "window": 2 * bool(windows),
                       "threshold": 2 * bool(thresholds), "lag": 0.5 * bool(lags)})
    if what == "param":
        p = rng.choice(params)
        value = move_param(p, rng)
        if value is None:
            return None
        i = d.statements.index(p)
        return d.with_stmt(i, replace(p, value=value)), f"param {p.name} {number(p.value)} -> {number(value)}"
    if what == "window":
        s = rng.choice(windows)
        w = int(s.node.literal)
        new = step_window(w, rng)
        desc = f"{s.parent.func} window {w} -> {new} in {d.where(s.stmt)}"
        return d.with_node(s, N.Num(float(new))), desc
    if what == "threshold":
        s, other = rng.choice(thresholds)
        new = nudge(s.node.literal, rng, 0.75, 1.33, bounded=_bounded(d, other))
        if new is None:
            return None
        num = N.Num(new, s.node.percent)
        sign = "-" if isinstance(s.parent, N.Unary) else ""
        desc = f"threshold {sign}{number(s.node)} -> {sign}{number(num)} in {d.where(s.stmt)}"
        return d.with_node(s, num), desc
    if what == "lag":
        s = rng.choice(lags)
        n = s.node.n
        new = max(1, n + rng.choice((-1, 1))) if n <= 3 or rng.random() < 0.5 else max(1, round(n * _factor(rng, 0.5, 2)))
        if new == n:
            new = n + 1
        return d.with_node(s, N.Lag(s.node.expr, new)), f"lag [{n}] -> [{new}] in {d.where(s.stmt)}"
    return None


def _threshold(s: Site) -> list[Site]:
    """The movable number at a comparison operand or `k` argument: a literal, maybe negated."""
    node = s.node
    if isinstance(node, N.Unary) and node.op == "-" and isinstance(node.operand, N.Num):
        node = node.operand
        s = Site(s.stmt, s.path + (0,), node, s.node, 0)
    if isinstance(node, N.Num) and node.literal > 0:
        return [s]
    return []


def _bounded(d: Draft, other: N.Expr | None) -> bool:
    """Whether a threshold is compared with a 0..100 oscillator (so it stays inside 1..99)."""
    for _ in range(8):  # follow names and lags to the call that produces the value
        if isinstance(other, N.Name) and other.id in d.assigns:
            other = d.assigns[other.id].expr
        elif isinstance(other, N.Lag):
            other = other.expr
        else:
            break
    return isinstance(other, N.Call) and other.func in BOUNDED


def nudge(x: float, rng: random.Random, lo: float, hi: float, *, bounded: bool = False) -> float | None:
    """A positive number moved by a random factor in lo..hi, rounded; None if it cannot move."""
    integer = float(x).is_integer() and x >= 10
    y = x * _factor(rng, lo, hi)
    y = float(round(y)) if integer else nice(y)
    if y == x:
        unit = 1.0 if integer else 10.0 ** (math.floor(math.log10(x)) - 1)
        y = x + unit if rng.random() < 0.5 or x - unit <= 0 else x - unit
        y = y if integer else nice(y, 3)
    if bounded:
        y = min(max(y, 1.0), 99.0)
    return y if y != x and y > 0 else None


def step_window(w: int, rng: random.Random) -> int:
    """A new window near w: a small step for short windows, a factor of 0.5..2 otherwise."""
    if w <= 5 or rng.random() < 0.3:
        new = w + rng.choice((-2, -1, 1, 2))
    else:
        new = round(w * _factor(rng, 0.5, 2.0))
    new = min(max(new, 1), MAX_LOOKBACK)
    if new == w:
        new = w + 1 if w < MAX_LOOKBACK else w - 1
    return new


def _movable(p: N.Param) -> bool:
    return p.lo is None or p.hi is None or p.lo.value < p.hi.value


def move_param(p: N.Param, rng: random.Random) -> N.Num | None:
    """A new value for a param: inside its declared range, whole if the param is an integer one."""
    v = p.value
    ranged = p.lo is not None and p.hi is not None
    if p.is_int:
        cur = int(v.literal)
        if ranged:
            lo, hi = int(p.lo.literal), int(p.hi.literal)
            if rng.random() < 0.5:
                new = rng.randint(lo, hi - 1)
                new += new >= cur
            else:
                new = min(max(round(cur * _factor(rng, 0.67, 1.5)), lo), hi)
                if new == cur:
                    new = cur + 1 if cur < hi else cur - 1
            new = min(max(new, lo), hi)
        else:
            new = step_window(cur, rng) if cur >= 1 else cur + rng.choice((-1, 1))
        return N.Num(float(new)) if new != cur else None
    scale = 100.0 if v.percent else 1.0
    cur = v.literal
    if not ranged:
        new = nudge(abs(cur), rng, 0.67, 1.5) if cur else None
        return None if new is None else N.Num(math.copysign(new, cur), v.percent)
    # The range in the units the value is written in (`6%` in `2%..15%` moves between 2 and 15).
    lo = p.lo.literal if p.lo.percent == v.percent else p.lo.value * scale
    hi = p.hi.literal if p.hi.percent == v.percent else p.hi.value * scale
    if rng.random() < 0.5 or cur == 0:
        new = rng.uniform(lo, hi)
    else:
        new = cur * _factor(rng, 0.67, 1.5)
    for sig in (2, 3, 4):
        cand = min(max(nice(new, sig), lo), hi)
        num = N.Num(float(cand), v.percent)
        if cand != cur and p.lo.value <= num.value <= p.hi.value:
            return num
    return None


# --- swap, flip -------------------------------------------------------------------------------------


def swap(d: Draft, rng: random.Random):
    """Swap a built-in for another of its family, or one price series for another."""
    calls = [s for s in d.sites if isinstance(s.node, N.Call) and s.node.func in FAMILY_OF]
    prices = [s for s in d.sites if isinstance(s.node, N.Name) and s.node.id in PRICES]
    what = _pick(rng, {"call": 4 * bool(calls), "series": 1 * bool(prices)})
    if what == "call":
        s = rng.choice(calls)
        old = s.node.func
        new = rng.choice([f for f in FAMILY_OF[old] if f != old])
        return d.with_node(s, N.Call(new, s.node.args)), f"swap {old} for {new} in {d.where(s.stmt)}"
    if what == "series":
        s = rng.choice(prices)
        old = s.node.id
        new = rng.choice([p for p in PRICES if p != old])
        return d.with_node(s, N.Name(new)), f"swap {old} for {new} in {d.where(s.stmt)}"
    return None


def flip(d: Draft, rng: random.Random):
    """Flip a comparison (< to >, <= to >=, == to !=) or, less often, and to or."""
    comps = [s for s in d.sites if isinstance(s.node, N.Binary) and s.node.op in FLIPS]
    logic = [s for s in d.sites if isinstance(s.node, N.Binary) and s.node.op in N.LOGIC]
    what = _pick(rng, {"comparison": 6 * bool(comps), "logic": 1 * bool(logic)})
    if what is None:
        return None
    s = rng.choice(comps if what == "comparison" else logic)
    old = s.node.op
    new = FLIPS[old] if what == "comparison" else ("or" if old == "and" else "and")
    return d.with_node(s, N.Binary(new, s.node.left, s.node.right)), f"flip {old} to {new} in {d.where(s.stmt)}"


# --- exits ---------------------------------------------------------------------------------------------


def exit_(d: Draft, rng: random.Random):
    """Add a missing exit, change an exit's value, or remove an exit."""
    present = [(i, s) for i, s in enumerate(d.statements) if isinstance(s, N.Exit)]
    have = {s.kind for _, s in present}
    missing = [k for k in N.EXIT_KINDS if k not in have]
    what = _pick(rng, {"add": 3 * bool(missing), "change": 3 * bool(present), "remove": 1 * bool(present)})
    if what == "add":
        kind = rng.choice(missing)
        value = _exit_num(kind, rng.choice(EXIT_VALUES[kind]))
        return [*d.statements, N.Exit(kind, value)], f"add {kind} {number(value)}"
    if what is None:
        return None
    i, e = rng.choice(present)
    if what == "remove":
        return d.statements[:i] + d.statements[i + 1:], f"remove {e.kind} {expr_text(e.value)}"
    if isinstance(e.value, N.Name):
        p = d.params.get(e.value.id)
        value = move_param(p, rng) if p is not None else None
        if value is None:
            return None
        j = d.statements.index(p)
        desc = f"change {e.kind} via param {p.name} {number(p.value)} -> {number(value)}"
        return d.with_stmt(j, replace(p, value=value)), desc
    old = e.value
    if e.kind == "max_hold":
        new = N.Num(float(step_window(int(old.literal), rng))) if old.literal >= 1 else None
    else:
        lit = nudge(old.literal, rng, 0.6, 1.6) if old.literal > 0 else None
        top = EXIT_TOP[e.kind] * (100 if old.percent else 1)
        new = None if lit is None or min(lit, top) == old.literal else N.Num(min(lit, top), old.percent)
    if new is None or new.literal > 100_000:
        return None
    return d.with_stmt(i, replace(e, value=new)), f"change {e.kind} {number(old)} -> {number(new)}"


def _exit_num(kind: str, value: int) -> N.Num:
    return N.Num(float(value), kind != "max_hold")
