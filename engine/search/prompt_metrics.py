"""The metrics tables of the model's prompts: which metrics per period, and per market on a universe.

A portfolio run's records hold a portfolio's metrics (autostrat.sim.portfolio_metrics): its tables
show PORTFOLIO_PROMPT_METRICS, the portfolio's equity metrics and how well its score ranks the
next rebalance period's returns (IC, rank IC and their t-statistics, the long-short spread), with
its turnover and holdings, instead of the single-market ones.
"""

from __future__ import annotations

from autostrat.search.runs import fmt_number
from autostrat.sim.metrics import COUNT, METRIC
from autostrat.sim.objective import Objective
from autostrat.sim.walkforward import fold_names

# The metrics a prompt shows per period, the objective's own metric first when it is not here.
PROMPT_METRICS = ("total_return", "cagr", "sharpe", "max_drawdown", "num_trades", "win_rate",
                  "exposure", "buy_hold_return", "excess_return")
PORTFOLIO_PROMPT_METRICS = ("total_return", "sharpe", "max_drawdown", "ic_mean", "ic_tstat", "rank_ic_mean",
                            "rank_ic_tstat", "long_short_spread", "turnover", "holdings", "buy_hold_return",
                            "excess_return")
MAX_ASSET_ROWS = 12  # markets listed per table on a universe: the worst and the best halves


def is_portfolio(metrics: dict | None) -> bool:
    """Whether a record's metrics are a portfolio's (they have the score's rank IC)."""
    return any("rank_ic_tstat" in (metrics or {}).get(p, {}) for p in ("train", "validation"))


def shown_metrics(objective: Objective, portfolio: bool = False) -> tuple[str, ...]:
    """The metrics the prompt's tables show (a portfolio's in a portfolio run), the objective's first."""
    names = PORTFOLIO_PROMPT_METRICS if portfolio else PROMPT_METRICS
    return (objective.metric, *[m for m in names if m != objective.metric])


def metrics_table(metrics: dict[str, dict[str, float]] | None, objective: Objective) -> str:
    """A markdown table: one row per shown metric, a column per search period and walk-forward fold."""
    if not metrics:
        return "(not evaluated)"
    periods = [p for p in ("train", "validation") if p in metrics]
    periods += [f for f in fold_names(objective.folds) if f in metrics]
    rows = ["| metric | " + " | ".join(periods) + " |", "|---|" + "---|" * len(periods)]
    for m in shown_metrics(objective, is_portfolio(metrics)):
        digits = 0 if m in METRIC and METRIC[m].unit == COUNT else 4  # the model reads fractions as fractions
        rows.append(f"| {m} | " + " | ".join(fmt_number(metrics[p].get(m), digits) for p in periods) + " |")
    if metrics.get("assets"):
        rows.append("\n" + asset_spread(metrics["assets"], objective))
    return "\n".join(rows)


def asset_spread(by_asset: dict[str, dict[str, dict[str, float]]], objective: Objective,
                 limit: int = MAX_ASSET_ROWS) -> str:
    """Per market: the objective's metric on train and validation and the validation return against
    buy and hold, worst first, so a model sees where a rule fails. Long lists keep the worst and best."""
    key = objective.metric

    def value(item) -> float:
        v = (item[1].get(objective.period) or {}).get(key)
        return float("inf") if v is None or v != v else float(v)

    items = sorted(by_asset.items(), key=value)
    hidden = max(len(items) - limit, 0)
    if hidden:
        items = items[: limit // 2] + items[-(limit - limit // 2):]
    title = f"Across {len(by_asset)} markets, {objective.across or 'mean'} shown above; per market, worst first"
    rows = [f"{title}:", f"| market | train.{key} | validation.{key} | validation.total_return | "
            "validation.buy_hold_return |", "|---|---|---|---|---|"]
    for i, (name, m) in enumerate(items):
        if hidden and i == limit // 2:
            rows.append(f"| ({hidden} markets in between) | | | | |")
        t, v = m.get("train") or {}, m.get("validation") or {}
        rows.append(f"| {name} | {fmt_number(t.get(key))} | {fmt_number(v.get(key))} | "
                    f"{fmt_number(v.get('total_return'))} | {fmt_number(v.get('buy_hold_return'))} |")
    return "\n".join(rows)
