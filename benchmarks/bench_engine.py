"""Engine speed against a hand-fused kernel and against vectorbt, side by side in one process.

Run by hand:  python benchmarks/bench_engine.py [--repeat N] [--no-cli]
(vectorbt is optional: `pip install -e ".[bench]"`; without it that row is skipped.)

Workload: one synthetic series of 6,750 daily bars (2000 to 2026), an SMA crossover (long while the
fast average is above the slow one), fill at the close, no costs, the train and validation periods
traded separately. The grid is fast 5..50 step 5 x slow 52..250 step 2: 1,000 variants.

Rows, each in microseconds per strategy (median of --repeat rounds; the rows of a round run one
after another, so a noisy machine slows them alike and the ratios hold):
  floor         a hand-written @njit kernel per strategy: both SMAs computed once, then one pass
                per period holding the position, marking equity at each close and keeping running
                sums for the total return, the Sharpe ratio, the maximum drawdown and the trade
                count; no arrays besides the two SMAs
  shared floor  the same with each window's SMA computed once for the whole grid and shared
  (a) backtest  autostrat.backtest() on a parsed program, one strategy per call
  (b) bulk      autostrat.evaluate_many over 1,000 separately written programs (parsed beforehand;
                the parse time is printed apart)
  (c) sweep     autostrat.sweep over the grid, end to end: building, checking and compiling the
                variants included
  (d) vectorbt  vectorbt's Portfolio.from_signals over the grid, per period, with the same four
                statistics
Goals: (a) <= 3x floor, (b) <= 1x, (c) <= 0.5x, bulk >= 20x faster than vectorbt. Then where
(b)'s time goes, in CPU time of one thread (`time.thread_time`, so other processes on the machine
count less): compiling the 1,000 programs into one tape, running it, and scoring them on one
thread against the floor's own pass. Then the first call with an empty numba cache (in a
subprocess) and the warm `autostrat backtest` wall time (numba's and Python's bytecode caches
written, as on a user's second run).
"""

from __future__ import annotations

import argparse
import math
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
FAST = list(range(5, 51, 5))
SLOW = list(range(52, 251, 2))
CAPITAL = 10_000.0


@njit(cache=True)
def _sma_nb(x, n, out):
    s = 0.0
    for i in range(x.shape[0]):
        s += x[i]
        if i >= n:
            s -= x[i - n]
        out[i] = s / n if i >= n - 1 else np.nan


@njit(cache=True)
def _periods_nb(close, fast, slow, starts, stops, capital, out):
    """One pass per period: position, equity at each close, running sums; no arrays."""
    for p in range(starts.shape[0]):
        a, b = starts[p], stops[p]
        cash, shares, prev, peak, mdd = capital, 0.0, capital, capital, 0.0
        sr, sq, trades = 0.0, 0.0, 0
        for t in range(a, b):
            c = close[t]
            if shares == 0.0 and fast[t] > slow[t]:
                shares, cash = cash / c, 0.0
            elif shares > 0.0 and fast[t] < slow[t]:
                cash, shares = shares * c, 0.0
                trades += 1
            e = cash + shares * c
            if t > a:
                r = e / prev - 1.0
                sr += r
                sq += r * r
            prev = e
            peak = max(peak, e)
            mdd = min(mdd, e / peak - 1.0)
        if shares > 0.0:
            trades += 1  # the close-out at the period's end
        m = b - a - 1
        mean = sr / m
        var = (sq - sr * mean) / (m - 1)
        out[p, 0] = prev / capital - 1.0
        out[p, 1] = mean / math.sqrt(var) * math.sqrt(252.0) if var > 0.0 else 0.0
        out[p, 2] = mdd
        out[p, 3] = trades


@njit(cache=True)
def floor_nb(close, fasts, slows, starts, stops, capital, out):
    """The fused floor for every (fast, slow) pair: each strategy computes its own two SMAs."""
    f = np.empty(close.shape[0])
    s = np.empty(close.shape[0])
    for i in range(fasts.shape[0]):
        for j in range(slows.shape[0]):
            _sma_nb(close, fasts[i], f)
            _sma_nb(close, slows[j], s)
            _periods_nb(close, f, s, starts, stops, capital, out[i * slows.shape[0] + j])


@njit(cache=True)
def shared_floor_nb(close, fasts, slows, starts, stops, capital, out):
    """The floor with each window's SMA computed once and shared by the grid."""
    n = close.shape[0]
    f = np.empty((fasts.shape[0], n))
    s = np.empty((slows.shape[0], n))
    for i in range(fasts.shape[0]):
        _sma_nb(close, fasts[i], f[i])
    for j in range(slows.shape[0]):
        _sma_nb(close, slows[j], s[j])
    for i in range(fasts.shape[0]):
        for j in range(slows.shape[0]):
            _periods_nb(close, f[i], s[j], starts, stops, capital, out[i * slows.shape[0] + j])


def crossover_text(fast: int, slow: int) -> str:
    return (f'strategy "sma {fast}/{slow}"\n'
            f"buy when sma(close, {fast}) > sma(close, {slow})\n"
            f"sell when sma(close, {fast}) < sma(close, {slow})\n")


SWEEP_TEXT = ('strategy "sma crossover"\nparam fast = 20 in 5..50\nparam slow = 100 in 52..250\n'
              "buy when sma(close, fast) > sma(close, slow)\nsell when sma(close, fast) < sma(close, slow)\n")


def vectorbt_run(vbt, close, spans):
    """vectorbt over the grid, each period alone: total return, Sharpe, max drawdown, trade count."""
    out = []
    for a, b in spans:
        c = close[a:b]
        fast = np.column_stack([_sma(close, n)[a:b] for n in FAST])
        slow = np.column_stack([_sma(close, n)[a:b] for n in SLOW])
        f = np.repeat(fast, len(SLOW), axis=1)
        s = np.tile(slow, len(FAST))
        prices = np.ascontiguousarray(np.broadcast_to(c[:, None], f.shape))
        pf = vbt.Portfolio.from_signals(prices, f > s, f < s, init_cash=CAPITAL, fees=0.0, freq="1D")
        out.append((pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown(), pf.trades.count()))
    return out


def _sma(close, n):
    out = np.empty(close.shape[0])
    _sma_nb(close, n, out)
    return out


def bulk_parts(programs, market, settings, spans, repeat: int, floor) -> None:
    """(b) in parts, each the median CPU time of this thread over `repeat` rounds, per strategy.

    Scoring runs evaluate_arrays' serial kernel (the one a single-threaded worker uses), so its
    time compares with the floor's single-threaded pass.
    """
    from autostrat.sim.evaluate import _SCORERS, locality_order, longest_period, run_registers, spans_array
    from autostrat.sim.simulate import backtest_args
    from autostrat.tape.kernel_table import kernel_table
    from autostrat.tape.prefix import input_prefixes
    from autostrat.tape.template import compile_batch
    from autostrat.tape.vm import run_tape_nb

    m, tape = market, compile_batch(programs)
    fill_close, commission, slippage, capital = backtest_args(settings.backtest)
    serial = _SCORERS[(bool(fill_close), True)][1]  # the crossover programs are long only, without exits
    bounds = spans_array(spans)
    order = locality_order(tape.rules)  # as evaluate_arrays scores them
    rules, warmups, exits = tape.rules[order], tape.warmups[order], tape.exits[order]

    def run():
        return run_tape_nb(tape.run_code, tape.consts, run_registers(tape.run_code, tape.rules, tape.n_regs),
                           kernel_table(tape.run_code), m.open, m.high, m.low, m.close, m.volume,
                           tape.rules[:, :, 1:].reshape(-1), *input_prefixes(m.close))

    regs = run()
    parts = {
        "compile": lambda: compile_batch(programs),
        "run the tape": run,
        "score": lambda: serial(regs, rules, warmups, exits, m.open, m.high, m.low, m.close, bounds,
                                fill_close, commission, slippage, capital, longest_period(bounds)),
        "floor": floor,
    }
    for fn in parts.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(repeat):
        for name, fn in parts.items():
            t = time.thread_time()
            fn()
            times[name].append((time.thread_time() - t) / len(programs))
    med = {name: statistics.median(v) for name, v in times.items()}
    print("(b) in parts, CPU of one thread, us per strategy: "
          + "  ".join(f"{name} {v * 1e6:.1f}" for name, v in med.items())
          + f"  (score / floor {med['score'] / med['floor']:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="rounds; each row's median is printed (default 7)")
    ap.add_argument("--no-cli", action="store_true", help="skip the cold-cache and CLI wall-time rows")
    args = ap.parse_args()

    import autostrat
    from autostrat.data.synthetic import synthetic_market
    from autostrat.sim.backtest import load_strategy, period_spans

    market = synthetic_market(bars=6750)
    settings = autostrat.Settings()
    settings.backtest.fill, settings.backtest.commission_bps, settings.backtest.slippage_bps = "close", 0.0, 0.0
    spans = period_spans(market, settings)
    starts = np.array([a for a, _ in spans.values()], dtype=np.int64)
    stops = np.array([b for _, b in spans.values()], dtype=np.int64)
    close = np.ascontiguousarray(market.close)
    fasts, slows = np.array(FAST, dtype=np.int64), np.array(SLOW, dtype=np.int64)
    n_grid = len(FAST) * len(SLOW)
    out = np.empty((n_grid, len(spans), 4))

    t = time.perf_counter()
    programs = [load_strategy(crossover_text(f, s)) for f in FAST for s in SLOW]
    parse = (time.perf_counter() - t) / n_grid
    single = load_strategy(crossover_text(20, 50))
    grid = {"fast": [float(v) for v in FAST], "slow": [float(v) for v in SLOW]}
    try:
        import vectorbt as vbt
    except ImportError:
        vbt = None

    rows = {
        "floor": (lambda: floor_nb(close, fasts, slows, starts, stops, CAPITAL, out), n_grid),
        "shared floor": (lambda: shared_floor_nb(close, fasts, slows, starts, stops, CAPITAL, out), n_grid),
        "(a) backtest": (lambda: autostrat.backtest(single, market, settings), 1),
        "(b) bulk": (lambda: autostrat.evaluate_many(programs, market, settings), n_grid),
        "(c) sweep": (lambda: autostrat.sweep(SWEEP_TEXT, grid, market, settings), n_grid),
    }
    if vbt is not None:
        rows["(d) vectorbt"] = (lambda: vectorbt_run(vbt, close, list(spans.values())), n_grid)
    calls = {"(a) backtest": 200}
    for fn, _ in rows.values():  # warm every compile and cache
        fn()
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeat):
        for name, (fn, per) in rows.items():
            k = calls.get(name, 1)
            t = time.perf_counter()
            for _ in range(k):
                fn()
            times[name].append((time.perf_counter() - t) / k / per)
    med = {name: statistics.median(v) for name, v in times.items()}
    floor = med["floor"]
    goals = {"(a) backtest": 3.0, "(b) bulk": 1.0, "(c) sweep": 0.5}
    print(f"bars: {len(market)}  periods: {', '.join(f'{k} {b - a}' for k, (a, b) in spans.items())}  "
          f"grid: {n_grid}  rounds: {args.repeat}  cores: {os.cpu_count()}")
    for name, v in med.items():
        note = f"goal <= {goals[name]}x" if name in goals else ""
        print(f"{name:14s} {v * 1e6:10.1f} us/strategy  {v / floor:6.2f}x floor  {note}")
    if vbt is not None:
        print(f"vectorbt / bulk: {med['(d) vectorbt'] / med['(b) bulk']:.1f}x   "
              f"vectorbt / sweep: {med['(d) vectorbt'] / med['(c) sweep']:.1f}x   (goal >= 20x)")
    else:
        print("(d) vectorbt: not installed (pip install -e '.[bench]')")
    print(f"parsing and checking, separately: {parse * 1e6:.0f} us per program")
    bulk_parts(programs, market, settings, spans, args.repeat,
               lambda: floor_nb(close, fasts, slows, starts, stops, CAPITAL, out))
    if args.no_cli:
        return

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        code = ("import time; t=time.perf_counter(); import autostrat; "
                "autostrat.backtest('grammar/examples/sma_cross.strat', 'synthetic'); "
                "print(time.perf_counter()-t)")
        cold = float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                                    text=True, check=True).stdout.strip())
    print(f"first call with an empty numba cache   {cold:8.1f} s  (import, compile, backtest; goal < 20 s)")
    cmd = [sys.executable, "-m", "autostrat", "backtest", "grammar/examples/sma_cross.strat", "--data", "synthetic"]
    # Warm as a user's second run is: numba's cache and Python's bytecode cache both written (an
    # environment with PYTHONDONTWRITEBYTECODE set compiles every module from source each run).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
    walls = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - t)
    print(f"autostrat backtest ... (warm cache)    {statistics.median(walls):8.2f} s  wall (goal < 2 s)")


if __name__ == "__main__":
    main()
