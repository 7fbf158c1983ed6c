"""The slow reference evaluator: a checked program's rules straight from its AST.

It walks each rule's expression tree, resolves names (price series, params, bound names) and
evaluates every node with the pandas/numpy references of tests/reference_kernels.py. It shares no
code with the compiler, the VM or the numba kernels, so comparing the two checks the whole
compile -> tape -> VM path: name resolution, operand order, windows, constants, CSE and register
allocation. It is meant to be obviously right, not fast: no sharing, every node evaluated anew
(bound names once per program, as the language binds them once).
"""

from __future__ import annotations

import inspect

import numpy as np
import reference_kernels as ref

from autostrat.lang import nodes as N
from autostrat.lang.registry import BOOL, BUILTINS

# The language's operators and the reference function that defines each.
BINARY = {
    "+": ref.add, "-": ref.sub, "*": ref.mul, "/": ref.div,
    "<": ref.lt, "<=": ref.le, ">": ref.gt, ">=": ref.ge, "==": ref.eq, "!=": ref.ne,
    "and": ref.and_, "or": ref.or_,
}
UNARY = {"-": ref.neg, "not": ref.not_}

# Reference parameters that read the bar's own data instead of an argument of the call.
BAR_INPUTS = ("high", "low", "close", "volume")
SERIES_PARAMS = ("x", "y", "lo", "hi", "c")
WINDOW_PARAMS = ("n", "m", "fast", "slow", "signal")


def reference_function(name: str):
    """The reference implementation of built-in or operator `name` (language spelling)."""
    return ref.REFERENCE[name]


class ReferenceEvaluator:
    """Evaluates the expressions of one typed program on one market's arrays."""

    def __init__(self, typed, market):
        self.typed = typed
        self.bars = {s: np.asarray(getattr(market, s), dtype=np.float64)
                     for s in ("open", "high", "low", "close", "volume")}
        self.size = len(self.bars["close"])
        self._bound: dict[str, np.ndarray] = {}
        self.last_args: list = []

    def rules(self) -> dict[str, np.ndarray]:
        """Each rule of the program (buy, sell, [short, cover]) as a float64 1.0/0.0 array."""
        return {kind: self.expr(e) for kind, e in self.typed.rules.items()}

    def expr(self, e: N.Expr) -> np.ndarray:
        """The value of expression `e` at every bar (a new array)."""
        with np.errstate(all="ignore"):  # NaN and infinities are values here, not accidents
            return self._expr(e)

    def _expr(self, e: N.Expr) -> np.ndarray:
        if isinstance(e, N.Num):
            return ref.fill(e.value, self.size)
        if isinstance(e, N.Bool):
            return ref.fill(1.0 if e.value else 0.0, self.size)
        if isinstance(e, N.Name):
            return self.name(e.id)
        if isinstance(e, N.Lag):
            lagged = ref.lag(self.expr(e.expr), e.n)
            if self.is_condition(e.expr):
                # A condition is never NaN: before its first bar a lagged condition is false.
                lagged = np.where(np.isnan(lagged), 0.0, lagged)
            return lagged
        if isinstance(e, N.Unary):
            return UNARY[e.op](self.expr(e.operand))
        if isinstance(e, N.Binary):
            return BINARY[e.op](self.expr(e.left), self.expr(e.right))
        if isinstance(e, N.Call):
            return self.call(e)
        raise TypeError(f"not an expression node: {e!r}")

    def is_condition(self, e: N.Expr) -> bool:
        """Whether `e` is a boolean series, by the language's typing rules."""
        if isinstance(e, N.Bool):
            return True
        if isinstance(e, N.Num):
            return False
        if isinstance(e, N.Name):
            if e.id in self.bars or e.id in self.typed.params:
                return False
            return self.is_condition(self.typed.bindings[e.id])
        if isinstance(e, N.Lag):
            return self.is_condition(e.expr)
        if isinstance(e, N.Unary):
            return e.op == "not"
        if isinstance(e, N.Binary):
            return e.op not in ("+", "-", "*", "/")
        return BUILTINS[e.func].result == BOOL

    def name(self, name: str) -> np.ndarray:
        if name in self.bars:
            return self.bars[name].copy()
        if name in self.typed.params:
            return ref.fill(self.param(name), self.size)
        if name not in self._bound:
            self._bound[name] = self.expr(self.typed.bindings[name])
        return self._bound[name].copy()

    def param(self, name: str) -> float:
        # Read from the Param statement itself, not from TypedProgram.param_values.
        return float(self.typed.params[name].value.value)

    def call(self, e: N.Call) -> np.ndarray:
        b = BUILTINS[e.func]
        series, windows, constant = [], [], None
        for arg, kind in zip(e.args, b.kinds):
            if kind in "xc":
                series.append(self.expr(arg))
            elif kind == "n":
                windows.append(self.window(arg))
            else:
                constant = self.constant(arg)
        fn = reference_function(e.func)
        args = []
        for pname in inspect.signature(fn).parameters:
            if pname in BAR_INPUTS and pname not in b.params:
                args.append(self.bars[pname])
            elif pname in SERIES_PARAMS or pname in BAR_INPUTS:
                args.append(series.pop(0))
            elif pname in WINDOW_PARAMS:
                args.append(windows.pop(0))
            elif pname == "k":
                args.append(constant)
            else:
                raise TypeError(f"reference {e.func}: unexpected parameter {pname!r}")
        if series or windows:
            raise TypeError(f"reference {e.func}: arguments left over: {series!r} {windows!r}")
        self.last_args = args  # tests scale their tolerance by the inputs' magnitude
        return np.asarray(fn(*args), dtype=np.float64)

    def window(self, arg: N.Expr) -> int:
        if isinstance(arg, N.Num):
            return int(arg.literal)
        return int(self.param(arg.id))

    def constant(self, arg: N.Expr) -> float:
        if isinstance(arg, N.Num):
            return float(arg.value)
        if isinstance(arg, N.Unary):  # a negated literal
            return -float(arg.operand.value)
        return self.param(arg.id)


def evaluate(typed, market) -> dict[str, np.ndarray]:
    """Every rule of a checked program on a market, by the reference definitions."""
    return ReferenceEvaluator(typed, market).rules()


def evaluate_expr(typed, expr: N.Expr, market) -> np.ndarray:
    """One expression of a checked program (names resolved in it) on a market."""
    return ReferenceEvaluator(typed, market).expr(expr)
