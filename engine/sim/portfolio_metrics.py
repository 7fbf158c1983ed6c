"""A portfolio's metrics: the equity metrics of the one metric table, and how well the score ranks.

The equity metrics are `metrics_nb`'s (autostrat.sim.metrics) on the portfolio's equity, with
the universe's equal-weight index as the buy-and-hold reference, and these changes: `exposure` is
the share of closes with any position, and `turnover` is the traded notional over the period
(every asset's buys and sells at their fill) / mean equity / years, as the table defines it. The
trade-based metrics (num_trades, win_rate, profit_factor, avg_trade_return) are left out: a
portfolio trades many assets at once and has no round trips.

The score's own metrics, at the period's rebalance bars t_j = start + j every whose next one
t_j + every is inside the period, with the forward return f[a] = close[a, t_j + every] /
close[a, t_j] - 1 of every asset with both closes and a finite score s[a, t_j]:

- ic_j = Pearson correlation of s and f over those assets (at least 3, neither constant);
  rank_ic_j the same on their average ranks (Spearman).
- ic_mean, rank_ic_mean: the mean over rebalances; ic_tstat, rank_ic_tstat: mean / (std(ddof 1)
  / sqrt(count)), NaN with fewer than 2 values or std 0.
- long_short_spread: the mean over rebalances of mean f of the top k minus mean f of the bottom k
  of the eligible assets by s, k = max(1, floor(fraction x m)) (the first hold's fraction).
- ic_periods: the count of rebalances with an IC.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from autostrat.sim.metrics import METRIC_NAMES, M, metrics_nb

DROPPED = ("num_trades", "win_rate", "profit_factor", "avg_trade_return")
SCORE_METRICS = ("ic_mean", "ic_tstat", "rank_ic_mean", "rank_ic_tstat", "long_short_spread", "ic_periods",
                 "holdings")
PORTFOLIO_METRIC_NAMES = tuple(n for n in METRIC_NAMES if n not in DROPPED) + SCORE_METRICS
TRADING_DAYS = 252.0


@njit(cache=True, nogil=True)
def _pearson_nb(x, y, m):
    mx = 0.0
    my = 0.0
    for i in range(m):
        mx += x[i]
        my += y[i]
    mx /= m
    my /= m
    sxy = 0.0
    sxx = 0.0
    syy = 0.0
    for i in range(m):
        sxy += (x[i] - mx) * (y[i] - my)
        sxx += (x[i] - mx) ** 2
        syy += (y[i] - my) ** 2
    if sxx == 0.0 or syy == 0.0:
        return math.nan
    return sxy / math.sqrt(sxx * syy)


@njit(cache=True, nogil=True)
def _ranks_nb(x, m, out):
    _ranks_in_order_nb(x, m, np.argsort(x[:m], kind="mergesort"), out)


@njit(cache=True, nogil=True)
def _ranks_in_order_nb(x, m, order, out):
    """Average ranks of x[:m] into out, given `order`, the stable argsort of x[:m]."""
    i = 0
    while i < m:
        j = i
        while j + 1 < m and x[order[j + 1]] == x[order[i]]:
            j += 1
        for q in range(i, j + 1):
            out[order[q]] = (i + j) / 2.0 + 1.0
        i = j + 1


@njit(cache=True, nogil=True)
def score_metrics_nb(score, close, every, fraction, start, stop):
    """(ic, rank_ic, spread) per rebalance, float64[n_rebalances, 3], NaN where undefined."""
    n_assets = close.shape[0]
    count = 0
    t = start
    while t + every < stop:
        count += 1
        t += every
    out = np.full((count, 3), math.nan)
    s = np.empty(n_assets)
    f = np.empty(n_assets)
    rs = np.empty(n_assets)
    rf = np.empty(n_assets)
    for j in range(count):
        t = start + j * every
        m = 0
        for a in range(n_assets):
            c0 = close[a, t]
            c1 = close[a, t + every]
            v = score[a, t]
            if math.isfinite(v) and not math.isnan(c0) and not math.isnan(c1) and c0 != 0.0:
                s[m] = v
                f[m] = c1 / c0 - 1.0
                m += 1
        if m == 0:
            continue
        k = max(1, int(math.floor(fraction * m + 1e-9)))
        order = np.argsort(s[:m], kind="mergesort")
        low = 0.0
        high = 0.0
        for i in range(k):
            low += f[order[i]]
            high += f[order[m - 1 - i]]
        out[j, 2] = high / k - low / k
        if m < 3:
            continue
        out[j, 0] = _pearson_nb(s, f, m)
        _ranks_in_order_nb(s, m, order, rs)  # the sort the spread made
        _ranks_nb(f, m, rf)
        out[j, 1] = _pearson_nb(rs, rf, m)
    return out


def _mean_tstat(values: np.ndarray) -> tuple[float, float]:
    x = values[np.isfinite(values)]
    if x.size == 0:
        return math.nan, math.nan
    mean = float(np.mean(x))
    if x.size < 2:
        return mean, math.nan
    std = float(np.std(x, ddof=1))
    return mean, (mean / (std / math.sqrt(x.size)) if std > 0 else math.nan)


def portfolio_metrics(equity, holdings, traded, benchmark_close, score, close, every, fraction, start, stop,
                      capital) -> dict[str, float]:
    """The metrics of one period (module docstring) as {name: value} in PORTFOLIO_METRIC_NAMES order."""
    values = np.empty(len(METRIC_NAMES))
    position = (holdings > 0).astype(np.int8)
    metrics_nb(equity, position, np.empty((0, 8)), benchmark_close, int(start), int(stop), float(capital), values)
    n = stop - start
    mean_equity = float(np.mean(equity))
    values[M.turnover] = traded / mean_equity / (n / TRADING_DAYS) if mean_equity > 0 else 0.0
    out = {name: float(v) for name, v in zip(METRIC_NAMES, values) if name not in DROPPED}
    per = score_metrics_nb(score, close, int(every), float(fraction), int(start), int(stop))
    out["ic_mean"], out["ic_tstat"] = _mean_tstat(per[:, 0])
    out["rank_ic_mean"], out["rank_ic_tstat"] = _mean_tstat(per[:, 1])
    spreads = per[:, 2][np.isfinite(per[:, 2])]
    out["long_short_spread"] = float(np.mean(spreads)) if spreads.size else math.nan
    out["ic_periods"] = float(np.isfinite(per[:, 0]).sum())
    out["holdings"] = float(np.mean(holdings))
    return out
