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
import functools
import weakref

import numpy as np

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.registry import BOOL, BUILTINS
from autostrat.tape.compile import compile_many
from autostrat.tape.kernel_table import kernel_table
from autostrat.tape.kernels import KERNELS, kernel_params
from autostrat.tape.opcodes import NAMES, SERIES_REGS
from autostrat.tape.xsection import XS_CODE, run_assets_nb, xsection_nb

_SLOTS = ("open", "high", "low")  # the registers a stage-3 node's operands stand in


class _Rows:
    """Which bars each asset has: asset a's are flat[offsets[a]:offsets[a + 1]]."""

    def __init__(self, panel):
        present = np.isfinite(panel.close)
        rows = [np.flatnonzero(present[a]) for a in range(panel.n_assets)]
        self.flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.offsets = np.concatenate([[0], np.cumsum([r.size for r in rows])]).astype(np.int64)


_ROWS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _rows_of(panel) -> _Rows:
    """A panel's _Rows, computed once per panel (its arrays are read-only) and dropped with it."""
    if panel not in _ROWS:
        _ROWS[panel] = _Rows(panel)
    return _ROWS[panel]


class _Scores:
    def __init__(self, typed: TypedProgram, panel, rows: _Rows | None = None, shared: dict | None = None):
        self.typed = typed
        self.panel = panel
        self._rows = rows
        self.shared = {} if shared is None else shared  # cross-sectional results, shared by a batch's programs
        self._xs: dict[int, bool] = {}
        self._names: dict[str, N.Name] = {}
        self._named: dict[str, np.ndarray] = {}
        self._done: dict[int, np.ndarray] = {}

    @property
    def rows(self) -> _Rows:
        if self._rows is None:
            self._rows = _rows_of(self.panel)
        return self._rows

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
    def name(self, name: str) -> N.Name:
        """The one node standing for `name` here: nodes are known by id, so each must stay alive."""
        if name not in self._names:
            self._names[name] = N.Name(name)
        return self._names[name]

    def roots(self, names: tuple[str, ...]) -> list:
        """Stage 1's expressions for `names`, each once."""
        found: list = []
        for name in names:
            self.pure_roots(self.name(name), found)
        return found

    def finish(self, names: tuple[str, ...], roots: list, values) -> dict[str, np.ndarray]:
        """The names' values, given stage 1's `values` of `roots` (stages 2 and 3 run here)."""
        for e, v in zip(roots, values):
            self._done[id(e)] = v
        return {name: self.value(self.name(name)) for name in names}

    def run(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        roots = self.roots(names)
        p = self.panel
        return self.finish(names, roots, self.per_asset(roots, p.open, p.high, p.low, p.close, p.volume))

    def value(self, e: N.Expr) -> np.ndarray:
        if id(e) in self._done:
            return self._done[id(e)]
        if isinstance(e, N.Name):
            if e.id not in self._named:
                self._named[e.id] = self.value(self.typed.bindings[e.id])
            return self._named[e.id]
        if isinstance(e, N.Call) and BUILTINS[e.func].cross_sectional:
            x = self.value(e.args[0])
            key = (e.func, id(x))
            hit = self.shared.get(key)
            if hit is None or hit[0] is not x:  # the array itself is kept beside, so its id is not reused
                hit = self.shared[key] = (x, cross_section(e.func, x))
            out = hit[1]
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
        out = np.empty((len(exprs), *self.panel.close.shape))  # every entry written
        regs = np.ascontiguousarray(tape.outputs[:, 0])
        run_assets_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), open_, high, low, close, volume,
                      self.rows.offsets, self.rows.flat, regs, out, tape_reads(tape.code, regs))
        return list(out)


def tape_reads(code: np.ndarray, out_regs: np.ndarray) -> np.ndarray:
    """Which of the five input registers (open, high, low, close, volume) a tape may read.

    An instruction reads its source registers; a kernel with a `high`, `low`, `close` or `volume`
    parameter (atr, mfi, obv, ...) reads that series without naming it; an output may be an
    input register itself (a name bound to `volume`). An operand slot an instruction does not
    use may hold any number, so a True may be spare; a False is certain.
    """
    reads = np.isin(np.arange(5), code[:, 2:5]) | np.isin(np.arange(5), out_regs)
    for op in np.unique(code[:, 0]):
        reads[list(_bar_params(int(op)))] = True
    return reads


@functools.cache
def _bar_params(op: int) -> tuple[int, ...]:
    name = NAMES[op]
    return tuple(SERIES_REGS[p] for p in kernel_params(name) if p in SERIES_REGS) if name in KERNELS else ()


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


_SERIES = ("open", "high", "low", "close", "volume")


def evaluate_scores(typed: TypedProgram, panel, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The assets x bars values of a portfolio program's names (its holds' and weight's by default)."""
    if typed.portfolio is None:
        raise ValueError(f"{typed.name or 'this strategy'} is not a portfolio strategy")
    names = names or typed.portfolio.scores
    out = {n: np.array(getattr(panel, n)) for n in names if n in _SERIES}
    rest = tuple(n for n in names if n not in out)
    out.update(_Scores(typed, panel).run(rest))
    return {n: out[n] for n in names}


def arrays_needed(typed: TypedProgram) -> int:
    """How many assets x bars arrays evaluating the program's scores holds at most (a bound for chunking)."""
    state = _Scores(typed, None)
    names = tuple(n for n in typed.portfolio.scores if n not in _SERIES)
    seen: set[int] = set()

    def above(e: N.Expr) -> int:  # the nodes over stage 1 (cross-sectional calls and stage 3), each once
        if id(e) in seen or not state.has_xs(e):
            return 0
        seen.add(id(e))
        if isinstance(e, N.Name):
            return above(typed.bindings[e.id])
        return 1 + sum(above(k) for k in N.children(e))

    return len(state.roots(names)) + sum(above(state.name(n)) for n in names) + len(typed.portfolio.scores)


def evaluate_scores_many(programs: list[TypedProgram], panel) -> list[dict[str, np.ndarray]]:
    """`evaluate_scores` of each program (its holds' and weight's names), the batch evaluated together.

    Stage 1 of every program is one tape, so a time-series expression that several programs
    write (`roc(close, 252)` in twenty momentum variants) is computed once and stored once; a
    cross-sectional call on such a shared expression is computed once too. The values are those
    of `evaluate_scores` bit for bit: each is computed by the same kernels on the same inputs.
    Memory: one assets x bars array per distinct stage-1 expression, plus each program's own.
    """
    for t in programs:
        if t.portfolio is None:
            raise ValueError(f"{t.name or 'a strategy'} is not a portfolio strategy")
    rows, shared = _rows_of(panel), {}
    states, wanted, roots, exprs = [], [], [], []
    for t in programs:
        names = tuple(n for n in t.portfolio.scores if n not in _SERIES)
        state = _Scores(t, panel, rows, shared)
        found = state.roots(names)
        states.append(state), wanted.append(names), roots.append(found)
        exprs += [dataclasses.replace(t, rules={"buy": e}, exits={}, warmup=0, portfolio=None) for e in found]
    values: list = []
    if exprs:
        tape = compile_many(exprs)
        regs, which = np.unique(tape.outputs[:, 0], return_inverse=True)  # shared expressions: one register
        out = np.empty((regs.size, *panel.close.shape))  # every entry written
        run_assets_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), panel.open, panel.high,
                      panel.low, panel.close, panel.volume, rows.offsets, rows.flat, regs, out,
                      tape_reads(tape.code, regs))
        values = [out[k] for k in which]
    results, k = [], 0
    for t, state, names, found in zip(programs, states, wanted, roots):
        done = state.finish(names, found, values[k:k + len(found)])
        k += len(found)
        series = {n: np.array(getattr(panel, n)) for n in t.portfolio.scores if n in _SERIES}
        results.append({n: series[n] if n in series else done[n] for n in t.portfolio.scores})
    return results
