"""Param variants of a checked program, checked fast: what a sweep builds a million times.

`check` walks the whole program (~170 us for a small one); a variant that differs only in its
param values needs only the checks a value reaches, run by the checker's own methods.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from autostrat.errors import StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, _Checker, warmup_bars
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
        # the value-dependent checks, in the order the checker meets them
        self._sites: list[tuple] = []
        for stmt in statements:
            if isinstance(stmt, N.Param):
                self._sites.append(("param", stmt.name, stmt.name))
            elif isinstance(stmt, (N.Assign, N.Rule)):
                self._windows(stmt.expr, self._sites)
            elif isinstance(stmt, N.Exit) and isinstance(stmt.value, N.Name):
                self._sites.append(("exit", stmt.value.id, stmt))
        # A warm-up term depends on the params of its own windows and the warm-ups of the names it
        # reads: what keys its memo. Bindings first, in order, then the rules.
        self._terms = []
        for key, expr in [*typed.bindings.items(), *((None, e) for e in typed.rules.values())]:
            sites: list[tuple] = []
            self._windows(expr, sites)
            names = sorted({n.id for n in _walk(expr) if isinstance(n, N.Name) and n.id in typed.bindings})
            self._terms.append((key, expr, sorted({name for _, name, _ in sites}), names))
        # Outcomes of checks and warm-up terms that passed, keyed by the ids of the param statements
        # they read (a sweep builds each statement once per value, so they repeat). Each entry holds
        # those statements, so an id in a key cannot be reused by another object while it is here.
        # Cleared when it grows large.
        self._memo: dict = {}

    def _windows(self, e: N.Expr, into: list) -> None:
        if isinstance(e, N.Call):  # the checker's order: arguments left to right, depth first
            b = BUILTINS[e.func]
            for arg, pname, kind in zip(e.args, b.params, b.kinds):
                if kind == "n":
                    if isinstance(arg, N.Name):
                        into.append(("window", arg.id, (arg, e.func, pname)))
                elif kind != "k":
                    self._windows(arg, into)
        else:
            for child in N.children(e):
                self._windows(child, into)

    def __call__(self, params: dict[str, N.Param]) -> TypedProgram:
        base = self.base
        program, c, exits = self.checked(params)
        memo = self._memo
        c.lookbacks = dict.fromkeys(c.params, 0)
        warmup = 0
        for key, expr, window_params, names in self._terms:
            used = tuple(c.params[n] for n in window_params)
            memo_key = (id(expr), *map(id, used), *(c.lookbacks[n] for n in names))
            hit = memo.get(memo_key)
            if hit is None:
                hit = memo[memo_key] = (used, c.lookback(expr))
            if key is None:
                warmup = max(warmup, hit[1])
            else:
                c.lookbacks[key] = hit[1]
        return TypedProgram(program, c.params, base.bindings, base.types, base.rules, exits, warmup,
                            base.max_lookback, {k: p.value.value for k, p in c.params.items()})

    def checked(self, params: dict[str, N.Param]) -> tuple[N.Program, _Checker, dict[str, float]]:
        """(program, its checker, its exits) after the value-dependent checks, the warm-up not yet
        computed (GridVariants computes it for a block of points at once); raises the
        StrategyError `check` would."""
        base = self.base
        statements = list(base.program.statements)
        for name, p in params.items():
            statements[self._slot[name]] = p
        program = dataclasses.replace(base.program, statements=tuple(statements))
        c = _Checker(program, base.max_lookback)
        c.params = {**base.params, **params}
        exits = self.check_sites(c, params)
        if c.diags:
            raise StrategyError(c.diags)
        return program, c, exits

    def check_sites(self, c: _Checker, params: dict[str, N.Param]) -> dict[str, float]:
        """Run the value-dependent checks of `params` on checker `c` (whose params hold them);
        return the exits. Failures are left in c.diags."""
        base = self.base
        memo = self._memo
        if len(memo) > _MEMO_LIMIT:
            memo.clear()
        exits = dict(base.exits)
        for k, (what, name, site) in enumerate(self._sites):
            p = params.get(name)
            if p is None:
                continue  # unchanged: it passed in the base program
            hit = memo.get((k, id(p)))
            if hit is None:
                before = len(c.diags)
                if what == "param":
                    value = c.param_range(p)
                elif what == "window":
                    value = c.window(*site)
                else:
                    value = c.exit(site)
                if len(c.diags) > before:
                    continue  # failed: reported, never remembered
                hit = memo[(k, id(p))] = (p, value)
            if what == "exit":
                exits[site.kind] = hit[1]
        return exits


_MEMO_LIMIT = 100_000


class GridVariants:
    """The points of a grid of param values of one checked program, checked a block at a time.

    `statements[name]` holds the param statements a grid gives `name`, one per value. A point
    picks one value per name. `block(index)` returns the valid points among `index` (grid points
    in C order, as itertools.product walks them) with their TypedPrograms: exactly what
    `ParamVariants` (so `check`) gives point by point, for a fraction of the Python. Validity
    and exits are per value, since each value-dependent check reads one param (ParamVariants'
    sites): each value is checked once, alone. The warm-up depends on several params together:
    it is computed for the whole block by the checker's own `warmup_bars` on int64 arrays.
    """

    def __init__(self, typed: TypedProgram, statements: dict[str, list[N.Param]]):
        variants = ParamVariants(typed)
        self.base, self.names, self.statements = typed, list(statements), statements
        self.shape = tuple(len(v) for v in statements.values())
        self._slot, self._terms = variants._slot, variants._terms
        self.valid: dict[str, np.ndarray] = {}
        self.exits: dict[str, list[dict]] = {}  # per value, the exits its param sets
        driven = {name: [site.kind for what, n, site in variants._sites if what == "exit" and n == name]
                  for name in statements}
        # Each value alone, on one checker of the base program (a value's checks read only its own
        # statement, and the source lines a diagnostic quotes are the base's): ParamVariants.checked
        # without a program and a checker per value. The warm-up: for a block at once (_warmups).
        c = _Checker(typed.program, typed.max_lookback)
        for name, values in statements.items():
            ok, exits = np.zeros(len(values), dtype=bool), []
            for i, p in enumerate(values):
                c.params, c.diags = {**typed.params, name: p}, []
                alone = variants.check_sites(c, {name: p})
                if c.diags:
                    exits.append({})
                    continue
                ok[i] = True
                exits.append({kind: alone[kind] for kind in driven[name]})
            self.valid[name], self.exits[name] = ok, exits
        self._values = {n: np.array([p.value.value for p in v], dtype=np.float64) for n, v in statements.items()}

    def __len__(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def block(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, PointBlock]:
        """(valid point indices, their picks (points x params), their PointBlock) of `index`."""
        picks = np.stack(np.unravel_index(index, self.shape), axis=1) if self.shape else np.zeros((len(index), 0), np.int64)
        ok = np.ones(len(index), dtype=bool)
        for j, name in enumerate(self.names):
            ok &= self.valid[name][picks[:, j]]
        index, picks = index[ok], picks[ok]
        return index, picks, PointBlock(self, picks, self._warmups(picks))

    def program(self, row, warmup: int) -> TypedProgram:
        """The TypedProgram of the point that picks value row[j] of param j, with its warm-up."""
        base = self.base
        source_program = base.program
        statements = list(source_program.statements)
        params, exits = dict(base.params), dict(base.exits)
        for name, i in zip(self.names, row):
            statements[self._slot[name]] = params[name] = self.statements[name][i]
            exits.update(self.exits[name][i])
        # The constructor with every field: dataclasses.replace costs twice as much (1.9 against 0.8 us).
        program = N.Program(tuple(statements), source_program.path, source_program.end_comments,
                            source_program.source)
        return TypedProgram(program, params, base.bindings, base.types, base.rules, exits, warmup,
                            base.max_lookback, {k: p.value.value for k, p in params.items()})

    def _warmups(self, picks: np.ndarray) -> np.ndarray:
        """Each point's warm-up, as ParamVariants computes it, for all points at once."""
        n = len(picks)
        values = {name: self._values[name][picks[:, j]].astype(np.int64) for j, name in enumerate(self.names)}
        base = self.base.params

        def window_value(arg: N.Expr):
            if isinstance(arg, N.Num):
                return int(arg.literal)
            return values[arg.id] if arg.id in values else int(base[arg.id].value.value)

        lookbacks: dict = dict.fromkeys(base, 0)
        warmup = np.zeros(n, dtype=np.int64)
        for key, expr, _, _ in self._terms:
            bars = warmup_bars(expr, lookbacks, window_value, np.maximum)
            if key is None:
                warmup = np.maximum(warmup, bars)
            else:
                lookbacks[key] = bars
        return np.broadcast_to(warmup, (n,)).astype(np.int64)


def _walk(e: N.Expr):
    yield e
    for child in N.children(e):
        yield from _walk(child)


class PointBlock:
    """Valid points of a grid as arrays: a sequence of their TypedPrograms, each made when read.

    Compiling a block through the template (autostrat.tape.template.compile_variants) and scoring
    it read only the arrays (`values`, `warmups`, `exit_overrides`): a sweep makes no Python
    object per point. `block[i]` is the point's TypedProgram, as `GridVariants.program` makes it;
    `block[a:b]` is the block of those points.
    """

    def __init__(self, grid: GridVariants, picks: np.ndarray, warmups: np.ndarray):
        self.grid, self.picks, self.warmups = grid, picks, warmups
        self.base = grid.base

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return PointBlock(self.grid, self.picks[i], self.warmups[i])
        return self.grid.program(self.picks[i].tolist(), int(self.warmups[i]))

    def __iter__(self):
        for row, warmup in zip(self.picks.tolist(), self.warmups.tolist()):
            yield self.grid.program(row, warmup)

    def joined(self, other: PointBlock) -> PointBlock:
        """This block's points, then `other`'s (points of the same grid)."""
        return PointBlock(self.grid, np.concatenate([self.picks, other.picks]),
                          np.concatenate([self.warmups, other.warmups]))

    @property
    def names(self) -> list[str]:
        """Each point's strategy name: the base program's (a param value is not part of it)."""
        return [self.base.name] * len(self)

    def values(self, name: str) -> np.ndarray:
        """float64 value of param `name` at each point (the base program's for a param off the grid)."""
        if name in self.grid.statements:
            return self.grid._values[name][self.picks[:, self.grid.names.index(name)]]
        return np.full(len(self), float(self.base.param_values[name]))

    def exit_overrides(self) -> list[dict] | None:
        """Each point's exits (`TypedProgram.exits`), or None when every point has the base program's:
        no grid param sets an exit."""
        driving = [j for j, name in enumerate(self.grid.names) if any(self.grid.exits[name])]
        if not driving:
            return None
        out = []
        for row in self.picks[:, driving].tolist():
            exits = dict(self.base.exits)
            for j, i in zip(driving, row):
                exits.update(self.grid.exits[self.grid.names[j]][i])
            out.append(exits)
        return out


def program_names(typed) -> list[str]:
    """The strategy name of each program of a list or PointBlock."""
    return typed.names if isinstance(typed, PointBlock) else [t.name for t in typed]
