"""Elementwise kernels: constants, lag, operators, math, change and events.

One kernel per language name, `<name>_nb(*args, out)` (conventions: autostrat.tape.kernels).
Each output bar reads the same bar of its inputs (lag, change and the events also read a bar
before it), so nothing here keeps a window.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# ---------------------------------------------------------------- constants, lag and operators


@njit(cache=True)
def fill_nb(value, out):
    """The constant series `value`."""
    for t in range(out.shape[0]):
        out[t] = value



@njit(cache=True)
def lag_nb(x, n, out):
    """x[n]: the value n bars ago, NaN for the first n bars; n = 0 copies x."""
    for t in range(x.shape[0]):
        out[t] = x[t - n] if t >= n else np.nan



@njit(cache=True)
def neg_nb(x, out):
    """-x."""
    for t in range(x.shape[0]):
        out[t] = -x[t]



@njit(cache=True)
def add_nb(x, y, out):
    """x + y."""
    for t in range(x.shape[0]):
        out[t] = x[t] + y[t]



@njit(cache=True)
def sub_nb(x, y, out):
    """x - y."""
    for t in range(x.shape[0]):
        out[t] = x[t] - y[t]



@njit(cache=True)
def mul_nb(x, y, out):
    """x * y."""
    for t in range(x.shape[0]):
        out[t] = x[t] * y[t]



@njit(cache=True)
def div_nb(x, y, out):
    """x / y, NaN where y is 0."""
    for t in range(x.shape[0]):
        out[t] = x[t] / y[t] if y[t] != 0.0 else np.nan



@njit(cache=True)
def lt_nb(x, y, out):
    """x < y as 1.0/0.0 (0.0 when either is NaN)."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if x[t] < y[t] else 0.0



@njit(cache=True)
def le_nb(x, y, out):
    """x <= y as 1.0/0.0 (0.0 when either is NaN)."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if x[t] <= y[t] else 0.0



@njit(cache=True)
def gt_nb(x, y, out):
    """x > y as 1.0/0.0 (0.0 when either is NaN)."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if x[t] > y[t] else 0.0



@njit(cache=True)
def ge_nb(x, y, out):
    """x >= y as 1.0/0.0 (0.0 when either is NaN)."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if x[t] >= y[t] else 0.0



@njit(cache=True)
def eq_nb(x, y, out):
    """x == y as 1.0/0.0 (0.0 when either is NaN)."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if x[t] == y[t] else 0.0



@njit(cache=True)
def ne_nb(x, y, out):
    """x != y as 1.0/0.0; 0.0 when either is NaN, unlike IEEE, so no rule fires in warm-up."""
    for t in range(x.shape[0]):
        a = x[t]
        b = y[t]
        out[t] = 1.0 if a != b and not np.isnan(a) and not np.isnan(b) else 0.0



@njit(cache=True)
def and_nb(a, b, out):
    """Logical and of two boolean series."""
    for t in range(a.shape[0]):
        out[t] = 1.0 if a[t] != 0.0 and b[t] != 0.0 else 0.0



@njit(cache=True)
def or_nb(a, b, out):
    """Logical or of two boolean series."""
    for t in range(a.shape[0]):
        out[t] = 1.0 if a[t] != 0.0 or b[t] != 0.0 else 0.0



@njit(cache=True)
def not_nb(a, out):
    """Logical not of a boolean series."""
    for t in range(a.shape[0]):
        out[t] = 0.0 if a[t] != 0.0 else 1.0



# ---------------------------------------------------------------- math


@njit(cache=True)
def abs_nb(x, out):
    """|x|."""
    for t in range(x.shape[0]):
        out[t] = abs(x[t])



@njit(cache=True)
def log_nb(x, out):
    """Natural logarithm, NaN where x <= 0."""
    for t in range(x.shape[0]):
        out[t] = np.log(x[t]) if x[t] > 0.0 else np.nan



@njit(cache=True)
def sqrt_nb(x, out):
    """Square root, NaN where x < 0."""
    for t in range(x.shape[0]):
        out[t] = np.sqrt(x[t]) if x[t] >= 0.0 else np.nan



@njit(cache=True)
def exp_nb(x, out):
    """e ** x."""
    for t in range(x.shape[0]):
        out[t] = np.exp(x[t])



@njit(cache=True)
def sign_nb(x, out):
    """-1.0, 0.0 or 1.0 by the sign of x; NaN stays NaN."""
    for t in range(x.shape[0]):
        v = x[t]
        out[t] = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else (0.0 if v == 0.0 else np.nan))



@njit(cache=True)
def min_nb(x, y, out):
    """The smaller of x and y; NaN when either is NaN."""
    for t in range(x.shape[0]):
        a = x[t]
        b = y[t]
        out[t] = np.nan if np.isnan(a) or np.isnan(b) else min(a, b)



@njit(cache=True)
def max_nb(x, y, out):
    """The larger of x and y; NaN when either is NaN."""
    for t in range(x.shape[0]):
        a = x[t]
        b = y[t]
        out[t] = np.nan if np.isnan(a) or np.isnan(b) else max(a, b)



@njit(cache=True)
def clip_nb(x, lo, hi, out):
    """min(max(x, lo), hi) with series bounds; NaN when any of the three is NaN."""
    for t in range(x.shape[0]):
        a = x[t]
        b = lo[t]
        c = hi[t]
        out[t] = np.nan if np.isnan(a) or np.isnan(b) or np.isnan(c) else min(max(a, b), c)



@njit(cache=True)
def if_else_nb(c, x, y, out):
    """x where the boolean c is true, else y."""
    for t in range(c.shape[0]):
        out[t] = x[t] if c[t] != 0.0 else y[t]



# ---------------------------------------------------------------- change


@njit(cache=True)
def change_nb(x, n, out):
    """x - x[n]; warm-up n."""
    for t in range(x.shape[0]):
        out[t] = x[t] - x[t - n] if t >= n else np.nan



@njit(cache=True)
def roc_nb(x, n, out):
    """x / x[n] - 1 as a fraction, NaN where x[n] is 0; warm-up n."""
    for t in range(x.shape[0]):
        if t >= n and x[t - n] != 0.0:
            out[t] = x[t] / x[t - n] - 1.0
        else:
            out[t] = np.nan



# ---------------------------------------------------------------- events


@njit(cache=True)
def cross_above_nb(x, y, out):
    """x > y and x[1] <= y[1]; false on the first bar and whenever one of the four is NaN."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if t >= 1 and x[t] > y[t] and x[t - 1] <= y[t - 1] else 0.0



@njit(cache=True)
def cross_below_nb(x, y, out):
    """x < y and x[1] >= y[1]; false on the first bar and whenever one of the four is NaN."""
    for t in range(x.shape[0]):
        out[t] = 1.0 if t >= 1 and x[t] < y[t] and x[t - 1] >= y[t - 1] else 0.0



@njit(cache=True)
def bars_since_nb(c, out):
    """Bars since the boolean c was last true (0 on a true bar), NaN before it is first true."""
    last = -1
    for t in range(c.shape[0]):
        if c[t] != 0.0:
            last = t
        out[t] = float(t - last) if last >= 0 else np.nan
