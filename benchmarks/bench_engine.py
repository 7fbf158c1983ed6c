"""Engine speed: one SMA 20/50 crossover evaluated four ways, and a 1,000-variant sweep.

Run by hand:  python benchmarks/bench_engine.py [--repeat N]

On one synthetic series of 6,750 daily bars (2000 to 2026), SMA 20/50 crossover, fill at close,
no costs, warm JIT, train and validation periods, it prints the median seconds per strategy for
  (a) autostrat.backtest() on a program, and the evaluate_tape() core it wraps,
  (b) autostrat bulk over a 1,000-variant sweep (per strategy),
  (c) a pandas re-implementation of the seed harness (row loop),
  (d) a hand-written @njit kernel of the same crossover (the floor),
then the first-call compile time with an empty numba cache (in a subprocess) and the wall time of
`autostrat backtest grammar/examples/sma_cross.strat --data synthetic` with a warm cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the seed harness re-implementation lives with the tests


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@njit(cache=True)
def _sma_nb(x, n):
    out = np.full(x.shape[0], np.nan)
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
        if i >= n:
            s -= x[i - n]
        if i >= n - 1:
            out[i] = s / n
    return out


@njit(cache=True)
def crossover_floor_nb(close, starts, stops, capital):
    """SMA 20/50, all in at the close, out at the close, close-out at the end: the seed's rules."""
    fast = _sma_nb(close, 20)
    slow = _sma_nb(close, 50)
    out = np.empty((starts.shape[0], 3))
    for p in range(starts.shape[0]):
        a, b = starts[p], stops[p]
        cash, shares = capital, 0.0
        eq = np.empty(b - a)
        for t in range(a, b):
            if fast[t] > slow[t] and shares == 0.0:
                shares = cash / close[t]
                cash = 0.0
            elif fast[t] < slow[t] and shares > 0.0:
                cash = shares * close[t]
                shares = 0.0
            eq[t - a] = cash + shares * close[t]
        r = eq[1:] / eq[:-1] - 1.0
        peak, mdd = eq[0], 0.0
        for v in eq:
            peak = max(peak, v)
            mdd = min(mdd, v / peak - 1.0)
        out[p, 0] = eq[-1] / capital - 1.0
        out[p, 1] = r.mean() / r.std() * np.sqrt(252.0) if r.std() > 0 else 0.0
        out[p, 2] = mdd
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()

    import autostrat
    from autostrat.sim.backtest import load_strategy, period_spans
    from autostrat.sim.bulk import sweep_programs, metrics_array
    from autostrat.tape.compile import compile
    from autostrat.sim.evaluate import evaluate_tape
    from autostrat.resources import example_path
    from autostrat.data.synthetic import synthetic_market
    from seed_harness import seed_backtest

    market = synthetic_market(bars=6750)
    settings = autostrat.Settings()
    settings.backtest.fill, settings.backtest.commission_bps, settings.backtest.slippage_bps = "close", 0.0, 0.0
    spans = period_spans(market, settings)
    text = example_path("sma_cross").read_text()
    typed = load_strategy(text)
    tape = compile(typed)
    starts = np.array([a for a, _ in spans.values()])
    stops = np.array([b for _, b in spans.values()])

    # warm everything
    autostrat.backtest(typed, market, settings)
    evaluate_tape(tape, market, spans, settings.backtest)
    crossover_floor_nb(market.close, starts, stops, 10_000.0)

    a_api = median_time(lambda: autostrat.backtest(typed, market, settings), args.repeat)
    a_core = median_time(lambda: evaluate_tape(tape, market, spans, settings.backtest), args.repeat)
    d = median_time(lambda: crossover_floor_nb(market.close, starts, stops, 10_000.0), args.repeat)

    grid = {"fast": list(range(5, 105)), "slow": list(range(60, 260, 20))}
    t = time.perf_counter()
    variants, _ = sweep_programs(text, grid)
    prep = time.perf_counter() - t
    metrics_array(variants[:300], market, spans, settings)  # warm the parallel kernel
    bulk = median_time(lambda: metrics_array(variants, market, spans, settings), 7) / len(variants)

    frame = market.frame().rename(columns=str.capitalize)
    train, val = frame.iloc[slice(*spans["train"])], frame.iloc[slice(*spans["validation"])]
    c = median_time(lambda: (seed_backtest(train), seed_backtest(val)), 3)

    print(f"bars: {len(market)}  periods: {', '.join(f'{k} {b - a}' for k, (a, b) in spans.items())}")
    print(f"(a) autostrat.backtest(program)        {a_api * 1e6:10.1f} us  ({a_api / d:.1f}x floor)")
    print(f"(a) evaluate_tape core                 {a_core * 1e6:10.1f} us  ({a_core / d:.1f}x floor)")
    print(f"(b) bulk sweep, per strategy           {bulk * 1e6:10.1f} us  ({bulk / d:.2f}x floor; "
          f"median of 7 runs of {len(variants)} variants; {prep:.2f} s to build and check them)")
    print(f"(c) seed harness (pandas row loop)     {c * 1e6:10.1f} us  ({c / a_api:,.0f}x slower than (a))")
    print(f"(d) hand-written njit crossover        {d * 1e6:10.1f} us")

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = ("import time; t=time.perf_counter(); import autostrat; "
                "autostrat.backtest('grammar/examples/sma_cross.strat', 'synthetic'); "
                "print(time.perf_counter()-t)")
        cold = float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                                    text=True, check=True).stdout.strip())
    print(f"first call with an empty numba cache   {cold:10.1f} s  (import, compile, backtest)")
    cmd = [sys.executable, "-m", "autostrat", "backtest", "grammar/examples/sma_cross.strat", "--data", "synthetic"]
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
    walls = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
        walls.append(time.perf_counter() - t)
    print(f"autostrat backtest ... (warm cache)    {statistics.median(walls):10.2f} s  wall")


if __name__ == "__main__":
    main()
