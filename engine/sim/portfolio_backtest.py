"""Backtest a portfolio strategy on a universe: `autostrat.backtest_portfolio`.

    >>> r = autostrat.backtest_portfolio("grammar/examples/portfolio/momentum_12_1.strat",
    ...                                  "synthetic-universe:seed=1,assets=100")
    >>> r.metrics["validation"]["ic_tstat"], r.equity["validation"]

The universe is put on one calendar (autostrat.data.panel); the program's scores are computed
over assets x bars on the whole history (autostrat.tape.portfolio_eval; they are causal); each
period is then traded separately from cash with the initial capital (autostrat.sim.portfolio).
Periods are cut on the calendar's dates like a single market's. Fill is always the next open:
a rebalance decided at a close cannot trade at that close.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.panel import Panel, panel_from_universe
from autostrat.data.panel_spec import load_panel
from autostrat.data.universe import Universe
from autostrat.errors import AutostratError
from autostrat.lang.check import TypedProgram
from autostrat.sim.backtest import SEARCH_PERIODS, load_strategy, period_spans, resolve_settings
from autostrat.sim.portfolio import portfolio_nb
from autostrat.sim.portfolio_metrics import portfolio_metrics
from autostrat.sim.simulate import fraction_of_bps
from autostrat.tape.portfolio_eval import evaluate_scores


@dataclass(eq=False)
class PortfolioResult:
    """A portfolio backtest: metrics, equity and holdings per period, the scores and the benchmark."""

    typed: TypedProgram
    panel: Panel
    benchmark: Market  # the universe's equal-weight index on the calendar
    spans: dict[str, tuple[int, int]]
    metrics: dict[str, dict[str, float]]
    equity: dict[str, np.ndarray]
    holdings: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return self.typed.name

    def summary(self):
        """Metrics as a DataFrame: one row per metric, one column per period."""
        import pandas as pd
        return pd.DataFrame(self.metrics)


def as_panel(data, settings: Settings) -> Panel:
    """A Panel from a Panel, a Universe, or a data spec (a universe spec or synthetic-universe:...)."""
    if isinstance(data, Panel):
        return data
    if isinstance(data, Universe):
        return panel_from_universe(data)
    if isinstance(data, Market):
        return panel_from_universe(Universe((data,), data.name))
    return load_panel(str(data), settings.data)


def simulate_period(typed: TypedProgram, panel: Panel, scores: dict[str, np.ndarray], start: int, stop: int,
                    settings: Settings) -> tuple[np.ndarray, np.ndarray, float]:
    """(equity, holdings, traded notional) of the portfolio over bars [start, stop)."""
    spec = typed.portfolio
    ones, empty = _constant_arrays(panel)
    long, short = spec.long, spec.short
    bt = settings.backtest
    return portfolio_nb(panel.open, panel.close, scores[long.by] if long else empty,
                        scores[short.by] if short else empty,
                        scores[spec.weight_by] if spec.weight_by else ones,
                        long is not None, bool(long and long.edge == "top"), long.fraction if long else 0.0,
                        short is not None, bool(short and short.edge == "top"), short.fraction if short else 0.0,
                        spec.weight_by is not None, spec.cap or 0.0, spec.every, int(start), int(stop),
                        fraction_of_bps(bt.commission_bps), fraction_of_bps(bt.slippage_bps),
                        float(bt.initial_capital))


_CONSTANTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _constant_arrays(panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """Ones (equal weights) and NaNs (no such side) shaped like the panel, made once per panel
    (and dropped with it): the simulator reads them and never writes them."""
    if panel not in _CONSTANTS:
        _CONSTANTS[panel] = (np.ones_like(panel.close), np.full_like(panel.close, np.nan))
    return _CONSTANTS[panel]


def trade_period(typed: TypedProgram, panel: Panel, scores: dict[str, np.ndarray], start: int, stop: int,
                 settings: Settings) -> tuple[dict[str, float], np.ndarray, np.ndarray, float]:
    """(metrics, equity, holdings, traded notional) of the portfolio over bars [start, stop): traded
    from cash, then scored against the universe's equal-weight index (autostrat.sim.portfolio_metrics)."""
    spec = typed.portfolio
    side = spec.long or spec.short
    equity, held, traded = simulate_period(typed, panel, scores, start, stop, settings)
    metrics = portfolio_metrics(equity, held, traded, panel.benchmark().close, scores[side.by], panel.close,
                                spec.every, side.fraction, start, stop, settings.backtest.initial_capital)
    return metrics, equity, held, traded


def backtest_portfolio(strategy, data="synthetic-universe", settings: Settings | None = None, *,
                       periods=SEARCH_PERIODS, commission_bps: float | None = None,
                       slippage_bps: float | None = None, initial_capital: float | None = None) -> PortfolioResult:
    """Backtest a portfolio strategy (text, a .strat path, a Program or a TypedProgram) on a universe."""
    s = resolve_settings(settings, dict(commission_bps=commission_bps, slippage_bps=slippage_bps,
                                        initial_capital=initial_capital))
    typed = load_strategy(strategy, portfolio=True)
    if typed.portfolio is None:
        raise AutostratError(f"{typed.program.path}: error: not a portfolio strategy (it has no `hold` statement); "
                             "backtest it with autostrat.backtest on a market or a universe")
    panel = as_panel(data, s)
    benchmark = panel.benchmark()
    spans = period_spans(benchmark, s, periods)
    scores = evaluate_scores(typed, panel)
    metrics, equity, holdings = {}, {}, {}
    for name, (a, b) in spans.items():
        metrics[name], equity[name], holdings[name], _ = trade_period(typed, panel, scores, a, b, s)
    return PortfolioResult(typed, panel, benchmark, spans, metrics, equity, holdings, scores)
