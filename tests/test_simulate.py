"""simulate_nb against a plain-Python reference simulator, plus hand-checked cases.

The reference below is written from the rules alone (docs/backtest.md), as a readable loop over
bars with a Position object and a pending order, no numba and no shared code with the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autostrat.config import BacktestSettings
from autostrat.errors import ConfigError
from autostrat.sim.metrics import METRIC_NAMES, metrics_nb, sharpe_rows_nb
from autostrat.sim.simulate import (EXIT_REASONS, TRADE_COLUMNS, simulate_close_long_nb, simulate_close_nb,
                                    simulate_into_nb, simulate_long_nb, simulate_nb)
from autostrat.sim.simulation import simulate

NAN = math.nan


@pytest.fixture(scope="session", autouse=True)
def _warm_jit():
    """Compile simulate_nb once for the session with the argument types every test passes."""
    n = 10
    x = np.linspace(100.0, 101.0, n)
    z = np.zeros(n)
    simulate_nb(x, x, x, x, z, z, z, z, 0, n, 0, True, 0.0, 0.0, NAN, NAN, NAN, -1, 1.0)


# --- the reference --------------------------------------------------------------------------------

@dataclass
class Position:
    side: int  # +1 long, -1 short
    entry_bar: int
    fill: float  # entry fill price
    units: float
    collateral: float  # short only: equity after commission plus the sale proceeds
    equity_at_entry: float  # equity before the entry (for the trade return)
    best: float  # highest high (long) / lowest low (short) seen after the entry bar, or the fill

    def value(self, price: float) -> float:
        return self.units * price if self.side > 0 else self.collateral - self.units * price


def reference(o, h, l, c, le, lx, se, sx, start, stop, warmup, fill_close, comm, slip,
              sl, tp, ts, max_hold, capital):
    """Equity, position and trade rows of one period, straight from the written rules."""
    on = lambda arr, t: arr[t] > 0  # noqa: E731 - NaN and 0 are off
    cash = capital
    pos: Position | None = None
    pending: tuple[bool, int] | None = None
    equity, held, trades = [], [], []

    def open_position(side, bar, price):
        nonlocal cash, pos
        fill = price * (1 + slip) if side > 0 else price * (1 - slip)
        units = cash * (1 - comm) / fill
        collateral = cash * (1 - comm) + units * fill if side < 0 else 0.0
        pos = Position(side, bar, fill, units, collateral, cash, fill)
        cash = 0.0

    def close_position(bar, price, reason):
        nonlocal cash, pos
        if pos.side > 0:
            fill = price * (1 - slip)
            proceeds = pos.units * fill * (1 - comm)
        else:
            fill = price * (1 + slip)
            proceeds = pos.collateral - pos.units * fill * (1 + comm)
        cash = max(proceeds, 0.0)
        trades.append((pos.entry_bar, bar, pos.fill, fill, pos.side,
                       cash / pos.equity_at_entry - 1, EXIT_REASONS.index(reason),
                       bar - pos.entry_bar))
        pos = None

    def intrabar_exit(bar):
        """(price, reason) of the first stop or target touched in this bar, or None."""
        p, s = pos, pos.side
        stops = []
        if not math.isnan(sl):
            stops.append((p.fill * (1 - s * sl), "stop_loss"))
        if not math.isnan(ts):
            stops.append((p.best * (1 - s * ts), "trailing_stop"))
        stop = None
        if stops:  # the tighter stop: highest for a long, lowest for a short; ties: stop_loss
            stop = max(stops, key=lambda x: s * x[0])
        target = None if math.isnan(tp) else p.fill * (1 + s * tp)
        beyond = lambda a, b: a * s <= b * s  # noqa: E731 - "a is at or past b against us"
        events = []  # (time rank, price, reason): the open first, then stop before target
        if stop and beyond(o[bar], stop[0]):
            events.append((0, o[bar], stop[1]))
        if target is not None and beyond(target, o[bar]):
            events.append((1, o[bar], "take_profit"))
        worst = l[bar] if s > 0 else h[bar]
        best = h[bar] if s > 0 else l[bar]
        if stop and beyond(worst, stop[0]):
            events.append((2, stop[0], stop[1]))
        if target is not None and beyond(target, best):
            events.append((3, target, "take_profit"))
        return min(events)[1:] if events else None

    for b in range(start, stop):
        if not fill_close and pending is not None:
            leave, enter = pending
            pending = None
            if leave and pos is not None:
                close_position(b, o[b], "signal")
            if enter and pos is None and cash > 0:
                open_position(enter, b, o[b])

        if pos is not None and b > pos.entry_bar:
            hit = intrabar_exit(b)
            if hit:
                close_position(b, hit[0], hit[1])
            elif pos.side > 0:
                pos.best = max(pos.best, h[b])
            else:
                pos.best = min(pos.best, l[b])

        if pos is not None and max_hold >= 1 and b == pos.entry_bar + max_hold:
            close_position(b, c[b], "max_hold")
        if pos is not None and pos.side < 0 and pos.value(c[b]) <= 0:
            close_position(b, c[b], "liquidation")

        if b >= warmup:
            leave = pos is not None and on(lx if pos.side > 0 else sx, b)
            enter = 0
            if pos is None or leave:
                if on(le, b) and not on(lx, b):
                    enter = 1
                elif on(se, b) and not on(sx, b):
                    enter = -1
            if fill_close:
                if leave:
                    close_position(b, c[b], "signal")
                if enter and cash > 0:
                    open_position(enter, b, c[b])
            elif b < stop - 1:
                pending = (leave, enter)

        held.append(0 if pos is None else pos.side)
        if pos is not None and b == stop - 1:
            close_position(b, c[b], "end")
        equity.append(cash if pos is None else pos.value(c[b]))
    return np.array(equity), np.array(held), np.array(trades, dtype=float).reshape(-1, 8)


# --- random markets and signals -------------------------------------------------------------------

def random_ohlc(rng, n, vol):
    close = 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))
    prev = np.concatenate([[100.0], close[:-1]])
    open_ = prev * np.exp(rng.normal(0, vol / 2, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, vol, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, vol, n)))
    return open_, high, low, close


def random_signal(rng, n, density):
    sig = (rng.random(n) < density).astype(float)
    sig[rng.random(n) < 0.02] = NAN  # NaN counts as off
    return sig


def random_case(seed):
    """One random market, signal set and settings, drawn from a seed."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 220))
    start = int(rng.integers(0, n - 1))
    stop = int(rng.integers(start + 1, n + 1))
    vol = float(rng.choice([0.005, 0.02, 0.08, 0.25]))  # 0.25: shorts can be wiped out
    shorts = rng.random() < 0.6
    density = float(rng.choice([0.05, 0.2, 0.5]))
    sigs = [random_signal(rng, n, density) for _ in range(4)]
    if not shorts:
        sigs[2][:] = 0.0
        sigs[3][:] = 0.0
    maybe = lambda values: NAN if rng.random() < 0.4 else float(rng.choice(values))  # noqa: E731
    args = (*random_ohlc(rng, n, vol), *sigs, start, stop, int(rng.integers(0, n)),
            bool(rng.random() < 0.5),
            float(rng.choice([0.0, 1e-4, 2e-3])), float(rng.choice([0.0, 1e-4, 5e-3])),
            maybe([0.01, 0.03, 0.1]), maybe([0.01, 0.05, 0.2]), maybe([0.01, 0.04, 0.15]),
            -1 if rng.random() < 0.5 else int(rng.integers(1, 12)),
            float(rng.choice([1.0, 10_000.0])))
    return args


def assert_same(args):
    eq, pos, tr = simulate_nb(*args)
    ref_eq, ref_pos, ref_tr = reference(*args)
    start, stop = args[8], args[9]
    assert eq.shape == (stop - start,) and pos.dtype == np.int8
    np.testing.assert_allclose(eq, ref_eq, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(pos, ref_pos)
    assert tr.shape == ref_tr.shape
    # bars, side, reason and bars held are exact; prices and returns to 1e-9
    np.testing.assert_array_equal(tr[:, [0, 1, 4, 6, 7]], ref_tr[:, [0, 1, 4, 6, 7]])
    np.testing.assert_allclose(tr[:, [2, 3, 5]], ref_tr[:, [2, 3, 5]], rtol=1e-9, atol=1e-12)
    return eq, pos, tr


def test_random_cases_match_the_reference():
    reasons_seen = set()
    for seed in range(600):
        _, _, tr = assert_same(random_case(seed))
        reasons_seen.update(EXIT_REASONS[int(r)] for r in tr[:, 6])
    # the sweep reached every exit path the rules define
    assert reasons_seen == set(EXIT_REASONS)


def test_scoring_while_trading_gives_the_metrics_of_the_recorded_period_bit_for_bit():
    """The search's path (metrics summed as it trades, no arrays kept) against metrics_nb over the
    equity, positions and trades simulate_nb records, on every random case: not one bit differs.
    (Rules read as comparisons are covered by the bulk and backtest tests against the VM's rows.)"""
    for seed in range(600):
        args = random_case(seed)
        close, start, stop, capital = args[3], args[8], args[9], args[18]
        eq, pos, tr = simulate_nb(*args)
        want = np.empty(len(METRIC_NAMES))
        metrics_nb(eq, pos, tr, close, start, stop, capital, want)
        got = np.empty(len(METRIC_NAMES))
        signals = np.stack(args[4:8])
        rules = np.array([[-1, j, -1] for j in range(4)], dtype=np.int64)
        kept = simulate_into_nb(*args[:4], signals, rules, *args[8:], False, got, np.empty(0))
        assert all(a.size == 0 for a in kept)
        assert want.tobytes() == got.tobytes(), (seed, dict(zip(METRIC_NAMES, zip(want, got))))


def test_returns_kept_for_the_caller_finish_to_the_same_bits_four_rows_at_a_time():
    """A simulator handed a returns buffer leaves the period's daily returns in it and the mean in
    the Sharpe slot; sharpe_rows_nb then finishes 1 to 7 programs at once (four side by side, the
    rest alone). Every metric of every program equals its own scoring, bit for bit."""
    rules = np.array([[-1, j, -1] for j in range(4)], dtype=np.int64)
    sharpe = METRIC_NAMES.index("sharpe")
    for seed in range(150):
        rng = np.random.default_rng(seed)
        args = list(random_case(seed))
        k = 1 + seed % 7
        n = args[9] - args[8]
        want = np.empty((k, len(METRIC_NAMES)))
        got = np.full((k, len(METRIC_NAMES)), -123.0)
        rets = np.full((k, max(n - 1, 1) + 3), np.nan)  # longer than the period: the tail is never read
        for j in range(k):
            signals = np.stack([random_signal(rng, len(args[3]), 0.2) for _ in range(4)])
            simulate_into_nb(*args[:4], signals, rules, *args[8:], False, want[j], np.empty(0))
            simulate_into_nb(*args[:4], signals, rules, *args[8:], False, got[j], rets[j])
            if n >= 2:  # the slot holds the mean until the rows are finished
                assert math.isclose(got[j, sharpe], rets[j, :n - 1].mean(), rel_tol=1e-9, abs_tol=1e-15)
        sharpe_rows_nb(rets, n - 1, got)
        assert want.tobytes() == got.tobytes(), (seed, k, want[:, sharpe], got[:, sharpe])


def test_the_simulators_specialised_for_fill_close_score_bit_for_bit_as_the_general_ones():
    """simulate_close_nb and simulate_close_long_nb (compiled for fill `close` with no stop, target,
    trailing stop or max_hold) against the general simulators on every random case made one they
    apply to, costs and liquidations included: not one metric bit differs."""
    rules = np.array([[-1, j, -1] for j in range(4)], dtype=np.int64)
    long_rules = rules.copy()
    long_rules[2:] = -1  # no short or cover rule: the long-only loops
    traded = 0
    for seed in range(600):
        args = list(random_case(seed))
        args[11] = True  # fill close
        args[14:18] = [NAN, NAN, NAN, -1]
        signals = np.stack(args[4:8])
        plain = (*args[:4], signals)
        for general, special, forms in ((simulate_into_nb, simulate_close_nb, rules),
                                        (simulate_long_nb, simulate_close_long_nb, long_rules)):
            want = np.empty(len(METRIC_NAMES))
            general(*plain, forms, *args[8:], False, want, np.empty(0))
            got = np.full(len(METRIC_NAMES), -123.0)
            kept = special(*plain, forms, *args[8:], False, got, np.empty(0))
            assert all(a.size == 0 for a in kept)
            assert want.tobytes() == got.tobytes(), (seed, dict(zip(METRIC_NAMES, zip(want, got))))
            traded += want[METRIC_NAMES.index("num_trades")] > 0
    assert traded > 600  # most cases trade


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), fill_close=st.booleans(),
       sl=st.sampled_from([NAN, 0.005, 0.02, 0.07]), tp=st.sampled_from([NAN, 0.01, 0.06]),
       ts=st.sampled_from([NAN, 0.01, 0.03]), max_hold=st.sampled_from([-1, 1, 2, 7]),
       comm=st.sampled_from([0.0, 5e-4]), slip=st.sampled_from([0.0, 1e-3]),
       density=st.floats(0.0, 0.9), shorts=st.booleans())
def test_hypothesis_cases_match_the_reference(seed, fill_close, sl, tp, ts, max_hold, comm, slip,
                                              density, shorts):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 120))
    start = int(rng.integers(0, n - 1))
    stop = int(rng.integers(start + 1, n + 1))
    sigs = [random_signal(rng, n, density) for _ in range(4)]
    if not shorts:
        sigs[2][:] = 0.0
        sigs[3][:] = 0.0
    assert_same((*random_ohlc(rng, n, 0.03), *sigs, start, stop, int(rng.integers(0, n)),
                 fill_close, comm, slip, sl, tp, ts, max_hold, 1000.0))


# --- hand-checked cases ---------------------------------------------------------------------------

def run(bars, le=(), lx=(), se=(), sx=(), *, fill_close=True, start=0, stop=None, warmup=0,
        comm=0.0, slip=0.0, sl=NAN, tp=NAN, ts=NAN, max_hold=-1, capital=10_000.0):
    """simulate_nb on bars given as (open, high, low, close) rows; signals as lists of bar indices.

    The reference must agree on every hand case too."""
    o, h, l, c = (np.array(col, dtype=float) for col in zip(*bars))
    n = len(bars)
    sig = [np.zeros(n) for _ in range(4)]
    for arr, bars_on in zip(sig, (le, lx, se, sx)):
        arr[list(bars_on)] = 1.0
    args = (o, h, l, c, *sig, start, n if stop is None else stop, warmup, fill_close, comm, slip,
            sl, tp, ts, max_hold, capital)
    return assert_same(args)


FLAT = (100, 100, 100, 100)


def test_stop_gap_fills_at_the_open():
    # Long 100 shares at 100. Stop 10% = 90. Bar 1 low 94: no hit. Bar 2 opens at 85, below the
    # stop: filled at the open 85, not at 90. Cash 8500, return -15%.
    eq, pos, tr = run([FLAT, (95, 96, 94, 95), (85, 88, 80, 86), (90, 91, 89, 90)], le=[0], sl=0.10)
    np.testing.assert_allclose(eq, [10_000, 9_500, 8_500, 8_500])
    np.testing.assert_array_equal(pos, [1, 1, 0, 0])
    np.testing.assert_allclose(tr, [[0, 2, 100, 85, 1, -0.15, EXIT_REASONS.index("stop_loss"), 2]])


def test_stop_gap_with_costs():
    # commission 0.1%, slippage 0.2%: entry fill 100.2, shares 10000 * 0.999 / 100.2 = 99.7006;
    # stop 100.2 * 0.9 = 90.18; the open 85 gaps through: exit fill 85 * 0.998 = 84.83,
    # cash = 99.7006 * 84.83 * 0.999 = 8449.144
    eq, _, tr = run([FLAT, (95, 96, 94, 95), (85, 88, 80, 86)], le=[0], sl=0.10, comm=1e-3,
                    slip=2e-3)
    shares = 10_000 * 0.999 / 100.2
    cash = shares * 84.83 * 0.999
    assert cash == pytest.approx(8449.144, abs=1e-3)
    np.testing.assert_allclose(eq, [shares * 100, shares * 95, cash])
    assert tr[0, 2] == pytest.approx(100.2) and tr[0, 3] == pytest.approx(84.83)
    assert tr[0, 5] == pytest.approx(cash / 10_000 - 1)


def test_stop_and_target_in_one_bar_assume_the_stop():
    # Entry 100; stop 95 and target 105 are both inside bar 1 (low 94, high 106): the stop wins.
    _, _, tr = run([FLAT, (100, 106, 94, 101), FLAT], le=[0], sl=0.05, tp=0.05)
    np.testing.assert_allclose(tr[0, [3, 5, 6]], [95, -0.05, EXIT_REASONS.index("stop_loss")])
    # But an open beyond the target happened first: filled at that open.
    _, _, tr = run([FLAT, (107, 108, 94, 101), FLAT], le=[0], sl=0.05, tp=0.05)
    np.testing.assert_allclose(tr[0, [3, 5, 6]], [107, 0.07, EXIT_REASONS.index("take_profit")])


def test_short_stop_mirrors_the_long():
    # Short at 100, stop 10% above = 110; bar 1 high 112 touches it: cover at 110, return -10%.
    eq, pos, tr = run([FLAT, (105, 112, 104, 108), FLAT], se=[0], sl=0.10)
    np.testing.assert_allclose(tr[0, [3, 4, 5]], [110, -1, -0.10])
    np.testing.assert_allclose(eq, [10_000, 9_000, 9_000])  # 10000 + 100 * (100 - 110)
    np.testing.assert_array_equal(pos, [-1, 0, 0])


def test_trailing_stop_uses_only_earlier_highs():
    # Entry 100, trailing 10%, stop_loss 5% (95). Bar 1: the level is 100 * 0.9 = 90 (the bar's own
    # high 110 is not used yet), so its low 98.5 does not exit. Bar 2: peak 110, level 99, tighter
    # than the 95 stop; the low 98 hits it: exit 99, reason trailing_stop, return -1%.
    _, _, tr = run([FLAT, (101, 110, 98.5, 108), (107, 109, 98, 100), FLAT], le=[0], ts=0.10,
                   sl=0.05)
    np.testing.assert_allclose(tr[0, [1, 3, 5, 6]],
                               [2, 99, -0.01, EXIT_REASONS.index("trailing_stop")])


def test_max_hold_exits_at_the_close_of_entry_plus_n():
    # next_open: the signal at bar 0 fills at bar 1's open (101); max_hold 2 exits at bar 3's close.
    bars = [FLAT, (101, 102, 100, 101), (102, 103, 101, 102), (103, 104, 102, 104), FLAT]
    eq, pos, tr = run(bars, le=[0], fill_close=False, max_hold=2)
    np.testing.assert_allclose(
        tr, [[1, 3, 101, 104, 1, 104 / 101 - 1, EXIT_REASONS.index("max_hold"), 2]])
    np.testing.assert_array_equal(pos, [0, 1, 1, 0, 0])
    np.testing.assert_allclose(eq[-1], 10_000 * 104 / 101)


def test_open_position_is_closed_at_the_end_with_costs():
    # Long from bar 0's close at 100 (no slippage, commission 0.1% per side) to the last close 120.
    eq, pos, tr = run([FLAT, (110, 111, 109, 110), (120, 121, 119, 120)], le=[0], comm=1e-3)
    shares = 10_000 * 0.999 / 100
    np.testing.assert_allclose(eq, [shares * 100, shares * 110, shares * 120 * 0.999])
    np.testing.assert_array_equal(pos, [1, 1, 1])  # the close-out is bookkeeping
    assert EXIT_REASONS[int(tr[0, 6])] == "end" and tr[0, 1] == 2


def test_signal_on_the_last_bar_cannot_fill_next_open():
    bars = [FLAT, (101, 101, 101, 101), (102, 102, 102, 102)]
    eq, pos, tr = run(bars, le=[2], fill_close=False)
    assert tr.shape == (0, 8) and (eq == 10_000).all() and not pos.any()
    # One bar earlier it fills at the last open (102) and is closed out at the last close.
    _, _, tr = run(bars, le=[1], fill_close=False)
    np.testing.assert_allclose(tr, [[2, 2, 102, 102, 1, 0, EXIT_REASONS.index("end"), 0]])
    # With fill = close a last-bar signal fills at the close and is closed out at once (the seed).
    _, _, tr = run(bars, le=[2], fill_close=True)
    assert tr.shape == (1, 8) and tr[0, 0] == tr[0, 1] == 2


def test_reversal_long_to_short_on_one_bar():
    # Long at 100; bar 2: long exit and short entry at the close 110 -> +10%, then short 100 shares
    # with 11000; bar 3 closes at 100: equity 11000 + 100 * (110 - 100) = 12000, closed out.
    bars = [FLAT, (105, 106, 104, 105), (110, 111, 109, 110), (100, 101, 99, 100)]
    eq, pos, tr = run(bars, le=[0], lx=[2], se=[2])
    np.testing.assert_allclose(eq, [10_000, 10_500, 11_000, 12_000])
    np.testing.assert_array_equal(pos, [1, 1, -1, -1])
    np.testing.assert_allclose(tr[:, [0, 1, 4, 5]],
                               [[0, 2, 1, 0.10], [2, 3, -1, 12_000 / 11_000 - 1]])
    # next_open: both orders fill at bar 3's open (100): long 100 -> 100, short from 100.
    _, _, tr = run(bars, le=[0], lx=[2], se=[2], fill_close=False)
    np.testing.assert_allclose(tr[:, [0, 1, 2, 3, 4]], [[1, 3, 105, 100, 1], [3, 3, 100, 100, -1]])


def test_entry_and_exit_on_the_same_bar_do_not_enter():
    eq, pos, tr = run([FLAT, FLAT, FLAT], le=[0, 1], lx=[0], se=[1], sx=[1])
    assert tr[0, 0] == 1  # bar 0 had both long rules true: no entry; bar 1 enters long
    assert tr.shape[0] == 1 and tr[0, 4] == 1


def test_short_liquidated_when_equity_is_gone():
    # Short 100 shares at 100 with 10000. Close 150: equity 5000. Close 210: 10000 + 100 * (100 -
    # 210) = -1000 <= 0: closed at that close, cash clamped at 0, return -100%. Nothing after.
    bars = [FLAT, (150, 150, 150, 150), (210, 210, 210, 210), (100, 100, 100, 100)]
    eq, pos, tr = run(bars, se=[0, 3])
    np.testing.assert_allclose(eq, [10_000, 5_000, 0, 0])
    np.testing.assert_allclose(tr, [[0, 2, 100, 210, -1, -1, EXIT_REASONS.index("liquidation"), 2]])
    np.testing.assert_array_equal(pos, [-1, -1, 0, 0])


def test_period_and_warmup_bound_the_signals():
    bars = [(100 + i, 100 + i, 100 + i, 100 + i) for i in range(8)]
    # Signals at bars 1 and 3 come before the period [4, 8) or the warm-up (5): ignored.
    eq, pos, tr = run(bars, le=[1, 3, 6], start=4, warmup=5)
    assert eq.shape == (4,) and tr.shape == (1, 8) and tr[0, 0] == 6
    np.testing.assert_allclose(eq, [10_000, 10_000, 10_000, 10_000 * 107 / 106])


def test_simulate_wrapper_reads_a_frame_and_settings():
    rng = np.random.default_rng(5)
    o, h, l, c = random_ohlc(rng, 80, 0.02)
    frame = pd.DataFrame({"Open": o, "High": h, "Low": l, "Close": c},
                         index=pd.bdate_range("2020-01-01", periods=80))
    le, lx = random_signal(rng, 80, 0.2), random_signal(rng, 80, 0.2)
    bt = BacktestSettings(fill="close", commission_bps=2, slippage_bps=3, initial_capital=500.0)
    res = simulate(frame, le, lx, settings=bt, start=10, stop=70, warmup=20, stop_loss=0.03,
                   max_hold=5)
    eq, pos, tr = simulate_nb(o, h, l, c, le, lx, np.zeros(80), np.zeros(80), 10, 70, 20, True,
                              2e-4, 3e-4, 0.03, NAN, NAN, 5, 500.0)
    np.testing.assert_array_equal(res.equity, eq)
    np.testing.assert_array_equal(res.trades_array, tr)
    assert list(res.trades.columns) == ["entry_bar", "entry_date", "exit_bar", "exit_date",
                                        *TRADE_COLUMNS[2:]]
    assert set(res.trades["side"]) <= {"long"}
    assert set(res.trades["exit_reason"]) <= set(EXIT_REASONS)
    assert (res.trades["entry_date"] == frame.index[tr[:, 0].astype(int)]).all()


def test_simulate_wrapper_rejects_bad_input():
    x = np.ones(10)
    with pytest.raises(ValueError, match="whole history"):
        simulate({"open": x, "high": x, "low": x, "close": x}, np.ones(5), np.zeros(10))
    with pytest.raises(ValueError, match="no close column"):
        simulate({"open": x, "high": x, "low": x}, x, x)
    with pytest.raises(ValueError, match="period"):
        simulate({"open": x, "high": x, "low": x, "close": x}, x, x, start=5, stop=5)
    with pytest.raises(ConfigError, match="fill"):
        simulate({"open": x, "high": x, "low": x, "close": x}, x, x,
                 settings=BacktestSettings(fill="tomorrow"))
