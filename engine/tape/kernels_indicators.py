"""Indicator kernels on bar data and windows: oscillators, volatility, volume and trend.

One kernel per language name, `<name>_nb(*args, out)` (conventions: autostrat.tape.kernels),
built on the rolling primitives and averages of autostrat.tape.kernels_rolling. Exact
definitions: docs/builtins.md.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from autostrat.tape.prefix import _rolling_sum_nb
from autostrat.tape.kernels_rolling import (ema_nb, highest_nb, lowest_nb, rma_nb, sma_nb, stdev_nb,
                                            sum_nb)

# ---------------------------------------------------------------- oscillators


@njit(cache=True)
def rsi_nb(x, n, out):
    """Wilder's RSI: 100 - 100/(1 + rma(gains, n)/rma(losses, n)); 100 without losses, 50 when
    flat; warm-up n."""
    gain = np.empty(x.shape[0])
    loss = np.empty(x.shape[0])
    for t in range(x.shape[0]):
        d = x[t] - x[t - 1] if t >= 1 else np.nan
        gain[t] = max(d, 0.0) if not np.isnan(d) else np.nan
        loss[t] = max(-d, 0.0) if not np.isnan(d) else np.nan
    rma_nb(gain, n, out)
    rma_nb(loss, n, loss)
    for t in range(x.shape[0]):
        _ratio_index(out[t], loss[t], out, t)



@njit(cache=True)
def _ratio_index(up, down, out, t):
    """out[t] = 100 - 100/(1 + up/down): 100 when only down is 0, 50 when both are, NaN for NaN."""
    if np.isnan(up) or np.isnan(down):
        out[t] = np.nan
    elif down == 0.0:
        out[t] = 100.0 if up > 0.0 else 50.0
    else:
        out[t] = 100.0 - 100.0 / (1.0 + up / down)



@njit(cache=True)
def _range_position(high, low, close, n, out):
    """Writes close - lowest(low, n) into out; returns highest(high, n) - lowest(low, n)."""
    hh = np.empty(close.shape[0])
    ll = np.empty(close.shape[0])
    highest_nb(high, n, hh)
    lowest_nb(low, n, ll)
    for t in range(close.shape[0]):
        out[t] = close[t] - ll[t]
        hh[t] = hh[t] - ll[t]
    return hh



@njit(cache=True)
def stoch_k_nb(high, low, close, n, out):
    """100 * (close - lowest low) / (highest high - lowest low) over n bars, NaN for a zero range;
    warm-up n-1."""
    rng = _range_position(high, low, close, n, out)
    for t in range(close.shape[0]):
        out[t] = 100.0 * out[t] / rng[t] if rng[t] != 0.0 else np.nan



@njit(cache=True)
def stoch_d_nb(high, low, close, n, m, out):
    """sma(stoch_k(n), m); warm-up n+m-2."""
    k = np.empty(close.shape[0])
    stoch_k_nb(high, low, close, n, k)
    sma_nb(k, m, out)



@njit(cache=True)
def williams_r_nb(high, low, close, n, out):
    """-100 * (highest high - close) / (highest high - lowest low), NaN for a zero range;
    warm-up n-1."""
    rng = _range_position(high, low, close, n, out)
    for t in range(close.shape[0]):
        # highest - close = range - (close - lowest)
        out[t] = -100.0 * (rng[t] - out[t]) / rng[t] if rng[t] != 0.0 else np.nan



@njit(cache=True)
def mfi_nb(high, low, close, volume, n, out):
    """Money flow index over n bars: 100 - 100/(1 + positive flow / negative flow); 100 without
    negative flow, 50 without either; warm-up n."""
    tp = (high + low + close) / 3.0
    pos = np.empty(tp.shape[0])
    neg = np.empty(tp.shape[0])
    for t in range(tp.shape[0]):
        flow = tp[t] * volume[t]
        if t == 0 or np.isnan(flow) or np.isnan(tp[t - 1]):
            pos[t] = np.nan
            neg[t] = np.nan
        else:
            pos[t] = flow if tp[t] > tp[t - 1] else 0.0
            neg[t] = flow if tp[t] < tp[t - 1] else 0.0
    neg_sum = np.empty(tp.shape[0])
    _rolling_sum_nb(pos, n, out)
    _rolling_sum_nb(neg, n, neg_sum)
    for t in range(tp.shape[0]):
        _ratio_index(out[t], neg_sum[t], out, t)



@njit(cache=True)
def macd_nb(x, fast, slow, out):
    """ema(x, fast) - ema(x, slow); warm-up max(fast, slow)-1."""
    slow_ema = np.empty(x.shape[0])
    ema_nb(x, fast, out)
    ema_nb(x, slow, slow_ema)
    for t in range(x.shape[0]):
        out[t] -= slow_ema[t]



@njit(cache=True)
def macd_signal_nb(x, fast, slow, signal, out):
    """ema(macd(x, fast, slow), signal); warm-up max(fast, slow)+signal-2."""
    line = np.empty(x.shape[0])
    macd_nb(x, fast, slow, line)
    ema_nb(line, signal, out)



@njit(cache=True)
def macd_hist_nb(x, fast, slow, signal, out):
    """macd - macd_signal; warm-up max(fast, slow)+signal-2."""
    line = np.empty(x.shape[0])
    macd_nb(x, fast, slow, line)
    ema_nb(line, signal, out)
    for t in range(x.shape[0]):
        out[t] = line[t] - out[t]


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
