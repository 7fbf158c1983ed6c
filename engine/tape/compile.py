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

import numpy as np

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.registry import BOOL, BUILTINS
from autostrat.tape.opcodes import CODE, FIRST_FREE_REG, OPERATORS, SERIES_REGS, WIDTH

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
        if key not in self.const_index:
            self.const_index[key] = len(self.consts)
            self.consts.append(key)
        return self.const_index[key]

    def emit(self, op: str, regs=(), windows=(), k: int = 0, node=None) -> int:
        regs = (*regs, 0, 0, 0)[:3]
        windows = (*windows, 0, 0, 0)[:3]
        code = CODE[op]
        key = (code, *regs, *windows, k)
        hit = self.cse.get(key)
        if hit is not None:
            return hit
        dst = self.next_vreg
        self.next_vreg += 1
        self.rows.append([code, dst, *regs, *windows, k])
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
        return [self.expr(self.typed.rules[k]) if k in self.typed.rules else NO_REG for k in RULE_ORDER]

    def expr(self, e: N.Expr) -> int:
        # Dispatch on the exact node type, commonest first: a bulk compile spends its Python time here.
        em = self.em
        kind = type(e)
        if kind is N.Call:
            b = BUILTINS[e.func]
            regs, windows, k = [], [], 0
            for arg, arg_kind in zip(e.args, b.kinds):
                if arg_kind in "xc":
                    regs.append(self.expr(arg))
                elif arg_kind == "n":
                    windows.append(self.window(arg))
                else:
                    k = em.const(self.constant(arg))
            return em.emit(e.func, regs, windows, k, node=e)
        if kind is N.Binary:
            return em.emit(OPERATORS[e.op], (self.expr(e.left), self.expr(e.right)), node=e)
        if kind is N.Name:
            if e.id in SERIES_REGS:
                return SERIES_REGS[e.id]
            if e.id in self.typed.params:
                return em.emit("fill", k=em.const(self.typed.param_values[e.id]), node=e)
            if e.id not in self.bound:
                self.bound[e.id] = self.expr(self.typed.bindings[e.id])
            return self.bound[e.id]
        if kind is N.Num:
            return em.emit("fill", k=em.const(e.value), node=e)
        if kind is N.Bool:
            return em.emit("fill", k=em.const(1.0 if e.value else 0.0), node=e)
        if kind is N.Lag:
            inner = self.expr(e.expr)
            if e.n == 0:
                return inner
            lagged = em.emit("lag", (inner,), (e.n,), node=e)
            if self.is_bool(e.expr):
                # lag_nb leaves NaN in the first n bars, and the logic kernels read NaN as true; a
                # condition is never NaN: before its first bar a lagged condition is false, as
                # (close > open)[1] equals close[1] > open[1]. `ne` maps NaN to 0.
                zero = em.emit("fill", k=em.const(0.0), node=e)
                lagged = em.emit("ne", (lagged, zero), node=e)
            return lagged
        if kind is N.Unary:
            if e.op == "-" and isinstance(e.operand, N.Num):  # a negative literal is one constant
                return em.emit("fill", k=em.const(-e.operand.value), node=e)
            return em.emit("neg" if e.op == "-" else "not", (self.expr(e.operand),), node=e)
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


def _exits(typed: TypedProgram) -> list[float]:
    ex = typed.exits
    return [ex.get("stop_loss", np.nan), ex.get("take_profit", np.nan), ex.get("trailing_stop", np.nan),
            ex.get("max_hold", -1.0)]


def compile_many(programs: list[TypedProgram]) -> Tape:
    """Compile a batch into one tape, sharing identical sub-expressions across all of it."""
    em = _Emitter()
    outputs = []
    for p, typed in enumerate(programs):
        em.program = p
        outputs.append(_ProgramCompiler(em, typed).rule_regs())
    code = np.array(em.rows, dtype=np.int64).reshape(-1, WIDTH)
    out = np.array(outputs, dtype=np.int64).reshape(-1, 4)
    rules, fused, live = rule_forms(code, out)
    n_regs = _allocate(code, out, rules, live)
    return Tape(
        code=code,
        consts=np.array(em.consts, dtype=np.float64),
        n_regs=n_regs,
        outputs=out,
        warmups=np.array([t.warmup for t in programs], dtype=np.int64),
        exits=np.array([_exits(t) for t in programs], dtype=np.float64).reshape(-1, 4),
        rules=rules,
        run_code=np.ascontiguousarray(code[~fused]),
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


def rule_forms(code: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """How evaluation reads each rule, before register allocation (virtual registers).

    A rule whose instruction is a comparison that no other instruction reads becomes (opcode, a,
    b): the simulator compares registers a and b at each bar instead of reading a register of
    1.0/0.0 that the VM wrote. Returns the (n_programs, 4, 3) forms, the mask of instructions
    evaluation can skip, and the registers that must then stay live to the end (the operands).
    """
    from autostrat.tape.opcodes import META

    rows = code.tolist()
    read = set()
    for row in rows:
        read.update(row[2 : 2 + META[row[0]].regs])
    defined = {row[1]: i for i, row in enumerate(rows)}
    rules = np.full((outputs.shape[0], 4, 3), NO_REG, dtype=np.int64)
    fused = np.zeros(len(rows), dtype=bool)
    live: set[int] = set()
    for p, out in enumerate(outputs.tolist()):
        for j, r in enumerate(out):
            i = defined.get(r)
            if i is not None and rows[i][0] in FUSED_OPS and r not in read:
                op, _, a, b = rows[i][:4]
                rules[p, j] = (op, a, b)
                fused[i] = True
                live.update((a, b))
            elif r != NO_REG:
                rules[p, j, 1] = r
    return rules, fused, live


def _allocate(code: np.ndarray, outputs: np.ndarray, rules: np.ndarray | None = None,
              live: set[int] = frozenset()) -> int:
    """Rewrite virtual registers in place with reused physical ones; return the register count.

    Registers in `live` (a fused rule's operands) stay live to the end like the outputs, and the
    registers named in `rules` are rewritten too.
    """
    from autostrat.tape.opcodes import META

    # Plain lists of ints: indexing numpy scalars one by one costs most of a large batch's compile.
    rows = code.tolist()
    outs = outputs.tolist()
    n_src = [META[row[0]].regs for row in rows]
    n = len(rows)
    last_use: dict[int, int] = {}
    for i, row in enumerate(rows):
        for c in range(n_src[i]):
            last_use[row[2 + c]] = i
    for out in outs:
        for r in out:
            if r >= FIRST_FREE_REG:
                last_use[r] = n  # outputs stay live to the end
    for r in live:
        if r >= FIRST_FREE_REG:
            last_use[r] = n
    mapping: dict[int, int] = {r: r for r in range(FIRST_FREE_REG)}
    free: list[int] = []
    top = FIRST_FREE_REG
    for i, row in enumerate(rows):
        srcs = row[2 : 2 + n_src[i]]
        for c, r in enumerate(srcs):
            row[2 + c] = mapping[r]
        vdst = row[1]
        if free:
            phys = free.pop()
        else:
            phys = top
            top += 1
        mapping[vdst] = phys
        row[1] = phys
        # Sources whose last reader is this instruction become free only now, after the
        # destination was chosen, so no instruction writes a register it reads.
        for r in set(srcs):
            if r >= FIRST_FREE_REG and last_use.get(r) == i:
                free.append(mapping[r])
        if last_use.get(vdst) is None:  # a result nobody reads (cannot happen for rules)
            free.append(phys)
    if rows:
        code[:] = np.array(rows, dtype=np.int64).reshape(code.shape)
    if outs:
        outputs[:] = np.array([[mapping[r] if r != NO_REG else NO_REG for r in out] for out in outs],
                              dtype=np.int64).reshape(outputs.shape)
    if rules is not None and rules.size:
        regs = rules[:, :, 1:]
        regs[:] = np.array([mapping[r] if r != NO_REG else NO_REG for r in regs.ravel().tolist()],
                           dtype=np.int64).reshape(regs.shape)
    return top
