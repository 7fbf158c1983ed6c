"""The search on a universe: the objective aggregated across markets, the prompt's per-market spread,
averaged returns, the sealed test per market, resume checks and the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autostrat.sim.backtest import load_strategy
from autostrat.cli import main
from autostrat.config import Settings
from autostrat.sim.evaluator import Evaluator, UniverseEvaluator
from autostrat.sim.objective import Objective
from autostrat.search.prompt_metrics import asset_spread, metrics_table
from autostrat.resources import example_path
from autostrat.data.load import load_universe
from autostrat.data.universe import aggregate

DATA = "synthetic:seed=1..3,bars=1500"
SPLIT = {"train_end": "2003-12-31", "validation_start": "2004-01-01", "validation_end": "2004-12-31",
         "test_start": "2005-01-01"}
SPLIT_FLAGS = [x for k, v in SPLIT.items() for x in (f"--{k.replace('_', '-')}", v)]


def settings(**search) -> Settings:
    s = Settings()
    for k, v in SPLIT.items():
        s.set(f"split.{k}", v)
    for k, v in search.items():
        s.set(f"search.{k}", v)
    return s


@pytest.fixture(scope="module")
def universe():
    return load_universe(DATA)



@pytest.mark.parametrize("across", ["mean", "median", "min"])
def test_universe_evaluator_aggregates_each_market(universe, across):
    s = settings(across=across, folds=2)
    typed = load_strategy(example_path("sma_cross"))
    ev = UniverseEvaluator(universe, s)(typed)
    singles = [Evaluator(m, s)(typed) for m in universe]
    assert list(ev.metrics["assets"]) == universe.names
    for period in ("train", "validation", "fold_1", "fold_2"):
        for metric in ("total_return", "sharpe", "num_trades"):
            values = [e.metrics[period][metric] for e in singles]
            assert ev.metrics[period][metric] == aggregate(values, across)
    objective = Objective.from_settings(s.search, universe=True)
    assert "over markets" in str(objective) and objective.across == across
    assert objective.value(ev.metrics) == np.mean([ev.metrics["fold_1"]["total_return"],
                                                   ev.metrics["fold_2"]["total_return"]])
    # the returns are the equal-weight average across markets, one series (these markets share dates)
    layout = UniverseEvaluator(universe, s).returns_layout
    parts = [np.mean([e.returns[slice(*Evaluator(m, s).returns_layout[p])].astype(np.float64)
                      for m, e in zip(universe, singles)], axis=0) for p in ("train", "validation")]
    np.testing.assert_allclose(ev.returns, np.concatenate(parts).astype(np.float32), rtol=0, atol=1e-7)
    assert layout["validation"][1] == len(ev.returns)
    assert layout["train"][1] == len(parts[0]) == len(singles[0].returns) - len(parts[1])


def test_prompt_shows_the_spread_worst_first(universe):
    s = settings()
    ev = UniverseEvaluator(universe, s)(load_strategy(example_path("sma_cross")))
    objective = Objective.from_settings(s.search, universe=True)
    table = metrics_table(ev.metrics, objective)
    assert "Across 3 markets" in table and table.count("| synthetic:seed=") == 3
    values = {n: m["validation"]["total_return"] for n, m in ev.metrics["assets"].items()}
    worst = min(values, key=values.get)
    rows = [line for line in table.splitlines() if line.startswith("| synthetic:seed=")]
    assert rows[0].startswith(f"| {worst} |")


def test_prompt_spread_keeps_the_worst_and_best_of_a_long_list():
    objective = Objective("validation", "sharpe", across="mean")
    by_asset = {f"M{i:02d}": {"train": {"sharpe": 0.0}, "validation": {"sharpe": float(i)}} for i in range(20)}
    text = asset_spread(by_asset, objective, limit=6)
    names = [line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| M")]
    assert names == ["M00", "M01", "M02", "M17", "M18", "M19"]
    assert "(14 markets in between)" in text


def test_evolve_on_a_universe(clean_env, capsys, universe):
    base = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs", "--proposer", "mutate"]
    assert main([*base, "--run", "u", "--iterations", "4", "--across", "min"]) == 0
    out = capsys.readouterr().out
    assert "(3 markets)" in out and "validation.total_return (min over markets)" in out
    run = clean_env / "runs" / "u"
    config = json.loads((run / "config.json").read_text())
    assert [m["name"] for m in config["data"]["markets"]] == universe.names
    assert config["data"]["sha256"] == universe.sha256 and config["periods"]["train"]["markets"] == 3
    for i in range(4):
        record = json.loads((run / f"iter_{i:04d}.json").read_text())
        if record["status"] not in ("keep", "discard"):
            continue
        per = [m["validation"]["total_return"] for m in record["metrics"]["assets"].values()]
        assert record["objective"] == min(per)
        assert len(np.load(run / "returns" / f"iter_{i:04d}.npy")) == config["returns_layout"]["validation"][1]
    sealed = json.loads((run / "sealed.json").read_text())
    assert sealed["test_period"]["markets"] == 3
    best = sealed["openings"][0]["strategies"][0]
    assert list(best["test_by_asset"]) == universe.names
    assert best["test"]["sharpe"] == min(m["sharpe"] for m in best["test_by_asset"].values())
    html = (run / "report.html").read_text()
    assert "Every market of the universe" in html and "whose objective is the median" in html
    report = json.loads((run / "report.json").read_text())
    assert report["universe"]["median_market"] in universe.names
    # the statistics read one averaged series, as long as the validation calendar, not 3 markets' worth
    assert config["returns_series"].startswith("the equal-weight average of the 3 markets")
    assert report["stats"]["series"] == config["returns_series"] and "equal-weight average" in html
    lo, hi = config["returns_layout"]["validation"]
    assert report["stats"]["track_record"] == hi - lo == config["periods"]["validation"]["bars"] // 3 - 1
    assert "market-years (3 markets)" in html

    # resuming must keep the aggregate; --null is a single-market tool
    assert main([*base, "--run", "u", "--across", "mean"]) == 2
    assert "search.across" in capsys.readouterr().err
    assert main([*base, "--run", "u", "--iterations", "5", "--no-report"]) == 0
    assert "resuming: 4 iterations saved" in capsys.readouterr().out
    assert main([*base, "--run", "n", "--iterations", "2", "--null"]) == 2
    assert "--null runs on one market" in capsys.readouterr().err
    assert not (clean_env / "runs" / "n").exists()


def _market(name, days, closes):
    import autostrat.data.market as M
    closes = np.asarray(closes, dtype=np.float64)
    return M.Market(name, np.array(days, dtype="datetime64[D]"), closes, closes, closes, closes,
                    np.ones(len(closes)), "test", name)


def test_universe_returns_are_the_average_over_common_dates_by_hand():
    """Two markets on different calendars, always long, filled at the close without costs: each day's
    return is the close-to-close move, and only the days both markets have are averaged."""
    from autostrat.data.universe import Universe
    from autostrat.lang.check import check
    from autostrat.lang.parse import parse

    a = _market("A", ["2003-12-29", "2003-12-30", "2003-12-31", "2004-01-02", "2004-01-05", "2004-01-06"],
                [100, 110, 121, 100, 102, 100.98])
    b = _market("B", ["2003-12-30", "2003-12-31", "2004-01-02", "2004-01-06"], [50, 45, 40, 44])
    s = settings()
    s.backtest.fill, s.backtest.commission_bps, s.backtest.slippage_bps = "close", 0.0, 0.0
    typed = check(parse('strategy "hold"\nbuy when close > 0\nsell when close < 0\n'))
    ev = UniverseEvaluator(Universe((a, b)), s)
    got = ev(typed).returns
    # train: both have a return on 12-31 only (A +10%, B -10%); validation: on 01-06 only (A -1%, B +10%)
    assert ev.returns_layout == {"train": (0, 1), "validation": (1, 2)}
    np.testing.assert_allclose(got, [0.0, 0.045], atol=1e-7)


def test_a_universe_run_with_end_to_end_returns_is_labelled_and_not_resumed(clean_env, universe):
    from autostrat.errors import ConfigError
    from autostrat.honest.run_statistics import run_statistics
    from autostrat.search.runs import RunFolder
    from autostrat.search.session import resume_run

    base = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs", "--proposer", "mutate"]
    assert main([*base, "--run", "old", "--iterations", "2", "--no-report"]) == 0
    path = clean_env / "runs" / "old"
    config = json.loads((path / "config.json").read_text())
    del config["returns_series"]  # as a folder written when the returns were laid end to end
    (path / "config.json").write_text(json.dumps(config))
    assert "laid end to end" in run_statistics(RunFolder.open(path))["series"]
    with pytest.raises(ConfigError, match="laid end to end.*Start a new run"):
        resume_run(path, settings(), [])
