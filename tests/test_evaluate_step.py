"""A parallel step's candidates evaluated as one bulk batch equal their one-by-one evaluations."""

from __future__ import annotations

import dataclasses

import numpy as np
from test_loop import market, small_settings, warm  # noqa: F401 - session fixtures

from autostrat.data.load import load_data
from autostrat.resources import example_path, examples_dir
from autostrat.sim.backtest import load_strategy
from autostrat.sim.evaluator import Evaluation, make_evaluator


def same(a: Evaluation, b: Evaluation) -> None:
    assert a.metrics == b.metrics or repr(a.metrics) == repr(b.metrics)  # NaN compares unequal
    assert a.returns.tobytes() == b.returns.tobytes()
    assert a.behaviour == b.behaviour


def programs():
    out = [load_strategy(p) for p in sorted(examples_dir().glob("*.strat"))]
    sma = load_strategy(example_path("sma_cross"))
    out.append(load_strategy(sma.program.source.replace("fast = 20", "fast = 12")))
    out.append(sma)  # the same program twice in one batch
    return out


def test_a_batch_equals_one_by_one_on_a_market_with_folds(warm):
    s = small_settings(folds=3)
    evaluator = make_evaluator(warm, s)
    batch = evaluator.many(programs())
    for typed, ev in zip(programs(), batch):
        same(ev, evaluator(typed))


def test_a_batch_equals_one_by_one_on_a_universe_and_per_period_indicators(warm):
    s = small_settings()
    s.backtest = dataclasses.replace(s.backtest, indicators="period", commission_bps=3.0)
    evaluator = make_evaluator(load_data("synthetic:seed=1..3,bars=1500", s.data), s)
    batch = evaluator.many(programs()[:6])
    for typed, ev in zip(programs()[:6], batch):
        same(ev, evaluator(typed))
    assert np.isfinite(batch[0].returns).all()
