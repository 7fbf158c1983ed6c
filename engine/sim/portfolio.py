"""The portfolio simulator: rank at the rebalance close, trade at the next open (numba, arrays only).

Inputs are assets x bars arrays on one calendar, NaN where an asset has no bar. Over a period
[start, stop):

- Rebalance bars are start, start + every, start + 2 every, ... before stop - 1. At a rebalance
  bar t's close, an asset is eligible for a side when it has a close at t and a finite score (and
  a finite weighting value, with `weight by`). The side holds k = max(1, floor(fraction x m)) of
  its m eligible assets: the highest scores for `top`, the lowest for `bottom`, ties broken by
  the lower asset index. The short side skips assets the long side took.
- Target weights: equal (1/k), or `weight by W`: proportional to W's rank among the side's k
  assets (1 for the weakest, k for the strongest: the highest W on a top side, the lowest on a
  bottom side; ties share their mean rank). A side's weights sum to 1 alone, to 1/2 each with
  both sides (gross exposure 1: half long, half short). `capped at c`: no weight above c; the
  excess goes to the uncapped assets of the side in proportion to their weights, repeatedly, and
  what no asset can take stays in cash.
- Orders fill at the next bar's open (t + 1). The equity they are sized on is cash plus every
  position at that open (at its last close for an asset without an open). An asset with an
  open at t + 1 trades to target_weight x equity / open shares; an asset without one (not in
  the universe that day) keeps its shares: it cannot be bought or sold. Costs: (commission +
  slippage) x |traded notional| leave the cash.
- Equity at each close is cash plus every position at its last close (a position in a market
  that stopped trading is marked at its last close). Nothing is closed out at the period's end.

Outputs: the equity at each close of the period, the number of positions held at each close, and
the traded notional summed over the period.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _kth_smallest_nb(x, kth):
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
def _pick_nb(score, weight, close, t, top, fraction, taken, picked):
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
        bound = _kth_smallest_nb(values[:m].copy(), reach - 1)
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
def _side_weights_nb(picked, k, weight, t, top, by_value, gross, cap, out):
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
def portfolio_nb(open_, close, long_score, short_score, weight, has_long, long_top, long_fraction,
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
                k = _pick_nb(long_score, weight, close, t, long_top, long_fraction, taken, picked)
                _side_weights_nb(picked, k, weight, t, long_top, by_value, gross, cap, side_w)
                for i in range(k):
                    target[picked[i]] = side_w[i]
            if has_short:
                k = _pick_nb(short_score, weight, close, t, short_top, short_fraction, taken, picked)
                _side_weights_nb(picked, k, weight, t, short_top, by_value, gross, cap, side_w)
                for i in range(k):
                    target[picked[i]] = -side_w[i]
            pending = True
    return equity, holdings, traded
