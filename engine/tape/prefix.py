"""The rolling sum, from compensated prefix sums: one pass over the series, then one per window.

`rolling_prefix_nb` keeps a compensated prefix sum of each run of valid values (TwoSum: each
add's rounding is kept in a second float, so hi + lo is the prefix to within about run * eps**2 *
the run's sum of magnitudes), with the run's length and sum of magnitudes; `rolling_window_nb`
writes each window as the difference of two prefixes: one dependent add per bar, no resums. A
window where that bound is not below RECOMPUTE_AT of its sum (a window of zeros, one far smaller
than the history before it, an infinite value or an overflow) is summed directly instead
(`_direct_windows_nb`). Every choice reads only bars up to the window's end, so the result on a
series' first k bars is bit for bit the result on those k bars alone.

The prefix block depends on the series only, not on the window, so a tape holding
`sma(close, 5)`, `sma(close, 50)` and `sum(close, 20)` builds it once and writes each window from
it: the dispatch loop (autostrat.tape.vm) shares it whenever two rolling sums of a tape read the
same value, and `_rolling_sum_nb` (sma, sum and the kernels built on them) makes both passes for
one window. tests/test_prefix.py checks both against the one-pass loop this replaced, bit for bit.

A market's close is read by most tapes, one strategy after another: `input_prefixes` keeps its
block for the markets used last (CACHED_BYTES in all), and the dispatch loop takes it as given
(`given`, `given_at`) instead of making the prefix pass again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
from numba import njit

from autostrat.tape.opcodes import FIRST_FREE_REG, SERIES_REGS

EPS = 2.220446049250313e-16  # float64 machine epsilon
RECOMPUTE_AT = 1e-12  # relative rounding bound that triggers an exact recomputation

# Rows of one prefix block, each as long as the series. The run length is stored as a float
# (exact below 2**53 bars) so that one float64 block holds all four.
HI, LO, MAG, RUN = 0, 1, 2, 3
PREFIX_ROWS = 4


@njit(cache=True)
def _rolling_sum_nb(x, n, out, div=1.0):
    """Sum of x[t-n+1..t], divided by `div`; NaN when the window holds a NaN; exactly 0.0 when it
    holds only zeros. (Dividing here saves the mean a second pass; a sum divides by 1.0, exactly.)"""
    pre = np.empty((PREFIX_ROWS, x.shape[0]))
    rolling_prefix_nb(x, pre)
    rolling_window_nb(x, n, out, div, pre)


@njit(cache=True)
def rolling_prefix_nb(x, pre):
    """Fill the prefix block `pre` (PREFIX_ROWS, len(x)) of x: at every bar the compensated prefix
    (hi, lo), the sum of magnitudes and the run length since the last NaN (a NaN bar has run 0
    and leaves the other rows unwritten)."""
    run = 0
    s, c, mag = 0.0, 0.0, 0.0
    for t in range(x.shape[0]):
        v = x[t]
        if np.isnan(v):
            run, s, c, mag = 0, 0.0, 0.0, 0.0
            pre[RUN, t] = 0.0
            continue
        run += 1
        u = s + v
        w = u - s
        c += (s - (u - w)) + (v - w)
        s = u
        mag += abs(v)
        pre[HI, t] = s
        pre[LO, t] = c
        pre[MAG, t] = mag
        pre[RUN, t] = run


@njit(cache=True)
def rolling_window_nb(x, n, out, div, pre):
    """`_rolling_sum_nb(x, n, out, div)` from x's prefix block (`rolling_prefix_nb`).

    Bars from n on are read through slices that start n bars later, so every index counts up from
    0: numba then emits no wraparound code for a negative index, and a window costs about a
    fifth of what indexing hi[t - n] did (35 -> 8 us for 6,750 bars, the same bits).
    """
    hi = pre[HI]
    lo = pre[LO]
    runs = pre[RUN]
    mags = pre[MAG]
    m = x.shape[0]
    bad = False
    for t in range(min(n, m)):  # no window reaches before bar 0: a full one is a run from bar 0
        run = int(runs[t])
        if run < n or run == 0:  # (run 0: a NaN bar, whatever the window)
            out[t] = np.nan
            continue
        r = hi[t] + lo[t]
        out[t] = r / div
        bad |= not _prefix_ok(r, run, mags[t])
    if m > n:
        hi_t, lo_t, run_t, mag_t, out_t = hi[n:], lo[n:], runs[n:], mags[n:], out[n:]
        for j in range(m - n):  # bar t = j + n: the prefixes at t and at j, the bar before its window
            run = int(run_t[j])
            if run < n or run == 0:
                out_t[j] = np.nan
                continue
            r = (hi_t[j] - hi[j]) + (lo_t[j] - lo[j]) if run > n else hi_t[j] + lo_t[j]
            out_t[j] = r / div
            bad |= not _prefix_ok(r, run, mag_t[j])
    if bad:
        _direct_windows_nb(x, n, out, div, hi, lo)


@njit(cache=True, inline="always")
def _prefix_ok(r, run, mag):
    """Whether a window's sum r from prefixes is within RECOMPUTE_AT of the exact one (False for
    NaN or inf): the prefixes' error is below 4 * run * eps**2 * mag."""
    return abs(r) * RECOMPUTE_AT > 4.0 * run * EPS * EPS * mag


@njit(cache=True)
def _direct_windows_nb(x, n, out, div, hi, lo):
    """Sum directly, in order, each window whose prefix difference fails `_prefix_ok` (the same r,
    run and mag, recomputed from its prefixes)."""
    run = 0
    mag = 0.0
    for t in range(x.shape[0]):
        if np.isnan(x[t]):
            run, mag = 0, 0.0
            continue
        run += 1
        mag += abs(x[t])
        if run < n:
            continue
        r = (hi[t] - hi[t - n]) + (lo[t] - lo[t - n]) if run > n else hi[t] + lo[t]
        if not _prefix_ok(r, run, mag):
            r = 0.0
            for j in range(t - n + 1, t + 1):
                r += x[j]
            out[t] = r / div


# ---------------------------------------------------------------- blocks kept across runs

CACHED_BYTES = 32 * 2**20  # blocks kept, and the series they hold alive: 150 markets of 6,750 bars
_BLOCKS: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()  # id(series) -> (series, block)
_LOCK = threading.Lock()
_kept_bytes = 0


def series_prefix(x: np.ndarray) -> np.ndarray | None:
    """The prefix block of a read-only float64 series, made on first use and kept while the
    blocks used since take less than CACHED_BYTES; None for a series whose values can change
    (`_immutable`), which would leave its block stale.

    Keyed by the array's identity: the entry holds the array, so its id is not reused while the
    block is kept. A series too long to keep gets its block made anew each call.
    """
    global _kept_bytes
    if x.dtype != np.float64 or x.ndim != 1 or not x.flags.c_contiguous or not _immutable(x):
        return None
    key = id(x)
    with _LOCK:
        hit = _BLOCKS.get(key)
        if hit is not None and hit[0] is x:
            _BLOCKS.move_to_end(key)
            return hit[1]
    block = np.empty((PREFIX_ROWS, x.shape[0]))
    # A writable copy: the read-only array would be compiled as a signature of its own (numba
    # types the two apart), a second compile of this kernel on a first backtest.
    rolling_prefix_nb(x.copy(), block)
    size = block.nbytes + x.nbytes
    if size > CACHED_BYTES:
        return block
    with _LOCK:
        if key not in _BLOCKS:
            _BLOCKS[key] = (x, block)
            _kept_bytes += size
        while _kept_bytes > CACHED_BYTES:
            old, old_block = _BLOCKS.popitem(last=False)[1]
            _kept_bytes -= old_block.nbytes + old.nbytes
    return block


def _immutable(x: np.ndarray) -> bool:
    """Whether nothing can write x's values: x and every array it views are read-only, down to the
    one that owns the memory (a Market's arrays and their slices). A read-only view of a writable
    array is not: the values change when the array does."""
    while True:
        if x.flags.writeable:
            return False
        if x.base is None:
            return True
        if not isinstance(x.base, np.ndarray):
            return False  # memory of another object (a buffer, a memory map)
        x = x.base


_NONE_AT = np.full(FIRST_FREE_REG, -1, dtype=np.int64)
_CLOSE_AT = _NONE_AT.copy()
_CLOSE_AT[SERIES_REGS["close"]] = 0


def no_prefixes(n: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(`given`, `given_at`) for a run of the dispatch loop without blocks from outside."""
    return np.empty((0, PREFIX_ROWS, n)), _NONE_AT


def input_prefixes(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(`given`, `given_at`) for a run on a market whose close is `close`: its kept block when the
    close is read-only (a Market's is), none otherwise. given_at[r] is the block of input row r in
    `given`, -1 for none."""
    block = series_prefix(close)
    if block is None:
        return no_prefixes(close.shape[0])
    return block.reshape(1, PREFIX_ROWS, -1), _CLOSE_AT
