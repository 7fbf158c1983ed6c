"""Sweep variants compiled through a template compute exactly what compile_many computes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs

from autostrat.sim.backtest import load_strategy, period_spans
from autostrat.sim.grid import sweep_points
from autostrat.lang.check import check
from autostrat.tape.compile import compile_many
from autostrat.config import Settings
from autostrat.sim.evaluate import evaluate_tape
from autostrat.tape.opcodes import FIRST_FREE_REG
from autostrat.resources import example_path, examples_dir
from autostrat.data.synthetic import synthetic_market
from autostrat.tape.template import compile_batch, compile_variants, same_structure, unique_rows
from autostrat.tape.vm import run_tape

WITH_PARAMS = sorted(p.stem for p in examples_dir().glob("*.strat") if "\nparam " in "\n" + p.read_text())


def grid_of(typed, rng: np.random.Generator) -> dict[str, list[float]]:
    """Three values per param around its own, one of them repeated from another param when possible
    (so that instructions coincide for some variants, e.g. fast = slow)."""
    grid = {}
    for name, value in typed.param_values.items():
        p = typed.params[name]
        lo = p.lo.value if p.lo is not None else value / 2
        hi = p.hi.value if p.hi is not None else value * 2
        whole = float(value).is_integer()
        picks = rng.uniform(lo, hi, 2)
        picks = [float(round(x)) if whole else float(x) for x in picks]
        grid[name] = sorted({float(value), *picks})
    names = list(grid)
    if len(names) >= 2:
        grid[names[1]] = sorted({*grid[names[1]], grid[names[0]][0]})
    return grid


@pytest.fixture(scope="module")
def market():
    return synthetic_market(seed=11, bars=3000, start="2013-01-01")


def test_the_examples_have_params():
    assert {"sma_cross", "rsi_reversion", "keltner_params"} <= set(WITH_PARAMS)


@pytest.mark.parametrize("name", WITH_PARAMS)
def test_variants_evaluate_exactly_as_compile_many(name, market):
    typed = load_strategy(example_path(name))
    variants = sweep_points(typed, grid_of(typed, np.random.default_rng(len(name))))
    assert len(variants) >= 3 and same_structure(variants)
    fast, slow = compile_variants(variants), compile_many(variants)
    assert fast.code.shape[0] <= slow.code.shape[0]  # sharing is never worse
    np.testing.assert_array_equal(fast.warmups, slow.warmups)
    np.testing.assert_array_equal(fast.exits, slow.exits)
    spans = period_spans(market, Settings(), ("train", "validation", "test"))
    np.testing.assert_array_equal(evaluate_tape(fast, market, spans, Settings().backtest),
                                  evaluate_tape(slow, market, spans, Settings().backtest))
    # the rule series themselves, NaN positions included
    rf, rs = run_tape(fast, market), run_tape(slow, market)
    for p in range(len(variants)):
        for j in range(4):
            a, b = fast.outputs[p, j], slow.outputs[p, j]
            assert (a == -1) == (b == -1)
            if a != -1:
                np.testing.assert_array_equal(rf[a], rs[b])


def test_a_large_sweep_skips_register_reuse_and_still_evaluates_exactly(market):
    # 100 variants: 20 averages shared by 200 comparisons, nearly all rule outputs or their
    # operands; the template keeps one register per instruction instead of running the allocation
    # pass, which could not save one here.
    typed = load_strategy(example_path("sma_cross"))
    grid = {"fast": [float(v) for v in range(5, 55, 5)], "slow": [float(v) for v in range(60, 260, 20)]}
    variants = sweep_points(typed, grid)
    fast, slow = compile_variants(variants), compile_many(variants)
    assert fast.n_regs == FIRST_FREE_REG + fast.code.shape[0] >= slow.n_regs
    assert fast.code.shape[0] == slow.code.shape[0]
    spans = period_spans(market, Settings(), ("train", "validation"))
    np.testing.assert_array_equal(evaluate_tape(fast, market, spans, Settings().backtest),
                                  evaluate_tape(slow, market, spans, Settings().backtest))


def test_coinciding_values_share_one_instruction():
    typed = load_strategy(example_path("sma_cross"))
    variants = sweep_points(typed, {"fast": [20.0, 30.0], "slow": [20.0, 30.0]})
    tape = compile_variants(variants)
    # sma(close, 20) and sma(close, 30), the comparisons of 3 distinct pairs and 1 equal pair
    smas = [row for row in tape.code if row[0] == compile_many(variants[:1]).code[0][0]]
    assert len(smas) == 2


def test_other_batches_go_through_compile_many():
    a, b = load_strategy(example_path("sma_cross")), load_strategy(example_path("rsi_reversion"))
    assert not same_structure([a, b])
    tape = compile_batch([a, b])
    assert tape.spans  # compile_many's tapes carry source spans; the template's do not
    for combo in itertools.product([a], repeat=1):
        assert compile_batch(list(combo)).spans


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(layout=False), st.randoms(use_true_random=False))
def test_random_programs_with_params_evaluate_exactly_as_compile_many(program, rnd):
    typed = check(program)
    if not typed.param_values:
        return
    grid = {}
    for name, value in typed.param_values.items():  # the value, and one more inside its range
        p = typed.params[name]
        lo = p.lo.value if p.lo is not None else value
        hi = p.hi.value if p.hi is not None else value
        other = rnd.uniform(lo, hi)
        grid[name] = sorted({float(value), float(round(other)) if float(value).is_integer() else other})
    variants = sweep_points(typed, grid)
    if len(variants) < 2:
        return
    market = _MARKET
    spans = period_spans(market, Settings(), ("train", "validation"))
    fast, slow = compile_variants(variants), compile_many(variants)
    np.testing.assert_array_equal(evaluate_tape(fast, market, spans, Settings().backtest),
                                  evaluate_tape(slow, market, spans, Settings().backtest))


_MARKET = synthetic_market(seed=12, bars=2000, start="2014-01-01")


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 40), st.lists(st.sampled_from(["const", "small", "wide"]), min_size=8, max_size=8),
       st.integers(0, 2**32 - 1))
def test_unique_rows_is_np_unique_of_the_rows(n, columns, seed):
    """The step keys' unique rows and inverse, in np.unique's order, whatever the columns vary by."""
    rng = np.random.default_rng(seed)
    keys = np.empty((n, 8), dtype=np.int64)
    for j, kind in enumerate(columns):
        if kind == "const":
            keys[:, j] = rng.integers(-9, 9)
        elif kind == "small":
            keys[:, j] = rng.integers(-3, 4, size=n)
        else:
            keys[:, j] = rng.integers(-2**62, 2**62, size=n)
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    got = unique_rows(keys)
    np.testing.assert_array_equal(got[0], distinct)
    np.testing.assert_array_equal(got[1], inverse.reshape(-1))


def test_unique_rows_falls_back_where_the_ranks_would_overflow():
    keys = np.random.default_rng(3).integers(0, 10**6, size=(900, 8))  # (600 distinct) ** 8 > 2 ** 62
    keys[::3] = keys[1::3]
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    got = unique_rows(keys)
    np.testing.assert_array_equal(got[0], distinct)
    np.testing.assert_array_equal(got[1], inverse.reshape(-1))
