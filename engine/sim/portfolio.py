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


# Buckets of the pick's value range: the side's assets are found among the lowest buckets' ones.
BUCKETS = 64


@njit(cache=True, nogil=True)
def _bucket_nb(v, lo, scale):
    """v's bucket: a non-decreasing function of v, so a lower value is never in a higher bucket."""
    return min(int((v - lo) * scale), BUCKETS)


@njit(cache=True, nogil=True)
def _pick_nb(score, weight, close, t, top, fraction, by_value, taken, picked, values, where, counts):
    """Choose a side's assets at bar t into `picked`, best first; return how many (k).

    The side takes the first k of its eligible assets in order of (value, asset index) that the
    other side has not taken: the first k of the untaken ones. `values` and `where` are scratch
    space, one slot per asset, `counts` BUCKETS + 1 slots. Sorting every asset at each rebalance
    is most of the simulator's time; instead the values are counted into buckets over their range,
    only the assets of the lowest buckets that hold k are kept (a bucket function that never
    decreases keeps every asset ahead of a kept one), and those few are sorted.
    """
    n_assets = score.shape[0]
    m = 0  # the eligible assets, taken ones included: k is a fraction of them
    h = 0  # the candidates: eligible and not taken, values[:h] and where[:h] in asset order
    lo = math.inf
    hi = -math.inf
    for a in range(n_assets):
        s = score[a, t]
        if math.isnan(close[a, t]) or not math.isfinite(s) or (by_value and not math.isfinite(weight[a, t])):
            continue
        m += 1
        if taken[a]:
            continue
        v = -s if top else s
        values[h] = v
        where[h] = a
        lo = min(lo, v)
        hi = max(hi, v)
        h += 1
    if m == 0:
        return 0
    k = min(max(1, int(math.floor(fraction * m + 1e-9))), h)
    if k == 0:
        return 0
    span = hi - lo
    scale = BUCKETS / span if span > 0.0 else 0.0
    if k < h and span > 0.0 and math.isfinite(span) and math.isfinite(scale):  # not a subnormal span
        for b in range(BUCKETS + 1):
            counts[b] = 0
        for i in range(h):
            counts[_bucket_nb(values[i], lo, scale)] += 1
        last = 0
        total = counts[0]
        while total < k:
            last += 1
            total += counts[last]
        c = 0
        for i in range(h):
            if _bucket_nb(values[i], lo, scale) <= last:
                values[c] = values[i]
                where[c] = where[i]  # c <= i: the kept ones stay in asset order
                c += 1
        h = c
    # Stable sort on (value, asset index): `where` is in asset order and an insertion sort (or
    # mergesort, when many are kept) keeps it on ties.
    if h <= 4 * k + 32:
        for i in range(1, h):
            v = values[i]
            a = where[i]
            j = i - 1
            while j >= 0 and values[j] > v:
                values[j + 1] = values[j]
                where[j + 1] = where[j]
                j -= 1
            values[j + 1] = v
            where[j + 1] = a
        for i in range(k):
            picked[i] = where[i]
    else:
        order = np.argsort(values[:h], kind="mergesort")
        for i in range(k):
            picked[i] = where[order[i]]
    for i in range(k):
        taken[picked[i]] = True
    return k


@njit(cache=True, nogil=True)
def _side_weights_nb(picked, k, weight, t, top, by_value, gross, cap, out):
    """Target weights of a side's k assets at bar t into out[:k] (positive; the caller signs them)."""
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

    The arrays are assets x bars; `weight` is the weighting value, read only when `by_value` (any
    array otherwise); `cap` <= 0 means no cap. The bars run in segments from one fill to the next
    rebalance: within one the positions and the cash stay, so each held asset's closes are read
    along its row, and each bar's equity adds the positions in asset order as a bar-by-bar loop
    would (tests/test_portfolio_layout.py pins the equality, bit for bit).
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
    values = np.empty(n_assets)
    where = np.empty(n_assets, dtype=np.int64)
    counts = np.empty(BUCKETS + 1, dtype=np.int64)
    # Rebalance bars: start, start + every, ... before stop - 1.
    n_rebalance = (stop - 1 - start + every - 1) // every if stop - 1 > start else 0
    cash = capital
    traded = 0.0
    cost_rate = commission + slippage
    gross = 0.5 if has_long and has_short else 1.0
    pending = False
    t = start
    j = 0  # the next rebalance
    while t < stop:
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
        rebalance = start + j * every if j < n_rebalance else -1
        end = rebalance + 1 if rebalance >= 0 else stop  # this segment: bars [t, end)
        for u in range(t, end):
            equity[u - start] = cash
            holdings[u - start] = n_held
        for i in range(n_held):
            a = held[i]
            s = shares[a]
            price = last[a]
            for u in range(t, end):
                c = close[a, u]
                if not math.isnan(c):
                    price = c
                equity[u - start] += s * price
            last[a] = price
        if rebalance >= 0:
            for a in range(n_assets):
                target[a] = 0.0
                taken[a] = False
            if has_long:
                k = _pick_nb(long_score, weight, close, rebalance, long_top, long_fraction, by_value, taken, picked,
                             values, where, counts)
                _side_weights_nb(picked, k, weight, rebalance, long_top, by_value, gross, cap, side_w)
                for i in range(k):
                    target[picked[i]] = side_w[i]
            if has_short:
                k = _pick_nb(short_score, weight, close, rebalance, short_top, short_fraction, by_value, taken, picked,
                             values, where, counts)
                _side_weights_nb(picked, k, weight, rebalance, short_top, by_value, gross, cap, side_w)
                for i in range(k):
                    target[picked[i]] = -side_w[i]
            pending = True
            j += 1
        t = end
    return equity, holdings, traded
