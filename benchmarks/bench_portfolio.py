"""Portfolio speed: one cross-sectional strategy on 500 synthetic assets x 6,750 bars, three ways.

Run by hand:  python benchmarks/bench_portfolio.py [--assets 500] [--bars 6750] [--repeat 3]

The strategy is grammar/examples/portfolio/momentum_12_1.strat (score = roc(close, 252)[21] -
stdev(roc(close, 1), 63); long the top 10%, short the bottom 10%, rebalance every 21 bars, equal
weights), traded over the whole history with 1 + 1 bps costs. It prints the median seconds per
evaluation (scores and simulation, warm JIT; (a) and (c) take turns, run by run) and the peak
memory tracemalloc sees while it runs (numpy's allocations; not numba's inside a kernel: the
process's peak resident memory is printed at the end) for
  (a) autostrat: evaluate_scores (the VM on each asset, staged) + the portfolio simulator kernel,
  (b) pandas: the same score per asset on its own bars, the same selection and trading rules,
      positions held between rebalances as a matrix product,
  (c) a hand-written @njit kernel of the score, fused in one loop per asset, + the same simulator,
and checks that the three equity curves agree. The simulator, the part (a) and (c) share, is
timed alone too (on (a)'s scores).

With --bulk N it then evaluates N variants of the strategy (other lookbacks and skips, the same
63-bar volatility) on the train and validation periods, one by one with backtest_portfolio and
together with evaluate_many (which computes an expression the variants share once), and prints
seconds per strategy for both.
"""

from __future__ import annotations

import argparse
import math
import resource
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
from numba import njit

from autostrat.data.synthetic_universe import momentum_universe
from autostrat.lang.check import load
from autostrat.sim.portfolio import portfolio_nb
from autostrat.tape.portfolio_eval import evaluate_scores

ROOT = Path(__file__).resolve().parents[1]
STRATEGY = ROOT / "grammar" / "examples" / "portfolio" / "momentum_12_1.strat"
FRACTION, EVERY, COST = 0.10, 21, 0.0002


_ONES: dict[int, np.ndarray] = {}


def simulate(panel, score):
    # Equal weights: the weighting array is made once per panel, as backtest_portfolio does.
    if id(panel) not in _ONES:
        _ONES[id(panel)] = np.ones_like(panel.close)
    ones = _ONES[id(panel)]
    return portfolio_nb(panel.open, panel.close, score, score, ones, True, True, FRACTION, True,
                         False, FRACTION, False, 0.0, EVERY, 0, len(panel), 0.0001, 0.0001, 10_000.0)


def autostrat_eval(panel, typed):
    score = evaluate_scores(typed, panel)["score"]
    return simulate(panel, score)[0]


@njit(cache=True)
def _score_nb(close, out):
    """roc(close, 252)[21] - stdev(roc(close, 1), 63) on each asset's own bars, in one pass per asset.

    The 63-bar deviation comes from running sums of the returns and their squares, re-summed every
    63 bars so that rounding cannot build up (the VM's kernel sums each window afresh).
    """
    n_assets, n = close.shape
    for a in range(n_assets):
        rows = np.flatnonzero(~np.isnan(close[a]))
        c = close[a, rows]
        m = c.shape[0]
        ret = np.full(m, np.nan)
        for t in range(1, m):
            ret[t] = c[t] / c[t - 1] - 1.0 if c[t - 1] != 0.0 else np.nan
        for j in range(m):
            out[a, rows[j]] = np.nan
        s1 = 0.0
        s2 = 0.0
        for j in range(1, m):
            if (j - 1) % 63 == 0 or j < 64:
                s1 = 0.0
                s2 = 0.0
                for q in range(max(1, j - 62), j + 1):
                    s1 += ret[q]
                    s2 += ret[q] * ret[q]
            else:
                s1 += ret[j] - ret[j - 63]
                s2 += ret[j] * ret[j] - ret[j - 63] * ret[j - 63]
            if j < 273 or c[j - 21 - 252] == 0.0:
                continue
            mean = s1 / 63.0
            out[a, rows[j]] = c[j - 21] / c[j - 21 - 252] - 1.0 - math.sqrt(max(s2 / 63.0 - mean * mean, 0.0))


def numba_eval(panel):
    score = np.empty_like(panel.close)
    _score_nb(panel.close, score)
    return simulate(panel, score)[0]


def pandas_eval(panel):
    close = pd.DataFrame(panel.close.T)
    score = pd.DataFrame(np.nan, index=close.index, columns=close.columns)
    for col in close.columns:  # each asset on its own bars
        c = close[col].dropna()
        vol = (c / c.shift(1) - 1).rolling(63).std(ddof=0)
        score.loc[c.index, col] = (c / c.shift(252) - 1).shift(21) - vol
    opens = pd.DataFrame(panel.open.T)
    last = close.ffill()
    n = len(close)
    shares = pd.Series(0.0, index=close.columns)
    cash = 10_000.0
    equity = np.empty(n)
    rebalances = list(range(0, n - 1, EVERY))
    for i, t in enumerate(rebalances):
        row = score.iloc[t][close.iloc[t].notna()].dropna()
        target = pd.Series(0.0, index=close.columns)
        if len(row):
            k = max(1, int(math.floor(FRACTION * len(row) + 1e-9)))
            longs = row.sort_values(ascending=False, kind="mergesort").index[:k]
            shorts = row.drop(longs).sort_values(kind="mergesort").index[:k]
            target[longs] = 0.5 / len(longs)
            target[shorts] = -0.5 / len(shorts)
        seg_end = rebalances[i + 1] + 1 if i + 1 < len(rebalances) else n
        equity[t] = cash + float((shares * last.iloc[t]).sum())
        f = t + 1
        price = opens.iloc[f]
        value = cash + float((shares[shares != 0] * price.fillna(last.iloc[t])[shares != 0]).sum())
        tradable = price.notna()
        delta = (target * value / price - shares).where(tradable, 0.0)
        notional = (delta.abs() * price).where(tradable, 0.0)
        cash -= float((delta * price).where(tradable, 0.0).sum() + COST * notional.sum())
        shares = shares + delta
        equity[f:seg_end] = cash + last.iloc[f:seg_end].fillna(0.0).to_numpy() @ shares.to_numpy()
    return equity


def timed(fn):
    """(seconds, peak traced bytes, result) of one call."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    sec = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return sec, peak, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=int, default=500)
    ap.add_argument("--bars", type=int, default=6750)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bulk", type=int, default=0, metavar="N", help="also time N variants, one by one and in bulk")
    args = ap.parse_args()
    panel = momentum_universe(seed=1, assets=args.assets, bars=args.bars)
    typed = load(STRATEGY.read_text(), str(STRATEGY), portfolio=True)
    autostrat_eval(panel, typed), numba_eval(panel)  # warm the JIT
    print(f"{args.assets} assets x {args.bars} bars ({np.isfinite(panel.close).mean():.1%} with a bar), "
          f"{STRATEGY.name}; median of {args.repeat}")
    # autostrat and the hand-written kernel take turns, so that a change in the machine's load
    # (it is shared) falls on both alike; pandas runs once.
    score = evaluate_scores(typed, panel)["score"]
    fast = {"autostrat": lambda: autostrat_eval(panel, typed), "hand-written numba": lambda: numba_eval(panel),
            "  of which simulator": lambda: simulate(panel, score)[0]}  # the part (a) and (c) share
    runs: dict[str, list] = {name: [] for name in fast}
    for _ in range(args.repeat):
        for name, fn in fast.items():
            runs[name].append(timed(fn))
    runs["pandas"] = [timed(lambda: pandas_eval(panel))]
    results = {}
    for name, got in runs.items():
        sec, peak = statistics.median(r[0] for r in got), max(r[1] for r in got)
        results[name] = (sec, got[-1][2])
        print(f"  {name:<22} {sec:9.3f} s per evaluation   peak traced memory {peak / 2**20:8.1f} MB")
    base = results["autostrat"][0]
    print(f"  autostrat / hand-written numba: {base / results['hand-written numba'][0]:.2f}x; "
          f"pandas / autostrat: {results['pandas'][0] / base:.1f}x")
    a, b, c = (results[k][1] for k in ("autostrat", "hand-written numba", "pandas"))
    print(f"  process peak resident memory (panel included): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    # The hand-written deviation rounds differently (running sums), so a near tie may rank otherwise.
    print(f"  equity agrees: numba {np.allclose(a, b, rtol=1e-6)}, pandas {np.allclose(a, c, rtol=1e-9)} "
          f"(final {a[-1]:,.2f} / {b[-1]:,.2f} / {c[-1]:,.2f})")
    if args.bulk:
        bulk(panel, args.bulk)


def bulk(panel, n: int) -> None:
    import autostrat
    from autostrat.sim.portfolio_backtest import backtest_portfolio

    text = STRATEGY.read_text()
    looks = [(months * 21, skip) for months in (3, 6, 9, 12, 15, 18) for skip in (0, 5, 10, 21)]
    texts = [text.replace("roc(close, 252)[21]", f"roc(close, {lb})[{skip}]") for lb, skip in looks[:n]]
    programs = [load(t, f"variant {i}", portfolio=True) for i, t in enumerate(texts)]
    settings = autostrat.Settings()
    t0 = time.perf_counter()
    for typed in programs:
        backtest_portfolio(typed, panel, settings)
    alone = (time.perf_counter() - t0) / len(programs)
    t0 = time.perf_counter()
    autostrat.evaluate_many(programs, panel, settings)
    together = (time.perf_counter() - t0) / len(programs)
    print(f"  {len(programs)} variants on train and validation: one by one {alone:.3f} s per strategy, "
          f"evaluate_many {together:.3f} s per strategy ({alone / together:.2f}x)")


if __name__ == "__main__":
    main()
