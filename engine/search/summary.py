"""What a search's end prints: the stop reason in words and the table of the kept strategies."""

from __future__ import annotations

from autostrat.search.population import Member
from autostrat.search.runs import fmt_number
from autostrat.sim.objective import Objective


REASONS = {
    "fails": "stopped after {max_fails} failures in a row",
    "iterations": "reached the iteration cap ({iterations})",
    "tokens": "spent the token budget ({max_total_tokens})",
    "interrupted": "interrupted",
}


def describe_reason(reason: str, settings) -> str:
    """A stop reason in words."""
    s = settings.search
    return REASONS.get(reason, reason).format(max_fails=s.max_fails, iterations=s.iterations,
                                              max_total_tokens=s.max_total_tokens)


def summary_table(population: list[Member], objective: Objective) -> str:
    """The final table: the kept strategies with train and validation metrics, and buy and hold."""
    cols = [("iter", None, None), ("objective", None, None),
            ("train.return", "train", "total_return"), ("val.return", "validation", "total_return"),
            ("train.sharpe", "train", "sharpe"), ("val.sharpe", "validation", "sharpe"),
            ("val.max_dd", "validation", "max_drawdown"), ("val.trades", "validation", "num_trades")]
    if any("rank_ic_tstat" in (m.metrics.get("validation") or {}) for m in population):
        # a portfolio has no round trips: how well its score ranks instead
        cols[-1:] = [("val.rank_ic", "validation", "rank_ic_mean"), ("val.rank_ic_t", "validation", "rank_ic_tstat")]
    if objective.metric not in [c[2] for c in cols]:
        cols.insert(2, (f"train.{objective.metric}", "train", objective.metric))
        cols.insert(3, (f"val.{objective.metric}", "validation", objective.metric))
    rows = [[c[0] for c in cols]]
    for m in population:
        row = [str(m.iteration), fmt_number(m.objective)]
        for _, period, metric in cols[2:]:
            digits = 0 if metric == "num_trades" else 4
            row.append(fmt_number((m.metrics.get(period) or {}).get(metric), digits))
        rows.append(row)
    if population:
        bh = ["buy&hold", ""]
        for _, period, metric in cols[2:]:
            value = (population[0].metrics.get(period) or {}).get("buy_hold_return") if metric == "total_return" else None
            bh.append(fmt_number(value) if value is not None else "")
        rows.append(bh)
    widths = [max(len(r[j]) for r in rows) for j in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows)
