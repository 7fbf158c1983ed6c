"""Rolling kernels of the strategy language: averages and statistics, and the rolling and
recursive primitives that autostrat.tape.kernels_indicators builds its indicators on.

Conventions (see autostrat.tape.kernels): float64 series with NaN for missing values, the result
written into a preallocated `out` of the same length. A rolling window is NaN when it holds a NaN.
Recursive averages start from the mean of the first n valid values and reseed after a NaN. Windows
longer than the series give an all-NaN result. Exact definitions: docs/builtins.md.

Jitted functions here call only jitted functions of this module and of autostrat.tape.prefix
(the rolling sum).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from autostrat.tape.prefix import EPS, RECOMPUTE_AT, _rolling_sum_nb

# ---------------------------------------------------------------- primitives


CONSTANT_ULPS = 8.0  # corr: a window whose values spread less than this many eps of its mean is constant


@njit(cache=True)
def _rolling_argext_nb(x, n, want_max, idx):
    """Index of the highest (want_max) or lowest value of x[t-n+1..t], ties to the most recent;
    -1 when the window holds a NaN. A monotonic queue keeps this O(len(x))."""
    queue = np.empty(x.shape[0], dtype=np.int64)
    head = 0
    tail = 0
    run = 0
    for t in range(x.shape[0]):
        v = x[t]
        if np.isnan(v):
            run, head, tail = 0, 0, 0
            idx[t] = -1
            continue
        run += 1
        if tail > head and queue[head] <= t - n:
            head += 1
        # Popping equal values too makes the queue's front the most recent of tied extremes.
        if want_max:
            while tail > head and x[queue[tail - 1]] <= v:
                tail -= 1
        else:
            while tail > head and x[queue[tail - 1]] >= v:
                tail -= 1
        queue[tail] = t
        tail += 1
        idx[t] = queue[head] if run >= n else -1


@njit(cache=True)
def _window_moments_nb(x, y, stop, n):
    """Two-pass means and co-moments of x[stop-n:stop], y[stop-n:stop]: (mx, my, sxx, syy, sxy)."""
    mx = 0.0
    my = 0.0
    for j in range(stop - n, stop):
        mx += x[j]
        my += y[j]
    mx /= n
    my /= n
    sxx = 0.0
    syy = 0.0
    sxy = 0.0
    for j in range(stop - n, stop):
        sxx += (x[j] - mx) * (x[j] - mx)
        syy += (y[j] - my) * (y[j] - my)
        sxy += (x[j] - mx) * (y[j] - my)
    return mx, my, sxx, syy, sxy


@njit(cache=True)
def _rolling_moments_nb(x, y, n, sxx, syy, sxy):
    """Co-moments sum((x_i - mean x)^2), sum((y_i - mean y)^2), sum((x_i - mean x)(y_i - mean y))
    over the last n pairs; NaN when a window holds a NaN; exactly 0.0 for a constant window.

    A sliding update costs O(1) per bar, but its rounding grows with the step sizes, not with the
    (possibly tiny) spread of the window. A running bound on that rounding triggers an exact
    two-pass recomputation when it could reach RECOMPUTE_AT of the result, and every n slides.
    """
    run = 0
    since = 0
    same_x = 0  # length of the run of equal x values ending at t
    same_y = 0
    mx, my, cxx, cyy, cxy = 0.0, 0.0, 0.0, 0.0, 0.0
    ex, ey, exy = 0.0, 0.0, 0.0  # rounding bounds since the last recomputation
    for t in range(x.shape[0]):
        a = x[t]
        b = y[t]
        if np.isnan(a) or np.isnan(b):
            run = 0
            sxx[t] = syy[t] = sxy[t] = np.nan
            continue
        run += 1
        same_x = same_x + 1 if run > 1 and a == x[t - 1] else 1
        same_y = same_y + 1 if run > 1 and b == y[t - 1] else 1
        if run < n:
            sxx[t] = syy[t] = sxy[t] = np.nan
            continue
        exact = run == n or since >= n
        if not exact:
            xo = x[t - n]
            yo = y[t - n]
            dx = a - xo
            dy = b - yo
            mx_new = mx + dx / n
            my_new = my + dy / n
            cxx += dx * (a - mx_new + xo - mx)
            cyy += dy * (b - my_new + yo - my)
            cxy += dx * (b - my_new) + dy * (xo - mx)
            # The factor `since` covers the drift of the running means as well.
            size_x = abs(a) + abs(xo) + abs(mx) + abs(mx_new)
            size_y = abs(b) + abs(yo) + abs(my) + abs(my_new)
            ex += EPS * (since + 4) * abs(dx) * size_x
            ey += EPS * (since + 4) * abs(dy) * size_y
            exy += EPS * (since + 4) * (abs(dx) * size_y + abs(dy) * size_x)
            mx = mx_new
            my = my_new
            exact = ex > RECOMPUTE_AT * cxx or ey > RECOMPUTE_AT * cyy
            exact = exact or exy * exy > RECOMPUTE_AT**2 * cxx * cyy
        if exact:
            mx, my, cxx, cyy, cxy = _window_moments_nb(x, y, t + 1, n)
            ex, ey, exy = 0.0, 0.0, 0.0
            since = 0
        since += 1
        sxx[t] = 0.0 if same_x >= n else cxx
        syy[t] = 0.0 if same_y >= n else cyy
        sxy[t] = 0.0 if same_x >= n or same_y >= n else cxy


@njit(cache=True)
def _rolling_m2_nb(x, n, sxx):
    """`_rolling_moments_nb(x, x, n, sxx, ...)`'s sxx, bit for bit, without the y and xy sides.

    Every quantity the two-series loop computes for y equals x's here, so only the decisions'
    expressions are kept as they are written there (the xy rounding bound is the sum of two equal
    terms); tests/test_kernels.py pins the equality. Half the work for stdev and zscore.
    """
    run = 0
    since = 0
    same_x = 0
    mx, cxx = 0.0, 0.0
    ex, exy = 0.0, 0.0
    for t in range(x.shape[0]):
        a = x[t]
        if np.isnan(a):
            run = 0
            sxx[t] = np.nan
            continue
        run += 1
        same_x = same_x + 1 if run > 1 and a == x[t - 1] else 1
        if run < n:
            sxx[t] = np.nan
            continue
        exact = run == n or since >= n
        if not exact:
            xo = x[t - n]
            dx = a - xo
            mx_new = mx + dx / n
            cxx += dx * (a - mx_new + xo - mx)
            size_x = abs(a) + abs(xo) + abs(mx) + abs(mx_new)
            ex += EPS * (since + 4) * abs(dx) * size_x
            exy += EPS * (since + 4) * (abs(dx) * size_x + abs(dx) * size_x)
            mx = mx_new
            exact = ex > RECOMPUTE_AT * cxx or exy * exy > RECOMPUTE_AT**2 * cxx * cxx
        if exact:
            mx = 0.0
            for j in range(t + 1 - n, t + 1):
                mx += x[j]
            mx /= n
            cxx = 0.0
            for j in range(t + 1 - n, t + 1):
                cxx += (x[j] - mx) * (x[j] - mx)
            ex, exy = 0.0, 0.0
            since = 0
        since += 1
        sxx[t] = 0.0 if same_x >= n else cxx


@njit(cache=True)
def _seeded_ewm_nb(x, n, alpha, out):
    """out = alpha*x + (1-alpha)*out[t-1], seeded with the mean of the first n consecutive valid
    values; a NaN gives NaN and the recursion reseeds after n valid values."""
    run = 0
    s = 0.0
    prev = np.nan
    for t in range(x.shape[0]):
        v = x[t]
        if np.isnan(v):
            run = 0
            s = 0.0
            out[t] = np.nan
            continue
        run += 1
        if run < n:
            s += v
            out[t] = np.nan
        elif run == n:
            prev = (s + v) / n
            out[t] = prev
        else:
            prev = alpha * v + (1.0 - alpha) * prev
            out[t] = prev


# ---------------------------------------------------------------- averages


@njit(cache=True)
def sma_nb(x, n, out):
    """Simple moving average of the last n values; warm-up n-1."""
    _rolling_sum_nb(x, n, out, float(n))


@njit(cache=True)
def ema_nb(x, n, out):
    """Exponential moving average, alpha = 2/(n+1), seeded with the first n's SMA; warm-up n-1."""
    _seeded_ewm_nb(x, n, 2.0 / (n + 1.0), out)


@njit(cache=True)
def rma_nb(x, n, out):
    """Wilder's moving average, alpha = 1/n, seeded with the SMA of the first n; warm-up n-1."""
    _seeded_ewm_nb(x, n, 1.0 / n, out)


@njit(cache=True)
def wma_nb(x, n, out):
    """Linearly weighted moving average, weights 1..n with the newest weighted n; warm-up n-1."""
    total = n * (n + 1.0) / 2.0
    sums = np.empty(x.shape[0])
    _rolling_sum_nb(x, n, sums)
    run = 0
    since = 0
    w = 0.0  # sum of weight * value over the window
    wmag = 0.0  # sum of weight * |value|
    absum = 0.0  # sum of |value|
    err = 0.0  # rounding bound since the last exact recomputation, as in _rolling_sum_nb
    for t in range(x.shape[0]):
        if np.isnan(x[t]):
            run = 0
            out[t] = np.nan
            continue
        run += 1
        if run < n:
            out[t] = np.nan
            continue
        if run > n and since < n:
            # Sliding by one lowers every weight by one: subtract the previous window's sum.
            w += n * x[t] - sums[t - 1]
            wmag += n * abs(x[t]) - absum
            absum += abs(x[t]) - abs(x[t - n])
            err += EPS * (abs(w) + n * abs(x[t]) + abs(sums[t - 1]))
        if run == n or since >= n or err > RECOMPUTE_AT * wmag:
            w, wmag, absum = 0.0, 0.0, 0.0
            for j in range(n):
                v = x[t - n + 1 + j]
                w += (j + 1.0) * v
                wmag += (j + 1.0) * abs(v)
                absum += abs(v)
            since = 0
            err = 0.0
        since += 1
        out[t] = w / total


# ---------------------------------------------------------------- statistics


@njit(cache=True)
def stdev_nb(x, n, out):
    """Population standard deviation (ddof=0) of the last n values; warm-up n-1."""
    _rolling_m2_nb(x, n, out)
    for t in range(x.shape[0]):
        out[t] = np.sqrt(max(out[t], 0.0) / n) if not np.isnan(out[t]) else np.nan


@njit(cache=True)
def zscore_nb(x, n, out):
    """(x - sma(x, n)) / stdev(x, n), NaN where the stdev is 0; warm-up n-1."""
    mean = np.empty(x.shape[0])
    sma_nb(x, n, mean)
    stdev_nb(x, n, out)
    for t in range(x.shape[0]):
        sd = out[t]
        out[t] = (x[t] - mean[t]) / sd if sd > 0.0 else np.nan


@njit(cache=True)
def highest_nb(x, n, out):
    """Highest of the last n values, the current bar included; warm-up n-1."""
    idx = np.empty(x.shape[0], dtype=np.int64)
    _rolling_argext_nb(x, n, True, idx)
    for t in range(x.shape[0]):
        out[t] = x[idx[t]] if idx[t] >= 0 else np.nan


@njit(cache=True)
def lowest_nb(x, n, out):
    """Lowest of the last n values, the current bar included; warm-up n-1."""
    idx = np.empty(x.shape[0], dtype=np.int64)
    _rolling_argext_nb(x, n, False, idx)
    for t in range(x.shape[0]):
        out[t] = x[idx[t]] if idx[t] >= 0 else np.nan


@njit(cache=True)
def bars_since_high_nb(x, n, out):
    """Bars since the highest of the last n values (0 on it, ties: most recent); warm-up n-1."""
    idx = np.empty(x.shape[0], dtype=np.int64)
    _rolling_argext_nb(x, n, True, idx)
    for t in range(x.shape[0]):
        out[t] = float(t - idx[t]) if idx[t] >= 0 else np.nan


@njit(cache=True)
def bars_since_low_nb(x, n, out):
    """Bars since the lowest of the last n values (0 on it, ties: most recent); warm-up n-1."""
    idx = np.empty(x.shape[0], dtype=np.int64)
    _rolling_argext_nb(x, n, False, idx)
    for t in range(x.shape[0]):
        out[t] = float(t - idx[t]) if idx[t] >= 0 else np.nan


@njit(cache=True)
def sum_nb(x, n, out):
    """Sum of the last n values; warm-up n-1."""
    _rolling_sum_nb(x, n, out)


@njit(cache=True)
def percent_rank_nb(x, n, out):
    """100 * (count of x[t-n..t-1] that are <= x[t]) / n; warm-up n."""
    run = 0
    for t in range(x.shape[0]):
        run = 0 if np.isnan(x[t]) else run + 1
        if run <= n:
            out[t] = np.nan
            continue
        count = 0
        for j in range(t - n, t):
            if x[j] <= x[t]:
                count += 1
        out[t] = 100.0 * count / n


@njit(cache=True)
def slope_nb(x, n, out):
    """OLS slope of the last n values per bar (0.0 for n = 1); warm-up n-1."""
    index = np.arange(x.shape[0]).astype(np.float64)
    _rolling_moments_nb(index, x, n, np.empty(x.shape[0]), np.empty(x.shape[0]), out)
    # sum((i - mean i)^2) over n consecutive integers, exact.
    sxx = n * (n * n - 1.0) / 12.0
    for t in range(x.shape[0]):
        if not np.isnan(out[t]):
            out[t] = out[t] / sxx if n > 1 else 0.0


@njit(cache=True)
def corr_nb(x, y, n, out):
    """Pearson correlation of the last n pairs, NaN when either side is constant; warm-up n-1.

    A side counts as constant when its spread is within rounding of its level: a squared-deviation
    sum of at most n (CONSTANT_ULPS eps mean)^2. An ema of a constant wobbles by an ulp, and the
    correlation of that wobble is noise that any summation order changes, not a number.
    """
    cxx = np.empty(x.shape[0])
    cyy = np.empty(x.shape[0])
    _rolling_moments_nb(x, y, n, cxx, cyy, out)
    mx = np.empty(x.shape[0])
    my = np.empty(x.shape[0])
    sma_nb(x, n, mx)
    sma_nb(y, n, my)
    for t in range(x.shape[0]):
        if cxx[t] > n * (CONSTANT_ULPS * EPS * mx[t]) ** 2 and cyy[t] > n * (CONSTANT_ULPS * EPS * my[t]) ** 2:
            out[t] = out[t] / np.sqrt(cxx[t] * cyy[t])
        else:
            out[t] = np.nan
