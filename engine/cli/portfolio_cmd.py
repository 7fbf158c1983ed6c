"""`autostrat backtest FILE --data SPEC` for a portfolio strategy: one column per period, the
portfolio beside the universe's equal-weight index, then how well the score ranks."""

from __future__ import annotations

import json
import math

from autostrat.errors import EXIT_OK, AutostratError
from autostrat.lang.check import TypedProgram
from autostrat.sim.metrics import format_metric
from autostrat.sim.portfolio_backtest import backtest_portfolio

_EQUITY = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "exposure", "turnover",
           "final_equity")
_SCORE = ("ic_mean", "ic_tstat", "rank_ic_mean", "rank_ic_tstat", "long_short_spread", "ic_periods", "holdings")
_FRACTIONS = ("long_short_spread",)


def _cell(name: str, value) -> str:
    if name in _FRACTIONS and isinstance(value, float) and math.isfinite(value):
        return f"{value:.2%}"
    if name in ("ic_periods",):
        return f"{int(value)}"
    return format_metric(name, value)


def backtest_portfolio_cmd(args, settings, typed: TypedProgram, periods) -> int:
    """Print (or write as JSON) a portfolio backtest on the universe `--data` names."""
    if args.fill == "close" or args.plot or args.indicators == "period":
        raise AutostratError(f"{args.file}: error: a portfolio strategy fills at the next open with indicators "
                             "over the whole history; drop --fill close, --indicators period and --plot")
    result = backtest_portfolio(typed, settings.data.spec, settings, periods=periods)
    if args.json:
        safe = {p: {k: (v if math.isfinite(v) else None) for k, v in m.items()} for p, m in result.metrics.items()}
        print(json.dumps(safe, indent=2))
        return EXIT_OK
    spec, panel, bt = typed.portfolio, result.panel, settings.backtest
    sides = [f"{name} {s.edge} {s.fraction:.0%} by {s.by}" for name, s in (("long", spec.long), ("short", spec.short)) if s]
    print(result.name or args.file)
    print(f"portfolio: {', '.join(sides)}; rebalance every {spec.every} bars; "
          f"weight {'by ' + spec.weight_by if spec.weight_by else 'equal'}"
          f"{f', capped at {spec.cap:.0%}' if spec.cap else ''}; warm-up {typed.warmup} bars")
    print(f"data: {panel.n_assets} assets on {len(panel)} dates ({panel.dates[0]} .. {panel.dates[-1]}); "
          f"fill next open; costs {bt.commission_bps:g} + {bt.slippage_bps:g} bps per side")
    print(f"{'':<18}" + "".join(f"{(p + ' (sealed)' if p == 'test' else p):>26}" for p in result.spans))
    print(f"{'':<18}" + "".join(f"{'portfolio':>14}{'equal-wt':>12}" for _ in result.spans))
    for m in _EQUITY:
        row = f"{m:<18}"
        for p in result.spans:
            hold = result.metrics[p]["buy_hold_return"] if m == "total_return" else None
            row += f"{_cell(m, result.metrics[p][m]):>14}{(_cell(m, hold) if hold is not None else ''):>12}"
        print(row)
    for m in _SCORE:
        print(f"{m:<18}" + "".join(f"{_cell(m, result.metrics[p][m]):>14}{'':>12}" for p in result.spans))
    if "test" not in result.spans:
        print("(the test period is sealed: add --test to show it, and know that every look spends it)")
    return EXIT_OK
