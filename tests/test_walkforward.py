"""Walk-forward folds: the windows of both modes, the aggregated objective against per-fold backtests,
the per-fold numbers in records and prompts, and the settings a resumed run must keep."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from autostrat.sim.backtest import backtest, load_strategy
from autostrat.errors import ConfigError
from autostrat.search.loop import MutateProposer, Search
from autostrat.search.population import Member
from autostrat.sim.evaluator import Evaluator
from autostrat.sim.objective import Objective
from autostrat.search.prompting import iteration_prompt, metrics_table, system_prompt
from autostrat.resources import example_path
from autostrat.search.runs import RunFolder
from autostrat.sim.walkforward import MIN_FOLD_BARS, aggregate, fold_spans

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import evolve, small_settings  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures


def test_rolling_folds_are_equal_consecutive_windows():
    # 103 bars from bar 0 into 4: edges floor(k * 103 / 4) = 0, 25, 51, 77, 103
    assert fold_spans(0, 103, 4, "rolling") == {
        "fold_1": (0, 25), "fold_2": (25, 51), "fold_3": (51, 77), "fold_4": (77, 103)}
    spans = fold_spans(10, 1010, 7, "rolling")
    bounds = list(spans.values())
    assert bounds[0][0] == 10 and bounds[-1][1] == 1010
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # consecutive, no gap, no overlap
    assert {b - a for a, b in bounds} <= {142, 143}  # equal up to one bar


def test_anchored_folds_grow_from_the_start():
    assert fold_spans(0, 103, 4, "anchored") == {
        "fold_1": (0, 25), "fold_2": (0, 51), "fold_3": (0, 77), "fold_4": (0, 103)}
    assert list(fold_spans(5, 65, 2, "anchored").values()) == [(5, 35), (5, 65)]


def test_fold_settings_are_checked():
    assert fold_spans(0, 100, 0) == {}
    with pytest.raises(ConfigError, match=f"at least {MIN_FOLD_BARS}"):
        fold_spans(0, 100, 6, "rolling")  # 16 bars a fold
    with pytest.raises(ConfigError, match="rolling or anchored"):
        fold_spans(0, 100, 2, "sliding")
    s = small_settings(folds=2, fold_agg="median")
    with pytest.raises(ConfigError, match="mean or min"):
        Objective.from_settings(s.search)


def test_aggregate_mean_and_min():
    assert aggregate([1.0, 2.0, 6.0]) == 3.0
    assert aggregate([1.0, -2.0, 6.0], "min") == -2.0
    assert math.isnan(aggregate([1.0, math.nan])) and math.isnan(aggregate([]))


def _fold_alone(text, market, a, b):
    """Bars [a, b) backtested alone through the public API, as a period chosen by its dates."""
    d = market.dates
    s = small_settings()
    if a == 0:  # a fold from the first bar is a train period
        s.set("split.train_end", str(d[b - 1]))
        s.set("split.validation_start", str(d[-2]))
        s.set("split.two_way", True)
        return backtest(text, market, s), "train"
    s.set("split.train_end", str(d[a - 1]))
    s.set("split.validation_start", str(d[a]))
    s.set("split.validation_end", str(d[b - 1]))
    s.set("split.test_start", str(d[-1]))
    return backtest(text, market, s), "validation"


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
def test_objective_aggregates_per_fold_backtests(warm, mode):
    market = warm
    text = example_path("sma_cross").read_text()
    settings = small_settings(folds=3, fold_mode=mode, objective="validation.sharpe")
    ev = Evaluator(market, settings)
    got = ev(load_strategy(text))
    sharpes = []
    for name, (a, b) in ev.fold_spans.items():
        result, period = _fold_alone(text, market, a, b)
        assert result.spans[period] == (a, b)  # the dates select exactly the fold's bars
        equity = result.simulation(period).equity
        r = equity[1:] / equity[:-1] - 1
        by_hand = r.mean() / r.std(ddof=1) * math.sqrt(252)
        assert got.metrics[name]["sharpe"] == pytest.approx(by_hand, rel=1e-9)
        assert got.metrics[name]["total_return"] == pytest.approx(equity[-1] / equity[0] - 1, rel=1e-12)
        sharpes.append(by_hand)
    assert len(sharpes) == 3 and len(set(sharpes)) == 3
    mean = Objective.from_settings(settings.search)
    assert mean.value(got.metrics) == pytest.approx(sum(sharpes) / 3, rel=1e-9)
    worst = Objective.from_settings(small_settings(folds=3, fold_mode=mode, fold_agg="min",
                                                   objective="validation.sharpe").search)
    assert worst.value(got.metrics) == pytest.approx(min(sharpes), rel=1e-9)


def test_records_keep_per_fold_metrics_and_rank_by_the_folds(tmp_path, warm):
    settings = small_settings(folds=2, fold_agg="min", objective="validation.total_return", iterations=5,
                              max_fails=5)
    objective = Objective.from_settings(settings.search)
    run = RunFolder.create(tmp_path / "wf", {})
    out = Search(run, settings, objective, Evaluator(warm, settings), MutateProposer(),
                 example_path("sma_cross").read_text(), out=lambda line: None).run()
    evaluated = [r for r in out.records if r["status"] in ("keep", "discard")]
    assert evaluated
    for r in evaluated:
        folds = [r["metrics"][f"fold_{k}"]["total_return"] for k in (1, 2)]
        assert r["objective"] == pytest.approx(min(folds))
        assert r["objective_name"] == "min total_return over 2 rolling folds"


def test_prompts_show_per_fold_numbers():
    objective = Objective("validation", "sharpe", 2, "anchored", "mean")
    metrics = {p: {"sharpe": v, "total_return": v / 10} for p, v in
               (("train", 0.11), ("validation", 0.22), ("fold_1", 0.3333), ("fold_2", 0.4444))}
    table = metrics_table(metrics, objective)
    assert table.splitlines()[0] == "| metric | train | validation | fold_1 | fold_2 |"
    assert "| sharpe | 0.1100 | 0.2200 | 0.3333 | 0.4444 |" in table
    s = small_settings()
    periods = {"train": {"first": "2000-01-03", "last": "2003-12-31", "bars": 1042},
               "validation": {"first": "2004-01-01", "last": "2004-12-31", "bars": 262},
               "folds": {"fold_1": {"first": "2000-01-03", "last": "2002-06-28", "bars": 650},
                         "fold_2": {"first": "2000-01-03", "last": "2004-12-31", "bars": 1304}}}
    system = system_prompt(s, objective, periods, "SPY")
    assert "mean sharpe over 2 anchored folds" in system and "the mean of `sharpe` over 2 anchored" in system
    assert "- fold_2: 2000-01-03 to 2004-12-31, 1304 bars" in system
    parent = Member(1, 0.39, metrics, "buy when true\nsell when false\n")
    user = iteration_prompt(s, objective, 2, parent, [parent], "", None, 0)
    assert "0.3333" in user and "0.4444" in user
    plain = system_prompt(s, Objective.parse("validation.sharpe"), periods, "SPY")
    assert "walk-forward" not in plain and "the `sharpe` of the validation period" in plain


def test_cli_folds_are_part_of_the_runs_identity(clean_env, warm, capsys):
    assert evolve(clean_env, "--run", "w", "--iterations", "2", "--folds", "2", "--no-report") == 0
    out = capsys.readouterr().out
    assert "objective=mean total_return over 2 rolling folds" in out
    config = (clean_env / "runs" / "w" / "config.json").read_text()
    assert '"fold_1"' in config and '"folds": 2' in config
    assert evolve(clean_env, "--run", "w", "--folds", "3") == 2
    assert "search.folds: the run has 2, you gave 3" in capsys.readouterr().err
    assert evolve(clean_env, "--run", "x", "--folds", "70", "--iterations", "2") == 2
    assert "each fold needs at least" in capsys.readouterr().err
