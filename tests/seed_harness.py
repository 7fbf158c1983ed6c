"""An independent pandas re-implementation of the seed harness's backtester and baseline strategy.

autostrat grew from a published harness (a pandas row-loop backtester plus an SMA 20/50 crossover).
This module re-creates its behaviour so tests can pin autostrat's `fill = close`, zero-cost mode to
it: the same trades, equity and metric values.

Behaviour reproduced (and nothing more):
- features are computed on the frame handed in (the seed computes them on train.csv and val.csv
  separately): SMA_20 and SMA_50 of Close, pandas rolling means;
- the strategy returns 0 while either average is NaN, 1 when SMA_20 > SMA_50, -1 when it is lower,
  0 when they are equal;
- one row at a time: on 1 while flat, buy with all cash at the close (fractional shares); on -1
  while holding, sell everything at the close; the portfolio is then valued at the close;
- after the loop a held position is sold at the last close;
- total_return = (cash - initial) / initial; sharpe = mean / std (pandas, ddof=1) of the portfolio
  values' pct_change (NaN dropped) * sqrt(252), 0.0 when there are no returns or std is 0;
  max_drawdown = min(values / cummax(values) - 1); num_trades = number of buy/sell records // 2;
  final_cash = cash after the close-out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED_CAPITAL = 10_000.0


def seed_features(df: pd.DataFrame) -> pd.DataFrame:
    """The seed baseline's features: 20- and 50-bar simple moving averages of Close."""
    out = df.copy()
    out["SMA_20"] = out["Close"].rolling(window=20).mean()
    out["SMA_50"] = out["Close"].rolling(window=50).mean()
    return out


def seed_signal(row: pd.Series) -> int:
    """The seed baseline's per-row decision: 1 buy, -1 sell, 0 hold."""
    fast, slow = row.get("SMA_20"), row.get("SMA_50")
    if pd.isna(fast) or pd.isna(slow):
        return 0
    if fast > slow:
        return 1
    if fast < slow:
        return -1
    return 0


class SeedBacktester:
    """The seed's row-loop backtester, taking a frame instead of a CSV path."""

    def __init__(self, df: pd.DataFrame, initial_capital: float = SEED_CAPITAL):
        self.df = df
        self.initial_capital = initial_capital

    def run(self, signal_fn=seed_signal, feature_fn=seed_features) -> dict:
        """Loop over the rows once; return the seed's five metrics."""
        frame = feature_fn(self.df.copy())
        cash = self.initial_capital
        units = 0.0
        values: list[float] = []
        fills: list[tuple[str, float]] = []
        for _, row in frame.iterrows():
            price = row["Close"]
            decision = signal_fn(row)
            if decision == 1 and units == 0:
                units, cash = cash / price, 0.0
                fills.append(("BUY", price))
            elif decision == -1 and units > 0:
                cash, units = units * price, 0.0
                fills.append(("SELL", price))
            values.append(cash if units == 0 else units * price)
        if units > 0:
            last = frame.iloc[-1]["Close"]
            cash, units = units * last, 0.0
            fills.append(("SELL", last))

        curve = pd.Series(values)
        daily = curve.pct_change().dropna()
        sharpe = 0.0
        if not daily.empty and daily.std() != 0:
            sharpe = daily.mean() / daily.std() * np.sqrt(252)
        drawdown = curve / curve.cummax() - 1.0
        return {
            "total_return": (cash - self.initial_capital) / self.initial_capital,
            "sharpe_ratio": float(sharpe),
            "max_drawdown": float(drawdown.min()),
            "num_trades": len(fills) // 2,
            "final_cash": float(cash),
            "portfolio_values": curve.to_numpy(),
            "fills": fills,
        }


def seed_backtest(df: pd.DataFrame, initial_capital: float = SEED_CAPITAL) -> dict:
    """Run the seed baseline (SMA 20/50 crossover) on a frame with Open/High/Low/Close/Volume.

    Returns the seed's metrics (total_return, sharpe_ratio, max_drawdown, num_trades, final_cash)
    plus the portfolio value at every row and the list of fills, for closer comparisons.
    """
    missing = [c for c in ("Open", "High", "Low", "Close", "Volume") if c not in df.columns]
    if missing:
        raise ValueError(f"seed_backtest needs columns Open/High/Low/Close/Volume; "
                         f"missing {missing}")
    return SeedBacktester(df, initial_capital).run(seed_signal, seed_features)
