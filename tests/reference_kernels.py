"""Reference implementations of every built-in function, written with pandas and vectorised numpy.

They follow the definitions in docs/builtins.md directly (rolling(), ewm(), shift(), sliding
windows) and share no code with the numba kernels, so a test comparing the two checks both. Each
function takes the kernel's arguments without `out` and returns a new float64 array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

NAN = np.nan


def _s(x: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(x, dtype=np.float64))


def _flag(mask) -> np.ndarray:
    return np.asarray(mask, dtype=np.float64)


def _windowed(x: np.ndarray, n: int, reduce) -> np.ndarray:
    """reduce(windows) over every full window x[t-n+1..t], placed at t; NaN windows give NaN."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), NAN)
    if n > len(x):
        return out
    w = sliding_window_view(x, n)
    with np.errstate(all="ignore"):
        values = np.asarray(reduce(w), dtype=np.float64)
    values[np.isnan(w).any(axis=1)] = NAN
    out[n - 1 :] = values
    return out


def _seeded_ewm(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """ewm(adjust=False) restarted on every run of valid values, seeded with its first n mean."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), NAN)
    valid = ~np.isnan(x)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], valid.astype(np.int8), [0]))))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start < n:
            continue
        seg = x[start + n - 1 : stop].copy()
        seg[0] = x[start : start + n].mean()
        out[start + n - 1 : stop] = _s(seg).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    return out


# ---------------------------------------------------------------- elementwise


def fill(value, size):
    # The kernel reads the length from `out`; the reference needs it as an argument.
    return np.full(size, float(value))


def lag(x, n):
    return _s(x).shift(n).to_numpy()


def neg(x):
    return -np.asarray(x)


def add(x, y):
    return np.add(x, y)


def sub(x, y):
    return np.subtract(x, y)


def mul(x, y):
    return np.multiply(x, y)


def div(x, y):
    with np.errstate(all="ignore"):
        return np.where(np.asarray(y) == 0, NAN, np.divide(x, y))


def lt(x, y):
    return _flag(np.less(x, y))


def le(x, y):
    return _flag(np.less_equal(x, y))


def gt(x, y):
    return _flag(np.greater(x, y))


def ge(x, y):
    return _flag(np.greater_equal(x, y))


def eq(x, y):
    return _flag(np.equal(x, y))


def ne(x, y):
    return _flag(np.not_equal(x, y) & ~np.isnan(x) & ~np.isnan(y))


def and_(a, b):
    return _flag(np.logical_and(np.asarray(a) != 0, np.asarray(b) != 0))


def or_(a, b):
    return _flag(np.logical_or(np.asarray(a) != 0, np.asarray(b) != 0))


def not_(a):
    return _flag(np.asarray(a) == 0)


def abs_(x):
    return np.abs(x)


def log(x):
    with np.errstate(all="ignore"):
        return np.where(np.asarray(x) > 0, np.log(x), NAN)


def sqrt(x):
    with np.errstate(all="ignore"):
        return np.where(np.asarray(x) >= 0, np.sqrt(x), NAN)


def exp(x):
    with np.errstate(all="ignore"):
        return np.exp(x)


def sign(x):
    return np.sign(x)


def min_(x, y):
    return np.minimum(x, y)


def max_(x, y):
    return np.maximum(x, y)


def clip(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def if_else(c, x, y):
    return np.where(np.asarray(c) != 0, x, y)


# ---------------------------------------------------------------- averages and statistics


def sma(x, n):
    return _s(x).rolling(n).mean().to_numpy()


def ema(x, n):
    return _seeded_ewm(x, n, 2.0 / (n + 1.0))


def rma(x, n):
    return _seeded_ewm(x, n, 1.0 / n)


def wma(x, n):
    weights = np.arange(1.0, n + 1.0)
    return _windowed(x, n, lambda w: w @ weights / weights.sum())


def _pop_std(w):
    # All-equal windows are exactly 0; a mean of equal floats can be off by an ulp.
    return np.where(w.max(axis=1) == w.min(axis=1), 0.0, w.std(axis=1))


def stdev(x, n):
    return _windowed(x, n, _pop_std)


def zscore(x, n):
    sd = stdev(x, n)
    with np.errstate(all="ignore"):
        return np.where(sd > 0, (np.asarray(x) - sma(x, n)) / sd, NAN)


def highest(x, n):
    return _s(x).rolling(n).max().to_numpy()


def lowest(x, n):
    return _s(x).rolling(n).min().to_numpy()


def sum_(x, n):
    return _windowed(x, n, lambda w: w.sum(axis=1))


def percent_rank(x, n):
    return _windowed(x, n + 1, lambda w: 100.0 * (w[:, :-1] <= w[:, -1:]).sum(axis=1) / n)


def slope(x, n):
    if n == 1:
        return np.where(np.isnan(x), NAN, 0.0)
    idx = np.arange(n) - (n - 1) / 2.0
    return _windowed(x, n, lambda w: (w - w.mean(axis=1, keepdims=True)) @ idx / (idx @ idx))


def corr(x, y, n):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    out = np.full(len(x), NAN)
    if n > len(x):
        return out
    wx = sliding_window_view(x, n)
    wy = sliding_window_view(y, n)
    dx = wx - wx.mean(axis=1, keepdims=True)
    dy = wy - wy.mean(axis=1, keepdims=True)
    # Constant: all equal, or spread within rounding of the level (n (8 eps mean)^2, the kernel's rule).
    eps = np.finfo(np.float64).eps
    flat_x = (dx * dx).sum(axis=1) <= n * (8.0 * eps * wx.mean(axis=1)) ** 2
    flat_y = (dy * dy).sum(axis=1) <= n * (8.0 * eps * wy.mean(axis=1)) ** 2
    constant = (wx.max(axis=1) == wx.min(axis=1)) | (wy.max(axis=1) == wy.min(axis=1)) | flat_x | flat_y
    with np.errstate(all="ignore"):
        r = (dx * dy).sum(axis=1) / np.sqrt((dx * dx).sum(axis=1) * (dy * dy).sum(axis=1))
    r[constant] = NAN
    # Deviations so small their product underflows leave no measurable spread: the kernel's
    # "either deviation is 0" case, so NaN, not the inf or NaN of 0/0 here.
    r[~np.isfinite(r)] = NAN
    out[n - 1 :] = r
    return out


def bars_since_high(x, n):
    # argmax of the reversed window finds the most recent of tied maxima, counted in bars back.
    return _windowed(x, n, lambda w: np.argmax(w[:, ::-1], axis=1))


def bars_since_low(x, n):
    return _windowed(x, n, lambda w: np.argmin(w[:, ::-1], axis=1))


def change(x, n):
    return (_s(x) - _s(x).shift(n)).to_numpy()


def roc(x, n):
    prev = _s(x).shift(n)
    with np.errstate(all="ignore"):
        return np.where(prev == 0, NAN, (_s(x) / prev - 1.0).to_numpy())


# ---------------------------------------------------------------- oscillators


def _index_from_ratio(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        value = 100.0 - 100.0 / (1.0 + up / down)
    value = np.where(down == 0, np.where(up > 0, 100.0, 50.0), value)
    return np.where(np.isnan(up) | np.isnan(down), NAN, value)


def rsi(x, n):
    d = _s(x).diff()
    gain = d.clip(lower=0).to_numpy()
    loss = (-d).clip(lower=0).to_numpy()
    return _index_from_ratio(rma(gain, n), rma(loss, n))


def stoch_k(high, low, close, n):
    hh, ll = highest(high, n), lowest(low, n)
    with np.errstate(all="ignore"):
        return np.where(hh == ll, NAN, 100.0 * (np.asarray(close) - ll) / (hh - ll))


def stoch_d(high, low, close, n, m):
    return sma(stoch_k(high, low, close, n), m)


def williams_r(high, low, close, n):
    hh, ll = highest(high, n), lowest(low, n)
    with np.errstate(all="ignore"):
        return np.where(hh == ll, NAN, -100.0 * (hh - np.asarray(close)) / (hh - ll))


def _typical(high, low, close):
    return (_s(high) + _s(low) + _s(close)) / 3.0


def cci(high, low, close, n):
    def reduce(w):
        mean = w.mean(axis=1, keepdims=True)
        dev = np.abs(w - mean).mean(axis=1)
        value = (w[:, -1] - mean[:, 0]) / (0.015 * dev)
        return np.where((w.max(axis=1) == w.min(axis=1)) | (dev == 0), NAN, value)

    return _windowed(_typical(high, low, close).to_numpy(), n, reduce)


def mfi(high, low, close, volume, n):
    tp = _typical(high, low, close)
    flow = tp * _s(volume)
    prev = tp.shift(1)
    pos = np.where(tp > prev, flow, 0.0)
    neg = np.where(tp < prev, flow, 0.0)
    pos[prev.isna().to_numpy() | flow.isna().to_numpy()] = NAN
    neg[np.isnan(pos)] = NAN
    return _index_from_ratio(sum_(pos, n), sum_(neg, n))


def macd(x, fast, slow):
    return ema(x, fast) - ema(x, slow)


def macd_signal(x, fast, slow, signal):
    return ema(macd(x, fast, slow), signal)


def macd_hist(x, fast, slow, signal):
    return macd(x, fast, slow) - macd_signal(x, fast, slow, signal)


# ---------------------------------------------------------------- volatility, volume, trend


def tr(high, low, close):
    prev = _s(close).shift(1)
    parts = pd.concat(
        [_s(high) - _s(low), (_s(high) - prev).abs(), (_s(low) - prev).abs()], axis=1
    )
    return parts.max(axis=1, skipna=False).to_numpy()


def atr(high, low, close, n):
    return rma(tr(high, low, close), n)


def bb_upper(x, n, k):
    return sma(x, n) + k * stdev(x, n)


def bb_lower(x, n, k):
    return sma(x, n) - k * stdev(x, n)


def keltner_upper(high, low, close, n, k):
    return ema(close, n) + k * atr(high, low, close, n)


def keltner_lower(high, low, close, n, k):
    return ema(close, n) - k * atr(high, low, close, n)


def obv(close, volume):
    direction = np.sign(_s(close).diff().fillna(0.0).to_numpy())
    return np.cumsum(direction * np.asarray(volume, dtype=np.float64))


def vwap(high, low, close, volume, n):
    pv = sum_((_typical(high, low, close) * _s(volume)).to_numpy(), n)
    vol = sum_(volume, n)
    with np.errstate(all="ignore"):
        return np.where(vol == 0, NAN, pv / vol)


def _di(high, low, close, n):
    up = _s(high).diff()
    down = -_s(low).diff()
    plus_dm = np.where((up > down) & (up > 0), up, 0.0)
    minus_dm = np.where((down > up) & (down > 0), down, 0.0)
    missing = (up.isna() | down.isna()).to_numpy()
    plus_dm[missing] = NAN
    minus_dm[missing] = NAN
    s_tr = rma(tr(high, low, close), n)
    with np.errstate(all="ignore"):
        plus = np.where(s_tr == 0, NAN, 100.0 * rma(plus_dm, n) / s_tr)
        minus = np.where(s_tr == 0, NAN, 100.0 * rma(minus_dm, n) / s_tr)
    return plus, minus


def plus_di(high, low, close, n):
    return _di(high, low, close, n)[0]


def minus_di(high, low, close, n):
    return _di(high, low, close, n)[1]


def adx(high, low, close, n):
    plus, minus = _di(high, low, close, n)
    total = plus + minus
    with np.errstate(all="ignore"):
        dx = np.where(total == 0, 0.0, 100.0 * np.abs(plus - minus) / total)
    return rma(dx, n)


# ---------------------------------------------------------------- events


def cross_above(x, y):
    x, y = _s(x), _s(y)
    return _flag((x > y) & (x.shift(1) <= y.shift(1)))


def cross_below(x, y):
    x, y = _s(x), _s(y)
    return _flag((x < y) & (x.shift(1) >= y.shift(1)))


def bars_since(c):
    pos = np.arange(len(c), dtype=np.float64)
    last = _s(np.where(np.asarray(c) != 0, pos, NAN)).ffill().to_numpy()
    return pos - last


# Language name -> reference; names that are Python keywords or builtins carry a trailing "_".
REFERENCE = {
    name.rstrip("_"): obj
    for name, obj in dict(globals()).items()
    if callable(obj) and not name.startswith("_") and obj.__module__ == __name__
}
