"""Param variants of a checked program, checked fast: what a sweep builds a million times.

`check` walks the whole program (~170 us for a small one); a variant that differs only in its
param values needs only the checks a value reaches, run by the checker's own methods.
"""

from __future__ import annotations

import dataclasses

from autostrat.errors import StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, _Checker
from autostrat.lang.registry import BUILTINS


class ParamVariants:
    """`check` of param variants of one checked program, re-running only what a value reaches.

    `variants(params)` is `check` of the program with its param statements of those names
    replaced by `params`: the same TypedProgram, or the same StrategyError (the same diagnostics
    in the same order). A param's value reaches four of the checker's decisions: the param's own
    range, every window argument naming it (`window`: a whole number within 1..max_lookback, its
    range too), every exit naming it (`exit`), and the warm-up (`lookback`). Those are re-run
    with the checker's own methods; names, types, arity and rules do not depend on values and
    hold because the base program passed. A sweep builds a million variants this way.
    """

    def __init__(self, typed: TypedProgram):
        self.base = typed
        statements = typed.program.statements
        self._slot = {s.name: i for i, s in enumerate(statements) if isinstance(s, N.Param)}
        self._exits = [s for s in statements if isinstance(s, N.Exit)]
        # the value-dependent checks, in the order the checker meets them
        self._sites: list[tuple] = []
        for stmt in statements:
            if isinstance(stmt, N.Param):
                self._sites.append(("param", stmt.name, stmt.name))
            elif isinstance(stmt, (N.Assign, N.Rule)):
                self._windows(stmt.expr)
            elif isinstance(stmt, N.Exit) and isinstance(stmt.value, N.Name):
                self._sites.append(("exit", stmt.value.id, stmt))

    def _windows(self, e: N.Expr) -> None:
        if isinstance(e, N.Call):  # the checker's order: arguments left to right, depth first
            b = BUILTINS[e.func]
            for arg, pname, kind in zip(e.args, b.params, b.kinds):
                if kind == "n":
                    if isinstance(arg, N.Name):
                        self._sites.append(("window", arg.id, (arg, e.func, pname)))
                elif kind != "k":
                    self._windows(arg)
        else:
            for child in N.children(e):
                self._windows(child)

    def __call__(self, params: dict[str, N.Param]) -> TypedProgram:
        base = self.base
        statements = list(base.program.statements)
        for name, p in params.items():
            statements[self._slot[name]] = p
        program = dataclasses.replace(base.program, statements=tuple(statements))
        c = _Checker(program, base.max_lookback)
        c.params = {**base.params, **params}
        exits = dict(base.exits)
        for what, name, site in self._sites:
            if name not in params:
                continue  # unchanged: it passed in the base program
            if what == "param":
                c.param_range(params[name])
            elif what == "window":
                c.window(*site)
            else:
                exits[site.kind] = c.exit(site)
        if c.diags:
            raise StrategyError(c.diags)
        c.lookbacks = dict.fromkeys(c.params, 0)
        for name, expr in base.bindings.items():  # in binding order, as `assign` computes them
            c.lookbacks[name] = c.lookback(expr)
        warmup = max(c.lookback(e) for e in base.rules.values())
        return TypedProgram(program, c.params, base.bindings, base.types, base.rules, exits, warmup,
                            base.max_lookback, {k: p.value.value for k, p in c.params.items()})
