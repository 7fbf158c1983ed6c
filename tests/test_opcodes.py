"""Completeness of the instruction set: every opcode is wired through every layer.

For each opcode: a branch in the VM's dispatch loop calling its own kernel with operands that match
the kernel's signature, a kernel in KERNELS, a reference implementation in
tests/reference_kernels.py, metadata (META) agreeing with the kernel's signature, a rendering in
the disassembler, and a kernel that writes every bar of its output (registers are reused, so a bar
left unwritten would show the previous occupant's value).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import reference_kernels as ref
from test_vm import jit  # noqa: F401

from autostrat.lang import nodes as N
from autostrat.tape import vm
from autostrat.lang.check import check
from autostrat.tape.compile import compile_many
from autostrat.tape.disasm import disassemble, operands
from autostrat.tape.kernels import KERNELS
from autostrat.tape.opcodes import CODE, META, NAMES, OPERATORS, SERIES_REGS, WIDTH, Op
from autostrat.lang.parse import parse
from autostrat.lang.registry import BUILTINS
from autostrat.data.synthetic import synthetic_market
from autostrat.tape.kernel_table import kernel_table
from autostrat.tape.prefix import no_prefixes
from autostrat.tape.vm import ALL_INPUTS, inputs_read_nb, run_tape_nb

VM_SOURCE = Path(vm.__file__)

# Kernel parameter names by what the VM passes for them.
SERIES_PARAMS = ("x", "y", "lo", "hi", "c", "a", "b")
BAR_PARAMS = {"high": "H", "low": "L", "close": "Cl", "volume": "V"}
WINDOW_PARAMS = ("n", "m", "fast", "slow", "signal")
CONST_PARAMS = ("k", "value")


def field(name: str) -> str:
    """The Op field of an opcode (Python keywords take a trailing underscore)."""
    return name + "_" if name in ("and", "or", "not") else name


def kernel_signature(name: str) -> list[str]:
    fn = KERNELS[name]
    return [p for p in inspect.signature(getattr(fn, "py_func", fn)).parameters if p != "out"]


def vm_branches() -> dict[str, ast.Call]:
    """Opcode field -> the kernel call in its `op == Op.<field>` branch of run_tape_nb."""
    tree = ast.parse(VM_SOURCE.read_text(encoding="utf-8"))
    loop = next(f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == "run_tape_nb")
    branches: dict[str, ast.Call] = {}
    for node in ast.walk(loop):
        if not isinstance(node, ast.If):
            continue
        test = node.test
        if (isinstance(test, ast.Compare) and isinstance(test.comparators[0], ast.Attribute)
                and isinstance(test.comparators[0].value, ast.Name) and test.comparators[0].value.id == "Op"):
            name = test.comparators[0].attr
            assert name not in branches, f"two VM branches for Op.{name}"
            first = node.body[0]
            if isinstance(first, ast.If):  # a rolling sum: the shared prefix path, else its kernel
                shared = first.body[0].value
                assert ast.unparse(shared.func) == "_shared_rolling_sum_nb", f"Op.{name}: {ast.unparse(first)}"
                SHARED[name] = shared
                first = first.orelse[0]
            call = first.value
            assert isinstance(call, ast.Call), f"Op.{name}: the branch does not start with a kernel call"
            branches[name] = call
    return branches


SHARED: dict[str, ast.Call] = {}  # filled by vm_branches: the branches with a shared prefix path
BRANCHES = vm_branches()


def expected_vm_args(name: str) -> list[str]:
    """The VM variable each kernel parameter must receive, in the kernel's order."""
    regs, windows = iter("abc"), iter(("n1", "n2", "n3"))
    out = []
    for p in kernel_signature(name):
        if p in SERIES_PARAMS:
            out.append(next(regs))
        elif p in BAR_PARAMS:
            out.append(BAR_PARAMS[p])
        elif p in WINDOW_PARAMS:
            out.append(next(windows))
        elif p in CONST_PARAMS:
            out.append("k")
        else:
            raise AssertionError(f"{name}: kernel parameter {p!r} of unknown kind")
    return ["kernels"] + out + ["d"]


@pytest.mark.parametrize("name", NAMES)
def test_vm_has_a_branch_calling_the_kernel(name):
    call = BRANCHES.get(field(name))
    assert call is not None, f"engine/vm.py has no `op == Op.{field(name)}` branch"
    assert isinstance(call.func, ast.Name) and call.func.id == f"{name}_nb", f"Op.{field(name)} calls {ast.unparse(call)}"
    got = [ast.unparse(a) for a in call.args]
    assert got == expected_vm_args(name), f"Op.{field(name)}: {ast.unparse(call)}"


def test_vm_has_no_other_branches():
    assert set(BRANCHES) == {field(n) for n in NAMES}


def test_only_the_rolling_sums_share_a_prefix_and_pass_their_divisor():
    # sma divides the window's sum by its length, sum by 1 (the kernels' own divisors).
    assert {name: [ast.unparse(a) for a in call.args] for name, call in SHARED.items()} == {
        "sma": ["a", "n1", "d", "float(n1)", "pre", "built", "share[i]", "given"],
        "sum": ["a", "n1", "d", "1.0", "pre", "built", "share[i]", "given"],
    }


@pytest.mark.parametrize("name", NAMES)
def test_kernel_and_reference_exist(name):
    assert name in KERNELS, f"no kernel {name}_nb in autostrat.tape.kernels.KERNELS"
    assert name in ref.REFERENCE, f"no reference implementation of {name} in tests/reference_kernels.py"
    kernel = kernel_signature(name)
    reference = list(inspect.signature(ref.REFERENCE[name]).parameters)
    if name == "fill":
        assert reference == ["value", "size"]
    else:
        assert reference == kernel, f"{name}: reference takes {reference}, the kernel {kernel}"


@pytest.mark.parametrize("name", NAMES)
def test_meta_agrees_with_kernel_signature(name):
    meta = META[CODE[name]]
    params = kernel_signature(name)
    assert meta.name == name
    assert meta.regs == sum(p in SERIES_PARAMS for p in params), f"{name}: register operands"
    assert meta.windows == sum(p in WINDOW_PARAMS for p in params), f"{name}: windows"
    assert meta.const == any(p in CONST_PARAMS for p in params), f"{name}: constant"
    assert meta.regs <= 3 and meta.windows <= 3
    if name in BUILTINS:
        b = BUILTINS[name]
        assert meta.regs == sum(k in "xc" for k in b.kinds)
        assert meta.windows == len(b.windows)
        assert meta.const == ("k" in b.kinds)


def test_opcode_table():
    assert len(set(NAMES)) == len(NAMES)
    assert [CODE[n] for n in NAMES] == list(range(len(NAMES)))
    assert [getattr(Op, field(n)) for n in NAMES] == list(range(len(NAMES)))
    # Cross-sectional built-ins run between tapes (tape/xsection.py), not in the VM: no opcode.
    series = {name for name, b in BUILTINS.items() if not b.cross_sectional}
    assert series <= set(NAMES) and not set(BUILTINS) - series & set(NAMES)
    assert set(N.ARITHMETIC + N.COMPARISONS + N.LOGIC) <= set(OPERATORS)
    assert set(OPERATORS.values()) <= set(NAMES) and {"fill", "lag", "neg", "not"} <= set(NAMES)
    assert set(NAMES) == series | set(OPERATORS.values())
    assert sorted(SERIES_REGS.values()) == list(range(5))


# ------------------------------------------------------------------------- disassembler


def _argument(kind: str) -> str:
    return {"x": "close", "c": "close > open", "n": "3", "k": "2"}[kind]


def every_opcode_tape():
    """One tape in which every opcode occurs (one small program per built-in, plus operators)."""
    texts = ["x = -(close + open - high) * low / volume + 123456789.125 - 0.1\n"
             "buy when (x < 1 or x <= 2) and not (x > 3) and x >= 4 and x == 5 and x != 6\n"
             "sell when close[1] > 0\n"]
    for b in BUILTINS.values():
        if b.cross_sectional:  # no opcode (test_opcode_table)
            continue
        call = f"{b.name}({', '.join(_argument(k) for k in b.kinds)})"
        cond = call if b.result == "boolean" else f"{call} > 0"
        texts.append(f"buy when {cond}\nsell when {cond}\n")
    typed = [check(parse(t)) for t in texts]
    return compile_many(typed)


def expected_operands(tape, i) -> str:
    """The operand text of instruction i, built from the row and the registry."""
    row = tape.code[i]
    name = NAMES[row[0]]
    meta = META[row[0]]
    series = {r: s for s, r in SERIES_REGS.items()}
    parts = [f"r{r}:{series[r]}" if r in series else f"r{r}" for r in row[2:2 + meta.regs]]
    names = [BUILTINS[name].params[j] for j in BUILTINS[name].windows] if name in BUILTINS else ["n"]
    parts += [f"{names[j]}={row[5 + j]}" for j in range(meta.windows)]
    if meta.const:
        parts.append("fill" if name == "fill" else "k=")
    return ", ".join(parts)


def assert_operands(tape, i, text: str) -> None:
    """The rendered operands: registers and windows as expected, the constant exact."""
    want = expected_operands(tape, i)
    if not META[tape.code[i, 0]].const:
        assert text == want
        return
    head, _, const = text.rpartition(", ") if ", " in text else ("", "", text)
    assert head == want.rpartition(", ")[0] if ", " in want else head == ""
    if const.startswith("k="):
        const = const[2:]
    else:
        assert NAMES[tape.code[i, 0]] == "fill"
    assert float(const) == tape.consts[tape.code[i, 8]], text


def test_disassembler_renders_every_opcode():
    tape = every_opcode_tape()
    assert set(NAMES) == {NAMES[op] for op in tape.code[:, 0]}
    lines = disassemble(tape).splitlines()
    body = [line for line in lines if not line.startswith(";")]
    assert len(body) == len(tape)
    for i, line in enumerate(body):
        name = NAMES[tape.code[i, 0]]
        assert line.startswith(f"{i:04d}  {name} "), line
        assert f"r{tape.code[i, 1]} <- {operands(tape, i)}" in line, line
        assert_operands(tape, i, operands(tape, i))


# ------------------------------------------------------------------------------- kernels


def _call_args(name: str, bars: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, bars)))
    args = []
    for p in kernel_signature(name):
        if p in ("c", "a", "b"):
            args.append((rng.random(bars) < 0.4).astype(np.float64))
        elif p in SERIES_PARAMS or p in BAR_PARAMS:
            series = price * (1.0 + rng.normal(0, 0.01, bars))
            series[[3, 4, bars // 2]] = np.nan  # gaps exercise every reseeding path
            args.append(series)
        elif p in WINDOW_PARAMS:
            args.append(int(rng.choice([1, 2, 5, bars + 3])))
        else:
            args.append(1.5)
    return args


@pytest.mark.parametrize("name", NAMES)
def test_kernel_writes_every_bar(name, jit):
    """The result does not depend on what the output register held before."""
    for seed in range(4):
        args = _call_args(name, 40, seed)
        first, second = np.full(40, 7.25), np.full(40, np.nan)
        KERNELS[name](*args, first)
        KERNELS[name](*args, second)
        assert np.array_equal(first, second, equal_nan=True), f"{name} leaves bars of `out` unwritten"


def test_vm_rejects_an_unknown_opcode(jit):
    code = np.zeros((1, WIDTH), dtype=np.int64)
    code[0, 0] = len(NAMES)
    code[0, 1] = 5
    m = synthetic_market(1, 10)
    with pytest.raises(ValueError):
        run_tape_nb(code, np.zeros(1), 6, kernel_table(code), m.open, m.high, m.low, m.close, m.volume,
                    ALL_INPUTS, *no_prefixes())


def test_vm_is_generated_and_current():
    # vm.py is written by `python -m autostrat.tape.gen_vm` from the opcode table and the kernels'
    # signatures: after adding a built-in (registry row + kernel), run it.
    from autostrat.tape import gen_vm

    assert VM_SOURCE.read_text(encoding="utf-8") == gen_vm.render(), \
        "engine/tape/vm.py is stale: run python -m autostrat.tape.gen_vm"
    assert gen_vm.main(["--check"]) == 0


@pytest.mark.parametrize("name", NAMES)
def test_the_vm_copies_in_every_input_an_opcode_reads(name):
    # Sources in registers 0, 1, 2 (open, high, low), as many as the opcode takes (META), plus the
    # bar series its reference implementation names: those rows must be filled, no others.
    row = np.zeros((1, 9), dtype=np.int64)
    row[0, 0], row[0, 1], row[0, 2:5] = CODE[name], 5, (0, 1, 2)
    bars = {"high": 1, "low": 2, "close": 3, "volume": 4}
    want = set(range(META[CODE[name]].regs)) | {bars[p] for p in inspect.signature(ref.REFERENCE[name]).parameters
                                                 if p in bars}
    need = inputs_read_nb(row, np.zeros(0, dtype=np.int64))
    assert set(np.flatnonzero(need).tolist()) == want, name
    # and the registers the caller keeps, whatever the code reads
    assert inputs_read_nb(row, np.array([4, 3, 9, -1], dtype=np.int64))[[3, 4]].all()
