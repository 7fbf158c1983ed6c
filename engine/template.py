"""Compile a batch of parameter variants of one program by instantiating a template.

A sweep's variants differ only in their params: the same rules and bindings, other numbers.
Lowering each variant's syntax tree again (`compile_many`) costs most of a sweep's Python time.
Instead the program is lowered once with its params left symbolic (a window or a constant that
names a param), and each variant replays that recipe with its own values, keyed the way
`compile_many` keys instructions: identical instructions are still shared across the whole batch
(sma(close, 20) once), including ones that only coincide for some values (fast = slow). The
tape computes exactly what `compile_many` would; only the order of shared instructions and the
register numbers may differ, and it carries no source spans (bulk work never disassembles).
"""

from __future__ import annotations

import numpy as np

from autostrat import nodes as N
from autostrat.check import TypedProgram
from autostrat.compile import NO_REG, RULE_ORDER, Tape, _allocate, _exits, _ProgramCompiler, compile_many
from autostrat.opcodes import CODE, FIRST_FREE_REG, WIDTH


def compile_batch(programs: list[TypedProgram]) -> Tape:
    """`compile_many`, through a template when the programs are param variants of one program."""
    if len(programs) > 1 and same_structure(programs):
        return compile_variants(programs)
    return compile_many(programs)


def same_structure(programs: list[TypedProgram]) -> bool:
    """Whether every program has the first one's rules and bindings (the same syntax tree objects)."""
    first = programs[0]
    for p in programs[1:]:
        if p.rules.keys() != first.rules.keys() or p.bindings.keys() != first.bindings.keys():
            return False
        if any(p.rules[k] is not first.rules[k] for k in first.rules):
            return False
        if any(p.bindings[k] is not first.bindings[k] for k in first.bindings):
            return False
        if p.params.keys() != first.params.keys():
            return False
    return True


class _Param(tuple):
    """A field of an instruction that is a param's value: ("window" | "const", name)."""


class _Recorder:
    """An emitter that records instructions with symbolic param fields instead of emitting them."""

    def __init__(self):
        self.recipe: list[tuple] = []
        self.cse: dict[tuple, int] = {}
        self.next_vreg = FIRST_FREE_REG
        self.program = 0

    def const(self, value):
        return value if isinstance(value, _Param) else ("literal", float(value))

    def emit(self, op: str, regs=(), windows=(), k=0, node=None) -> int:
        key = (op, tuple(regs), tuple(windows), k)
        if key in self.cse:
            return self.cse[key]
        dst = self.next_vreg
        self.next_vreg += 1
        self.recipe.append((dst, op, tuple(regs), tuple(windows), k))
        self.cse[key] = dst
        return dst


class _SymbolicCompiler(_ProgramCompiler):
    """Lowers a program leaving every use of a param as a _Param field."""

    def expr(self, e: N.Expr) -> int:
        if isinstance(e, N.Name) and e.id in self.typed.params:
            return self.em.emit("fill", k=_Param(("const", e.id)))
        return super().expr(e)

    def window(self, arg: N.Expr):
        if isinstance(arg, N.Name):
            return _Param(("window", arg.id))
        return super().window(arg)

    def constant(self, arg: N.Expr):
        if isinstance(arg, N.Name):
            return _Param(("const", arg.id))
        return super().constant(arg)


def compile_variants(programs: list[TypedProgram]) -> Tape:
    """One tape for param variants of one program (see the module docstring)."""
    recorder = _Recorder()
    template = _SymbolicCompiler(recorder, programs[0]).rule_regs()
    # The recipe with every field ready for a key: opcode, source slots (template registers,
    # padded with 0), windows (an int, or a param to read) and the constant (None, a literal or a param).
    steps = []
    for dst, op, srcs, windows, k in recorder.recipe:
        steps.append((dst, CODE[op], tuple(srcs) + (0,) * (3 - len(srcs)),
                      tuple(windows) + (0,) * (3 - len(windows)), None if k == 0 else k))
    rows: list[list[int]] = []
    cse: dict[tuple, int] = {}
    consts: list[float] = []
    const_index: dict[float, int] = {}
    next_reg = FIRST_FREE_REG
    outputs = []
    for typed in programs:
        values = typed.param_values
        regs = {r: r for r in range(FIRST_FREE_REG)}
        for dst, code, srcs, windows, k in steps:
            if k is None:
                kk = 0
            else:
                value = float(values[k[1]]) if isinstance(k, _Param) else k[1]
                kk = const_index.get(value)
                if kk is None:
                    kk = const_index[value] = len(consts)
                    consts.append(value)
            w = tuple(int(values[x[1]]) if isinstance(x, _Param) else x for x in windows)
            key = (code, regs[srcs[0]], regs[srcs[1]], regs[srcs[2]], *w, kk)
            reg = cse.get(key)
            if reg is None:
                reg = cse[key] = next_reg
                next_reg += 1
                rows.append([code, reg, *key[1:]])
            regs[dst] = reg
        outputs.append([regs[r] if r != NO_REG else NO_REG for r in template])
    code_arr = np.array(rows, dtype=np.int64).reshape(-1, WIDTH)
    out = np.array(outputs, dtype=np.int64).reshape(-1, 4)
    n_regs = _allocate(code_arr, out)
    return Tape(code=code_arr, consts=np.array(consts, dtype=np.float64), n_regs=n_regs, outputs=out,
                warmups=np.array([t.warmup for t in programs], dtype=np.int64),
                exits=np.array([_exits(t) for t in programs], dtype=np.float64).reshape(-1, 4),
                names=tuple(t.name for t in programs), sources=tuple(t.program.source for t in programs))


__all__ = ["RULE_ORDER", "compile_batch", "compile_variants", "same_structure"]
