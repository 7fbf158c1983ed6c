"""Performance metrics of one simulated period.

`METRICS` is the one metric table: each metric's name, unit, display precision, which way is
better and what it means. `metrics_nb` (numba, arrays and scalars only, safe inside prange) writes
the metrics into its float64 `out` argument by name (`out[M.sharpe]`, in the table's order);
`metrics` wraps them into a flat dict. Inputs are what `simulate_nb` returns for the period
[start, stop) plus the full-history close and the initial capital. The CLI tables, the report and
the prompt read units and precision from the table (`format_metric`). Adding a metric: a row in
METRICS, a line in `metrics_nb`, its formula below.

Conventions (n = number of bars in the period, r = daily returns of the equity curve):

- r_t = equity_t / equity_{t-1} - 1 over the period's closes (pandas `pct_change`, as the seed);
  a return after the equity reached 0 (a liquidated short) is 0: nothing was left to lose.
- total_return = final_equity / initial_capital - 1.
- cagr = (final / initial) ** (1 / years) - 1 with years = n / 252 (trading days per year);
  -1 when final <= 0.
- sharpe = mean(r) / std(r, ddof=1) * sqrt(252), risk-free rate 0 (Sharpe 1994, annualised by
  sqrt of 252 trading days); 0.0 with fewer than 2 returns or std == 0, as the seed.
- sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(252): downside deviation with target 0
  over all returns (Sortino and Price 1994); 0.0 with no returns or no downside.
- max_drawdown = min(equity / cummax(equity) - 1): a fraction <= 0, 0 when equity never fell.
- calmar = cagr / |max_drawdown| over the whole period (Young 1991 uses 36 months; this is the
  period's); 0.0 when max_drawdown is 0.
- num_trades = closed round trips, the end-of-period close-out included (the seed counts
  len(trades) // 2 with its close-out sell).
- win_rate = share of trades with return > 0; 0 with no trades.
- profit_factor = sum of positive trade returns / |sum of negative trade returns|, on per-trade
  returns (not money); NaN when trades exist but none lost (undefined, not infinite), 0.0 with no
  trades.
- avg_trade_return = mean of the trades' net returns; 0 with no trades.
- exposure = share of the period's bars with a position at the close.
- turnover = traded notional (entries and exits) / mean(equity) / years: times the average equity
  traded per year. A trade's entry notional is the equity before it (E_k, all equity in; commission
  is not netted out); its exit notional is the same position at the exit fill,
  E_k * exit_price / entry_price. E_1 = initial_capital and E_{k+1} = E_k * (1 + return_k),
  because cash does not change while flat.
- final_equity = equity at the period's last close (after the close-out and its costs).
- buy_hold_return = close[stop-1] / close[start] - 1, no costs; excess_return = total_return -
  buy_hold_return.
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit


FRACTION, RATIO, COUNT, MONEY = "fraction", "ratio", "count", "money"  # a fraction is shown as a percentage
HIGHER, LOWER, NEITHER = "higher", "lower", ""


@dataclass(frozen=True)
class Metric:
    """One metric: how it is shown and read. `places`: decimals in a table (percent for a fraction)."""

    name: str
    unit: str
    places: int
    better: str
    meaning: str


METRICS: tuple[Metric, ...] = (
    Metric("total_return", FRACTION, 2, HIGHER, "final equity / initial capital - 1"),
    Metric("cagr", FRACTION, 2, HIGHER, "compound annual growth rate (252 trading days a year)"),
    Metric("sharpe", RATIO, 3, HIGHER, "annualised mean / standard deviation of daily returns, risk-free rate 0"),
    Metric("sortino", RATIO, 3, HIGHER, "annualised mean / downside deviation of daily returns"),
    Metric("max_drawdown", FRACTION, 2, HIGHER, "deepest fall of equity from its peak (<= 0: nearer 0 is better)"),
    Metric("calmar", RATIO, 3, HIGHER, "cagr / |max_drawdown|"),
    Metric("num_trades", COUNT, 0, NEITHER, "closed round trips, the end-of-period close-out included"),
    Metric("win_rate", FRACTION, 2, HIGHER, "share of trades with a positive return"),
    Metric("profit_factor", RATIO, 3, HIGHER, "sum of winning / |sum of losing| trade returns"),
    Metric("avg_trade_return", FRACTION, 2, HIGHER, "mean net return per trade"),
    Metric("exposure", FRACTION, 2, NEITHER, "share of bars with a position at the close"),
    Metric("turnover", RATIO, 3, NEITHER, "traded notional per year / mean equity"),
    Metric("final_equity", MONEY, 2, HIGHER, "equity at the period's last close"),
    Metric("buy_hold_return", FRACTION, 2, NEITHER, "close[last] / close[first] - 1, no costs"),
    Metric("excess_return", FRACTION, 2, HIGHER, "total_return - buy_hold_return"),
)
METRIC = {m.name: m for m in METRICS}
METRIC_NAMES = tuple(METRIC)
# Each metric's slot in a metrics array, by name: numba reads a global NamedTuple as constants.
M = namedtuple("MetricSlots", METRIC_NAMES)(*range(len(METRICS)))
TRADING_DAYS = 252.0


def format_metric(name: str, value, places: int | None = None) -> str:
    """`value` as the table says metric `name` is shown: a percentage for a fraction, a whole
    number for a count, thousands separators for money; `places` overrides the table's decimals.
    'n/a' for a missing value; a name outside the table is shown as a ratio."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    m = METRIC.get(name)
    unit, digits = (m.unit, m.places) if m else (RATIO, 3)
    digits = digits if places is None else places
    if unit == FRACTION:
        return f"{value:.{digits}%}"
    if unit == COUNT:
        return f"{int(value)}"
    if unit == MONEY:
        return f"{value:,.{digits}f}"
    return f"{value:.{digits}f}"


# The metrics are accumulated as the period is walked: `bar_nb` once per bar in order, `trade_nb`
# once per closed trade in order, then `finish_nb`. The simulator calls the same three functions
# while it trades (autostrat.sim.simulate), so scoring a strategy needs no equity or trade arrays
# and gives exactly the bits `metrics_nb` gives from those arrays: every sum runs in the same order.

BAR_START = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # prev, ret_total, down, peak, trough, max_dd, held, equity_total


@njit(cache=True, inline="always")
def bar_nb(acc, t, e, held_now, rets):
    """Take bar t (0-based in the period) with equity e into the per-bar sums; rets[t-1] = its return.

    The return is divided out on every bar, flat ones included: e / e - 1 is exactly 0 for a
    finite e > 0, the bits a skipped division would give, and without that branch scoring 1,000
    crossovers ran about a tenth faster, side by side.

    The drawdown divides once per peak, not once per bar: between two peaks the deepest
    e / peak - 1 is the lowest equity's (`trough`), because a correctly rounded division and
    subtraction never turn a smaller operand into a larger result. `drawdown_nb` takes a finished
    stretch into max_dd, so the result is the bits of the per-bar minimum.
    """
    prev, ret_total, down, peak, trough, max_dd, held, equity_total = acc
    if t > 0:
        r = e / prev - 1.0 if prev > 0.0 else 0.0
        rets[t - 1] = r
        ret_total += r
        # Selects, not branches: the sign of a day's return is a coin flip the CPU cannot predict.
        # Adding 0.0 to the non-negative sums leaves them as they were, bit for bit.
        dn = r if r < 0.0 else 0.0
        down += dn * dn
        if e > peak:
            max_dd = drawdown_nb(max_dd, peak, trough)
            peak = e
            trough = e
        else:
            trough = min(trough, e)
    else:
        peak = e
        trough = e
    prev = e
    held += 1.0 if held_now else 0.0
    equity_total += e
    return prev, ret_total, down, peak, trough, max_dd, held, equity_total


@njit(cache=True, inline="always")
def drawdown_nb(max_dd, peak, trough):
    """max_dd after a stretch between peaks whose lowest equity was `trough` (bar_nb)."""
    if peak > 0.0 and trough < peak:
        return min(max_dd, trough / peak - 1.0)
    return max_dd


@njit(cache=True, inline="always")
def trade_start_nb(initial_capital):
    """The per-trade sums before the first trade, in a float64 array: count, wins, gain, loss,
    ret_sum, notional, and the equity before the next trade.

    An array updated in place, not values carried through the simulator's bar loop: a trade closes
    on few bars, and the loop keeps its registers for the per-bar sums (the general simulator
    scored 4-11% faster side by side, the fill-`close` one the same)."""
    acc = np.zeros(7)
    acc[6] = initial_capital
    return acc


@njit(cache=True, inline="always")
def trade_nb(acc, r, entry_price, exit_price):
    """Take the next closed trade (net return r, entry and exit fills) into the per-trade sums `acc`.

    A trade's notional is entry plus exit at the equity before it (module docstring: turnover),
    the equity compounding from the initial capital trade by trade.
    """
    acc[0] += 1.0
    acc[4] += r
    if r > 0.0:
        acc[1] += 1.0
        acc[2] += r
    elif r < 0.0:
        acc[3] -= r
    acc[5] += acc[6] * (1.0 + exit_price / entry_price)
    acc[6] *= 1.0 + r


@njit(cache=True)
def finish_nb(bars, trades, rets, n, close, start, stop, initial_capital, out, own_sharpe=True):
    """Write the metrics of a period of n bars into `out` from the finished sums (module docstring).

    With `own_sharpe` False the Sharpe ratio's second pass is left to the caller: out[M.sharpe]
    holds the mean daily return until `sharpe_rows_nb` replaces it by the ratio.
    """
    final, ret_total, down, peak, trough, max_dd, held, equity_total = bars
    max_dd = drawdown_nb(max_dd, peak, trough)
    k, wins, gain, loss, ret_sum, notional = trades[0], trades[1], trades[2], trades[3], trades[4], trades[5]
    years = n / TRADING_DAYS
    m = n - 1
    mean = ret_total / m if m > 0 else 0.0
    sharpe = sharpe_nb(deviations_nb(rets, m, mean), mean, m) if own_sharpe else mean
    sortino = 0.0
    if m >= 1:
        down = math.sqrt(down / m)
        if down != 0.0:
            sortino = mean / down * math.sqrt(TRADING_DAYS)

    cagr = (final / initial_capital) ** (1.0 / years) - 1.0 if final > 0.0 else -1.0
    calmar = cagr / abs(max_dd) if max_dd != 0.0 else 0.0
    if k == 0:
        profit_factor = 0.0
    elif loss == 0.0:
        profit_factor = math.nan
    else:
        profit_factor = gain / loss

    mean_equity = equity_total / n
    buy_hold = close[stop - 1] / close[start] - 1.0
    total = final / initial_capital - 1.0

    out[M.total_return] = total
    out[M.cagr] = cagr
    out[M.sharpe] = sharpe
    out[M.sortino] = sortino
    out[M.max_drawdown] = max_dd
    out[M.calmar] = calmar
    out[M.num_trades] = k
    out[M.win_rate] = wins / k if k > 0 else 0.0
    out[M.profit_factor] = profit_factor
    out[M.avg_trade_return] = ret_sum / k if k > 0 else 0.0
    out[M.exposure] = held / n
    out[M.turnover] = notional / mean_equity / years if mean_equity > 0.0 else 0.0
    out[M.final_equity] = final
    out[M.buy_hold_return] = buy_hold
    out[M.excess_return] = total - buy_hold


# The Sharpe ratio takes a second pass over the period's returns, for the squared deviations from
# the mean: two-pass is exact enough to agree with pandas to ~1e-12 relative. Its sum is one chain
# of dependent adds (a bar's add waits for the last one), so it runs at the adder's latency; a
# scorer that holds several programs' returns runs their chains side by side (`sharpe_rows_nb`),
# each summed in the same order, so the bits are those of one program alone.


@njit(cache=True, inline="always")
def deviations_nb(rets, m, mean):
    """The sum of (r - mean) ** 2 over rets[:m], in order (0.0 when m < 2: no Sharpe ratio)."""
    ss = 0.0
    if m >= 2:
        for i in range(m):
            ss += (rets[i] - mean) ** 2
    return ss


@njit(cache=True, inline="always")
def sharpe_nb(ss, mean, m):
    """The annualised Sharpe ratio of m daily returns from their mean and squared deviations."""
    if m >= 2:
        std = math.sqrt(ss / (m - 1))
        if std != 0.0:
            return mean / std * math.sqrt(TRADING_DAYS)
    return 0.0


@njit(cache=True)
def sharpe_rows_nb(rets, m, outs):
    """Finish the Sharpe ratio of each row j of `rets` (m daily returns of one period) in outs[j],
    whose M.sharpe slot holds the mean (finish_nb with own_sharpe False). Four rows at a time
    share one loop: four independent chains, each with the bits `deviations_nb` gives it alone."""
    k = rets.shape[0]
    ss = np.zeros(k)
    j = 0
    if m >= 2:
        while j + 4 <= k:
            r0, r1, r2, r3 = rets[j], rets[j + 1], rets[j + 2], rets[j + 3]
            u0, u1, u2, u3 = outs[j, M.sharpe], outs[j + 1, M.sharpe], outs[j + 2, M.sharpe], outs[j + 3, M.sharpe]
            s0 = s1 = s2 = s3 = 0.0
            for i in range(m):
                s0 += (r0[i] - u0) ** 2
                s1 += (r1[i] - u1) ** 2
                s2 += (r2[i] - u2) ** 2
                s3 += (r3[i] - u3) ** 2
            ss[j], ss[j + 1], ss[j + 2], ss[j + 3] = s0, s1, s2, s3
            j += 4
    for q in range(j, k):
        ss[q] = deviations_nb(rets[q], m, outs[q, M.sharpe])
    for q in range(k):
        outs[q, M.sharpe] = sharpe_nb(ss[q], outs[q, M.sharpe], m)

@njit(cache=True)
def metrics_nb(equity, position, trades, close, start, stop, initial_capital, out):
    """Write the metrics of one period into `out`, each in its slot `M.<name>` (module docstring).

    equity, position: simulate_nb's arrays for bars [start, stop); trades: its float64[n, 8] rows;
    close: the full-history close (for buy and hold).
    """
    n = equity.shape[0]
    rets = np.empty(max(n - 1, 0), dtype=np.float64)
    bars = BAR_START
    for t in range(n):
        bars = bar_nb(bars, t, equity[t], position[t] != 0, rets)
    acc = trade_start_nb(initial_capital)
    for i in range(trades.shape[0]):
        trade_nb(acc, trades[i, 5], trades[i, 2], trades[i, 3])
    finish_nb(bars, acc, rets, n, close, start, stop, initial_capital, out)


def metrics(equity, position, trades, close, start: int, stop: int,
            initial_capital: float) -> dict[str, float]:
    """The metrics of one period as a flat dict in METRIC_NAMES order; num_trades is an int.

    `trades` is the kernel's float64[n, 8] array (SimResult.trades_array); `close` is the full
    history and [start, stop) the period the equity covers.
    """
    equity = as_kernel_array(equity)
    if equity.shape != (stop - start,) or len(equity) == 0:
        raise ValueError(f"equity has {len(equity)} values but the period [{start}, {stop}) "
                         f"has {stop - start} bars")
    rows = as_kernel_array(np.asarray(trades, dtype=np.float64).reshape(-1, 8))
    values = np.empty(len(METRIC_NAMES))
    metrics_nb(equity, as_kernel_array(position, np.int8), rows, as_price_array(close), int(start),
               int(stop), float(initial_capital), values)
    out = {name: float(v) for name, v in zip(METRIC_NAMES, values)}
    out["num_trades"] = int(values[M.num_trades])
    return out


def as_kernel_array(values: Any, dtype=np.float64) -> np.ndarray:
    """A C-contiguous, writable array of `dtype`: the array type the kernels are compiled for
    (pandas hands out read-only views, which numba would compile a second time)."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=dtype))
    return arr if arr.flags.writeable else arr.copy()


def as_price_array(values: Any) -> np.ndarray:
    """A C-contiguous, read-only float64 array: prices as the evaluation path passes them.

    A Market's arrays are read-only, and numba types read-only and writable arrays as different
    signatures; handing the simulator and the metrics read-only prices here too means one compiled
    specialisation (about 5 s on a fresh cache) serves both.
    """
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64))
    if arr.flags.writeable:
        arr = arr.view()
        arr.flags.writeable = False
    return arr


def daily_returns(equity: np.ndarray) -> np.ndarray:
    """r_t = equity_t / equity_{t-1} - 1 (the module docstring's r); 0 once the equity reached 0.

    The returns `metrics_nb` computes its Sharpe and Sortino ratios from, for the Python side
    (Result.daily_returns, the returns files of a run).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(equity[:-1] > 0, equity[1:] / equity[:-1] - 1.0, 0.0)
