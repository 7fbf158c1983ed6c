"""numba kernels of every built-in function and operator of the strategy language.

One kernel per language name, `<name>_nb(*args, out)`: float64 1-D series and int64 (windows) or
float64 (k, value) scalars in, the result written into the preallocated float64 array `out` of the
same length (never aliasing an input), None returned. Number series carry NaN for missing and
warm-up values; boolean series are 1.0/0.0 and never NaN. Arithmetic propagates NaN, x/0 is NaN,
every comparison with NaN is false (`!=` included), min/max/clip propagate NaN.

This module holds the elementwise kernels, lag and change, the events, cci and the volatility,
volume and trend indicators, the registry `KERNELS` and `warm_up_all`; averages, statistics and
the other oscillators live in autostrat.kernels_ta. docs/builtins.md defines every function.

Kernels here call jitted functions of autostrat.tape.kernels_ta; numba's on-disk cache does not notice
edits to them, so NUMBA_CACHE_DIR changes whenever the jitted sources do (autostrat._numba_cache
keys it on their hash). The dispatch loop calls these kernels through autostrat.tape.kernel_table, which
compiles each one the first time a tape uses it, for the argument types `PARAM_KINDS` gives.
"""

from __future__ import annotations

import inspect

import numpy as np
from numba import njit

from autostrat.tape import kernels_ta
from autostrat.tape.kernels_ta import ema_nb, rma_nb, sma_nb, stdev_nb, sum_nb

# ---------------------------------------------------------------- elementwise


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
# ---------------------------------------------------------------- oscillators on bar data


@njit(cache=True)
def cci_nb(high, low, close, n, out):
    """(tp - sma(tp, n)) / (0.015 * mean |tp - sma(tp, n)|) with tp the typical price; NaN when the
    mean deviation is 0; warm-up n-1."""
    tp = (high + low + close) / 3.0
    run = 0
    same = 0  # run of equal tp values: a constant window has mean deviation exactly 0
    for t in range(tp.shape[0]):
        if np.isnan(tp[t]):
            run = 0
            out[t] = np.nan
            continue
        run += 1
        same = same + 1 if run > 1 and tp[t] == tp[t - 1] else 1
        if run < n or same >= n:
            out[t] = np.nan
            continue
        mean = 0.0
        for j in range(t - n + 1, t + 1):
            mean += tp[j]
        mean /= n
        dev = 0.0
        for j in range(t - n + 1, t + 1):
            dev += abs(tp[j] - mean)
        dev /= n
        out[t] = (tp[t] - mean) / (0.015 * dev) if dev > 0.0 else np.nan


# ---------------------------------------------------------------- volatility


@njit(cache=True)
def tr_nb(high, low, close, out):
    """True range max(h - l, |h - c[1]|, |l - c[1]|); NaN on the first bar; warm-up 1."""
    for t in range(close.shape[0]):
        if t == 0:
            out[t] = np.nan
            continue
        a = high[t] - low[t]
        b = abs(high[t] - close[t - 1])
        c = abs(low[t] - close[t - 1])
        out[t] = np.nan if np.isnan(a + b + c) else max(a, b, c)


@njit(cache=True)
def atr_nb(high, low, close, n, out):
    """Average true range rma(tr, n); warm-up n."""
    rng = np.empty(close.shape[0])
    tr_nb(high, low, close, rng)
    rma_nb(rng, n, out)


@njit(cache=True)
def _band(mid, width, k, out):
    """out = mid + k * width."""
    for t in range(mid.shape[0]):
        out[t] = mid[t] + k * width[t]


@njit(cache=True)
def bb_upper_nb(x, n, k, out):
    """Upper Bollinger band sma(x, n) + k * stdev(x, n); warm-up n-1."""
    mid = np.empty(x.shape[0])
    sma_nb(x, n, mid)
    stdev_nb(x, n, out)
    _band(mid, out, k, out)


@njit(cache=True)
def bb_lower_nb(x, n, k, out):
    """Lower Bollinger band sma(x, n) - k * stdev(x, n); warm-up n-1."""
    mid = np.empty(x.shape[0])
    sma_nb(x, n, mid)
    stdev_nb(x, n, out)
    _band(mid, out, -k, out)


@njit(cache=True)
def keltner_upper_nb(high, low, close, n, k, out):
    """Upper Keltner channel ema(close, n) + k * atr(n); warm-up n."""
    mid = np.empty(close.shape[0])
    ema_nb(close, n, mid)
    atr_nb(high, low, close, n, out)
    _band(mid, out, k, out)


@njit(cache=True)
def keltner_lower_nb(high, low, close, n, k, out):
    """Lower Keltner channel ema(close, n) - k * atr(n); warm-up n."""
    mid = np.empty(close.shape[0])
    ema_nb(close, n, mid)
    atr_nb(high, low, close, n, out)
    _band(mid, out, -k, out)


# ---------------------------------------------------------------- volume


@njit(cache=True)
def obv_nb(close, volume, out):
    """On-balance volume from 0: + volume on an up close, - volume on a down close; warm-up 0."""
    total = 0.0
    for t in range(close.shape[0]):
        if t >= 1 and close[t] > close[t - 1]:
            total += volume[t]
        elif t >= 1 and close[t] < close[t - 1]:
            total -= volume[t]
        out[t] = total


@njit(cache=True)
def vwap_nb(high, low, close, volume, n, out):
    """Rolling VWAP sum(tp * volume, n) / sum(volume, n), NaN for zero volume; warm-up n-1."""
    vol = np.empty(close.shape[0])
    sum_nb((high + low + close) / 3.0 * volume, n, out)
    sum_nb(volume, n, vol)
    for t in range(close.shape[0]):
        out[t] = out[t] / vol[t] if vol[t] != 0.0 else np.nan


# ---------------------------------------------------------------- trend (Wilder)


@njit(cache=True)
def _directional_index(high, low, close, n, plus, minus):
    """Writes 100 * rma(+dm, n) / rma(tr, n) into plus and the same for -dm into minus."""
    size = close.shape[0]
    pdm = np.empty(size)
    mdm = np.empty(size)
    for t in range(size):
        up = high[t] - high[t - 1] if t >= 1 else np.nan
        down = low[t - 1] - low[t] if t >= 1 else np.nan
        if np.isnan(up) or np.isnan(down):
            pdm[t] = np.nan
            mdm[t] = np.nan
        else:
            pdm[t] = up if up > down and up > 0.0 else 0.0
            mdm[t] = down if down > up and down > 0.0 else 0.0
    rng = np.empty(size)
    tr_nb(high, low, close, rng)
    rma_nb(rng, n, rng)
    rma_nb(pdm, n, plus)
    rma_nb(mdm, n, minus)
    for t in range(size):
        ok = rng[t] != 0.0
        plus[t] = 100.0 * plus[t] / rng[t] if ok else np.nan
        minus[t] = 100.0 * minus[t] / rng[t] if ok else np.nan


@njit(cache=True)
def plus_di_nb(high, low, close, n, out):
    """+DI = 100 * rma(+dm, n) / rma(tr, n); warm-up n."""
    _directional_index(high, low, close, n, out, np.empty(close.shape[0]))


@njit(cache=True)
def minus_di_nb(high, low, close, n, out):
    """-DI = 100 * rma(-dm, n) / rma(tr, n); warm-up n."""
    _directional_index(high, low, close, n, np.empty(close.shape[0]), out)


@njit(cache=True)
def adx_nb(high, low, close, n, out):
    """ADX = rma(dx, n), dx = 100 * |+DI - -DI| / (+DI + -DI) (0 when both are 0); warm-up 2n-1."""
    plus = np.empty(close.shape[0])
    minus = np.empty(close.shape[0])
    _directional_index(high, low, close, n, plus, minus)
    for t in range(close.shape[0]):
        total = plus[t] + minus[t]
        if total != 0.0:
            plus[t] = 100.0 * abs(plus[t] - minus[t]) / total
        else:
            plus[t] = 0.0  # both DIs 0; NaN sums fall in the branch above and stay NaN
    rma_nb(plus, n, out)


# ---------------------------------------------------------------- registry

# Every public `<name>_nb` of both modules, keyed by its language-level name ("sma", "add", "and").
KERNELS: dict[str, object] = {
    name[: -len("_nb")]: obj
    for module in (globals(), vars(kernels_ta))
    for name, obj in sorted(module.items())
    if name.endswith("_nb") and not name.startswith("_")
}

# What each kernel parameter is, by its name; warm_up_all and the tests build calls from this.
PARAM_KINDS: dict[str, str] = {
    **dict.fromkeys(("x", "y", "lo", "hi", "high", "low", "close", "volume"), "number"),
    **dict.fromkeys(("c", "a", "b"), "boolean"),
    **dict.fromkeys(("n", "m", "fast", "slow", "signal"), "window"),
    **dict.fromkeys(("k", "value"), "float"),
    "out": "out",
}


def kernel_params(name: str) -> tuple[str, ...]:
    """Parameter names of the kernel for language name `name`, `out` excluded."""
    params = inspect.signature(KERNELS[name].py_func).parameters
    return tuple(p for p in params if p != "out")


def warm_up_all() -> None:
    """Compile every kernel (or load it from numba's cache) by calling it once on a tiny series.

    Windows are passed as int and k/value as float, the types the VM passes, so the compiled
    specialisations are the ones used later.
    """
    bars = 8
    price = np.linspace(10.0, 11.0, bars)
    flags = (np.arange(bars) % 2).astype(np.float64)
    for name in KERNELS:
        args: list[object] = []
        for param in kernel_params(name):
            kind = PARAM_KINDS[param]
            if kind == "number":
                args.append(price)
            elif kind == "boolean":
                args.append(flags)
            elif kind == "window":
                args.append(2)
            else:
                args.append(1.5)
        KERNELS[name](*args, np.empty(bars))
