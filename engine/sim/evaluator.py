"""The evaluation of one candidate on the search periods: what the search loop calls per iteration.

`Evaluator` scores a typed program on one market's train and validation periods (and its
walk-forward folds) and keeps its daily returns for the run's honest statistics;
`UniverseEvaluator` does it per market of a universe and aggregates each metric over the markets
(`search.across`: mean, median or min), the per-market numbers riding along under
`metrics["assets"]` for the prompt. The test period is sealed: no evaluator computes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.universe import Universe, across_assets
from autostrat.errors import ConfigError
from autostrat.lang.check import TypedProgram
from autostrat.sim.backtest import SEARCH_PERIODS, period_spans
from autostrat.sim.evaluate import evaluate_tape, metrics_dicts
from autostrat.sim.metrics import daily_returns
from autostrat.sim.simulate import period_simulation, simulator_args
from autostrat.sim.simulation import check_backtest
from autostrat.sim.walkforward import fold_spans
from autostrat.tape.compile import compile, compile_many
from autostrat.tape.vm import run_tape


@dataclass
class Evaluation:
    """One candidate's metrics per search period, and its daily returns (train then validation)."""

    metrics: dict[str, dict[str, float]]
    returns: np.ndarray | None = None  # float32; layout in Evaluator.returns_layout
    behaviour: str = ""  # sha256 of what the simulator reads on train and validation (behaviour_hash)



class Evaluator:
    """Backtests checked programs on the train and validation periods of one market.

    With `search.folds`, also on each walk-forward fold (`fold_spans`; metrics keys fold_1..).
    The test period is not in `spans` nor in a fold, so nothing here can compute it.
    """

    def __init__(self, market: Market, settings: Settings):
        check_backtest(settings.backtest)  # the search reaches the simulator only through here
        self.market = market
        self.settings = settings
        self.spans = period_spans(market, settings, SEARCH_PERIODS)
        missing = [p for p in SEARCH_PERIODS if p not in self.spans]
        if missing:
            raise ConfigError(f"{market.name}: no {missing[0]} period; the search needs train and validation")
        offsets, start = {}, 0
        for name, (a, b) in self.spans.items():
            offsets[name] = (start, start + (b - a - 1))
            start += b - a - 1
        self.returns_layout = offsets
        self.returns_series = ""  # one market: its own daily returns
        s = settings.search
        self.fold_spans = (fold_spans(self.spans["train"][0], self.spans["validation"][1], s.folds, s.fold_mode)
                           if s.folds else {})

    def __call__(self, typed: TypedProgram) -> Evaluation:
        """Metrics ({period: {metric: value}}, folds included) and the daily returns of one program."""
        tape = compile(typed)
        spans = {**self.spans, **self.fold_spans}
        values = evaluate_tape(tape, self.market, spans, self.settings.backtest)[0]
        metrics = metrics_dicts(values, spans)
        regs = run_tape(tape, self.market)
        return Evaluation(metrics, self._returns(tape, regs), self._behaviour(tape, regs))

    def many(self, programs: list[TypedProgram]) -> list[Evaluation]:
        """`self(p)` for each program, from one tape: sub-expressions the programs share computed
        once and the simulations spread over the cores. Each Evaluation equals the one-by-one one
        bit for bit (a batch's rules are the same kernels on the same bars)."""
        if len(programs) < 2:
            return [self(p) for p in programs]
        tape = compile_many(programs)
        spans = {**self.spans, **self.fold_spans}
        values = evaluate_tape(tape, self.market, spans, self.settings.backtest)
        regs = run_tape(tape, self.market)
        return [Evaluation(metrics_dicts(values[p], spans), self._returns(tape, regs, p), self._behaviour(tape, regs, p))
                for p in range(len(programs))]

    def metrics_many(self, programs: list[TypedProgram]) -> list[dict[str, dict[str, float]]]:
        """The metrics of many programs (folds included), by one bulk evaluation; no returns."""
        from autostrat.sim.bulk import metrics_array

        spans = {**self.spans, **self.fold_spans}
        return [metrics_dicts(values, spans) for values in metrics_array(programs, self.market, spans, self.settings)]

    def _returns(self, tape, regs, program: int = 0) -> np.ndarray:
        # The equity curves, by the same kernel evaluate_tape scores them with; the trade table of
        # backtest.Result is skipped because building it costs more than the whole simulation.
        bt = self.settings.backtest  # with indicators = "period" the registers are the period's own
        parts = []
        for a, b in self.spans.values():
            equity, _, _ = period_simulation(tape, self.market, a, b, bt, regs, program)
            parts.append(daily_returns(equity))
        return np.concatenate(parts).astype(np.float32)

    def _behaviour(self, tape, regs, program: int = 0) -> str:
        return behaviour_hash([simulator_args(tape, regs, self.market, a, b, self.settings.backtest, program)
                               for a, b in self.spans.values()])

    def period_dates(self) -> dict[str, dict[str, object]]:
        """First and last date and bar count of each search period, for config.json and prompts."""
        d = self.market.dates
        return {name: {"first": str(d[a]), "last": str(d[b - 1]), "bars": int(b - a)}
                for name, (a, b) in self.spans.items()}

    def fold_dates(self) -> dict[str, dict[str, object]]:
        """First and last date and bar count of each walk-forward fold ({} without folds)."""
        d = self.market.dates
        return {name: {"first": str(d[a]), "last": str(d[b - 1]), "bars": int(b - a)}
                for name, (a, b) in self.fold_spans.items()}



class UniverseEvaluator:
    """An Evaluator per market of a universe; metrics aggregated over the markets with `search.across`.

    The daily returns kept for the run's statistics (PSR, DSR, PBO) are those of the equal-weight
    average across the markets, rebalanced daily: for each search period, on the days every market
    has a return (their common dates), the mean of the markets' returns. Markets laid end to end
    would read 5 markets of 1,043 days as a 5,215-day record, which overstates the evidence when
    they move together; the average is one portfolio's record, as long as the calendar allows.
    """

    def __init__(self, universe: Universe, settings: Settings):
        self.universe = universe
        self.settings = settings
        self.across = settings.search.across
        self.evaluators = [Evaluator(m, settings) for m in universe]
        self.fold_spans = self.evaluators[0].fold_spans  # truthy when folds are on
        # Per period, the position in each market's returns of every common date. A return at
        # position i of span (a, b) is the move from bar a+i to a+i+1: it belongs to date a+i+1.
        self._common: dict[str, list[np.ndarray]] = {}
        layout, start = {}, 0
        for period in SEARCH_PERIODS:
            days = [e.market.dates[e.spans[period][0] + 1:e.spans[period][1]] for e in self.evaluators]
            common = days[0]
            for d in days[1:]:
                common = np.intersect1d(common, d)
            self._common[period] = [np.searchsorted(d, common) for d in days]
            layout[period] = (start, start + len(common))
            start += len(common)
        self.returns_layout = layout
        self.returns_series = (f"the equal-weight average of the {len(universe)} markets' daily returns, "
                               "over their common dates")

    def __call__(self, typed: TypedProgram) -> Evaluation:
        return self._combine({e.market.name: e(typed) for e in self.evaluators})

    def many(self, programs: list[TypedProgram]) -> list[Evaluation]:
        """`self(p)` for each program, each market's evaluated as one batch (Evaluator.many)."""
        per = [e.many(programs) for e in self.evaluators]
        return [self._combine({e.market.name: evs[p] for e, evs in zip(self.evaluators, per)})
                for p in range(len(programs))]

    def _combine(self, per: dict[str, Evaluation]) -> Evaluation:
        by_asset = {name: ev.metrics for name, ev in per.items()}
        metrics: dict = across_assets(by_asset, self.across)
        metrics["assets"] = by_asset
        behaviour = hashlib.sha256("".join(ev.behaviour for ev in per.values()).encode()).hexdigest()
        return Evaluation(metrics, self.average([ev.returns for ev in per.values()]).astype(np.float32), behaviour)

    def average(self, returns: list[np.ndarray]) -> np.ndarray:
        """Each market's daily returns (in its own Evaluator's layout) as the equal-weight average
        over the common dates, in this evaluator's layout: what the run's statistics read."""
        parts = []
        for period in SEARCH_PERIODS:
            columns = [r[slice(*e.returns_layout[period])].astype(np.float64)[idx]
                       for e, r, idx in zip(self.evaluators, returns, self._common[period])]
            parts.append(np.mean(np.stack(columns), axis=0))
        return np.concatenate(parts)

    def metrics_many(self, programs: list[TypedProgram]) -> list[dict]:
        """The metrics of many programs, one full evaluation each (a universe has no bulk path yet)."""
        return [self(p).metrics for p in programs]

    def period_dates(self) -> dict[str, dict[str, object]]:
        """Per search period: the earliest first date, the latest last date, bars summed over the markets."""
        return _spread_dates([e.period_dates() for e in self.evaluators])

    def fold_dates(self) -> dict[str, dict[str, object]]:
        return _spread_dates([e.fold_dates() for e in self.evaluators])



def _spread_dates(each: list[dict[str, dict[str, object]]]) -> dict[str, dict[str, object]]:
    out = {}
    for name in each[0]:
        rows = [d[name] for d in each if name in d]
        out[name] = {"first": min(str(r["first"]) for r in rows), "last": max(str(r["last"]) for r in rows),
                     "bars": sum(int(r["bars"]) for r in rows), "markets": len(rows)}
    return out



def behaviour_hash(periods: list[tuple]) -> str:
    """A sha256 of the simulator's inputs that come from a strategy, over each period's bars.

    `periods` are simulator_args tuples. Hashed: where each of the four rule signals is on (> 0,
    the simulator's reading) on the bars that count (from the warm-up or the period's start to its
    end), that first bar, and the exits (stop loss, take profit, trailing stop, max hold). Two
    programs with the same hash get the same trades and metrics whatever their text: a dead
    branch or a renamed value does not make a new strategy.
    """
    h = hashlib.sha256()
    for args in periods:
        first, stop = max(args[8], args[10]), args[9]
        for signal in args[4:8]:
            h.update(np.packbits(np.asarray(signal[first:stop]) > 0).tobytes())
        h.update(repr((first, stop, *args[14:18])).encode())
    return h.hexdigest()


def make_evaluator(data: Market | Universe, settings: Settings):
    """An Evaluator for one market, a UniverseEvaluator for a universe."""
    return UniverseEvaluator(data, settings) if isinstance(data, Universe) else Evaluator(data, settings)
