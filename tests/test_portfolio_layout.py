"""The portfolio simulator against the bar-by-bar simulator it replaced, bit for bit.

The simulator marks the equity a segment (fill to rebalance) at a time along each held asset's
row, and picks a side among the lowest buckets of its values; the kernel below is the earlier
version, which marked every bar across the assets and sorted every asset (a selection, then a
mergesort). Both must give the same equity, holdings and traded notional to the last bit, on
random panels with gaps, ties, every option, and on the benchmark's universe.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from autostrat.data.synthetic_universe import momentum_universe
from autostrat.lang.check import load
from autostrat.resources import examples_dir
from autostrat.sim.portfolio import portfolio_nb
from autostrat.tape.portfolio_eval import evaluate_scores

from test_portfolio import random_panel


@njit(cache=True, nogil=True)
def _ref_kth_smallest_nb(x, kth):
    """The kth smallest value of x (0-based), rearranging x: Hoare's selection. Written out
    because np.partition's numba implementation takes seconds to compile."""
    lo = 0
    hi = x.shape[0] - 1
    while lo < hi:
        pivot = x[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while x[i] < pivot:
                i += 1
            while x[j] > pivot:
                j -= 1
            if i <= j:
                x[i], x[j] = x[j], x[i]
                i += 1
                j -= 1
        if kth <= j:
            hi = j
        elif kth >= i:
            lo = i
        else:
            return x[kth]
    return x[kth]


@njit(cache=True, nogil=True)
def _ref_pick_nb(score, weight, close, t, top, fraction, taken, picked):
    """Choose a side's assets at bar t into `picked`; return how many (k)."""
    n_assets = score.shape[0]
    values = np.empty(n_assets)
    where = np.empty(n_assets, dtype=np.int64)
    m = 0
    for a in range(n_assets):
        s = score[a, t]
        if math.isnan(close[a, t]) or not math.isfinite(s) or not math.isfinite(weight[a, t]):
            continue
        values[m] = -s if top else s
        where[m] = a
        m += 1
    if m == 0:
        return 0
    k = max(1, int(math.floor(fraction * m + 1e-9)))
    # The assets in order of (value, asset index), as far as the side reaches: at most k plus the
    # assets the other side took. When that is a small part of m, the values up to the reach's
    # largest are found by a partition and only they are sorted; every value equal to that
    # largest is kept, so the order below is the full sort's, ties and all.
    reach = k
    for a in range(n_assets):
        if taken[a]:
            reach += 1
    if 4 * reach < m:
        bound = _ref_kth_smallest_nb(values[:m].copy(), reach - 1)
        c = 0
        for i in range(m):
            if values[i] <= bound:
                values[c] = values[i]
                where[c] = where[i]  # c <= i: the kept ones stay in asset order
                c += 1
        m = c
    # Stable sort on (value, asset index): `where` is in asset order, mergesort keeps it on ties.
    order = np.argsort(values[:m], kind="mergesort")
    n = 0
    for i in range(m):
        if n == k:
            break
        a = where[order[i]]
        if taken[a]:
            continue
        picked[n] = a
        taken[a] = True
        n += 1
    return n


@njit(cache=True, nogil=True)
def _ref_side_weights_nb(picked, k, weight, t, top, by_value, gross, cap, out):
    """Target weights of a side's k assets into out[:k] (positive; the caller signs them)."""
    if k == 0:
        return
    if by_value:
        values = np.empty(k)
        for i in range(k):
            v = weight[picked[i], t]
            values[i] = v if top else -v
        order = np.argsort(values, kind="mergesort")
        i = 0
        total = 0.0
        while i < k:
            j = i
            while j + 1 < k and values[order[j + 1]] == values[order[i]]:
                j += 1
            r = (i + j) / 2.0 + 1.0
            for q in range(i, j + 1):
                out[order[q]] = r
            total += r * (j - i + 1)
            i = j + 1
        for i in range(k):
            out[i] = out[i] / total * gross
    else:
        for i in range(k):
            out[i] = gross / k
    if cap <= 0.0:
        return
    for _ in range(k):  # each pass caps at least one more asset, or stops
        excess = 0.0
        free = 0.0
        for i in range(k):
            if out[i] > cap:
                excess += out[i] - cap
                out[i] = cap
            elif out[i] < cap:
                free += out[i]
        if excess <= 0.0 or free <= 0.0:
            return
        for i in range(k):
            if out[i] < cap:
                out[i] += excess * out[i] / free


@njit(cache=True, nogil=True)
def _bar_by_bar_nb(open_, close, long_score, short_score, weight, has_long, long_top, long_fraction,
                 has_short, short_top, short_fraction, by_value, cap, every, start, stop,
                 commission, slippage, capital):
    """(equity, holdings, traded_notional) of a portfolio over bars [start, stop) (module docstring).

    The arrays are assets x bars; `weight` is the weighting value (ones for equal weights; any
    finite array when `by_value` is False); `cap` <= 0 means no cap.
    """
    n_assets = close.shape[0]
    n = stop - start
    equity = np.empty(n)
    holdings = np.zeros(n, dtype=np.int64)
    shares = np.zeros(n_assets)
    last = np.full(n_assets, math.nan)  # kept current for the assets held (the only ones it is read for)
    held = np.empty(n_assets, dtype=np.int64)  # the assets with a position, in asset order
    n_held = 0
    target = np.zeros(n_assets)
    taken = np.zeros(n_assets, dtype=np.bool_)
    picked = np.empty(n_assets, dtype=np.int64)
    side_w = np.empty(n_assets)
    cash = capital
    traded = 0.0
    cost_rate = commission + slippage
    gross = 0.5 if has_long and has_short else 1.0
    pending = False
    for t in range(start, stop):
        if pending:  # the orders decided at the previous close fill at this open
            value = cash
            for i in range(n_held):
                a = held[i]
                price = open_[a, t] if not math.isnan(open_[a, t]) else last[a]
                value += shares[a] * price
            if value > 0.0:
                for a in range(n_assets):
                    if target[a] == 0.0 and shares[a] == 0.0:
                        continue  # nothing to trade (delta would be 0); most assets, unread
                    price = open_[a, t]
                    if math.isnan(price):
                        continue
                    delta = target[a] * value / price - shares[a]
                    if delta == 0.0:
                        continue
                    notional = abs(delta) * price
                    cash -= delta * price + cost_rate * notional
                    traded += notional
                    shares[a] += delta
                n_held = 0
                for a in range(n_assets):
                    if shares[a] != 0.0:
                        held[n_held] = a
                        n_held += 1
            pending = False
        marked = cash
        for i in range(n_held):
            a = held[i]
            c = close[a, t]
            if not math.isnan(c):
                last[a] = c
            marked += shares[a] * last[a]
        equity[t - start] = marked
        holdings[t - start] = n_held
        if (t - start) % every == 0 and t < stop - 1:
            for a in range(n_assets):
                target[a] = 0.0
                taken[a] = False
            if has_long:
                k = _ref_pick_nb(long_score, weight, close, t, long_top, long_fraction, taken, picked)
                _ref_side_weights_nb(picked, k, weight, t, long_top, by_value, gross, cap, side_w)
                for i in range(k):
                    target[picked[i]] = side_w[i]
            if has_short:
                k = _ref_pick_nb(short_score, weight, close, t, short_top, short_fraction, taken, picked)
                _ref_side_weights_nb(picked, k, weight, t, short_top, by_value, gross, cap, side_w)
                for i in range(k):
                    target[picked[i]] = -side_w[i]
            pending = True
    return equity, holdings, traded


def _same(args) -> None:
    got, want = portfolio_nb(*args), _bar_by_bar_nb(*args)
    np.testing.assert_array_equal(got[0], want[0])  # NaN-free: equal means every bit but a zero's sign
    assert got[0].tobytes() == want[0].tobytes()
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]


@pytest.mark.parametrize("seed", range(12))
def test_the_simulator_equals_the_bar_by_bar_one_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    for trial in range(25):
        p = random_panel(1000 * seed + trial, assets=int(rng.integers(2, 40)), bars=int(rng.integers(2, 200)))
        score = rng.normal(size=p.close.shape).round(int(rng.integers(0, 3)))  # rounding makes ties
        score[rng.uniform(size=score.shape) < 0.1] = np.nan
        by_value = bool(rng.integers(2))
        weight = rng.normal(size=score.shape) if by_value else np.ones_like(score)
        weight[rng.uniform(size=score.shape) < 0.05] = np.inf if by_value else 1.0
        has_long = bool(rng.integers(2))
        has_short = not has_long or bool(rng.integers(2))
        n = p.close.shape[1]
        start = int(rng.integers(0, n))
        stop = int(rng.integers(start + 1, n + 1))
        _same((p.open, p.close, score, -score, weight, has_long, bool(rng.integers(2)),
               float(rng.choice([0.1, 0.3, 0.5, 1.0])), has_short, bool(rng.integers(2)),
               float(rng.choice([0.1, 0.3, 0.5])), by_value, float(rng.choice([0.0, 0.2, 0.5])),
               int(rng.integers(1, 40)), start, stop, 0.001, 0.0005, 10_000.0))


@pytest.mark.parametrize("every", [1, 21])
def test_the_momentum_universe_trades_as_bar_by_bar(every):
    panel = momentum_universe(seed=3, assets=120, bars=900)
    path = examples_dir() / "portfolio" / "momentum_12_1.strat"
    score = evaluate_scores(load(path.read_text(), str(path), portfolio=True), panel)["score"]
    _same((panel.open, panel.close, score, score, np.ones_like(score), True, True, 0.1, True, False, 0.1, False,
           0.0, every, 0, len(panel), 0.0001, 0.0001, 10_000.0))
