"""The parts of a portfolio run's report: what differs from a single market's.

autostrat.report.build assembles the report; for a portfolio run (`"portfolio": true` in
config.json, its data a Panel) it takes from here: the best strategy's portfolio backtest on every
period (autostrat.backtest_portfolio), the universe's equal-weight index as the buy and hold
(Panel.benchmark) beside it, the equity chart against that index, the chart of the score's IC and
rank IC at every rebalance with the number of assets held, and a strategy card that says what the
portfolio holds. The robustness checks run on the Panel (autostrat.honest.robustness: the hold
fractions, rebalance period and weight cap jittered with the rest, costs doubled; no fill rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autostrat.config import Settings
from autostrat.data.panel import Panel
from autostrat.report.card import Card, card
from autostrat.report.plots import PeriodCurve, ScoreCurve, hold_equity, portfolio_png
from autostrat.sim.backtest import ALL_PERIODS, buy_and_hold, period_spans
from autostrat.sim.portfolio_backtest import PortfolioResult, backtest_portfolio
from autostrat.sim.portfolio_metrics import TRADING_DAYS, score_metrics_nb


def portfolio_parts(panel: Panel, settings: Settings, text: str, iteration: int) -> dict[str, Any]:
    """Everything build_report needs of a portfolio run's best strategy (module docstring)."""
    index = panel.benchmark()
    periods = tuple(p for p in ALL_PERIODS if p in period_spans(index, settings, ALL_PERIODS))
    result = backtest_portfolio(text, panel, settings, periods=periods)
    capital = settings.backtest.initial_capital
    dates = panel.dates
    equity, scores = [], []
    spec = result.typed.portfolio
    side = spec.long or spec.short
    ic: dict[str, dict[str, list]] = {}
    for p, (a, b) in result.spans.items():
        equity.append(PeriodCurve(p, dates[a:b], result.equity[p], hold_equity(index.close, a, b, capital),
                                  p == "test"))
        per = score_metrics_nb(result.scores[side.by], panel.close, int(spec.every), float(side.fraction), int(a),
                               int(b))
        at = a + spec.every * np.arange(len(per))
        scores.append(ScoreCurve(p, dates[at], per[:, 0], per[:, 1], dates[a:b], result.holdings[p], p == "test"))
        ic[p] = {"dates": [str(d) for d in dates[at]], "ic": per[:, 0].tolist(), "rank_ic": per[:, 1].tolist()}
    hold = buy_and_hold(index, result.spans, settings)
    spans = {p: {"first": str(dates[a]), "last": str(dates[b - 1]), "bars": int(b - a), "assets": panel.n_assets}
             for p, (a, b) in result.spans.items()}
    title = f"Best strategy (iteration {iteration}): portfolio of {panel.n_assets} assets"
    return {
        "result": result, "hold": hold, "periods": spans, "equity_curves": equity,
        "equity_title": f"{title} against the universe's equal-weight buy and hold",
        "card": portfolio_card(result),
        "plot": portfolio_png(scores, f"{title}: the score's IC at each rebalance, and the assets held"),
        "extra": {"portfolio": {"assets": panel.n_assets, "rebalance_every": spec.every, "ic": ic,
                                "holdings_mean": {p: float(np.mean(h)) for p, h in result.holdings.items()}}},
    }


def portfolio_card(result: PortfolioResult) -> Card:
    """The strategy card of a portfolio strategy: its holds, rebalance and weights instead of rules."""
    typed, spec = result.typed, result.typed.portfolio
    c = card(typed)
    sides = [(name, s) for name, s in (("long", spec.long), ("short", spec.short)) if s is not None]
    c.direction = " and ".join(f"{name} the {s.edge} {s.fraction:.0%} of the assets by {s.by}" for name, s in sides)
    c.rules = [(f"hold {name}", f"the {s.edge} {s.fraction:.0%} of the assets ranked by {s.by} at each "
                                f"rebalance close, bought at the next open") for name, s in sides]
    c.rules.append(("rebalance", f"every {spec.every} bars"))
    weights = f"in proportion to the rank of {spec.weight_by}" if spec.weight_by else "equal"
    c.rules.append(("weights", weights + (f", none above {spec.cap:.0%}" if spec.cap else "")))
    c.exits = ["none: a position is held until a rebalance drops it; nothing is closed at a period's end"]
    c.activity = []
    for p, m in result.metrics.items():
        c.activity.append(f"{p}: {m['holdings']:.1f} assets held on average, turnover {m['turnover']:.1f} a year, "
                          f"invested {m['exposure']:.0%} of the days")
    years = sum(b - a for a, b in result.spans.values()) / TRADING_DAYS
    c.activity.insert(0, f"{result.panel.n_assets} assets over {years:.1f} years")
    return c
