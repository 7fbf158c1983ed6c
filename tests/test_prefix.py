"""The rolling sum from a prefix pass and a window pass (autostrat.tape.prefix), shared or not.

The split kernels, alone and through `_rolling_sum_nb` (sma, sum), are checked bit for bit against
`fused_rolling_sum`, a plain-Python copy of the one-pass loop they replaced, on random series (NaN
runs, zeros, values far apart in size, infinities: the direct-sum fallback included). The dispatch
loop's choice of which rolling sums share a block is checked on hand-written code (a register
written again between two reads must not share), and whole tapes that share blocks are checked
against each sma and sum kernel run on its own.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autostrat.config import Settings
from autostrat.data.synthetic import synthetic_market
from autostrat.sim.backtest import period_spans
from autostrat.sim.evaluate import evaluate_arrays, evaluate_tape, spans_array
from autostrat.sim.simulate import evaluation_args
from autostrat.lang.check import load
from autostrat.tape.compile import compile
from autostrat.tape.kernel_table import kernel_table
from autostrat.tape.kernels_indicators import rsi_nb
from autostrat.tape.kernels_rolling import sma_nb, sum_nb
from autostrat.tape.opcodes import Op
from autostrat.tape import prefix
from autostrat.tape.prefix import (EPS, PREFIX_ROWS, RECOMPUTE_AT, _rolling_sum_nb, input_prefixes, no_prefixes,
                                   rolling_prefix_nb, rolling_window_nb, series_prefix)
from autostrat.tape.vm import ALL_INPUTS, MAX_SHARED, run_tape, run_tape_nb, shared_prefixes_nb

NONE = no_prefixes()[1]  # given_at without given blocks

VALUES = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(0.0), st.just(np.nan),
                   st.floats(-1e300, 1e300, allow_nan=False), st.just(np.inf), st.just(1e-300))


def fused_rolling_sum(x, n, div):
    """The one-pass rolling sum autostrat had before the split, in plain Python (the same IEEE
    operations in the same order): the reference the split kernels must equal bit for bit."""
    m = len(x)
    out, hi, lo = [math.nan] * m, [0.0] * m, [0.0] * m

    def ok(r, run, mag):
        return abs(r) * RECOMPUTE_AT > 4.0 * run * EPS * EPS * mag

    run, s, c, mag, bad = 0, 0.0, 0.0, 0.0, False
    for t in range(m):
        v = float(x[t])
        if math.isnan(v):
            run, s, c, mag = 0, 0.0, 0.0, 0.0
            continue
        run += 1
        u = s + v
        w = u - s
        c += (s - (u - w)) + (v - w)
        s = u
        mag += abs(v)
        hi[t], lo[t] = s, c
        if run < n:
            continue
        r = (s - hi[t - n]) + (c - lo[t - n]) if run > n else s + c
        out[t] = r / div
        bad |= not ok(r, run, mag)
    if bad:  # the windows the prefixes cannot give exactly enough, summed directly
        run, mag = 0, 0.0
        for t in range(m):
            if math.isnan(x[t]):
                run, mag = 0, 0.0
                continue
            run += 1
            mag += abs(x[t])
            if run < n:
                continue
            r = (hi[t] - hi[t - n]) + (lo[t] - lo[t - n]) if run > n else hi[t] + lo[t]
            if not ok(r, run, mag):
                r = 0.0
                for j in range(t - n + 1, t + 1):
                    r += float(x[j])
                out[t] = r / div
    return np.array(out, dtype=np.float64)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(a), np.nan, a).view(np.int64)  # every NaN the same pattern


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, min_size=0, max_size=80), st.integers(1, 12), st.sampled_from([1.0, 3.0, 7.0]))
def test_the_split_rolling_sum_is_the_one_pass_loop_bit_for_bit(values, n, div):
    x = np.array(values, dtype=np.float64)
    want = fused_rolling_sum(x, n, div)
    pre = np.empty((PREFIX_ROWS, x.shape[0]))
    rolling_prefix_nb(x, pre)
    got = np.empty_like(x)
    rolling_window_nb(x, n, got, div, pre)
    assert np.array_equal(_bits(got), _bits(want))
    alone = np.empty_like(x)
    _rolling_sum_nb(x, n, alone, div)
    assert np.array_equal(_bits(alone), _bits(want))


def test_one_prefix_serves_every_window():
    x = synthetic_market(bars=600).close.copy()
    x[100:103] = np.nan
    pre = np.empty((PREFIX_ROWS, x.shape[0]))
    rolling_prefix_nb(x, pre)
    for n in (1, 2, 5, 50, 97, 599, 700):
        want, got = np.empty_like(x), np.empty_like(x)
        sma_nb(x, n, want)
        rolling_window_nb(x, n, got, float(n), pre)
        assert np.array_equal(_bits(got), _bits(want)), n


def _row(op, d, a, n=2):
    return [op, d, a, 0, 0, n, 0, 0, 0]


def test_blocks_follow_the_value_a_register_holds_not_the_register():
    code = np.array([
        _row(Op.sma, 5, 3, 2),   # sma(close)      shares block 0 with the next
        _row(Op.sma, 6, 3, 4),   # sma(close)
        _row(Op.sma, 9, 5, 3),   # of r5 as the first row left it: read once, none
        _row(Op.neg, 5, 6),      # r5 now holds another value
        _row(Op.sma, 7, 5, 2),   # of the new r5:  block 1 with the next
        _row(Op.sum, 8, 5, 3),
        _row(Op.sma, 9, 6, 3),   # r6 is read by one rolling sum only: none
        _row(Op.sum, 10, 0, 3),  # open, once: none
    ], dtype=np.int64)
    share, n_blocks = shared_prefixes_nb(code, 11, NONE, 0)
    assert share.tolist() == [0, 0, -1, -1, 1, 1, -1, -1]
    assert n_blocks == 2


def test_no_more_blocks_than_the_limit():
    rows = []
    for v in range(MAX_SHARED + 2):  # that many values, each read by two rolling sums
        rows += [_row(Op.neg, 5 + 3 * v, 3), _row(Op.sma, 6 + 3 * v, 5 + 3 * v, 2), _row(Op.sum, 7 + 3 * v, 5 + 3 * v, 4)]
    share, n_blocks = shared_prefixes_nb(np.array(rows, dtype=np.int64), 5 + 3 * (MAX_SHARED + 2), NONE, 0)
    assert n_blocks == MAX_SHARED
    assert sorted(set(share.tolist())) == [-1, *range(MAX_SHARED)]
    assert share.tolist()[-6:] == [-1] * 6  # the last two values compute their own


def test_a_tape_that_shares_equals_each_kernel_alone():
    # One comparison per rule: each rolling sum is a fused rule's operand, so its register holds
    # it to the end of the run.
    market = synthetic_market(bars=900, seed=3)
    typed = load('strategy "windows"\n'
                 "buy when sma(close, 5) > sma(close, 50)\n"
                 "sell when sum(close, 20) < sma(rsi(close, 14), 9)\n"
                 "short when sma(rsi(close, 14), 30) > sum(rsi(close, 14), 3)\n"
                 "cover when sma(volume, 10) < sma(close, 7)\n")
    tape = compile(typed)
    share, n_blocks = shared_prefixes_nb(tape.code, tape.n_regs, NONE, 0)
    assert n_blocks == 2  # close, and rsi(close, 14); volume is read once
    regs = run_tape(tape, market)
    close, volume = np.asarray(market.close), np.asarray(market.volume)
    rsi = np.empty_like(close)
    rsi_nb(np.ascontiguousarray(close), 14, rsi)
    checked = 0
    for row in tape.code:
        if row[0] not in (Op.sma, Op.sum):
            continue
        src = {3: close, 4: volume}.get(int(row[2]), rsi)
        want = np.empty_like(close)
        (sma_nb if row[0] == Op.sma else sum_nb)(np.ascontiguousarray(src), int(row[5]), want)
        assert np.array_equal(_bits(regs[row[1]]), _bits(want)), row
        checked += 1
    assert checked == 8


# ---------------------------------------------------------------- blocks kept across runs


def test_a_given_block_serves_every_rolling_sum_of_its_input_even_a_lone_one():
    close_at = np.array([-1, -1, -1, 0, -1], dtype=np.int64)
    code = np.array([
        _row(Op.sma, 5, 3, 2),   # sma(close), alone: the given block
        _row(Op.sum, 6, 0, 3),   # open, twice: a block of the run's own
        _row(Op.sma, 7, 0, 5),
        _row(Op.sma, 8, 5, 3),   # of r5 (a computed value), once: none
    ], dtype=np.int64)
    share, n_blocks = shared_prefixes_nb(code, 9, close_at, 1)
    assert share.tolist() == [-2, 0, 0, -1]
    assert n_blocks == 1
    share, n_blocks = shared_prefixes_nb(code, 9, close_at, 0)  # given_at pointing past `given`: ignored
    assert share.tolist() == [-1, 0, 0, -1]


def test_a_run_with_the_kept_close_block_equals_one_without_bit_for_bit():
    market = synthetic_market(bars=6750, seed=5)
    typed = load('strategy "kept"\n'
                 "buy when sma(close, 5) > sma(close, 50)\n"
                 "sell when sum(close, 20) < sma(sma(close, 3), 9)\n"
                 "short when sma(high, 30) > close\n"
                 "cover when sum(close, 7) > sum(high, 7)\n")
    tape = compile(typed)
    given, given_at = input_prefixes(market.close)
    assert given.shape == (1, PREFIX_ROWS, len(market)) and given_at.tolist() == [-1, -1, -1, 0, -1]
    args = (tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), market.open, market.high, market.low,
            market.close, market.volume, ALL_INPUTS)
    with_block = run_tape_nb(*args, given, given_at)
    without = run_tape_nb(*args, *no_prefixes())
    for row in tape.code:
        if row[0] in (Op.sma, Op.sum):
            assert np.array_equal(_bits(with_block[row[1]]), _bits(without[row[1]])), row
    settings = Settings()
    a = evaluate_tape(tape, market, period_spans(market, settings), settings.backtest)
    b = evaluate_arrays(tape.run_code, tape.consts, tape.n_regs, tape.rules, tape.warmups, tape.exits,
                        market.open, market.high, market.low, market.close, market.volume,
                        spans_array(period_spans(market, settings)), *evaluation_args(settings.backtest),
                        kept_prefix=False)
    assert np.array_equal(_bits(a), _bits(b))


def test_only_read_only_series_keep_a_block_and_only_the_last_few(monkeypatch):
    writable = synthetic_market(bars=300).close.copy()
    assert series_prefix(writable) is None
    assert input_prefixes(writable)[0].shape[0] == 0
    view = writable[:]
    view.flags.writeable = False  # read-only, but its values change with `writable`'s
    assert series_prefix(view) is None
    frozen = writable.copy()
    frozen.flags.writeable = False
    assert series_prefix(frozen) is not None and series_prefix(frozen[10:]) is not None
    one = 300 * 8 * (PREFIX_ROWS + 1)  # a block of 300 bars and the series it holds
    monkeypatch.setattr(prefix, "CACHED_BYTES", 4 * one)
    kept = []
    for seed in range(7):
        x = synthetic_market(bars=300, seed=seed).close
        kept.append(x)
        block = series_prefix(x)
        assert series_prefix(x) is block  # made once
        want = np.empty((PREFIX_ROWS, 300))
        rolling_prefix_nb(x, want)
        assert np.array_equal(_bits(block), _bits(want))
    assert [id(x) in prefix._BLOCKS for x in kept] == [False] * 3 + [True] * 4
    assert prefix._kept_bytes <= 4 * one
    long = synthetic_market(bars=2000).close  # more than the whole budget: made, not kept
    assert series_prefix(long).shape == (PREFIX_ROWS, 2000) and id(long) not in prefix._BLOCKS


def test_a_given_block_of_another_length_is_refused():
    market = synthetic_market(bars=300)
    tape = compile(load('strategy "s"\nbuy when sma(close, 5) > close\nsell when close > sma(close, 9)\n'))
    given, given_at = input_prefixes(synthetic_market(bars=200).close)
    with pytest.raises(ValueError, match="as long as the series"):
        run_tape_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), market.open, market.high,
                    market.low, market.close, market.volume, ALL_INPUTS, given, given_at)
