"""`simulate`: the trade simulator for a market and settings, with a readable trade table.

The kernel and its rules are in autostrat.sim.simulate (`simulate_nb`); this is the thin Python
wrapper that takes a DataFrame, a mapping or a Market and the backtest settings, checks them, and
returns a `SimResult`.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from autostrat.config import BacktestSettings, Settings
from autostrat.errors import ConfigError
from autostrat.sim.metrics import as_kernel_array, as_price_array
from autostrat.sim.simulate import EXIT_REASONS, TRADE_COLUMNS, backtest_args, simulate_nb

FILLS = ("next_open", "close")


INDICATORS = ("history", "period")
MAX_COST_BPS = 1000.0  # 10% per side: more is a unit mix-up (percent for bps), and equity goes negative
MAX_CAPITAL = 1e15  # far beyond any account; keeps share counts and equity well inside float precision


def check_backtest(bt: BacktestSettings) -> BacktestSettings:
    """`bt` when its fill, costs and capital are valid; a ConfigError naming the setting otherwise.

    The one check of the backtest settings: `simulate` and `backtest` both call it.
    """
    if bt.fill not in FILLS:
        raise ConfigError(f"backtest.fill must be one of {', '.join(FILLS)}, got {bt.fill!r}")
    if bt.indicators not in INDICATORS:
        raise ConfigError(f"backtest.indicators must be one of {', '.join(INDICATORS)}, got {bt.indicators!r}")
    for name in ("commission_bps", "slippage_bps"):
        value = getattr(bt, name)
        if not 0 <= value <= MAX_COST_BPS:  # NaN fails too
            raise ConfigError(f"backtest.{name} must be from 0 to {MAX_COST_BPS:g} basis points per side "
                              f"(1 bp = 0.01%), got {value:g}; a cost above 10% per trade is a typo, not a market")
    if not 0 < bt.initial_capital <= MAX_CAPITAL:
        raise ConfigError(f"backtest.initial_capital must be above 0 and at most {MAX_CAPITAL:g}, "
                          f"got {bt.initial_capital:g}")
    return bt


@dataclass(frozen=True)
class SimResult:
    """One period's simulation: arrays cover bars [start, stop) of the history."""

    equity: np.ndarray  # float64, marked at every close of the period
    position: np.ndarray  # int8, -1/0/1 held at each close
    trades_array: np.ndarray  # the kernel's float64[n, 8] rows, what metrics.metrics_nb reads
    start: int
    stop: int
    initial_capital: float
    dates: Any = None  # the market's dates (datetime64 array or DatetimeIndex), for the trade table

    @property
    def trades(self) -> pd.DataFrame:
        """One row per round trip, readable columns (see TRADE_COLUMNS); built when asked for."""
        return trade_table(self.trades_array, _dates_index(self.dates))



def simulate(market: Any, long_entry, long_exit, short_entry=None, short_exit=None, *,
             settings: Settings | BacktestSettings | None = None, start: int = 0,
             stop: int | None = None, warmup: int = 0, stop_loss: float | None = None,
             take_profit: float | None = None, trailing_stop: float | None = None,
             max_hold: int | None = None) -> SimResult:
    """Trade bars [start, stop) of `market` on the given signal arrays (full history, 0/1).

    `market` is a DataFrame or mapping with open/high/low/close columns (any case), or an object
    with those attributes. Fill and costs come from `settings` (defaults when None); the exits
    (fractions, e.g. 0.08 for 8%; max_hold in bars) come from the strategy. Missing short rules
    mean long only.
    """
    bt = check_backtest(settings.backtest if isinstance(settings, Settings) else settings or BacktestSettings())

    open_, high, low, close = _ohlc(market)
    n = len(close)
    stop = n if stop is None else stop
    if not 0 <= start < stop <= n:
        raise ValueError(f"period [{start}, {stop}) is not inside the {n} bars of the market; "
                         "pass 0 <= start < stop <= number of bars")
    zeros = np.zeros(n)
    signals = [_signal(x, n, name) for x, name in
               ((long_entry, "long_entry"), (long_exit, "long_exit"))]
    signals += [zeros if x is None else _signal(x, n, name) for x, name in
                ((short_entry, "short_entry"), (short_exit, "short_exit"))]
    exits = [_fraction(v, name) for v, name in
             ((stop_loss, "stop_loss"), (take_profit, "take_profit"),
              (trailing_stop, "trailing_stop"))]
    if max_hold is not None and max_hold != -1 and not (max_hold >= 1 and int(max_hold) == max_hold):
        raise ValueError(f"max_hold must be a whole number of bars >= 1 (or None for no limit), "
                         f"got {max_hold!r}")

    fill_close, commission, slippage, capital = backtest_args(bt)
    equity, position, rows = simulate_nb(
        open_, high, low, close, *signals, int(start), int(stop), int(warmup),
        fill_close, commission, slippage, *exits, -1 if max_hold is None else int(max_hold), capital)
    return SimResult(equity, position, rows, int(start), int(stop), float(bt.initial_capital), _dates(market))



def trade_table(rows: np.ndarray, dates: pd.Index | None = None) -> pd.DataFrame:
    """The kernel's trade rows as a DataFrame: side long/short, exit_reason by name, and
    entry_date/exit_date when the bars' dates are given."""
    import pandas as pd
    table = pd.DataFrame(rows.reshape(-1, 8), columns=list(TRADE_COLUMNS))
    for col in ("entry_bar", "exit_bar", "bars_held"):
        table[col] = table[col].astype(np.int64)
    table["side"] = np.where(table["side"] > 0, "long", "short")
    table["exit_reason"] = [EXIT_REASONS[int(code)] for code in rows.reshape(-1, 8)[:, 6]]
    if dates is not None:
        table.insert(1, "entry_date", dates[table["entry_bar"].to_numpy()])
        table.insert(3, "exit_date", dates[table["exit_bar"].to_numpy()])
    return table



def _ohlc(market: Any) -> tuple[np.ndarray, ...]:
    pd = sys.modules.get("pandas")  # a DataFrame means pandas is loaded; a Market must not load it
    if (pd is not None and isinstance(market, pd.DataFrame)) or isinstance(market, dict):
        lower = {str(k).lower(): k for k in market.keys()}
        missing = [c for c in ("open", "high", "low", "close") if c not in lower]
        if missing:
            raise ValueError(f"market data has no {', '.join(missing)} column; "
                             f"columns found: {', '.join(map(str, market.keys()))}")
        cols = [market[lower[c]] for c in ("open", "high", "low", "close")]
    else:
        try:
            cols = [getattr(market, c) for c in ("open", "high", "low", "close")]
        except AttributeError:
            raise TypeError("market must be a DataFrame, a dict of arrays or an object with "
                            "open/high/low/close arrays") from None
    arrays = tuple(as_price_array(c) for c in cols)
    if len({len(a) for a in arrays}) != 1:
        raise ValueError("open, high, low and close must have the same length")
    return arrays



def _signal(values: Any, n: int, name: str) -> np.ndarray:
    arr = as_kernel_array(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} has shape {arr.shape}; it must cover the whole history "
                         f"({n} bars), one value per bar")
    return arr



def _fraction(value: float | None, name: str) -> float:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    if not value > 0:
        raise ValueError(f"{name} must be a positive fraction (0.08 for 8%), got {value!r}")
    return float(value)



def _dates(market: Any):
    # A DataFrame's DatetimeIndex, or a Market's datetime64 `dates` array (kept as it is, so that
    # simulating a Market needs no pandas).
    pd = sys.modules.get("pandas")
    for attr in ("index", "dates"):
        found = getattr(market, attr, None)
        if pd is not None and isinstance(found, pd.DatetimeIndex):
            return found
        if isinstance(found, np.ndarray) and np.issubdtype(found.dtype, np.datetime64):
            return found
    return None



def _dates_index(dates) -> pd.DatetimeIndex | None:
    if dates is None:
        return None
    import pandas as pd

    return dates if isinstance(dates, pd.DatetimeIndex) else pd.DatetimeIndex(dates)
