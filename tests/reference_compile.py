"""The tape compiler (compile_many, and compile_variants of autostrat.tape.template) as it was
before its bulk speed-up: the reference tests/test_compile_exact.py compares the package's compiler
against, tape for tape (code, constants, outputs, rule forms, run_code, warm-ups, exits, register
count). Kept verbatim; not used anywhere else.
"""

from __future__ import annotations

import numpy as np

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.registry import BOOL, BUILTINS
from autostrat.tape.compile import NO_REG, RULE_ORDER, Tape
from autostrat.tape.opcodes import CODE, FIRST_FREE_REG, OPERATORS, SERIES_REGS, WIDTH


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


# ---------------------------------------------------------------- autostrat.tape.template


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
    """One tape for param variants of one program (see the module docstring).

    The recipe is replayed one step at a time for all variants at once: a step's instruction keys
    form one int64 array (a row per variant), `np.unique` finds the distinct ones, and only those
    meet the batch-wide table of instructions already emitted. Instructions come out step by step
    (every variant's first step, then every variant's second, ...), so sources precede their uses.
    """
    recorder = _Recorder()
    template = _SymbolicCompiler(recorder, programs[0]).rule_regs()
    n = len(programs)
    values: dict[str, np.ndarray] = {}

    def param(name: str) -> np.ndarray:
        if name not in values:
            values[name] = np.array([float(t.param_values[name]) for t in programs])
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
    emitted: dict[tuple, int] = {}
    rows: list[tuple] = []
    next_reg = FIRST_FREE_REG
    keys = np.zeros((n, WIDTH - 1), dtype=np.int64)  # opcode, 3 sources, 3 windows, constant
    for dst, op, srcs, windows, k in recorder.recipe:
        keys[:, 0] = CODE[op]
        for j in range(3):
            keys[:, 1 + j] = regs[srcs[j]] if j < len(srcs) else 0
            w = windows[j] if j < len(windows) else 0
            # int() of each value, as compile_many takes a window (truncated toward zero)
            keys[:, 4 + j] = param(w[1]).astype(np.int64) if isinstance(w, _Param) else w
        keys[:, 7] = const_slots(k)
        distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
        reg_of = np.empty(len(distinct), dtype=np.int64)
        for i, key in enumerate(map(tuple, distinct.tolist())):
            reg = emitted.get(key)
            if reg is None:
                reg = emitted[key] = next_reg
                next_reg += 1
                rows.append((key[0], reg, *key[1:]))
            reg_of[i] = reg
        regs[dst] = reg_of[inverse.reshape(-1)]
    code_arr = np.array(rows, dtype=np.int64).reshape(-1, WIDTH)
    out = np.full((n, 4), NO_REG, dtype=np.int64)
    for j, r in enumerate(template):
        if r != NO_REG:
            out[:, j] = regs[r]
    # Registers are numbered in emission order (each instruction its own), which is already a valid
    # tape. Reuse can only recycle registers that are not rule outputs, live to the end; when
    # those are at most a tenth of the tape (a sweep: mostly each variant's own comparisons), the
    # Python allocation pass costs more than the memory it could save.
    intermediates = len(rows) - len(np.unique(out[out >= FIRST_FREE_REG]))
    rules, fused, live = rule_forms(code_arr, out)
    n_regs = _allocate(code_arr, out, rules, live) if intermediates > len(rows) // 10 else next_reg
    return Tape(code=code_arr, consts=np.array(consts, dtype=np.float64), n_regs=n_regs, outputs=out,
                rules=rules, run_code=np.ascontiguousarray(code_arr[~fused]),
                warmups=np.array([t.warmup for t in programs], dtype=np.int64),
                exits=np.array([_exits(t) for t in programs], dtype=np.float64).reshape(-1, 4),
                names=tuple(t.name for t in programs), sources=tuple(t.program.source for t in programs))
