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

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.variants import PointBlock
from autostrat.tape.compile import (FILL, NO_REG, RULE_ORDER, Tape, _Emitter, _ProgramCompiler, assemble, compile_many,
                                    exit_row)
from autostrat.tape.opcodes import FIRST_FREE_REG, WIDTH


def compile_batch(programs: list[TypedProgram] | PointBlock) -> Tape:
    """`compile_many`, through a template when the programs are param variants of one program
    (always for a PointBlock, a grid's points)."""
    if isinstance(programs, PointBlock) or (len(programs) > 1 and same_structure(programs)):
        return compile_variants(programs)
    return compile_many(programs)


def same_structure(programs: list[TypedProgram]) -> bool:
    """Whether every program has the first one's rules and bindings (the same syntax tree objects)."""
    first = programs[0]
    for p in programs[1:]:
        if p.rules is first.rules and p.bindings is first.bindings and p.params.keys() == first.params.keys():
            continue  # a grid's variants share the base program's tables (autostrat.lang.variants)
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


class _Recorder(_Emitter):
    """An emitter that records instructions with symbolic param fields instead of emitting them."""

    def __init__(self):
        super().__init__()
        self.recipe: list[tuple] = []

    def const(self, value):
        return value if isinstance(value, _Param) else ("literal", float(value))

    def add(self, key: tuple, node) -> int:
        dst = self.next_vreg
        self.next_vreg += 1
        code, a, b, c, n1, n2, n3, k = key
        self.recipe.append((dst, code, (a, b, c), (n1, n2, n3), k))
        self.cse[key] = dst
        return dst


class _SymbolicCompiler(_ProgramCompiler):
    """Lowers a program leaving every use of a param as a _Param field."""

    def expr(self, e: N.Expr) -> int:
        if isinstance(e, N.Name) and e.id in self.typed.params:
            return self.em.emit(FILL, k=_Param(("const", e.id)))
        return super().expr(e)

    def window(self, arg: N.Expr):
        if isinstance(arg, N.Name):
            return _Param(("window", arg.id))
        return super().window(arg)

    def constant(self, arg: N.Expr):
        if isinstance(arg, N.Name):
            return _Param(("const", arg.id))
        return super().constant(arg)


def compile_variants(programs: list[TypedProgram] | PointBlock) -> Tape:
    """One tape for param variants of one program (see the module docstring); a PointBlock's
    points are read from its arrays, without a TypedProgram per point.

    The recipe is replayed one step at a time for all variants at once: a step's instruction keys
    form one int64 array (a row per variant), `np.unique` finds the distinct ones, and only those
    meet the batch-wide table of instructions already emitted. Instructions come out step by step
    (every variant's first step, then every variant's second, ...), so sources precede their uses.
    """
    block = isinstance(programs, PointBlock)
    base = programs.base if block else programs[0]
    recorder = _Recorder()
    template = _SymbolicCompiler(recorder, base).rule_regs()
    n = len(programs)
    values: dict[str, np.ndarray] = {}

    def param(name: str) -> np.ndarray:
        if name not in values:
            values[name] = (programs.values(name) if block
                            else np.array([float(t.param_values[name]) for t in programs]))
        return values[name]

    consts: list[float] = []
    const_index: dict[float, int] = {}

    def const_slots(k) -> np.ndarray:
        """The constant-pool index of field k for every variant (0 when the step has none)."""
        if k == 0:
            return np.zeros(n, dtype=np.int64)
        column = param(k[1]) if isinstance(k, _Param) else np.full(n, k[1])
        distinct, inverse = np.unique(column, return_inverse=True)
        slots = np.empty(len(distinct), dtype=np.int64)
        for i, value in enumerate(distinct.tolist()):
            slot = const_index.get(value)
            if slot is None:
                slot = const_index[value] = len(consts)
                consts.append(value)
            slots[i] = slot
        return slots[inverse.reshape(-1)]

    regs = {r: np.full(n, r, dtype=np.int64) for r in range(FIRST_FREE_REG)}
    emitted = _Emitted()
    keys = np.zeros((n, WIDTH - 1), dtype=np.int64)  # opcode, 3 sources, 3 windows, constant
    for dst, code, srcs, windows, k in recorder.recipe:
        keys[:, 0] = code
        for j in range(3):
            keys[:, 1 + j] = regs[srcs[j]]  # an unused source is register 0, an unused window 0
            w = windows[j]
            # int() of each value, as compile_many takes a window (truncated toward zero)
            keys[:, 4 + j] = param(w[1]).astype(np.int64) if isinstance(w, _Param) else w
        keys[:, 7] = const_slots(k)
        distinct, inverse = unique_rows(keys)
        regs[dst] = emitted.registers(code, distinct)[inverse]
    out = np.full((n, 4), NO_REG, dtype=np.int64)
    for j, r in enumerate(template):
        if r != NO_REG:
            out[:, j] = regs[r]
    # Registers are numbered in emission order (each instruction its own), which is already a valid
    # tape. Reuse can only recycle registers that are not rule outputs, live to the end; when
    # those are at most a tenth of the tape (a sweep: mostly each variant's own comparisons), the
    # Python allocation pass costs more than the memory it could save.
    rows = emitted.code()
    outputs = np.zeros(FIRST_FREE_REG + len(rows), dtype=bool)
    outputs[out[out >= FIRST_FREE_REG]] = True
    intermediates = len(rows) - int(outputs.sum())
    code_arr, n_regs, out, rules, run_code = assemble(rows, out, allocate=intermediates > len(rows) // 10)
    if block:
        warmups = programs.warmups.astype(np.int64)
        overrides = programs.exit_overrides()
        exits = (np.tile(np.array(exit_row(base.exits), dtype=np.float64), (n, 1)) if overrides is None
                 else np.array([exit_row(e) for e in overrides], dtype=np.float64).reshape(-1, 4))
        names, sources = (base.name,) * n, (base.program.source,) * n  # a point's program keeps the base text
    else:
        warmups = np.array([t.warmup for t in programs], dtype=np.int64)
        exits = np.array([exit_row(t.exits) for t in programs], dtype=np.float64).reshape(-1, 4)
        names, sources = tuple(t.name for t in programs), tuple(t.program.source for t in programs)
    return Tape(code=code_arr, consts=np.array(consts, dtype=np.float64), n_regs=n_regs, outputs=out,
                rules=rules, run_code=run_code, warmups=warmups, exits=exits, names=names, sources=sources)


class _Emitted:
    """The instructions a batch emitted so far, in order, each writing its own register
    (FIRST_FREE_REG + its index), kept as int64 blocks: a step's distinct keys are matched
    against the earlier ones of the same opcode with array operations, not one at a time."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []  # (op, dst, a, b, c, n1, n2, n3, k) rows
        self.by_op: dict[int, list[np.ndarray]] = {}  # opcode -> its blocks' keys with dst in column 1
        self.count = 0

    def registers(self, op: int, distinct: np.ndarray) -> np.ndarray:
        """The register of each of a step's distinct keys (rows of opcode `op`, sorted as
        unique_rows sorts them): an earlier instruction's when one has the same key, else a new
        one, numbered in the order of the keys."""
        reg = np.full(len(distinct), -1, dtype=np.int64)
        earlier = self.by_op.get(op)
        if earlier:
            old = np.concatenate(earlier)
            both, inverse = unique_rows(np.concatenate([np.delete(old, 1, axis=1), distinct]))
            owner = np.full(len(both), -1, dtype=np.int64)
            owner[inverse[:len(old)]] = old[:, 1]  # each earlier key is distinct: one owner a group
            reg = owner[inverse[len(old):]]
        new = reg < 0
        fresh = FIRST_FREE_REG + self.count + np.arange(int(new.sum()), dtype=np.int64)
        reg[new] = fresh
        if fresh.size:
            block = np.insert(distinct[new], 1, fresh, axis=1)
            self.blocks.append(block)
            self.by_op.setdefault(op, []).append(block)
            self.count += fresh.size
        return reg

    def code(self) -> np.ndarray:
        """Every emitted instruction as an int64 (n, WIDTH) array, in emission order."""
        return np.concatenate(self.blocks) if self.blocks else np.zeros((0, WIDTH), dtype=np.int64)


def unique_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(keys, axis=0, return_inverse=True)` of an int64 matrix, the same arrays, faster.

    A step's keys vary in one or two columns (a window, a source register); sorting whole rows as
    records costs about 1 ms per thousand. Each varying column is ranked alone and the ranks are
    combined in mixed radix, leftmost column most significant: the rows' lexicographic order,
    which is np.unique's. Ranks whose product could overflow fall back to np.unique itself.
    """
    n = keys.shape[0]
    code = np.zeros(n, dtype=np.int64)
    size = 1
    for j in np.flatnonzero((keys != keys[:1]).any(axis=0)).tolist():
        values, rank = np.unique(keys[:, j], return_inverse=True)
        size *= len(values)
        if size >= 2**62:
            distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
            return distinct, inverse.reshape(-1)
        code = code * len(values) + rank.reshape(-1)
    _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
    return keys[first], inverse.reshape(-1)


__all__ = ["RULE_ORDER", "compile_batch", "compile_variants", "same_structure", "unique_rows"]
