"""ParamVariants: a variant checked fast is exactly `check` of the variant, valid or not."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs

from autostrat.config import Settings
from autostrat.data.synthetic import synthetic_market
from autostrat.errors import StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.lang.parse import parse
from autostrat.lang.registry import MAX_LOOKBACK
from autostrat.lang.variants import ParamVariants
from autostrat.sim.backtest import period_spans
from autostrat.sim.evaluate import evaluate_tape
from autostrat.sim.grid import iter_variants, set_param
from autostrat.tape.compile import compile

_MARKET = synthetic_market(seed=21, bars=1500, start="2015-01-01")
# values that break a window, an exit or nothing: 0, negative, fractional, too long, huge, tiny
_ODD = [0.0, -3.0, 0.5, 2.5, 1.0, 7.0, float(MAX_LOOKBACK), MAX_LOOKBACK + 1.0, 1e6, 1e-9, 0.08, 12.0]


def _by_check(typed, combo):
    """`check` of the program with the params of `combo` set, as a sweep did before ParamVariants."""
    stmts = tuple(set_param(s, combo[s.name]) if isinstance(s, N.Param) and s.name in combo else s
                  for s in typed.program.statements)
    return check(dataclasses.replace(typed.program, statements=stmts))


def _outcome(fn):
    try:
        return fn(), None
    except StrategyError as exc:
        return None, exc.format()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(layout=False), st.data())
def test_a_fast_variant_is_check_of_the_variant(program, data):
    typed = check(program)
    if not typed.param_values:
        return
    variants = ParamVariants(typed)
    for _ in range(4):
        combo = {name: data.draw(st.sampled_from(_ODD + [value, value + 1, max(value - 1, 0)]))
                 for name, value in typed.param_values.items() if data.draw(st.booleans())}
        params = {n: set_param(typed.params[n], v) for n, v in combo.items()}
        fast, fast_error = _outcome(lambda: variants(params))
        slow, slow_error = _outcome(lambda: _by_check(typed, combo))
        assert fast_error == slow_error  # the same diagnostics, in the same order
        assert fast == slow
        if fast is not None:
            assert fast.warmup == slow.warmup and fast.exits == slow.exits and fast.param_values == slow.param_values
            np.testing.assert_array_equal(compile(fast).code, compile(slow).code)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(layout=False), st.data())
def test_a_grid_checked_a_block_at_a_time_is_check_point_by_point(program, data):
    typed = check(program)
    if not typed.param_values:
        return
    grid = {name: data.draw(st.lists(st.sampled_from(_ODD + [value, value + 1]), min_size=1, max_size=3, unique=True))
            for name, value in typed.param_values.items() if data.draw(st.booleans())}
    want = []
    for index, values in enumerate(itertools.product(*grid.values())):
        combo = dict(zip(grid, values))
        try:
            want.append((index, _by_check(typed, combo), combo))
        except StrategyError:
            pass
    got = list(iter_variants(typed, grid))
    assert got == want
    # every field of the program too, those equality skips (path, source, comments) included
    assert [vars(t.program) for _, t, _ in got] == [vars(t.program) for _, t, _ in want]


SOURCE = """strategy "windows, constants and exits from params"
param fast = 10 in 2..50
param slow = 40 in 10..200
param k = 2 in 0.5..4
param stop = 8% in 2%..20%
param hold = 20 in 1..100
band = sma(close, slow) + k * stdev(close, fast)
buy when cross_above(sma(close, fast), sma(close, slow)) and close < band
sell when close > highest(close, fast)[2]
stop_loss stop
max_hold hold
"""


def test_a_grid_with_invalid_points_gives_what_check_gives_point_by_point():
    typed = check(parse(SOURCE))
    grid = {"fast": [0.0, 3.0, 10.5, 20.0], "slow": [1.0, 60.0, 5000.0], "stop": [0.0, 0.05, 1.5],
            "hold": [0.0, 30.0, 2.5]}
    got = list(iter_variants(typed, grid))
    want = []
    for index, values in enumerate(itertools.product(*grid.values())):
        combo = dict(zip(grid, values))
        try:
            want.append((index, _by_check(typed, combo), combo))
        except StrategyError:
            pass
    assert 0 < len(want) < 4 * 3 * 3 * 3  # some points are invalid, and skipped
    assert got == want
    spans = period_spans(_MARKET, Settings(), ("train", "validation"))
    for (_, fast, _), (_, slow, _) in zip(got, want):
        np.testing.assert_array_equal(evaluate_tape(compile(fast), _MARKET, spans, Settings().backtest),
                                      evaluate_tape(compile(slow), _MARKET, spans, Settings().backtest))


def test_a_point_block_holds_what_check_gives_point_by_point_and_compiles_from_its_arrays():
    """A sweep's PointBlock: each point read from it is the program check gives; its arrays (values,
    warm-ups, exits) are those programs'; its slices and joins are the same points; and the tape
    compiled from the arrays is the tape compiled from the programs, bit for bit."""
    from autostrat.sim.grid import points_frame, sweep_points
    from autostrat.tape.compile import compile_many
    from autostrat.tape.template import compile_variants

    typed = check(parse(SOURCE))
    grid = {"fast": [0.0, 3.0, 10.5, 20.0], "slow": [1.0, 60.0, 5000.0], "stop": [0.0, 0.05, 1.5],
            "hold": [0.0, 30.0, 2.5]}
    want = [t for _, t, _ in iter_variants(typed, grid)]
    block = sweep_points(typed, grid)
    assert len(block) == len(want) and list(block) == want and [block[i] for i in range(len(block))] == want
    assert [vars(t.program) for t in block] == [vars(t.program) for t in want]
    assert list(block[2:7]) == want[2:7] and list(block[:3].joined(block[3:])) == want
    for name in typed.param_values:
        assert block.values(name).tolist() == [float(t.param_values[name]) for t in want]
    assert block.warmups.tolist() == [t.warmup for t in want]
    assert block.exit_overrides() == [t.exits for t in want]
    assert block.names == [t.name for t in want]
    combos = [combo for _, _, combo in iter_variants(typed, grid)]
    frame = points_frame(block, grid)
    assert frame.to_dict("records") == combos
    assert [str(t) for t in frame.dtypes] == ["float64", "int64", "float64", "float64"]  # slow: whole values
    assert points_frame(block, {**grid, "fast": [0.0, 3.0, 10.0, 20.0]})["fast"].dtype == np.int64  # whole values

    from_arrays, from_programs = compile_variants(block), compile_variants(want)
    for field in ("code", "consts", "outputs", "rules", "run_code", "warmups", "exits"):
        np.testing.assert_array_equal(getattr(from_arrays, field), getattr(from_programs, field), err_msg=field)
    assert (from_arrays.n_regs, from_arrays.names, from_arrays.sources) == (
        from_programs.n_regs, from_programs.names, from_programs.sources)
    spans = period_spans(_MARKET, Settings(), ("train", "validation"))
    np.testing.assert_array_equal(evaluate_tape(from_arrays, _MARKET, spans, Settings().backtest),
                                  evaluate_tape(compile_many(want), _MARKET, spans, Settings().backtest))


def test_a_point_block_of_a_grid_that_sets_no_exit_shares_the_base_exits():
    from autostrat.sim.grid import sweep_points

    typed = check(parse(SOURCE))
    block = sweep_points(typed, {"fast": [5.0, 10.0], "k": [1.0, 2.0, 3.0]})
    assert block.exit_overrides() is None  # no per-point dicts when no grid param sets an exit
    assert all(t.exits == typed.exits for t in block)


def test_set_param_keeps_every_field_of_the_statement():
    """set_param builds the statement with its constructor (faster than dataclasses.replace): every
    field but the value, and a range widened to hold it, is the original's, layout included."""
    typed = check(parse("# tuned\nparam n = 20 in 5..50  # window\nbuy when close > sma(close, n)\n"
                        "sell when close < sma(close, n)\n"))
    p = typed.params["n"]
    for value, lo, hi in ((30.0, 5.0, 50.0), (2.0, 2.0, 50.0), (80.0, 5.0, 80.0)):
        q = set_param(p, value)
        assert (q.value.value, q.lo.value, q.hi.value) == (value, lo, hi)
        for f in dataclasses.fields(N.Param):
            if f.name not in ("value", "lo", "hi"):
                assert getattr(q, f.name) == getattr(p, f.name), f.name
