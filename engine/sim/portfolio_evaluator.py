"""The evaluation of one portfolio candidate on the search periods: what a portfolio run's loop calls.

`PortfolioEvaluator` is the portfolio counterpart of `Evaluator` (autostrat.sim.evaluator): the
program's scores are computed over the universe's assets x bars (they are causal, so computing
them on the whole history leaks nothing), then each search period (and walk-forward fold) is
traded from cash by the portfolio simulator, exactly as `autostrat.backtest_portfolio` does, and
scored with the portfolio metrics (autostrat.sim.portfolio_metrics). The daily returns kept for
the run's statistics are those of the portfolio's equity, train then validation. The test
period is sealed: it is in no span here.

The behaviour hash (duplicates, `search.dedupe behaviour`) is the portfolio's signature: a sha256
of what its positions produce in each search period, the equity and the holdings count at every
close and the traded notional. Two candidates with the same hash trade the same portfolio, so
every equity metric is the same; a score that only reorders assets inside the held and the
unheld groups changes the IC metrics but not the portfolio, and is a duplicate.
"""

from __future__ import annotations

import hashlib

import numpy as np

from autostrat.config import Settings
from autostrat.data.panel import Panel
from autostrat.errors import ConfigError
from autostrat.lang.check import TypedProgram
from autostrat.sim.backtest import SEARCH_PERIODS, period_spans
from autostrat.sim.evaluator import Evaluation
from autostrat.sim.metrics import daily_returns
from autostrat.sim.portfolio_backtest import trade_period
from autostrat.sim.portfolio_bulk import portfolio_metrics_dicts
from autostrat.sim.simulation import check_backtest
from autostrat.sim.walkforward import fold_spans
from autostrat.tape.portfolio_eval import evaluate_scores


class PortfolioEvaluator:
    """Backtests checked portfolio programs on the train and validation periods of one universe."""

    portfolio = True  # the loop checks candidates with check(..., portfolio=True) and refuses the others

    def __init__(self, panel: Panel, settings: Settings):
        check_backtest(settings.backtest)
        if settings.backtest.fill == "close":
            raise ConfigError("backtest.fill close: a portfolio is ranked at a close and fills at the next open; "
                              "set backtest.fill to next_open (or leave --fill out) for a portfolio run")
        self.panel = panel
        self.settings = settings
        self.benchmark = panel.benchmark()
        self.spans = period_spans(self.benchmark, settings, SEARCH_PERIODS)
        missing = [p for p in SEARCH_PERIODS if p not in self.spans]
        if missing:
            raise ConfigError(f"{self.benchmark.name}: no {missing[0]} period; the search needs train and validation")
        offsets, start = {}, 0
        for name, (a, b) in self.spans.items():
            offsets[name] = (start, start + (b - a - 1))
            start += b - a - 1
        self.returns_layout = offsets
        self.returns_series = "the portfolio's daily returns"
        s = settings.search
        self.fold_spans = (fold_spans(self.spans["train"][0], self.spans["validation"][1], s.folds, s.fold_mode)
                           if s.folds else {})

    def __call__(self, typed: TypedProgram) -> Evaluation:
        """Metrics ({period: {metric: value}}, folds included), daily returns and behaviour of one program."""
        spec = typed.portfolio
        if spec is None:
            raise ValueError(f"{typed.name or 'this strategy'} is not a portfolio strategy")
        scores = evaluate_scores(typed, self.panel)
        metrics, parts = {}, []
        h = hashlib.sha256()
        for name, (a, b) in {**self.spans, **self.fold_spans}.items():
            metrics[name], equity, held, traded = trade_period(typed, self.panel, scores, a, b, self.settings)
            if name in self.spans:
                parts.append(daily_returns(equity))
                for array in (equity, held, np.array([traded])):
                    h.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return Evaluation(metrics, np.concatenate(parts).astype(np.float32), h.hexdigest())

    def metrics_many(self, programs: list[TypedProgram]) -> list[dict]:
        """The metrics of many programs (tuned variants), evaluated in bulk: what __call__ gives, bit for bit."""
        return portfolio_metrics_dicts(programs, self.panel, self.settings, {**self.spans, **self.fold_spans})

    def _dates(self, spans: dict[str, tuple[int, int]]) -> dict[str, dict[str, object]]:
        d = self.panel.dates
        return {name: {"first": str(d[a]), "last": str(d[b - 1]), "bars": int(b - a),
                       "assets": self.panel.n_assets} for name, (a, b) in spans.items()}

    def period_dates(self) -> dict[str, dict[str, object]]:
        """First and last date, bar count and asset count of each search period."""
        return self._dates(self.spans)

    def fold_dates(self) -> dict[str, dict[str, object]]:
        return self._dates(self.fold_spans)
