"""Evaluate a portfolio program's scores over a universe: assets x bars registers.

A portfolio program's names are number series per asset, like a single-asset program's, plus the
cross-sectional built-ins that compare the assets at each bar. Evaluation runs in stages:

1. Every maximal sub-expression without a cross-sectional call (through bound names too) is a
   time-series expression: all of them are compiled into one tape (identical sub-expressions
   computed once) and the VM runs it on each asset's own bars, so `close[21]` is 21 of that
   asset's bars back and a market's missing days never enter its indicators.
2. A cross-sectional call runs its kernel (autostrat.tape.xsection) on its argument's assets x
   bars array.
3. An operator or built-in above a cross-sectional call (`rank(a) + rank(b)`, `sma(rank(a), 5)`)
   is compiled alone, its operands standing in the tape's first price registers, and run on each
   asset's own bars again.

The result has NaN wherever an asset has no bar. Every stage reads bar t and earlier bars only,
so scores are causal as the single-asset VM is.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.registry import BOOL, BUILTINS
from autostrat.tape.compile import compile_many
from autostrat.tape.kernel_table import kernel_table
from autostrat.tape.xsection import XS_CODE, run_assets_nb, xsection_nb

_SLOTS = ("open", "high", "low")  # the registers a stage-3 node's operands stand in


class _Scores:
    def __init__(self, typed: TypedProgram, panel):
        self.typed = typed
        self.panel = panel
        self.present = np.isfinite(panel.close)
        rows = [np.flatnonzero(self.present[a]) for a in range(panel.n_assets)]
        self.flat_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)
        self._xs: dict[int, bool] = {}
        self._named: dict[str, np.ndarray] = {}
        self._done: dict[int, np.ndarray] = {}

    # --- which nodes need the whole universe ----------------------------------------------------
    def has_xs(self, e: N.Expr) -> bool:
        key = id(e)
        if key not in self._xs:
            if isinstance(e, N.Name):
                bound = self.typed.bindings.get(e.id)
                found = bound is not None and self.has_xs(bound)
            elif isinstance(e, N.Call) and BUILTINS[e.func].cross_sectional:
                found = True
            else:
                found = any(self.has_xs(k) for k in N.children(e))
            self._xs[key] = found
        return self._xs[key]

    def pure_roots(self, e: N.Expr, found: list) -> None:
        """The maximal time-series sub-expressions under e (stage 1's outputs), each once."""
        if not self.has_xs(e):
            if not any(r is e for r in found):
                found.append(e)
        elif isinstance(e, N.Name):
            self.pure_roots(self.typed.bindings[e.id], found)
        elif isinstance(e, N.Call) and BUILTINS[e.func].cross_sectional:
            self.pure_roots(e.args[0], found)  # a constant too (`rank(5)`): the kernel reads its values
        else:
            for k in N.children(e):
                if not _constant(k, self.typed):
                    self.pure_roots(k, found)

    # --- evaluation -------------------------------------------------------------------------------
    def run(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        exprs = [N.Name(name) for name in names]
        roots: list = []
        for e in exprs:
            self.pure_roots(e, roots)
        p = self.panel
        for e, values in zip(roots, self.per_asset(roots, p.open, p.high, p.low, p.close, p.volume)):
            self._done[id(e)] = values
        return {name: self.value(e) for name, e in zip(names, exprs)}

    def value(self, e: N.Expr) -> np.ndarray:
        if id(e) in self._done:
            return self._done[id(e)]
        if isinstance(e, N.Name):
            if e.id not in self._named:
                self._named[e.id] = self.value(self.typed.bindings[e.id])
            return self._named[e.id]
        if isinstance(e, N.Call) and BUILTINS[e.func].cross_sectional:
            out = cross_section(e.func, self.value(e.args[0]))
        else:
            out = self.node(e)
        self._done[id(e)] = out
        return out

    def node(self, e: N.Expr) -> np.ndarray:
        """A node above a cross-sectional call: compiled alone, its operands in the first registers."""
        operands: list[np.ndarray] = []

        def slot(k: N.Expr) -> N.Expr:
            if _constant(k, self.typed):
                return k
            operands.append(self.value(k))
            return N.Name(_SLOTS[len(operands) - 1])

        if isinstance(e, N.Lag):
            alone: N.Expr = N.Lag(slot(e.expr), e.n)
            if _is_bool(e.expr, self.typed):  # as compile.py does: a lagged condition is false before its first bar
                alone = N.Binary("!=", alone, N.Num(0.0))
        elif isinstance(e, N.Unary):
            alone = N.Unary(e.op, slot(e.operand))
        elif isinstance(e, N.Binary):
            alone = N.Binary(e.op, slot(e.left), slot(e.right))
        else:
            kinds = BUILTINS[e.func].kinds
            alone = N.Call(e.func, tuple(slot(a) if kind in "xc" else a for a, kind in zip(e.args, kinds)))
        zero = np.zeros_like(self.panel.close)
        inputs = operands + [zero] * (5 - len(operands))
        return self.per_asset([alone], *inputs)[0]

    def per_asset(self, exprs: list, open_, high, low, close, volume) -> list[np.ndarray]:
        """Run the expressions as one tape on every asset's own bars; NaN where an asset has none."""
        if not exprs:
            return []
        typed = self.typed
        programs = [dataclasses.replace(typed, rules={"buy": e}, exits={}, warmup=0, portfolio=None) for e in exprs]
        tape = compile_many(programs)
        out = np.full((len(exprs), *self.panel.close.shape), np.nan)
        run_assets_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), open_, high, low, close, volume,
                      self.offsets, self.flat_rows, np.ascontiguousarray(tape.outputs[:, 0]), out)
        return list(out)


def cross_section(func: str, x: np.ndarray) -> np.ndarray:
    """A cross-sectional built-in (`rank`, ...) on an assets x bars array."""
    out = np.empty((x.shape[1], x.shape[0]))
    xsection_nb(XS_CODE[func], np.ascontiguousarray(x.T), out)  # the kernel reads bars x assets
    return np.ascontiguousarray(out.T)


def _constant(e: N.Expr, typed: TypedProgram) -> bool:
    """A literal or a param: the same on every asset and bar, compiled in place."""
    if isinstance(e, (N.Num, N.Bool)):
        return True
    if isinstance(e, N.Name):
        return e.id in typed.params
    return isinstance(e, N.Unary) and e.op == "-" and isinstance(e.operand, N.Num)


def _is_bool(e: N.Expr, typed: TypedProgram) -> bool:
    while isinstance(e, N.Lag):
        e = e.expr
    if isinstance(e, N.Bool):
        return True
    if isinstance(e, N.Name):
        return typed.types.get(e.id) == BOOL
    if isinstance(e, N.Unary):
        return e.op == "not"
    if isinstance(e, N.Binary):
        return e.op in N.COMPARISONS or e.op in N.LOGIC
    if isinstance(e, N.Call):
        return BUILTINS[e.func].result == BOOL
    return False


def evaluate_scores(typed: TypedProgram, panel, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The assets x bars values of a portfolio program's names (its holds' and weight's by default)."""
    if typed.portfolio is None:
        raise ValueError(f"{typed.name or 'this strategy'} is not a portfolio strategy")
    names = names or typed.portfolio.scores
    series = [n for n in names if n in ("open", "high", "low", "close", "volume")]
    out = {n: np.array(getattr(panel, n)) for n in series}
    rest = tuple(n for n in names if n not in out)
    out.update(_Scores(typed, panel).run(rest))
    return {n: out[n] for n in names}
