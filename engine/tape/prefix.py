"""Rolling sums that share one series' prefix sums: `sma` and `sum` of one source, many windows.

`_rolling_sum_nb` (autostrat.tape.kernels_rolling) makes one pass that keeps a compensated prefix
sum of its input and writes each window as the difference of two prefixes. The prefixes (and the
run length and magnitude its rounding check reads) depend on the input only, not on the window:
a tape holding `sma(close, 5)`, `sma(close, 50)` and `sum(close, 20)` can build them once
(`rolling_prefix_nb`) and write each window from them (`rolling_window_nb`). That pass is the
larger part of a rolling sum (a sweep over 100 windows of one series spends most of its tape time
there), so the dispatch loop (autostrat.tape.vm) shares it whenever two rolling sums of a tape read
the same value.

The two functions make the same float operations, in the same order, as `_rolling_sum_nb`:
every output is the same bits (tests/test_prefix.py checks it, NaN runs, zero windows and the
direct-sum fallback included).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from autostrat.tape.kernels_rolling import _direct_windows_nb, _prefix_ok

# Rows of one prefix block, each as long as the series. The run length is stored as a float
# (exact below 2**53 bars) so that one float64 block holds all three.
HI, LO, MAG, RUN = 0, 1, 2, 3
PREFIX_ROWS = 4


@njit(cache=True)
def rolling_prefix_nb(x, pre):
    """Fill the prefix block `pre` (PREFIX_ROWS, len(x)) of x: _rolling_sum_nb's hi, lo, magnitude
    and run at every bar (a NaN bar has run 0 and leaves hi, lo and magnitude unwritten)."""
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
    """_rolling_sum_nb(x, n, out, div) from x's prefix block (`rolling_prefix_nb`)."""
    hi = pre[HI]
    lo = pre[LO]
    bad = False
    for t in range(x.shape[0]):
        run = int(pre[RUN, t])
        if run < n:
            out[t] = np.nan
            continue
        r = (hi[t] - hi[t - n]) + (lo[t] - lo[t - n]) if run > n else hi[t] + lo[t]
        out[t] = r / div
        bad |= not _prefix_ok(r, run, pre[MAG, t])
    if bad:
        _direct_windows_nb(x, n, out, div, hi, lo)
