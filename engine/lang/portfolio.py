"""The portfolio statements of a strategy, checked: which assets to hold, how often, at what weights.

A portfolio strategy ranks a universe's assets at each bar and holds the best (and optionally
shorts the worst):

    score = roc(close, 252)[21] - stdev(close, 63)
    hold long top 10% by score
    hold short bottom 10% by score      # optional
    rebalance every 21 bars
    weight equal                        # or: weight by score, either optionally capped at 10%

The rule: a program with a `hold`, `rebalance` or `weight` statement is a portfolio strategy. It
has one or two `hold` statements (at most one per side), exactly one `rebalance`, at most one
`weight` (equal when absent), and no `buy/sell/short/cover` rules or exits: the holds are its
rules. Cross-sectional built-ins (registry group "cross-sectional") are allowed only here.
Only callers that can evaluate one on a universe accept it (`check(..., portfolio=True)`): the
search, bulk runs and the single-market backtest see an error instead. `_Checker` (check.py)
calls `check_portfolio` with itself, so the names and their types come
from the one checker.
"""

from __future__ import annotations

from dataclasses import dataclass

from autostrat.lang import nodes as N
from autostrat.lang.registry import NUM, SERIES

MAX_EVERY = 100_000
_USAGE = "a portfolio strategy: hold long top 10% by score, rebalance every 21 bars, weight equal"


@dataclass(frozen=True)
class Side:
    """One `hold` statement: pick the `edge` (top or bottom) `fraction` of the assets ranked by `by`."""

    edge: str
    fraction: float
    by: str


@dataclass(frozen=True)
class PortfolioSpec:
    """What the portfolio statements say, resolved (params replaced by their values)."""

    long: Side | None
    short: Side | None
    every: int  # bars between rebalances
    weight_by: str | None  # None: equal weights
    cap: float | None  # the largest weight of one asset, a fraction of equity; None: no cap

    @property
    def scores(self) -> tuple[str, ...]:
        """Every name the portfolio reads: the holds' rankings and the weighting, each once."""
        names = [s.by for s in (self.long, self.short) if s is not None]
        if self.weight_by is not None:
            names.append(self.weight_by)
        return tuple(dict.fromkeys(names))


def check_portfolio(ck, statements: list, rule_stmts: dict, exit_stmts: list, end: N.Span) -> PortfolioSpec | None:
    """Check the portfolio statements with the checker `ck` (its error(), types and params); None on errors."""
    before = len(ck.diags)
    for stmt in list(rule_stmts.values()) + exit_stmts:
        word = stmt.kind
        ck.error(stmt.span, f"a portfolio strategy has no `{word}` {'rule' if word in N.RULE_KINDS else 'exit'}: "
                 "its `hold` statements choose what it holds", "remove this line, or the hold/rebalance/weight lines")
    sides: dict[str, N.Hold] = {}
    rebalance: list[N.Rebalance] = []
    weights: list[N.Weight] = []
    for stmt in statements:
        if isinstance(stmt, N.Hold):
            if stmt.side in sides:
                ck.error(stmt.span, f"second `hold {stmt.side}` (the first is on line {sides[stmt.side].span.line})",
                         "a portfolio has at most one long and one short side")
                continue
            sides[stmt.side] = stmt
        elif isinstance(stmt, N.Rebalance):
            if rebalance:
                ck.error(stmt.span, f"second `rebalance` (the first is on line {rebalance[0].span.line})")
                continue
            rebalance.append(stmt)
        else:
            if weights:
                ck.error(stmt.span, f"second `weight` (the first is on line {weights[0].span.line})")
                continue
            weights.append(stmt)
    if not sides:
        ck.error(end, "missing `hold` statement", f"write {_USAGE}")
    if not rebalance:
        ck.error(end, "missing `rebalance every N bars`", "e.g. rebalance every 21 bars (monthly on daily bars)")
    top = 0.5 if len(sides) == 2 else 1.0
    resolved: dict[str, Side] = {}
    for side, stmt in sides.items():
        f = stmt.fraction
        if not 0 < f.value <= top:
            both = " with a long and a short side" if len(sides) == 2 else ""
            ck.error(f.span or stmt.span, f"hold {side} {stmt.edge} {_num(f)} is out of range (more than 0, at most {top:.0%}{both})",
                     "write a percentage of the assets, e.g. 10%")
        if _score(ck, stmt.by, f"hold {side}"):
            resolved[side] = Side(stmt.edge, float(f.value), stmt.by.id)
    every = _every(ck, rebalance[0]) if rebalance else None
    weight_by, cap = None, None
    if weights:
        w = weights[0]
        if w.by is not None and _score(ck, w.by, "weight by"):
            weight_by = w.by.id
        if w.cap is not None:
            cap = float(w.cap.value)
            if not 0 < cap <= 1:
                ck.error(w.cap.span or w.span, f"capped at {_num(w.cap)} is out of range (more than 0, at most 100%)",
                         "write the largest weight of one asset, e.g. capped at 10%")
    if len(ck.diags) > before or every is None:
        return None
    return PortfolioSpec(resolved.get("long"), resolved.get("short"), every, weight_by, cap)


def not_here(ck, stmt) -> None:
    """The error for a portfolio strategy where a single-market strategy is expected."""
    ck.error(stmt.span, "this is a portfolio strategy; here a single-market strategy with buy and sell rules is "
             "expected", "backtest a portfolio strategy on a universe: autostrat backtest FILE --data SPY,QQQ,IWM "
             "(or autostrat.backtest_portfolio); search from it with autostrat evolve --from FILE --data SPY,QQQ,IWM")


def cross_sectional_misuse(ck, call: N.Call) -> None:
    """The error for a cross-sectional built-in in a single-asset strategy."""
    ck.error(call.span, f"{call.func}() compares the assets of a universe; it works only in a portfolio strategy",
             f"rank assets with {_USAGE}; in a single-asset strategy use a time-series built-in "
             "such as percent_rank(x, n) or zscore(x, n)")


def _score(ck, name: N.Name, where: str) -> bool:
    """A ranking or weighting name: a bound number name or a price series."""
    if name.id in SERIES:
        return True
    if name.id in ck.params:
        ck.error(name.span, f"{where} ranks by a param, '{name.id}', which is the same for every asset",
                 "rank by a bound name that differs between assets, e.g. score = roc(close, 252)")
        return False
    kind = ck.expr(name)
    if kind not in (NUM, "unknown"):
        ck.error(name.span, f"{where} ranks by '{name.id}', a condition; it needs a number",
                 "e.g. score = roc(close, 252), then hold long top 10% by score")
        return False
    return kind == NUM


def _every(ck, stmt: N.Rebalance) -> int | None:
    v, what = stmt.every, ""
    if isinstance(v, N.Name):
        if v.id not in ck.params:
            ck.error(v.span, f"rebalance every takes a number of bars or a param; '{v.id}' is not a param",
                     f"declare it first: param {v.id} = 21 in 5..63")
            return None
        what = f" (param {v.id})"
        v = ck.params[v.id].value
    if v.percent or not float(v.literal).is_integer() or not 1 <= v.literal <= MAX_EVERY:
        ck.error(stmt.every.span or stmt.span,
                 f"rebalance every takes a whole number of bars from 1 to {MAX_EVERY}, got {_num(v)}{what}")
        return None
    return int(v.literal)


def _num(n: N.Num) -> str:
    text = f"{int(n.literal)}" if float(n.literal).is_integer() else repr(n.literal)
    return text + ("%" if n.percent else "")
