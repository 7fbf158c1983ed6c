"""Robustness of a strategy: its numbers jittered, its costs doubled, its fills switched.

A result that holds only at the exact numbers the search found is fitted to noise. Three checks:

- parameter jitter: every number the strategy is tuned by is multiplied by 1 - J, 1 or 1 + J
  (J = 0.2 by default): param values, window arguments of built-ins (rounded, at least 1),
  constant arguments (Bollinger and Keltner widths), numbers compared directly with a series
  (thresholds: `rsi(close, 14) < 30`) and exit levels (stop_loss, take_profit, trailing_stop,
  max_hold). Zeros stay zero, and numbers inside arithmetic (`close * 1.02`) and lags are not
  moved. With k such numbers the grid is all 3^k combinations when that is at most
  `max_points`; otherwise the base, each number alone up and down, all up, all down, and
  combinations drawn with a seeded RNG up to `max_points`. Variants that evaluate the same
  (same canonical hash) are counted once; variants the checker refuses are skipped;
- costs doubled: commission and slippage both twice the run's;
- fills: every rule filled at the next bar's open and at the same bar's close.

A portfolio strategy (on a Panel) is checked the same way, with its `hold` fractions, its
`rebalance` period and its weight cap jittered too; it always fills at the next open, so it has
no fill rows.

Everything is evaluated in bulk (autostrat.sim.bulk) on train and validation (and the walk-forward
folds of the objective), never on the sealed test period.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.panel import Panel
from autostrat.data.universe import Universe, aggregate
from autostrat.errors import StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, check
from autostrat.lang.fmt import canonical_hash, number
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.registry import BUILTINS
from autostrat.sim.backtest import SEARCH_PERIODS, load_strategy, period_spans
from autostrat.sim.bulk import metrics_array
from autostrat.sim.evaluate import metrics_dicts
from autostrat.sim.objective import Objective
from autostrat.sim.portfolio_bulk import portfolio_metrics_dicts
from autostrat.sim.walkforward import fold_spans

JITTER = 0.2
MAX_POINTS = 81  # 3^4: a full grid for up to four numbers


@dataclass(frozen=True)
class Knob:
    """One number the jitter moves: what it is, where, and its value."""

    kind: str  # param | window | constant | threshold | exit | portfolio
    label: str
    value: float
    integer: bool
    text: str = ""  # as written: 8% for a stop_loss of 0.08


def _scaled(num: N.Num, factor: float, integer: bool) -> N.Num:
    if integer:
        v = float(round(num.literal * factor))
        if num.literal >= 1:  # a window stays a window
            v = max(1.0, v)
    else:
        v = float(f"{num.literal * factor:.6g}")  # 7.2%, not 7.199999999999999%
    return N.Num(v, num.percent)


class _Walker:
    """Visits the jitterable numbers of a program in a fixed order; rebuilds it with new ones."""

    def __init__(self, visit: Callable[[Knob, N.Num], N.Num]):
        self.visit = visit

    def program(self, p: N.Program) -> N.Program:
        stmts = tuple(self.statement(s) for s in p.statements)
        return dataclasses.replace(p, statements=stmts)

    def statement(self, s):
        if isinstance(s, N.Param):
            if s.value.literal == 0:
                return s
            new = self.visit(Knob("param", f"param {s.name}", s.value.value, s.is_int, number(s.value)), s.value)
            lo, hi = s.lo, s.hi  # a jittered value outside the declared range widens it
            if lo is not None and new.value < lo.value:
                lo = new
            if hi is not None and new.value > hi.value:
                hi = new
            return dataclasses.replace(s, value=new, lo=lo, hi=hi)
        if isinstance(s, (N.Assign, N.Rule)):
            return dataclasses.replace(s, expr=self.expr(s.expr))
        if isinstance(s, N.Hold):
            knob = Knob("portfolio", f"hold {s.side} {s.edge} {number(s.fraction)}", s.fraction.value, False,
                        number(s.fraction))
            return dataclasses.replace(s, fraction=self.visit(knob, s.fraction))
        if isinstance(s, N.Rebalance) and isinstance(s.every, N.Num):
            knob = Knob("portfolio", f"rebalance every {number(s.every)} bars", s.every.value, True, number(s.every))
            return dataclasses.replace(s, every=self.visit(knob, s.every))
        if isinstance(s, N.Weight) and s.cap is not None:
            knob = Knob("portfolio", f"weight cap {number(s.cap)}", s.cap.value, False, number(s.cap))
            return dataclasses.replace(s, cap=self.visit(knob, s.cap))
        if isinstance(s, N.Exit) and isinstance(s.value, N.Num) and s.value.literal != 0:
            knob = Knob("exit", s.kind, s.value.value, s.kind == "max_hold", number(s.value))
            return dataclasses.replace(s, value=self.visit(knob, s.value))
        return s

    def expr(self, e: N.Expr) -> N.Expr:
        if isinstance(e, N.Call):
            kinds = BUILTINS[e.func].kinds if e.func in BUILTINS else ()
            args = []
            for i, a in enumerate(e.args):
                kind = kinds[i] if i < len(kinds) else "x"
                if isinstance(a, N.Num) and a.literal != 0 and kind in ("n", "k"):
                    what = "window" if kind == "n" else "constant"
                    label = f"{what} {number(a)} of {e.func}"
                    args.append(self.visit(Knob(what, label, a.value, kind == "n", number(a)), a))
                else:
                    args.append(self.expr(a))
            return dataclasses.replace(e, args=tuple(args))
        if isinstance(e, N.Binary):
            sides = []
            for side, other in ((e.left, e.right), (e.right, e.left)):
                if e.op in N.COMPARISONS and isinstance(side, N.Num) and side.literal != 0:
                    label = f"threshold {number(side)} against {expr_text(other)}"
                    sides.append(self.visit(Knob("threshold", label, side.value, False, number(side)), side))
                else:
                    sides.append(self.expr(side))
            return dataclasses.replace(e, left=sides[0], right=sides[1])
        if isinstance(e, N.Unary):
            return dataclasses.replace(e, operand=self.expr(e.operand))
        if isinstance(e, N.Lag):
            return dataclasses.replace(e, expr=self.expr(e.expr))
        return e


def knobs(program: N.Program) -> list[Knob]:
    """The numbers `jitter` moves, in the order its factors refer to them."""
    found: list[Knob] = []

    def visit(knob: Knob, num: N.Num) -> N.Num:
        found.append(knob)
        return num

    _Walker(visit).program(program)
    return found


def jitter(program: N.Program, factors: list[float]) -> N.Program:
    """`program` with its k-th knob multiplied by factors[k] (windows rounded, at least 1)."""
    it = iter(range(len(factors)))

    def visit(knob: Knob, num: N.Num) -> N.Num:
        f = factors[next(it)]
        return num if f == 1.0 else _scaled(num, f, knob.integer)

    return _Walker(visit).program(program)


def grid(k: int, factor: float = JITTER, max_points: int = MAX_POINTS, seed: int = 0) -> list[tuple[float, ...]]:
    """The factor tuples of the jitter grid for k numbers (the base, all ones, first)."""
    levels = (1.0 - factor, 1.0, 1.0 + factor)
    base = (1.0,) * k
    if 3 ** k <= max_points:
        points = [base] + [p for p in itertools.product(levels, repeat=k) if p != base]
        return points
    points = [base]
    for i in range(k):
        for f in (levels[0], levels[2]):
            points.append(base[:i] + (f,) + base[i + 1:])
    points += [(levels[0],) * k, (levels[2],) * k]
    seen = set(points)
    rng = random.Random(f"jitter:{seed}:{k}")
    tries = 0
    while len(points) < max_points and tries < 100 * max_points:
        tries += 1
        p = tuple(rng.choice(levels) for _ in range(k))
        if p not in seen:
            seen.add(p)
            points.append(p)
    return points[:max(max_points, 2 * k + 3)]


def _spans(market: Market, settings: Settings) -> dict[str, tuple[int, int]]:
    spans = period_spans(market, settings, SEARCH_PERIODS)
    s = settings.search
    if s.folds:
        spans.update(fold_spans(spans["train"][0], spans["validation"][1], s.folds, s.fold_mode))
    return spans


def _scores(typed: list[TypedProgram], market, settings: Settings, objective: Objective) -> list[dict]:
    if isinstance(market, Panel):  # portfolio strategies, on the universe's calendar
        return [_score(m, objective)
                for m in portfolio_metrics_dicts(typed, market, settings, _spans(market.benchmark(), settings))]
    if isinstance(market, Universe):  # each market on its own periods, then the `across` aggregate
        per = []
        for m in market:
            spans = _spans(m, settings)
            per.append(metrics_array(typed, m, spans, settings))
        values = _across(np.stack(per), settings.search.across)
    else:
        spans = _spans(market, settings)
        values = metrics_array(typed, market, spans, settings)
    return [_score(metrics_dicts(row, spans), objective) for row in values]


def _score(m: dict[str, dict[str, float]], objective: Objective) -> dict[str, float]:
    v = m["validation"]
    return {"objective": objective.value(m), "validation_return": v["total_return"],
            "validation_sharpe": v["sharpe"], "excess": v["excess_return"]}


def _across(values: np.ndarray, how: str) -> np.ndarray:
    """(A, ...) -> (...): the mean, median or min over the first axis, NaN skipped (NaN when all are)."""
    out = np.full(values.shape[1:], np.nan)
    flat_in, flat_out = values.reshape(values.shape[0], -1), out.reshape(-1)
    for j in range(flat_in.shape[1]):
        flat_out[j] = aggregate(flat_in[:, j], how)
    return out


def _spread(scores: list[dict], name: str, detail: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "detail": detail, "n": len(scores)}
    for key in ("objective", "validation_return", "validation_sharpe"):
        xs = np.array([s[key] for s in scores], dtype=float)
        xs = xs[~np.isnan(xs)]
        row[key] = [float(xs.min()), float(np.median(xs)), float(xs.max())] if len(xs) else [np.nan] * 3
    row["beats_buy_hold"] = float(np.mean([s["excess"] > 0 for s in scores])) if scores else np.nan
    return row


def robustness(strategy, market: Market, settings: Settings, objective: Objective | None = None,
               factor: float = JITTER, max_points: int = MAX_POINTS) -> dict[str, Any]:
    """The robustness checks of one strategy (text, path, Program or TypedProgram), as a dict.

    Keys: factor, knobs ([{kind, label, value}]), points (distinct jittered variants evaluated),
    found ({objective, validation_return, validation_sharpe} of the strategy as it is) and rows:
    one per check ({name, detail, n, objective, validation_return, validation_sharpe: [min,
    median, max], beats_buy_hold: the share with a positive excess return on validation}).
    """
    objective = objective or Objective.from_settings(settings.search)
    portfolio = isinstance(market, Panel)
    base = load_strategy(strategy, portfolio=portfolio)
    ks = knobs(base.program)
    typed, seen = [base], {canonical_hash(base.program)}
    for factors in grid(len(ks), factor, max_points)[1:]:
        program = jitter(base.program, list(factors))
        h = canonical_hash(program)
        if h in seen:
            continue
        seen.add(h)
        try:
            typed.append(check(program, portfolio=portfolio))
        except StrategyError:
            continue  # e.g. a window past the longest lookback: not a strategy
    scores = _scores(typed, market, settings, objective)
    bt = settings.backtest
    doubled = dataclasses.replace(settings, backtest=dataclasses.replace(
        bt, commission_bps=2 * bt.commission_bps, slippage_bps=2 * bt.slippage_bps))
    rows = [_spread(scores, f"parameters jittered by +-{factor:.0%}",
                    f"{len(scores)} variants of {len(ks)} number{'s' if len(ks) != 1 else ''}"),
            _spread(_scores([base], market, doubled, objective), "costs doubled",
                    f"{2 * bt.commission_bps:g} + {2 * bt.slippage_bps:g} bps per side")]
    for fill in () if portfolio else ("next_open", "close"):  # a portfolio always fills at the next open
        s = dataclasses.replace(settings, backtest=dataclasses.replace(bt, fill=fill))
        detail = "the run's fill" if fill == bt.fill else "the other fill"
        rows.append(_spread(_scores([base], market, s, objective), f"fill at {fill.replace('_', ' ')}", detail))
    found = {k: scores[0][k] for k in ("objective", "validation_return", "validation_sharpe")}
    return {"factor": factor, "knobs": [dataclasses.asdict(k) for k in ks], "points": len(scores),
            "found": found, "rows": rows}
