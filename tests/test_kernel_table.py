"""The kernel table: kernels compile on first use, and the dispatch loop cannot misuse a slot.

The VM's results through the table are pinned by tests/test_vm.py (every opcode against the
reference evaluator); these tests pin the table itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

from autostrat.lang.check import check
from autostrat.tape.compile import compile
from autostrat.tape.kernel_table import ARG_TYPES, FINGERPRINT, TABLE_SIZE, caller, fill_all, kernel_table
from autostrat.tape.opcodes import CODE, NAMES, WIDTH
from autostrat.lang.parse import parse
from autostrat.data.synthetic import synthetic_market
from autostrat.tape.prefix import no_prefixes
from autostrat.tape.vm import ALL_INPUTS, run_tape, run_tape_nb


def test_a_fresh_process_compiles_only_what_its_backtest_uses():
    # The disk cache is shared with the suite, so this measures which kernels the process loads,
    # not compile time: a kernel the tape does not use must not even be loaded.
    code = (
        "import json, autostrat\n"
        "from autostrat.sim.backtest import backtest, buy_and_hold\n"
        "from autostrat.tape.kernels import KERNELS\n"
        "from autostrat.tape.kernel_table import _TABLE\n"
        "from autostrat.tape.opcodes import NAMES\n"
        "from autostrat.sim.simulate import simulate_nb\n"
        "from autostrat.sim.metrics import metrics_nb\n"
        "r = backtest('grammar/examples/sma_cross.strat', 'synthetic')\n"
        "r.simulation('train'), buy_and_hold(r.market, r.spans)\n"
        "print(json.dumps({'filled': sorted(NAMES[i] for i in range(len(NAMES)) if _TABLE[i]),\n"
        "                  'tape': sorted({NAMES[op] for op in r.tape.code[:, 0]}),\n"
        "                  'compiled': sorted(n for n, k in KERNELS.items() if k.overloads),\n"
        "                  'simulate': len(simulate_nb.overloads), 'metrics': len(metrics_nb.overloads)}))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["filled"] == seen["tape"]
    assert set(seen["compiled"]) >= set(seen["tape"])
    assert len(seen["compiled"]) < 12 < len(NAMES)  # sma_cross needs a handful of the kernels
    # The Python simulate/metrics wrappers (equity, buy and hold) reuse the evaluation path's
    # specialisation: read-only prices in both, so no second compile of either.
    assert (seen["simulate"], seen["metrics"]) == (1, 1)


def test_the_table_holds_one_distinct_address_per_kernel():
    table = fill_all()
    assert table.shape == (TABLE_SIZE,) == (len(NAMES) + 1,) and table.dtype == np.int64
    assert (table[:-1] > 0).all() and table[-1] == FINGERPRINT
    assert len(set(table[:-1].tolist())) == len(NAMES)


def test_kernel_table_fills_the_slots_of_a_tape():
    tape = compile(check(parse("buy when rsi(close, 14) < 30\nsell when rsi(close, 14) > 70\n")))
    table = kernel_table(tape.code)
    assert all(table[op] for op in tape.code[:, 0])


def test_an_empty_slot_raises_instead_of_calling_address_zero():
    tape = compile(check(parse("buy when close > sma(close, 5)\nsell when close < sma(close, 5)\n")))
    m = synthetic_market(1, 60)
    run_tape(tape, m)  # compiles the loop and fills the table
    empty = np.zeros(TABLE_SIZE, dtype=np.int64)
    empty[-1] = FINGERPRINT
    with pytest.raises(RuntimeError, match=r"kernel (sma|gt|lt)_nb is not in the kernel table"):
        run_tape_nb(tape.code, tape.consts, tape.n_regs, empty, m.open, m.high, m.low, m.close, m.volume,
                    ALL_INPUTS, *no_prefixes())


@pytest.mark.parametrize("damage", ["fingerprint", "short", "long"])
def test_the_loop_refuses_a_table_of_another_instruction_set(damage):
    # What a loop loaded from a stale cache (compiled for another opcode order) would be handed.
    tape = compile(check(parse("buy when close > sma(close, 5)\nsell when close < sma(close, 5)\n")))
    m = synthetic_market(1, 60)
    table = kernel_table(tape.code).copy()
    if damage == "fingerprint":
        table[-1] += 1
    else:
        table = table[:-2] if damage == "short" else np.append(table, FINGERPRINT)
    with pytest.raises(ValueError, match="kernel table does not match this dispatch loop"):
        run_tape_nb(tape.code, tape.consts, tape.n_regs, table, m.open, m.high, m.low, m.close, m.volume,
                    ALL_INPUTS, *no_prefixes())


def test_series_of_different_lengths_are_refused_and_types_may_differ():
    tape = compile(check(parse("buy when close > open\nsell when volume < 0\n")))
    m = synthetic_market(1, 60)
    with pytest.raises(ValueError, match="must have the same length"):
        run_tape_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), m.open, m.high,
                    m.low, m.close, m.volume[:10], ALL_INPUTS, *no_prefixes())
    # an int64 volume and writable prices beside read-only ones still run
    regs = run_tape_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), m.open.copy(),
                       m.high, m.low, m.close, m.volume.astype(np.int64), ALL_INPUTS, *no_prefixes())
    np.testing.assert_array_equal(regs[4], m.volume.astype(np.int64).astype(float))


def test_an_unknown_opcode_leaves_the_table_to_the_loop():  # test_opcodes: the loop raises
    code = np.zeros((1, WIDTH), dtype=np.int64)
    code[0, 0] = len(NAMES)
    code[0, 1] = 5
    assert kernel_table(code) is kernel_table(code[:0])  # nothing to fill, no IndexError


def test_a_call_with_the_wrong_argument_types_does_not_compile():
    sma = caller("sma")

    @njit
    def wrong(table, x, out):
        sma(table, x, 2.5, out)  # a float where the kernel takes an int64 window

    x = np.ones(10)
    with pytest.raises(TypingError, match=r"sma_nb takes"):
        wrong(np.zeros(len(NAMES), dtype=np.int64), x, np.empty(10))


def test_argument_types_follow_the_kernel_parameters():
    assert [str(t) for t in ARG_TYPES["sma"]] == ["array(float64, 1d, C)", "int64", "array(float64, 1d, C)"]
    assert [str(t) for t in ARG_TYPES["bb_upper"]][1:3] == ["int64", "float64"]
    assert [str(t) for t in ARG_TYPES["fill"]] == ["float64", "array(float64, 1d, C)"]
    assert CODE["fill"] == 0
