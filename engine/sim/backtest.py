"""The notebook API: `backtest` one strategy, `load_strategy` from text, a file or a Program.

    >>> import autostrat
    >>> r = autostrat.backtest("grammar/examples/sma_cross.strat", "synthetic")
    >>> r.metrics["validation"]["sharpe"], r.equity, r.trades, r.signals

Indicators are computed on the whole history (they are causal); each period is then traded
separately, from flat with the initial capital. The sealed test period is left out unless asked
for with `periods=("train", "validation", "test")`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.splits import periods as split_periods
from autostrat.errors import AutostratError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, check
from autostrat.lang.parse import parse
from autostrat.resources import read_text
from autostrat.sim.evaluate import evaluate_tape, metrics_dicts
from autostrat.sim.metrics import daily_returns, metrics
from autostrat.sim.simulate import period_simulation
from autostrat.sim.simulation import SimResult, check_backtest, simulate
from autostrat.tape.compile import RULE_ORDER, Tape, compile
from autostrat.tape.vm import run_tape

SEARCH_PERIODS = ("train", "validation")
ALL_PERIODS = ("train", "validation", "test")


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte
        return False


@lru_cache(maxsize=512)
def _load_text(text: str, path: str, portfolio: bool = False) -> TypedProgram:
    return check(parse(text, path), portfolio=portfolio)


def load_strategy(strategy, portfolio: bool = False) -> TypedProgram:
    """A TypedProgram from source text, a file path, a Program or a TypedProgram.

    A Path, a one-line string ending in .strat, or a one-line string naming an existing file is
    read as a file, whatever its extension; any other string is strategy text. A portfolio
    strategy is refused unless `portfolio` (autostrat.lang.check.check).
    """
    if isinstance(strategy, TypedProgram):
        if strategy.portfolio is not None and not portfolio:
            return check(strategy.program)  # raises the checker's error
        return strategy
    if isinstance(strategy, N.Program):
        return check(strategy, portfolio=portfolio)
    if isinstance(strategy, Path) or (isinstance(strategy, str) and "\n" not in strategy
                                      and (strategy.strip().endswith(".strat") or _is_file(strategy))):
        return _load_text(read_text(strategy, "strategy"), str(strategy), portfolio)
    if isinstance(strategy, str):
        return _load_text(strategy, "<strategy>", portfolio)
    raise TypeError(f"expected strategy text, a .strat path, a Program or a TypedProgram, got {type(strategy).__name__}")


def resolve_settings(settings: Settings | None, overrides: dict) -> Settings:
    """A copy of `settings` (defaults when None) with backtest overrides such as fill='close'."""
    s = dataclasses.replace(settings) if settings else Settings()
    s.backtest = dataclasses.replace(s.backtest)
    for key, value in overrides.items():
        if value is not None:
            s.set(f"backtest.{key}", value, source="backtest()")
    check_backtest(s.backtest)
    return s


def period_spans(market: Market, settings: Settings, names=SEARCH_PERIODS) -> dict[str, tuple[int, int]]:
    """The named periods' bar ranges that exist in this market, in the order asked."""
    spans = split_periods(market, settings.split)
    unknown = [n for n in names if n not in ALL_PERIODS]
    if unknown:
        raise AutostratError(f"unknown period {unknown[0]!r}; periods are {', '.join(ALL_PERIODS)}")
    return {n: spans[n] for n in names if n in spans}


@dataclass(eq=False)
class Result:
    """A backtest: metrics per period, and (built on first use) equity, trades and signals."""

    typed: TypedProgram
    tape: Tape
    market: Market
    settings: Settings
    spans: dict[str, tuple[int, int]]
    metrics: dict[str, dict[str, float]]
    _sims: dict[str, SimResult] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.typed.name

    @property
    def warnings(self) -> list[str]:
        """One line per period the strategy cannot trade in: its warm-up outlasts the data up to there."""
        w = self.typed.warmup
        return [f"{period}: the strategy's warm-up is {w} bars, but the data has {b} bars up to the end of "
                f"{period}: no rule can fire there, so it makes no trade; use shorter windows or more data"
                for period, (a, b) in self.spans.items() if w >= b]

    @cached_property
    def registers(self) -> np.ndarray:
        return run_tape(self.tape, self.market)

    @cached_property
    def signals(self) -> pd.DataFrame:
        """The rule values on every bar of the history (bool), before the warm-up rule."""
        import pandas as pd
        cols = {}
        for kind, reg in zip(RULE_ORDER, self.tape.outputs[0]):
            if reg >= 0:
                cols[kind] = self.registers[reg] > 0
        return pd.DataFrame(cols, index=pd.DatetimeIndex(self.market.dates, name="date"))

    def simulation(self, period: str) -> SimResult:
        """The period's full simulation (equity, positions, trades)."""
        if period not in self._sims:
            a, b = self.spans[period]
            bt = self.settings.backtest
            registers = None if bt.indicators == "period" else self.registers
            equity, position, rows = period_simulation(self.tape, self.market, a, b, bt, registers)
            self._sims[period] = SimResult(equity, position, rows, int(a), int(b), float(bt.initial_capital),
                                           self.market.dates)
        return self._sims[period]

    @cached_property
    def equity(self) -> pd.Series:
        """Equity marked at every close, each period starting again from the initial capital."""
        import pandas as pd
        parts = []
        for period, (a, b) in self.spans.items():
            parts.append(pd.Series(self.simulation(period).equity,
                                   index=pd.DatetimeIndex(self.market.dates[a:b], name="date")))
        return pd.concat(parts).rename("equity") if parts else pd.Series(dtype=float, name="equity")

    @cached_property
    def trades(self) -> pd.DataFrame:
        """Every round trip with its period, entry/exit dates and prices, side, return and reason."""
        import pandas as pd
        frames = []
        for period in self.spans:
            t = self.simulation(period).trades.copy()
            t.insert(0, "period", period)
            frames.append(t)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def daily_returns(self, period: str) -> np.ndarray:
        """The strategy's daily returns over one period."""
        return daily_returns(self.simulation(period).equity)

    def table(self) -> pd.DataFrame:
        """Metrics as a DataFrame: one row per metric, one column per period."""
        import pandas as pd
        return pd.DataFrame(self.metrics)


def backtest(strategy, data="synthetic", settings: Settings | None = None, *, periods=SEARCH_PERIODS,
             fill: str | None = None, commission_bps: float | None = None,
             slippage_bps: float | None = None, initial_capital: float | None = None):
    """Backtest one strategy on `data` (a Market or a data spec such as "SPY" or "synthetic").

    `strategy` is source text, a .strat path, a Program or a TypedProgram. Keyword arguments
    override the backtest settings. Returns a Result with `.metrics[period][metric]`; on a
    Universe (or a universe spec such as "SPY,QQQ"), a UniverseResult with one Result per market.
    """
    from autostrat.data.load import load_data
    from autostrat.data.universe import Universe

    s = resolve_settings(settings, dict(fill=fill, commission_bps=commission_bps,
                                        slippage_bps=slippage_bps, initial_capital=initial_capital))
    typed = load_strategy(strategy)
    market = data if isinstance(data, (Market, Universe)) else load_data(data, s.data)
    if isinstance(market, Universe):
        return UniverseResult({m.name: backtest(typed, m, s, periods=periods) for m in market})
    spans = period_spans(market, s, periods)
    tape = _compiled(typed)
    values = evaluate_tape(tape, market, spans, s.backtest)[0]
    return Result(typed, tape, market, s, spans, metrics_dicts(values, spans))


@dataclass(eq=False)
class UniverseResult:
    """One strategy's backtests on every market of a universe, and their aggregates."""

    results: dict[str, Result]

    @property
    def metrics(self) -> dict[str, dict[str, dict[str, float]]]:
        """{asset: {period: {metric: value}}}."""
        return {name: r.metrics for name, r in self.results.items()}

    def aggregate(self, how: str = "mean") -> dict[str, dict[str, float]]:
        """{period: {metric: mean | median | min over the assets}} (NaN values skipped)."""
        from autostrat.data.universe import across_assets

        return across_assets(self.metrics, how)

    @property
    def summary(self) -> dict[str, object]:
        """Every aggregate, the share of assets beating buy and hold per period, and the asset count."""
        from autostrat.data.universe import summary

        return summary(self.metrics)

    def table(self, period: str = "validation") -> pd.DataFrame:
        """One period's metrics as a DataFrame: one row per asset."""
        import pandas as pd
        return pd.DataFrame({name: m[period] for name, m in self.metrics.items() if period in m}).T


_TAPES: dict[int, tuple[TypedProgram, Tape]] = {}


def _compiled(typed: TypedProgram) -> Tape:
    # Keyed by identity: load_strategy caches TypedPrograms by source, so the same text compiles
    # once. The entry keeps its program alive, so an id is never reused while cached.
    hit = _TAPES.get(id(typed))
    if hit is None:
        if len(_TAPES) >= 512:
            _TAPES.pop(next(iter(_TAPES)))
        hit = _TAPES[id(typed)] = (typed, compile(typed))
    return hit[1]


def buy_and_hold(market: Market, spans: dict[str, tuple[int, int]], settings: Settings | None = None):
    """Buy and hold on the same periods: in at the first close, out at the last, no costs."""
    s = resolve_settings(settings, dict(fill="close", commission_bps=0.0, slippage_bps=0.0))
    ones = np.ones(len(market))
    out = {}
    for period, (a, b) in spans.items():
        sim = simulate(market, ones, np.zeros(len(market)), settings=s, start=a, stop=b)
        out[period] = metrics(sim.equity, sim.position, sim.trades_array, market.close, a, b,
                              s.backtest.initial_capital)
    return out
