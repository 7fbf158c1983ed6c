"""What the search measures: the objective, and how two of its values compare.

The objective is `PERIOD.METRIC` with PERIOD train or validation and METRIC one of
autostrat.sim.metrics.METRIC_NAMES; the search maximises it and ranks NaN below every number. With
walk-forward folds (`search.folds`, autostrat.sim.walkforward) it is the mean or the minimum of METRIC
over the folds instead. On a universe (`UniverseEvaluator`) every metric is first aggregated over
the markets (`search.across`: mean, median or min), so the objective reads the aggregate; the
per-market numbers ride along under `metrics["assets"]` for the prompt. A portfolio run's METRIC
is one of autostrat.sim.portfolio_metrics.PORTFOLIO_METRIC_NAMES (the equity metrics of the
portfolio, and how well its score ranks: ic_mean, rank_ic_tstat, ...). The test period is sealed:
an objective cannot name it. The evaluators that compute its metrics are in autostrat.sim.evaluator.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from autostrat.data.universe import ACROSS
from autostrat.errors import ConfigError
from autostrat.sim.backtest import SEARCH_PERIODS
from autostrat.sim.metrics import METRIC_NAMES
from autostrat.sim.portfolio_metrics import PORTFOLIO_METRIC_NAMES
from autostrat.sim.walkforward import aggregate, check_fold_settings, describe, fold_names


@dataclass(frozen=True)
class Objective:
    """A metric of one search period (or its aggregate over walk-forward folds), maximised."""

    period: str
    metric: str
    folds: int = 0  # walk-forward folds; 0: the metric of `period`
    fold_mode: str = "rolling"
    fold_agg: str = "mean"

    @classmethod
    def parse(cls, text: str, portfolio: bool = False) -> "Objective":
        """`validation.total_return` -> Objective; a clear ConfigError for anything else.

        `portfolio`: the metric is one of a portfolio's (PORTFOLIO_METRIC_NAMES)."""
        names = PORTFOLIO_METRIC_NAMES if portfolio else METRIC_NAMES
        period, dot, metric = str(text).strip().partition(".")
        if period == "test":
            raise ConfigError(
                f"objective {text!r}: the test period is sealed; the search never sees it (it is "
                "evaluated once, after the search). Use train.METRIC or validation.METRIC, e.g. "
                "validation.total_return")
        if not dot or period not in SEARCH_PERIODS:
            raise ConfigError(f"objective {text!r}: write PERIOD.METRIC with PERIOD train or validation, "
                              "e.g. validation.total_return")
        if metric not in names:
            near = difflib.get_close_matches(metric, names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            kind = "a portfolio's metrics" if portfolio else "metrics"
            raise ConfigError(f"objective {text!r}: unknown metric {metric!r}{hint}; {kind} are "
                              f"{', '.join(names)}")
        return cls(period, metric)

    @classmethod
    def from_settings(cls, search, universe: bool = False, portfolio: bool = False) -> "Objective":
        """The objective that SearchSettings describe: `objective`, and `folds`, `fold_mode`, `fold_agg`;
        on a universe also `across`; in a portfolio run a portfolio metric."""
        base = cls.parse(search.objective, portfolio)
        check_fold_settings(search.folds, search.fold_mode, search.fold_agg)
        if search.across not in ACROSS:
            raise ConfigError(f"search.across {search.across!r}: use {', '.join(ACROSS)}")
        across = search.across if universe else ""
        if not search.folds:
            return cls(base.period, base.metric, across=across)
        return cls(base.period, base.metric, search.folds, search.fold_mode, search.fold_agg, across)

    across: str = ""  # on a universe: how the markets are aggregated (mean | median | min); "" on one market

    def __str__(self) -> str:
        text = (describe(self.folds, self.fold_mode, self.fold_agg, self.metric) if self.folds
                else f"{self.period}.{self.metric}")
        return f"{text} ({self.across} over markets)" if self.across else text

    def value(self, metrics: dict[str, dict[str, float]] | None) -> float:
        """The objective's value in {period: {metric: value}}; NaN when missing.

        With folds, the aggregate of the metric over the `fold_k` entries.
        """
        if self.folds:
            try:
                return aggregate([metrics[name][self.metric] for name in fold_names(self.folds)],  # type: ignore[index]
                                 self.fold_agg)
            except (KeyError, TypeError, ValueError):
                return math.nan
        try:
            return float(metrics[self.period][self.metric])  # type: ignore[index]
        except (KeyError, TypeError, ValueError):
            return math.nan


def rank_key(value: float) -> tuple[bool, float]:
    """Sort key, larger is better: every number beats NaN."""
    return (False, 0.0) if value is None or math.isnan(value) else (True, float(value))


def beats(a: float, b: float) -> bool:
    """True when objective value `a` is strictly better than `b` (NaN is worst; ties do not beat)."""
    return rank_key(a) > rank_key(b)


