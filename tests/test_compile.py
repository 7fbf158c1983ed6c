"""The compiler's structure, without running a kernel: the tape computes each rule's expression tree.

A symbolic run of the tape (each register holds the term it computes) must give, for every rule,
the term lowered directly from the AST; that pins register allocation (no live value clobbered, no
register read before it is written, no instruction writing a register it reads), CSE (no term
computed twice, across programs too) and the metadata of the Tape. The register count must be the
least any allocation of the tape's order can use.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs
from test_vm import program_files

from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.tape.compile import RULE_ORDER, compile, compile_many
from autostrat.tape.opcodes import CODE, FIRST_FREE_REG, META, NAMES, SERIES_REGS, WIDTH
from autostrat.lang.parse import parse
from autostrat.lang.registry import BUILTINS

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BATCHES = settings(PROPERTY, max_examples=40)

# The language's operators by their kernel names, written out here independently of opcodes.py.
OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "<": "lt", "<=": "le", ">": "gt", ">=": "ge",
       "==": "eq", "!=": "ne", "and": "and", "or": "or"}
SERIES_NAMES = ("open", "high", "low", "close", "volume")


def load(text: str):
    return check(parse(text))


def files():
    return [check(parse(p.read_text(encoding="utf-8"), str(p))) for p in program_files()]


# ---------------------------------------------------------------------- the specification


class Spec:
    """A rule's term, lowered straight from the AST: (opcode name, operand terms..., windows...,
    constant) with price series as ("series", name) and constants as ("fill", value)."""

    def __init__(self, typed):
        self.typed = typed

    def is_condition(self, e) -> bool:
        if isinstance(e, N.Lag):
            return self.is_condition(e.expr)
        if isinstance(e, N.Name):
            return e.id in self.typed.bindings and self.is_condition(self.typed.bindings[e.id])
        if isinstance(e, N.Call):
            return BUILTINS[e.func].result == "boolean"
        return isinstance(e, N.Bool) or (isinstance(e, N.Unary) and e.op == "not") or (
            isinstance(e, N.Binary) and OPS[e.op] in ("lt", "le", "gt", "ge", "eq", "ne", "and", "or"))

    def term(self, e) -> tuple:
        if isinstance(e, N.Num):
            return ("fill", float(e.value))
        if isinstance(e, N.Bool):
            return ("fill", 1.0 if e.value else 0.0)
        if isinstance(e, N.Name):
            if e.id in SERIES_NAMES:
                return ("series", e.id)
            if e.id in self.typed.params:
                return ("fill", float(self.typed.params[e.id].value.value))
            return self.term(self.typed.bindings[e.id])
        if isinstance(e, N.Lag):
            inner = self.term(e.expr)
            if e.n == 0:
                return inner
            lagged = ("lag", inner, e.n)
            # a lagged condition is false before its first bar: ne(lag, 0) turns NaN into 0
            return ("ne", lagged, ("fill", 0.0)) if self.is_condition(e.expr) else lagged
        if isinstance(e, N.Unary):
            if e.op == "-" and isinstance(e.operand, N.Num):  # -literal is one constant
                return ("fill", -float(e.operand.value))
            return ("neg" if e.op == "-" else "not", self.term(e.operand))
        if isinstance(e, N.Binary):
            return (OPS[e.op], self.term(e.left), self.term(e.right))
        b = BUILTINS[e.func]
        series = [self.term(a) for a, k in zip(e.args, b.kinds) if k in "xc"]
        windows = [int(self.number(a)) for a, k in zip(e.args, b.kinds) if k == "n"]
        consts = [self.number(a) for a, k in zip(e.args, b.kinds) if k == "k"]
        return (e.func, *series, *windows, *consts)

    def number(self, e) -> float:
        if isinstance(e, N.Num):
            return float(e.value)
        if isinstance(e, N.Unary):
            return -self.number(e.operand)
        return float(self.typed.params[e.id].value.value)


def symbolic_run(tape) -> tuple[dict[int, tuple], list[tuple]]:
    """Run the tape on terms instead of arrays; return the final registers and each instruction's
    term. Fails on a read of a register never written, a write to a bar register, or an
    instruction whose output register is one of its inputs (kernels must not alias)."""
    regs = {r: ("series", name) for name, r in SERIES_REGS.items()}
    computed = []
    for i, row in enumerate(tape.code):
        meta = META[row[0]]
        srcs = [int(row[2 + j]) for j in range(meta.regs)]
        dst = int(row[1])
        assert dst >= FIRST_FREE_REG, f"instruction {i} writes bar register {dst}"
        assert dst not in srcs, f"instruction {i} writes r{dst}, which it reads"
        assert dst < tape.n_regs
        for r in srcs:
            assert r in regs, f"instruction {i} reads r{r} before anything wrote it"
        if meta.name == "fill":
            term = ("fill", float(tape.consts[row[8]]))
        else:
            term = (meta.name, *(regs[r] for r in srcs), *(int(row[5 + j]) for j in range(meta.windows)))
            if meta.const:
                term += (float(tape.consts[row[8]]),)
        regs[dst] = term
        computed.append(regs[dst])
    return regs, computed


def assert_tape_computes_rules(typed_list, tape) -> None:
    regs, computed = symbolic_run(tape)
    for p, typed in enumerate(typed_list):
        spec = Spec(typed)
        for kind, reg in zip(RULE_ORDER, tape.outputs[p]):
            if kind not in typed.rules:
                assert reg == -1
                continue
            assert regs[int(reg)] == spec.term(typed.rules[kind]), f"program {p} {kind}"
    # CSE: no value is computed twice.
    assert len(set(computed)) == len(computed), "an instruction repeats an earlier one"


def min_registers(tape) -> int:
    """The fewest registers any allocation of this instruction order needs: the most values live
    at once, counting an instruction's result alongside its inputs (kernels must not alias)."""
    current: dict[int, int] = {}  # register -> index of the value it holds
    values: list[list[int]] = []  # [instruction that computes it, last instruction that reads it]
    for i, row in enumerate(tape.code):
        for j in range(META[row[0]].regs):
            r = int(row[2 + j])
            if r >= FIRST_FREE_REG:
                values[current[r]][1] = i
        current[int(row[1])] = len(values)
        values.append([i, i])
    fused_operands = tape.rules[:, :, 1:][tape.rules[:, :, 0] >= 0].ravel().tolist()
    for r in (set(tape.outputs.ravel().tolist()) | set(fused_operands)) - {-1}:
        if r >= FIRST_FREE_REG:
            values[current[r]][1] = len(tape)  # the rules (and a comparison's operands) are read at the end
    most = max(1 + sum(1 for d, e in values if d < i <= e) for i in range(len(tape)))
    return FIRST_FREE_REG + most


# ---------------------------------------------------------------------------- properties


@pytest.mark.parametrize("typed", files(), ids=lambda t: t.name or "program")
def test_files_compile_to_their_rules(typed):
    tape = compile(typed)
    assert_tape_computes_rules([typed], tape)
    assert tape.n_regs == min_registers(tape)


@PROPERTY
@given(program=programs(layout=False))
def test_random_programs_compile_to_their_rules(program):
    typed = check(program)
    tape = compile(typed)
    assert_tape_computes_rules([typed], tape)
    assert tape.n_regs == min_registers(tape)


@BATCHES
@given(batch=st.lists(programs(layout=False), min_size=2, max_size=6))
def test_random_batches_compile_to_every_rule(batch):
    typed = [check(p) for p in batch]
    tape = compile_many(typed)
    assert_tape_computes_rules(typed, tape)
    assert tape.n_regs == min_registers(tape)


def test_files_batch_compiles_to_every_rule():
    typed = files()
    tape = compile_many(typed)
    assert_tape_computes_rules(typed, tape)
    assert tape.n_programs == len(typed)
    assert tape.origins and max(tape.origins) < len(typed)


# ----------------------------------------------------------------------------------- CSE


def count(tape, name: str) -> int:
    return int((tape.code[:, 0] == CODE[name]).sum())


def test_repeated_sub_expression_compiles_once():
    tape = compile(load("buy when sma(close, 20) > open and sma(close, 20) < high\n"
                        "sell when sma(close, 20) < low\n"))
    assert count(tape, "sma") == 1


def test_bound_name_and_its_expression_are_one_instruction():
    tape = compile(load("param n = 20 in 5..50\nf = sma(close, n)\n"
                        "buy when f > sma(close, 20)\nsell when close < f\n"))
    assert count(tape, "sma") == 1  # the param's value is the literal's


def test_constants_are_shared():
    tape = compile(load("buy when rsi(close, 14) < 30 and close > 30\nsell when volume > 30\n"))
    assert count(tape, "fill") == 1
    assert tape.consts.tolist() == [30.0]


def test_batch_shares_across_programs():
    a = load("buy when sma(close, 50) > close\nsell when sma(close, 50) < close\n")
    b = load("x = sma(close, 50)\nbuy when x < open\nsell when x > open and atr(14) > 1\n")
    tape = compile_many([a, b])
    assert count(tape, "sma") == 1
    assert len(tape) < len(compile(a)) + len(compile(b))


def test_different_windows_are_not_shared():
    tape = compile(load("buy when sma(close, 20) > sma(close, 21)\nsell when ema(close, 20) > sma(open, 20)\n"))
    assert count(tape, "sma") == 3 and count(tape, "ema") == 1


# --------------------------------------------------------------------------- registers


def test_long_program_reuses_registers():
    """A chain of a hundred operations needs a handful of registers, not a hundred."""
    lines = ["a0 = sma(close, 2)"]
    lines += [f"a{i} = a{i - 1} + sma(close, {i + 2}) * {i}" for i in range(1, 60)]
    lines += ["buy when a59 > close", "sell when a59 < close"]
    tape = compile(load("\n".join(lines) + "\n"))
    assert len(tape) > 150
    assert tape.n_regs <= FIRST_FREE_REG + 5
    assert tape.n_regs == min_registers(tape)


def test_registers_only_fused_comparisons_write_come_last():
    """run_code never writes a fused comparison's register, so those are numbered after every
    other: a run of a batch of crossovers allocates a row per average, not one per comparison too.
    With registers reused (the last batch), a comparison that took over a dead intermediate's
    register keeps it among the others."""
    from autostrat.sim.evaluate import SMALL_FILE, run_registers

    def crossovers(fasts, slows):
        return [load(f"buy when sma(close, {f}) > sma(close, {s})\nsell when sma(close, {f}) < sma(close, {s})\n")
                for f in fasts for s in slows]

    chain = "x = (sma(close, 3) + 1) * 2\nbuy when x > close\nsell when x < close\n"
    for batch in (crossovers((5, 10), (50, 60, 70)), crossovers((5, 10), (50, 60)) + [load(chain)], [load(chain)]):
        tape = compile_many(batch)
        written = set(tape.run_code[:, 1].tolist())
        read = {r for r in tape.rules[:, :, 1:].ravel().tolist() if r >= 0}
        top = max(written | read | {FIRST_FREE_REG - 1}) + 1
        only_fused = set(range(FIRST_FREE_REG, tape.n_regs)) - written
        assert all(r >= top for r in only_fused)  # nothing the run needs lies above them
        assert tape.n_regs - top == len(only_fused)
    big = compile_many(crossovers(range(5, 50, 5), range(50, 100, 10)))  # 9 + 5 averages, 90 comparisons
    assert big.n_regs > SMALL_FILE
    assert run_registers(big.run_code, big.rules, big.n_regs) == FIRST_FREE_REG + 14
    small = compile_many(crossovers((5,), (50,)))
    assert run_registers(small.run_code, small.rules, small.n_regs) == small.n_regs  # not worth measuring


def test_a_batch_with_every_register_kept_skips_the_allocation_with_the_same_tape(monkeypatch):
    """Crossovers write only averages (a fused rule's operands) and comparisons (rule outputs), all
    live to the end: the allocation pass is skipped, and the tape is the one the pass would make."""
    from autostrat.tape import compile as C

    texts = [f"buy when sma(close, {f}) > sma(close, {s})\nsell when sma(close, {f}) < sma(close, {s})\n"
             for f in (5, 10) for s in (50, 60, 70)]
    typed = [load(t) for t in texts] + [load("x = sma(close, 5) + 1\nbuy when x > close\nsell when x < close\n")]
    calls = []
    real = C._allocate
    monkeypatch.setattr(C, "_allocate", lambda *a: calls.append(1) or real(*a))
    skipped = compile_many(typed[:-1])
    assert not calls
    monkeypatch.setattr(C, "_all_kept", lambda *a: False)
    full = compile_many(typed[:-1])
    assert calls
    for field in ("code", "run_code", "rules", "outputs"):
        assert np.array_equal(getattr(skipped, field), getattr(full, field)), field
    assert skipped.n_regs == full.n_regs == min_registers(full)
    calls.clear()
    monkeypatch.undo()
    monkeypatch.setattr(C, "_allocate", lambda *a: calls.append(1) or real(*a))
    compile_many(typed)  # x's sma is read only by x: its register can be reused
    assert calls


# ------------------------------------------------------------------------------ lowering


def test_lagged_condition_lowers_to_false_before_first_bar():
    tape = compile(load("up = close > open\nbuy when up[2]\nsell when close[2] > 1\n"))
    names = [NAMES[op] for op in tape.code[:, 0]]
    assert names == ["gt", "lag", "fill", "ne", "lag", "fill", "gt"]
    regs, _ = symbolic_run(tape)
    assert regs[int(tape.outputs[0, 0])] == ("ne", ("lag", ("gt", ("series", "close"), ("series", "open")), 2),
                                             ("fill", 0.0))


def test_negative_literal_is_one_constant():
    tape = compile(load("buy when close - open > -2.5\nsell when bb_upper(close, 20, -1) > close\n"))
    assert count(tape, "neg") == 0
    assert sorted(tape.consts.tolist()) == [-2.5, -1.0]


def test_lag_zero_is_the_expression_itself():
    tape = compile(load("buy when close[0] > open\nsell when (close > open)[0]\n"))
    assert len(tape) == 1 and tape.outputs[0, 0] == tape.outputs[0, 1]


def test_tape_metadata():
    typed = load('strategy "meta"\nparam stop = 6% in 2%..10%\nbuy when close > open\nsell when close < open\n'
                 "short when close < low\ncover when close > high\nstop_loss stop\nmax_hold 12\n")
    tape = compile(typed)
    assert tape.code.dtype == np.int64 and tape.code.shape == (len(tape), WIDTH)
    assert tape.outputs.shape == (1, 4) and (tape.outputs >= FIRST_FREE_REG).all()
    assert tape.warmups.tolist() == [typed.warmup]
    assert np.array_equal(tape.exits[0], [0.06, np.nan, np.nan, 12.0], equal_nan=True)
    assert tape.names == ("meta",) and tape.sources == (typed.program.source,)
    assert len(tape.spans) == len(tape.texts) == len(tape.origins) == len(tape)


def test_compile_is_deterministic():
    for typed in files():
        a, b = compile(typed), compile(dataclasses.replace(typed))
        assert np.array_equal(a.code, b.code) and np.array_equal(a.consts, b.consts)
        assert np.array_equal(a.outputs, b.outputs)
