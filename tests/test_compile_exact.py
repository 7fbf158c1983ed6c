"""The tape compiler gives exactly the tapes it gave before its bulk speed-up.

tests/reference_compile.py keeps the earlier compiler verbatim. For every program file, for random
batches of random programs, and for sweep variants (the template path of compile_batch), every
array evaluation reads must be identical: code, constants, outputs, rule forms, run_code, warm-ups,
exits and the register count.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import programs
from test_template import WITH_PARAMS, grid_of
from test_vm import BATCHES, RANDOM, program_files

import reference_compile as ref
from autostrat.lang.check import check
from autostrat.lang.parse import parse
from autostrat.resources import example_path
from autostrat.sim.backtest import load_strategy
from autostrat.sim.grid import sweep_points
from autostrat.tape.compile import compile, compile_many
from autostrat.tape.opcodes import FIRST_FREE_REG
from autostrat.tape.template import compile_batch, compile_variants

FIELDS = ("code", "consts", "outputs", "rules", "run_code", "warmups", "exits")


def fused_last(tape) -> dict[str, np.ndarray]:
    """The reference tape's arrays with the registers only fused comparisons write numbered last,
    the others keeping their order (what the compiler now does, so a run allocates fewer rows)."""
    fused = {int(r) for r, form in zip(tape.outputs.ravel(), tape.rules.reshape(-1, 3)) if form[0] >= 0}
    last = fused - {int(r) for r in tape.run_code[:, 1]}
    order = [r for r in range(FIRST_FREE_REG, tape.n_regs) if r not in last] + sorted(last)
    new = {old: FIRST_FREE_REG + i for i, old in enumerate(order)}
    new.update({r: r for r in range(-1, FIRST_FREE_REG)})  # the bar data, and -1 for none

    def mapped(a, columns):
        a = a.copy()
        for row in a.reshape(-1, a.shape[-1]):
            for j in columns:
                row[j] = new[int(row[j])]
        return a

    arrays = {name: getattr(tape, name) for name in FIELDS}
    arrays["code"], arrays["run_code"] = mapped(tape.code, (1, 2, 3, 4)), mapped(tape.run_code, (1, 2, 3, 4))
    arrays["outputs"], arrays["rules"] = mapped(tape.outputs, (0, 1, 2, 3)), mapped(tape.rules, (1, 2))
    return arrays


def assert_same_tape(got, want) -> None:
    """`got` is the reference tape `want`, its fused comparisons' registers numbered last."""
    renumbered = fused_last(want)
    for name in FIELDS:
        a, b = getattr(got, name), renumbered[name]
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert a.tobytes() == b.tobytes(), name  # NaN exits compare equal bit for bit
    assert got.n_regs == want.n_regs
    assert got.names == want.names and got.sources == want.sources


def typed_files():
    return [check(parse(path.read_text(encoding="utf-8"), str(path))) for path in program_files()]


def test_every_program_file_alone_and_all_of_them_in_one_batch():
    typed = typed_files()
    assert len(typed) >= 10
    for t in typed:
        assert_same_tape(compile(t), ref.compile_many([t]))
        assert_same_tape(compile_batch([t]), ref.compile_many([t]))
    assert_same_tape(compile_many(typed), ref.compile_many(typed))
    assert_same_tape(compile_batch(typed), ref.compile_many(typed))
    assert_same_tape(compile_many(typed[::-1] + typed), ref.compile_many(typed[::-1] + typed))


def test_the_spans_nodes_and_origins_are_kept():
    typed = typed_files()
    got, want = compile_many(typed), ref.compile_many(typed)
    assert got.spans == want.spans and got.origins == want.origins
    assert got.texts == want.texts


def test_separately_written_crossovers_share_averages_as_before():
    texts = [f"buy when sma(close, {f}) > sma(close, {s})\nsell when sma(close, {f}) < sma(close, {s})\n"
             for f in (5, 10, 20) for s in (30, 50, 100, 20)]
    typed = [check(parse(t)) for t in texts]
    assert_same_tape(compile_batch(typed), ref.compile_many(typed))


@pytest.mark.parametrize("name", WITH_PARAMS)
def test_sweep_variants_of_the_examples(name):
    typed = load_strategy(example_path(name))
    for seed in range(3):
        variants = sweep_points(typed, grid_of(typed, np.random.default_rng(seed)))
        assert_same_tape(compile_variants(variants), ref.compile_variants(variants))
        assert_same_tape(compile_batch(variants), ref.compile_variants(variants))


def test_a_large_sweep_without_register_reuse():
    typed = load_strategy(example_path("sma_cross"))
    grid = {"fast": [float(v) for v in range(5, 55, 5)], "slow": [float(v) for v in range(60, 260, 20)]}
    variants = sweep_points(typed, grid)
    assert_same_tape(compile_batch(variants), ref.compile_variants(variants))


@RANDOM
@given(program=programs(layout=False))
def test_random_programs(program):
    typed = check(program)
    assert_same_tape(compile(typed), ref.compile_many([typed]))


@BATCHES
@given(batch=st.lists(programs(layout=False), min_size=2, max_size=6))
def test_random_batches(batch):
    typed = [check(p) for p in batch]
    assert_same_tape(compile_many(typed), ref.compile_many(typed))
    assert_same_tape(compile_many(typed + typed), ref.compile_many(typed + typed))


@BATCHES
@given(program=programs(layout=False), steps=st.lists(st.integers(-3, 3), min_size=1, max_size=3))
def test_random_sweeps(program, steps):
    typed = check(program)
    assume(typed.params)
    # each param's value and a few near it, one shared with the next param (equal windows share);
    # points the checker refuses are left out by sweep_points
    names = list(typed.param_values)
    grid = {n: sorted({float(v), *(float(v) + d for d in steps)}) for n, v in typed.param_values.items()}
    if len(names) >= 2:
        grid[names[1]] = sorted({*grid[names[1]], grid[names[0]][0]})
    variants = sweep_points(typed, grid)
    assume(len(variants) >= 2)
    assert_same_tape(compile_variants(variants), ref.compile_variants(variants))
