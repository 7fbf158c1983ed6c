"""Compile a checked program into a Tape: a flat instruction list the numba VM runs.

Post-order emission: each expression node becomes one instruction writing a fresh virtual
register; identical sub-expressions (same opcode, same operands) are emitted once (hash-consing),
across the statements of a program and, in `compile_many`, across a whole batch of programs, so
`sma(close, 20)` is computed once for a thousand strategies. Then a linear scan over the tape maps
virtual registers onto as few physical registers as possible: a register is reused once its last
reader has run, and never as the output of an instruction that reads it (kernels need that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.registry import BOOL, BUILTINS
from autostrat.tape.opcodes import CODE, FIRST_FREE_REG, META, OPERATORS, SERIES_REGS, WIDTH

RULE_ORDER = ("buy", "sell", "short", "cover")
NO_REG = -1


@dataclass(frozen=True)
class Tape:
    """A compiled batch of one or more programs.

    code     int64 (n_instructions, 9): op, dst, a, b, c, n1, n2, n3, k (see autostrat.tape.opcodes)
    consts   float64 constant pool (indexed by the k column and by fill instructions)
    n_regs   registers the VM allocates (0..4 are open high low close volume)
    outputs  int64 (n_programs, 4): the register of each program's buy, sell, short, cover rule
             (-1 when the program has no such rule)
    warmups  int64 (n_programs,): bars before which each program's rules are ignored
    exits    float64 (n_programs, 4): stop_loss, take_profit, trailing_stop fractions (NaN when
             off) and max_hold bars (-1 when off)
    rules    int64 (n_programs, 4, 3): how evaluation reads each rule (see `rule_forms`): a
             comparison of two registers (its opcode and the two registers), or a register
             (-1, the register, -1), or off (-1, -1, -1)
    run_code `code` without the comparisons that only feed `rules`: what evaluation runs. Those
             comparisons are made bar by bar in the simulator, so a batch writes no register per
             rule (a rule row is as long as the data, and a batch has two or more per program)
    spans    the source span of each instruction, and `texts` its source expression
    origins  the program (index into names and sources) whose source each instruction came from:
             the first one that needed it, when programs share it
    """

    code: np.ndarray
    consts: np.ndarray
    n_regs: int
    outputs: np.ndarray
    warmups: np.ndarray
    exits: np.ndarray
    rules: np.ndarray
    run_code: np.ndarray
    spans: tuple[N.Span, ...] = ()
    nodes: tuple = field(default=(), repr=False)  # the AST node of each instruction
    names: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=(), repr=False)
    origins: tuple[int, ...] = ()

    @property
    def n_programs(self) -> int:
        return int(self.outputs.shape[0])

    def __len__(self) -> int:
        return int(self.code.shape[0])

    @property
    def texts(self) -> tuple[str, ...]:
        """The source expression of each instruction (formatted on demand: bulk compiles skip it)."""
        return tuple(expr_text(n) if n is not None else "" for n in self.nodes)


# Built-in calls and operators as opcodes, looked up once here instead of per node.
_CALLS = {name: (CODE[name], b.kinds) for name, b in BUILTINS.items() if name in CODE}
_OPS = {op: CODE[kernel] for op, kernel in OPERATORS.items()}
FILL, LAG, NE, NEG, NOT = (CODE[op] for op in ("fill", "lag", "ne", "neg", "not"))
_SERIES_WINDOW = ("x", "n")


class _Emitter:
    def __init__(self):
        self.rows: list[list[int]] = []
        self.spans: list[N.Span] = []
        self.nodes: list = []
        self.consts: list[float] = []
        self.const_index: dict[float, int] = {}
        self.cse: dict[tuple, int] = {}
        self.next_vreg = FIRST_FREE_REG
        self.origins: list[int] = []
        self.program = 0  # the program being lowered

    def const(self, value: float) -> int:
        key = float(value)
        slot = self.const_index.get(key)
        if slot is None:
            slot = self.const_index[key] = len(self.consts)
            self.consts.append(key)
        return slot

    def emit(self, code: int, a=0, b=0, c=0, n1=0, n2=0, n3=0, k=0, node=None) -> int:
        """The register of instruction (code, sources a b c, windows n1 n2 n3, constant k): a new
        one, or the one an identical instruction of the batch already writes."""
        key = (code, a, b, c, n1, n2, n3, k)
        hit = self.cse.get(key)
        return hit if hit is not None else self.add(key, node)

    def add(self, key: tuple, node) -> int:
        """Emit instruction `key` (emit's key, not in `cse`) into a new register."""
        dst = self.next_vreg
        self.next_vreg += 1
        self.rows.append([key[0], dst, *key[1:]])
        self.spans.append(node.span if node is not None else N.NO_SPAN)
        self.nodes.append(node)
        self.origins.append(self.program)
        self.cse[key] = dst
        return dst


class _ProgramCompiler:
    """Lowers one typed program's rules into a shared emitter."""

    def __init__(self, em: _Emitter, typed: TypedProgram):
        self.em = em
        self.typed = typed
        self.bound: dict[str, int] = {}

    def rule_regs(self) -> list[int]:
        rules = self.typed.rules
        return [self.expr(rules[k]) if k in rules else NO_REG for k in RULE_ORDER]

    def expr(self, e: N.Expr) -> int:
        # A bulk compile spends its Python time here: dispatch on the exact node type, commonest
        # first, and take a price series or a literal window in place, without a call per leaf.
        em = self.em
        kind = type(e)
        if kind is N.Call:
            code, kinds = _CALLS[e.func]
            if kinds == _SERIES_WINDOW:  # sma(close, 20): the commonest call, taken in one step
                x, n = e.args
                reg = SERIES_REGS[x.id] if type(x) is N.Name and x.id in SERIES_REGS else self.expr(x)
                key = (code, reg, 0, 0, int(n.literal) if type(n) is N.Num else self.window(n), 0, 0, 0)
                hit = em.cse.get(key)  # em.emit, inlined on the two commonest paths
                return hit if hit is not None else em.add(key, e)
            regs = [0, 0, 0]
            windows = [0, 0, 0]
            nr = nw = k = 0
            for arg, arg_kind in zip(e.args, kinds):
                if arg_kind == "n":
                    windows[nw] = int(arg.literal) if type(arg) is N.Num else self.window(arg)
                    nw += 1
                elif arg_kind == "k":
                    k = em.const(self.constant(arg))
                else:  # a series ("x") or a condition ("c")
                    if type(arg) is N.Name and arg.id in SERIES_REGS:
                        regs[nr] = SERIES_REGS[arg.id]
                    else:
                        regs[nr] = self.expr(arg)
                    nr += 1
            return em.emit(code, regs[0], regs[1], regs[2], windows[0], windows[1], windows[2], k, e)
        if kind is N.Binary:
            key = (_OPS[e.op], self.expr(e.left), self.expr(e.right), 0, 0, 0, 0, 0)
            hit = em.cse.get(key)
            return hit if hit is not None else em.add(key, e)
        if kind is N.Name:
            if e.id in SERIES_REGS:
                return SERIES_REGS[e.id]
            if e.id in self.typed.params:
                return em.emit(FILL, k=em.const(self.typed.param_values[e.id]), node=e)
            if e.id not in self.bound:
                self.bound[e.id] = self.expr(self.typed.bindings[e.id])
            return self.bound[e.id]
        if kind is N.Num:
            return em.emit(FILL, k=em.const(e.value), node=e)
        if kind is N.Bool:
            return em.emit(FILL, k=em.const(1.0 if e.value else 0.0), node=e)
        if kind is N.Lag:
            inner = self.expr(e.expr)
            if e.n == 0:
                return inner
            lagged = em.emit(LAG, inner, n1=e.n, node=e)
            if self.is_bool(e.expr):
                # lag_nb leaves NaN in the first n bars, and the logic kernels read NaN as true; a
                # condition is never NaN: before its first bar a lagged condition is false, as
                # (close > open)[1] equals close[1] > open[1]. `ne` maps NaN to 0.
                zero = em.emit(FILL, k=em.const(0.0), node=e)
                lagged = em.emit(NE, lagged, zero, node=e)
            return lagged
        if kind is N.Unary:
            if e.op == "-" and isinstance(e.operand, N.Num):  # a negative literal is one constant
                return em.emit(FILL, k=em.const(-e.operand.value), node=e)
            return em.emit(NEG if e.op == "-" else NOT, self.expr(e.operand), node=e)
        raise TypeError(f"cannot compile {e!r}")

    def is_bool(self, e: N.Expr) -> bool:
        """Whether an expression is a condition (the checker has typed every name already)."""
        while isinstance(e, N.Lag):
            e = e.expr
        if isinstance(e, N.Bool):
            return True
        if isinstance(e, N.Name):
            return self.typed.types.get(e.id) == BOOL
        if isinstance(e, N.Unary):
            return e.op == "not"
        if isinstance(e, N.Binary):
            return e.op in N.COMPARISONS or e.op in N.LOGIC
        if isinstance(e, N.Call):
            return BUILTINS[e.func].result == BOOL
        return False

    def window(self, arg: N.Expr) -> int:
        if isinstance(arg, N.Num):
            return int(arg.literal)
        return int(self.typed.param_values[arg.id])

    def constant(self, arg: N.Expr) -> float:
        if isinstance(arg, N.Num):
            return arg.value
        if isinstance(arg, N.Unary):
            return -arg.operand.value
        return float(self.typed.param_values[arg.id])


_NO_EXITS = (np.nan, np.nan, np.nan, -1.0)


def exit_row(ex: dict[str, float]) -> tuple[float, ...]:
    """A program's exits (TypedProgram.exits) as Tape.exits' row: stop_loss, take_profit,
    trailing_stop (NaN = off), max_hold (-1 = off)."""
    if not ex:
        return _NO_EXITS
    return (ex.get("stop_loss", np.nan), ex.get("take_profit", np.nan), ex.get("trailing_stop", np.nan),
            ex.get("max_hold", -1.0))


def compile_many(programs: list[TypedProgram]) -> Tape:
    """Compile a batch into one tape, sharing identical sub-expressions across all of it."""
    em = _Emitter()
    outputs = []
    for p, typed in enumerate(programs):
        em.program = p
        outputs.append(_ProgramCompiler(em, typed).rule_regs())
    code, n_regs, out, rules, run_code = assemble(em.rows, outputs)
    return Tape(
        code=code,
        consts=np.array(em.consts, dtype=np.float64),
        n_regs=n_regs,
        outputs=out,
        warmups=np.array([t.warmup for t in programs], dtype=np.int64),
        exits=np.array([exit_row(t.exits) for t in programs], dtype=np.float64).reshape(-1, 4),
        rules=rules,
        run_code=run_code,
        spans=tuple(em.spans),
        nodes=tuple(em.nodes),
        names=tuple(t.name for t in programs),
        sources=tuple(t.program.source for t in programs),
        origins=tuple(em.origins),
    )


def compile(typed: TypedProgram) -> Tape:  # noqa: A001 - the pipeline stage's name
    """Compile one checked program into a Tape."""
    return compile_many([typed])


# Comparisons a rule can be read as bar by bar (the simulator's `rule_bits_nb` mirrors their kernels).
FUSED_OPS = frozenset(CODE[op] for op in ("lt", "le", "gt", "ge", "eq", "ne", "cross_above", "cross_below"))
_FUSED = np.array(sorted(FUSED_OPS), dtype=np.int64)
_N_SRC = tuple(m.regs for m in META)  # source registers per opcode
_N_SRC_ARRAY = np.array(_N_SRC, dtype=np.int64)


def assemble(rows, outputs, allocate: bool = True):
    """(code, n_regs, outputs, rules, run_code) of a Tape from its instruction rows in virtual registers.

    `rows` are (op, dst, a, b, c, n1, n2, n3, k) rows (lists, or an int64 (n, WIDTH) array), row i
    defining register FIRST_FREE_REG + i and reading only registers defined before it; `outputs`
    holds each program's buy, sell, short, cover register (NO_REG when absent), as lists or an
    int64 (n_programs, 4) array. Rule forms (`Tape.rules`): a rule whose instruction is a
    comparison that no other instruction reads becomes (opcode, a, b), so the simulator compares
    registers a and b at each bar instead of reading a register of 1.0/0.0 the VM wrote; the
    instruction leaves run_code and its operands stay live to the end. Any other rule is (-1,
    register, -1), an absent one (-1, -1, -1). Then, when `allocate`, registers are mapped onto
    reused physical ones (`_allocate`); otherwise each instruction keeps its own register. Array
    operations throughout, but for the allocation's one pass over the rows.
    """
    code = rows.copy() if isinstance(rows, np.ndarray) else _int_array(rows, WIDTH)
    out = outputs.copy() if isinstance(outputs, np.ndarray) else _int_array(outputs, 4)
    n = code.shape[0]
    last_read = _last_reads(code)
    row = out - FIRST_FREE_REG
    defined = (row >= 0) & (row < n)
    row = np.where(defined, row, 0)
    rules = np.full((*out.shape, 3), NO_REG, dtype=np.int64)
    rules[:, :, 1] = out
    fused = np.zeros(n, dtype=bool)
    live = np.zeros(0, dtype=np.int64)  # fused rules' operand registers
    if n:
        op = code[row, 0]
        unread = last_read[np.where(defined, out, 0)] < 0
        fuse = defined & np.isin(op, _FUSED) & unread
        rules[fuse] = code[row[fuse]][:, [0, 2, 3]]
        fused[row[fuse]] = True
        live = rules[fuse][:, 1:].ravel()
    if allocate and not _all_kept(n, out, live):
        listed = rows if isinstance(rows, list) else code.tolist()
        n_regs, mapping = _allocate(listed, out, set(live.tolist()), last_read.tolist())
        _renumber(code, out, rules, np.array(mapping, dtype=np.int64))
    else:
        n_regs = FIRST_FREE_REG + n
    if fused.any():
        _fused_last(code, out, rules, fused, n_regs)
    return code, n_regs, out, rules, np.ascontiguousarray(code[~fused])


def _renumber(code: np.ndarray, out: np.ndarray, rules: np.ndarray, m: np.ndarray) -> None:
    """Map every register of code, outputs and rule forms through m (in place)."""
    code[:, 1:5] = m[code[:, 1:5]]  # unused source fields are 0, which maps to itself
    out[:] = np.where(out != NO_REG, m[out], NO_REG)
    rules[:, :, 1:] = np.where(rules[:, :, 1:] != NO_REG, m[rules[:, :, 1:]], NO_REG)


def _fused_last(code: np.ndarray, out: np.ndarray, rules: np.ndarray, fused: np.ndarray, n_regs: int) -> None:
    """Renumber registers (in place) so that those only fused comparisons write come last, the
    others keeping their order: run_code never writes those, so a run allocates only the rows
    below them (autostrat.sim.evaluate.run_registers)."""
    last = np.zeros(n_regs, dtype=bool)
    last[code[fused, 1]] = True
    last[code[~fused, 1]] = False  # reused by an earlier, dead intermediate: run_code writes it
    if not last[n_regs - int(last.sum()):].all():
        order = np.concatenate([np.flatnonzero(~last[FIRST_FREE_REG:]), np.flatnonzero(last[FIRST_FREE_REG:])])
        m = np.arange(n_regs, dtype=np.int64)
        m[FIRST_FREE_REG + order] = np.arange(FIRST_FREE_REG, n_regs, dtype=np.int64)
        _renumber(code, out, rules, m)


def _all_kept(n: int, outputs: np.ndarray, live: np.ndarray) -> bool:
    """Whether all n instructions write a rule's register or a fused rule's operand (`live`), which
    stay live to the end: then `_allocate` frees nothing and maps every register to itself, and the
    pass is skipped (a batch of crossovers is all averages and comparisons: a tenth of its compile)."""
    kept = np.zeros(FIRST_FREE_REG + n, dtype=bool)
    kept[outputs[outputs >= FIRST_FREE_REG]] = True
    kept[live[live >= FIRST_FREE_REG]] = True
    return int(kept[FIRST_FREE_REG:].sum()) == n


def _int_array(rows: list[list[int]], width: int) -> np.ndarray:
    """An int64 (len(rows), width) array of equal-length rows (np.fromiter: twice as fast as np.array)."""
    return np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=len(rows) * width).reshape(-1, width)


def _last_reads(code: np.ndarray) -> np.ndarray:
    """The index of the last row of `code` reading each register (-1 when none does)."""
    n = code.shape[0]
    last = np.full(FIRST_FREE_REG + n, -1, dtype=np.int64)
    if n:
        reads = _N_SRC_ARRAY[code[:, 0]]
        index = np.arange(n, dtype=np.int64)
        for j in range(3):
            mask = reads > j
            np.maximum.at(last, code[mask, 2 + j], index[mask])
    return last


def _allocate(rows: list[list[int]], outputs: np.ndarray, live: set[int], last_use: list[int]) -> tuple[int, list[int]]:
    """The register count and the map from virtual registers (rows' numbering) to reused physical ones.

    A register is reused once its last reader has run, and never as the output of an instruction
    that reads it (kernels need that). Outputs and registers in `live` (a fused rule's operands)
    stay live to the end. `last_use` (`_last_reads`) is updated in place. Plain lists indexed by
    register: this is the one pass over every instruction of the batch.
    """
    n = len(rows)
    for r in {*outputs[outputs >= FIRST_FREE_REG].tolist(), *live}:
        if r >= FIRST_FREE_REG:
            last_use[r] = n  # outputs and fused rules' operands stay live to the end
    mapping = list(range(FIRST_FREE_REG + n))  # 0..4 (the bar data) map to themselves
    free: list[int] = []
    top = FIRST_FREE_REG
    for i, row in enumerate(rows):
        if free:
            phys = free.pop()
        else:
            phys = top
            top += 1
        # Sources whose last reader is this instruction become free only now, after the
        # destination was chosen, so no instruction writes a register it reads.
        m = _N_SRC[row[0]]
        if m == 1:
            r = row[2]
            if r >= FIRST_FREE_REG and last_use[r] == i:
                free.append(mapping[r])
        elif m:
            for r in set(row[2:2 + m]):  # the order the allocation has always freed them in
                if r >= FIRST_FREE_REG and last_use[r] == i:
                    free.append(mapping[r])
        vdst = row[1]
        mapping[vdst] = phys
        if last_use[vdst] < 0:  # a result nobody reads (cannot happen for rules)
            free.append(phys)
    return top, mapping
