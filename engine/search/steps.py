"""What the search loop decides from a record or a step alone: constraints, unfinished steps, deferred errors.

The loop's state (population, failures, hashes) stays in autostrat.search.loop; these are the
rules that need none of it.
"""

from __future__ import annotations

from typing import Any, Callable

from autostrat.errors import Diagnostic, StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, check


def call(fn: Callable, arg: Any) -> Any:
    """fn(arg), or the exception it raised (a step judges its candidates one by one, in order)."""
    try:
        return fn(arg)
    except Exception as exc:
        return exc


def unwrap(result: Any) -> Any:
    if isinstance(result, BaseException):
        raise result
    return result


def unfinished_step(records: list[dict[str, Any]]) -> int | None:
    """The first iteration of the last step when that step has no `step_end` record (it runs again)."""
    if not records or "step" not in records[-1] or records[-1].get("step_end"):
        return None
    return int(records[-1]["step"])


def broken_constraint(metrics: dict[str, dict[str, float]], min_trades: int, max_drawdown: float) -> str:
    """Which constraint the metrics break, in words ("" when none): fewer trades or a deeper fall than allowed."""
    for period in ("train", "validation"):
        m = metrics.get(period) or {}
        trades, dd = m.get("num_trades"), m.get("max_drawdown")
        if min_trades and trades is not None and trades < min_trades:
            return f"{period}: {int(trades)} trades, fewer than the {min_trades} required (min_trades)"
        if max_drawdown and dd is not None and -dd > max_drawdown:
            return (f"{period}: a drawdown of {-dd:.1%}, deeper than the {max_drawdown:.1%} allowed "
                    "(max_drawdown)")
    return ""


def check_for_run(program: N.Program, portfolio: bool) -> TypedProgram:
    """check(program) as the run's kind allows: a portfolio run takes only portfolio strategies, any
    other run only single-market ones; StrategyError (an `invalid` candidate) saying which is wanted."""
    typed = check(program, portfolio=portfolio)
    if portfolio and typed.portfolio is None:
        line = next((s.span.line for s in program.statements if isinstance(s, N.Rule)), 0)
        raise StrategyError(Diagnostic(
            "this is a single-market strategy (buy and sell rules); this run searches portfolio strategies",
            line=line, path=program.path or "<strategy>",
            hint="write a portfolio strategy: score = roc(close, 126), hold long top 10% by score, "
                 "rebalance every 21 bars (grammar/examples/portfolio/)"))
    return typed
