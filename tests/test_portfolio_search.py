"""`evolve` on portfolio strategies: the evaluator against backtest_portfolio, a run through the CLI,
resume equal to an uninterrupted run, mismatched candidates invalid, and mutate's portfolio operators."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest

from autostrat.cli import main
from autostrat.config import Settings
from autostrat.data.panel_spec import load_panel
from autostrat.errors import ConfigError
from autostrat.honest.run_statistics import run_statistics
from autostrat.lang.check import load as load_checked
from autostrat.lang.fmt import fmt
from autostrat.lang.parse import parse
from autostrat.resources import example_path, examples_dir
from autostrat.search.mutate import mutate, operator_of
from autostrat.search.runs import RunFolder, clean_json
from autostrat.sim.metrics import daily_returns
from autostrat.sim.objective import Objective
from autostrat.sim.portfolio_backtest import backtest_portfolio
from autostrat.sim.portfolio_evaluator import PortfolioEvaluator

MOMENTUM = examples_dir() / "portfolio" / "momentum_12_1.strat"
DATA = "synthetic-universe:seed=2,assets=20,bars=1500"
SPLIT = {"train_end": "2003-12-31", "validation_start": "2004-01-01", "validation_end": "2004-12-31",
         "test_start": "2005-01-01"}
SPLIT_FLAGS = [x for k, v in SPLIT.items() for x in (f"--{k.replace('_', '-')}", v)]


def settings(**search) -> Settings:
    s = Settings()
    s.data.spec = DATA
    for k, v in SPLIT.items():
        s.set(f"split.{k}", v)
    for k, v in search.items():
        s.set(f"search.{k}", v)
    return s


@pytest.fixture(scope="module")
def panel():
    return load_panel(DATA)


def evolve(tmp_path, *args):
    return main(["evolve", "--from", str(MOMENTUM), "--data", DATA, *SPLIT_FLAGS, "--proposer", "mutate",
                 "--runs-dir", str(tmp_path / "runs"), "--no-report", *args])


def records(folder):
    return RunFolder.open(folder).load_records()


# --- the evaluator -----------------------------------------------------------------------------------


def test_the_evaluator_scores_train_and_validation_as_backtest_portfolio_does(panel):
    s = settings()
    typed = load_checked(MOMENTUM.read_text(), str(MOMENTUM), portfolio=True)
    ev = PortfolioEvaluator(panel, s)(typed)
    want = backtest_portfolio(typed, panel, s)
    assert set(ev.metrics) == {"train", "validation"}
    for period in ("train", "validation"):
        assert ev.metrics[period] == want.metrics[period]
    # the returns the run's statistics read: the portfolio's daily returns, train then validation
    expected = np.concatenate([daily_returns(want.equity[p]) for p in ("train", "validation")])
    np.testing.assert_array_equal(ev.returns, expected.astype(np.float32))
    assert len(ev.behaviour) == 64
    # walk-forward folds: more periods scored, the same train and validation, the same returns
    folded = PortfolioEvaluator(panel, settings(folds=3))(typed)
    assert set(folded.metrics) == {"train", "validation", "fold_1", "fold_2", "fold_3"}
    assert {p: folded.metrics[p] for p in ("train", "validation")} == ev.metrics
    np.testing.assert_array_equal(folded.returns, ev.returns)
    assert Objective.from_settings(settings(folds=3).search, portfolio=True).value(folded.metrics) == pytest.approx(
        np.mean([folded.metrics[f"fold_{k}"]["total_return"] for k in (1, 2, 3)]))


def test_the_evaluator_refuses_close_fills_and_a_missing_validation_period(panel):
    s = settings()
    s.backtest.fill = "close"
    with pytest.raises(ConfigError, match="next open"):
        PortfolioEvaluator(panel, s)
    s = settings()
    s.set("split.validation_start", "2010-01-01")
    s.set("split.validation_end", "2010-12-31")
    s.set("split.test_start", "2011-01-01")
    with pytest.raises(Exception, match="validation"):
        PortfolioEvaluator(panel, s)


def test_a_portfolio_objective_may_name_the_score_metrics():
    assert str(Objective.parse("validation.rank_ic_tstat", portfolio=True)) == "validation.rank_ic_tstat"
    with pytest.raises(ConfigError, match="unknown metric 'rank_ic_tstat'"):
        Objective.parse("validation.rank_ic_tstat")
    with pytest.raises(ConfigError, match="a portfolio's metrics"):
        Objective.parse("validation.num_trades", portfolio=True)  # a portfolio has no round trips
    from autostrat.search.bar import parse_bar

    assert str(parse_bar("test.rank_ic_tstat > 2", portfolio=True)) == "test.rank_ic_tstat > 2"
    with pytest.raises(ConfigError, match="unknown name 'test.rank_ic_tstat'"):
        parse_bar("test.rank_ic_tstat > 2")


# --- a run ---------------------------------------------------------------------------------------------


def test_a_portfolio_evolve_run_keeps_portfolio_programs(clean_env, capsys):
    assert evolve(clean_env, "--run", "p", "--iterations", "6", "--max-fails", "6") == 0
    out = capsys.readouterr().out
    assert "portfolio of 20 assets" in out and "stopped: reached the iteration cap (6)" in out
    folder = clean_env / "runs" / "p"
    config = json.loads((folder / "config.json").read_text())
    assert config["portfolio"] is True and config["data"]["source"] == "panel"
    assert config["data"]["sha256"] == load_panel(DATA).sha256 and config["data"]["assets"] == 20
    rs = records(folder)
    assert [r["iteration"] for r in rs] == list(range(6))
    assert rs[0]["status"] == "keep"
    judged = [r for r in rs if r["status"] in ("keep", "discard")]
    assert len(judged) >= 2
    for r in judged:
        assert np.isfinite(r["metrics"]["validation"]["rank_ic_mean"])
        returns = np.load(folder / r["returns"])
        layout = config["returns_layout"]
        assert len(returns) == layout["validation"][1]
    for r in rs:
        typed = load_checked((folder / r["strategy"]).read_text(), portfolio=True)
        assert typed.portfolio is not None
    best = load_checked((folder / "best.strat").read_text(), portfolio=True)
    assert best.portfolio is not None
    assert "rank IC t-statistic: train" in (folder / "learnings.md").read_text()  # the score's quality, too


def test_a_resumed_portfolio_run_equals_an_uninterrupted_one(clean_env):
    common = ["--iterations", "10", "--max-fails", "10", "--seed", "4"]
    assert evolve(clean_env, "--run", "a", *common) == 0
    assert evolve(clean_env, "--run", "b", "--iterations", "4", "--max-fails", "10", "--seed", "4") == 0
    assert evolve(clean_env, "--run", "b", "--iterations", "10") == 0  # resume with a larger budget
    a, b = clean_env / "runs" / "a", clean_env / "runs" / "b"
    for name in ("results.tsv", "learnings.md", "best.strat"):
        assert (a / name).read_text() == (b / name).read_text()
    strip = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    assert strip(records(a)) == strip(records(b))


def test_a_portfolio_run_on_a_universe_of_csv_files_checks_its_data_on_resume(clean_env, panel, capsys):
    import pandas as pd

    lines = []
    for a in range(8):  # each market as its own CSV, only the dates it traded
        rows = np.isfinite(panel.close[a])
        frame = pd.DataFrame({c: getattr(panel, c)[a, rows] for c in ("open", "high", "low", "close", "volume")},
                             index=pd.DatetimeIndex(panel.dates[rows], name="Date"))
        frame.to_csv(clean_env / f"m{a}.csv")
        lines.append(f"m{a}.csv")
    listing = clean_env / "markets.txt"
    listing.write_text("# eight markets\n" + "\n".join(lines) + "\n")
    spec = f"universe:{listing}"
    args = ["evolve", "--from", str(MOMENTUM), "--data", spec, *SPLIT_FLAGS, "--proposer", "mutate", "--no-report",
            "--runs-dir", str(clean_env / "runs"), "--run", "u"]
    assert main([*args, "--iterations", "3"]) == 0
    assert "portfolio of 8 assets" in capsys.readouterr().out
    config = json.loads((clean_env / "runs" / "u" / "config.json").read_text())
    assert config["portfolio"] and config["data"]["sha256"] == load_panel(spec).sha256
    assert [r["iteration"] for r in records(clean_env / "runs" / "u")] == [0, 1, 2]
    with open(clean_env / "m3.csv", "a") as f:  # one more bar in one market
        f.write("2030-01-02,1,1,1,1,1\n")
    assert main([*args, "--iterations", "4"]) == 2
    assert "the data changed since this run started" in capsys.readouterr().err


def test_kill_and_ctrl_c_then_resume_equal_an_uninterrupted_portfolio_run(clean_env):
    from test_loop import check_folder_consistent, kill_and_resume

    n = 16
    common = ["--from", str(MOMENTUM), "--data", DATA, *SPLIT_FLAGS, "--iterations", str(n), "--max-fails", str(n),
              "--seed", "5", "--proposer", "mutate", "--runs-dir", "runs", "--no-report"]
    assert main(["evolve", *common, "--run", "ref"]) == 0
    kill_and_resume(clean_env, [*common, "--run", "k"], None, n, random.Random(7))
    assert main(["evolve", *common, "--run", "k"]) == 0
    ref, got = clean_env / "runs" / "ref", clean_env / "runs" / "k"
    for name in ("results.tsv", "learnings.md", "best.strat"):
        assert (got / name).read_text() == (ref / name).read_text()
    check_folder_consistent(got)


def test_mismatched_candidates_are_invalid_with_the_reason(clean_env, capsys):
    assert evolve(clean_env, "--run", "p", "--iterations", "2") == 0
    single = example_path("sma_cross")
    assert main(["evolve", "--run", "p", "--runs-dir", str(clean_env / "runs"), "--add", str(single)]) == 0
    added = records(clean_env / "runs" / "p")[-1]
    assert added["status"] == "invalid"
    assert "single-market strategy" in added["error"] and "portfolio strategies" in added["error"]
    # the reverse: a portfolio strategy added to a single-market run
    assert main(["evolve", "--data", "synthetic:bars=1500", *SPLIT_FLAGS, "--proposer", "mutate", "--run", "m",
                 "--iterations", "2", "--no-report", "--runs-dir", str(clean_env / "runs")]) == 0
    assert main(["evolve", "--run", "m", "--runs-dir", str(clean_env / "runs"), "--add", str(MOMENTUM)]) == 0
    added = records(clean_env / "runs" / "m")[-1]
    assert added["status"] == "invalid" and "this is a portfolio strategy" in added["error"]


def test_a_cap_that_never_binds_is_a_behaviour_duplicate(clean_env, tmp_path):
    assert evolve(clean_env, "--run", "p", "--iterations", "1") == 0
    # 20 assets, 10% a side: 2 assets of weight 1/4 each, so a 50% cap changes nothing
    capped = tmp_path / "capped.strat"
    capped.write_text(MOMENTUM.read_text().replace("weight equal", "weight equal capped at 50%"))
    assert main(["evolve", "--run", "p", "--runs-dir", str(clean_env / "runs"), "--add", str(capped)]) == 0
    added = records(clean_env / "runs" / "p")[-1]
    assert added["status"] == "duplicate" and added["duplicate_of"] == 0
    assert added["duplicate_kind"] == "portfolio"


def test_a_portfolio_run_refuses_null_and_min_trades(clean_env, capsys):
    assert evolve(clean_env, "--run", "n", "--null") == 2
    assert "synthetic-universe:premium=0" in capsys.readouterr().err
    assert evolve(clean_env, "--run", "t", "--min-trades", "5") == 2
    assert "no round trips" in capsys.readouterr().err
    assert not (clean_env / "runs" / "n").exists() and not (clean_env / "runs" / "t").exists()


# --- tuning -------------------------------------------------------------------------------------------


def test_a_tuned_portfolio_keeps_the_chosen_values_whose_metrics_equal_a_plain_backtest(clean_env):
    ranged = clean_env / "ranged.strat"
    ranged.write_text(MOMENTUM.read_text().replace("strategy \"12-1 momentum, top decile\"",
                                                   "strategy \"ranged momentum\"\nparam n = 126 in 63..252\n"
                                                   "param every = 21 in 5..42")
                      .replace("roc(close, 252)", "roc(close, n)").replace("every 21 bars", "every every bars"))
    assert main(["evolve", "--from", str(ranged), "--data", DATA, *SPLIT_FLAGS, "--proposer", "mutate",
                 "--runs-dir", str(clean_env / "runs"), "--no-report", "--run", "t", "--iterations", "4",
                 "--max-fails", "4", "--tune", "15", "--tune-pick", "robust"]) == 0
    folder = clean_env / "runs" / "t"
    rs = records(folder)
    tuned = [r for r in rs if r.get("tuning") and r["status"] in ("keep", "discard")]
    assert tuned and all(r["trials"] == r["tuning"]["variants"] <= 15 for r in tuned)
    assert any(r["tuning"]["chosen"] != r["tuning"]["proposed"] for r in tuned)  # the tuning moved something
    panel, s = load_panel(DATA), settings()
    for r in tuned:
        kept = (folder / r["strategy"]).read_text()
        program = parse(kept)
        assert {n: p.value.value for n, p in program.params().items() if n in r["tuning"]["chosen"]} == r["tuning"]["chosen"]
        plain = backtest_portfolio(kept, panel, s)
        for period in ("train", "validation"):
            assert clean_json(r["metrics"][period]) == clean_json(plain.metrics[period])
    stats = run_statistics(RunFolder.open(folder))
    assert stats["n_trials"] == sum(r.get("trials", 1) for r in rs if r["status"] in ("keep", "discard"))


def test_portfolio_variants_in_bulk_equal_full_evaluations(panel):
    s = settings(folds=3)
    evaluator = PortfolioEvaluator(panel, s)
    texts = [MOMENTUM.read_text().replace("every 21 bars", f"every {k} bars") for k in (5, 21, 30)]
    programs = [load_checked(t, portfolio=True) for t in texts]
    many = evaluator.metrics_many(programs)
    for typed, metrics in zip(programs, many):
        full = evaluator(typed).metrics
        assert set(metrics) == set(full) and len(full) == 5  # train, validation and three folds
        assert clean_json(metrics) == clean_json(full)


# --- mutate ---------------------------------------------------------------------------------------------


def test_every_portfolio_mutation_checks_as_a_portfolio_and_uses_the_new_operators():
    parent = parse(MOMENTUM.read_text(), str(MOMENTUM))
    kinds = Counter()
    for seed in range(150):
        program, desc = mutate([parent], random.Random(seed))
        text = fmt(program)
        typed = load_checked(text, portfolio=True)
        assert typed.portfolio is not None, desc
        assert parse(text) == program  # the text parses back to the same program
        kinds[operator_of(desc)] += 1
    assert {"hold", "rebalance", "weight", "move"} <= set(kinds)
    assert not {"add", "exit", "crossover"} & set(kinds)  # one parent: nothing to cross over with


def test_portfolio_crossover_takes_another_portfolios_ranking_rebalance_or_weighting(panel):
    from autostrat.tape.portfolio_eval import evaluate_scores

    parent = parse("score = roc(close, 126)\nhold long top 10% by score\nrebalance every 21 bars\n")
    donor = parse("param m = 10 in 5..30\nv = stdev(roc(close, 1), 63)\nscore = rank(0 - v)\n"
                  "hold long top 20% by score\nrebalance every m bars\nweight by v capped at 10%\n")
    donor_score = evaluate_scores(load_checked(fmt(donor), portfolio=True), panel)["score"]
    seen = Counter()
    for seed in range(60):
        program, desc = mutate([parent, donor], random.Random(seed), weights={"crossover": 1})
        assert operator_of(desc) == "crossover"
        typed = load_checked(fmt(program), portfolio=True)
        spec = typed.portfolio
        if "ranking by score" in desc:
            seen["score"] += 1
            assert "renamed score to score_2" in desc  # the parent's own `score` is a different binding
            np.testing.assert_array_equal(evaluate_scores(typed, panel)[spec.long.by], donor_score)
            assert spec.long.fraction == pytest.approx(0.1) and spec.every == 21
        elif "rebalance from" in desc:
            seen["rebalance"] += 1
            assert spec.every == 10 and "param m = 10 in 5..30" in fmt(program)
        else:
            assert "weighting from" in desc or "weight from" in desc, desc
            seen["weight"] += 1
            assert spec.weight_by is not None and spec.cap == pytest.approx(0.1)
    assert set(seen) == {"score", "rebalance", "weight"}


def test_portfolio_operators_change_what_they_say():
    parent = parse("score = roc(close, 126)\nhold long top 10% by score\nrebalance every 21 bars\n")
    seen = {}
    for seed in range(200):
        program, desc = mutate([parent], random.Random(seed), weights={"hold": 1, "rebalance": 1, "weight": 1})
        spec = load_checked(fmt(program), portfolio=True).portfolio
        seen.setdefault(desc.split(" ")[0], []).append((desc, spec))
    for desc, spec in seen["rebalance"]:
        assert desc == f"rebalance every 21 -> {spec.every} bars"
    for desc, spec in seen["hold"]:
        if desc.startswith("hold long top 10% ->"):
            assert desc.endswith(f"-> {spec.long.fraction * 100:g}%") and spec.short is None
        else:
            assert desc == "hold short bottom 10% by score added"
            assert spec.short.edge == "bottom" and spec.short.fraction == pytest.approx(0.1)
    weights = {(spec.weight_by, spec.cap) for _, spec in seen["weight"]}
    assert ("score", None) in weights and any(cap for _, cap in weights)


# --- the llm proposer, against a scripted chat server on 127.0.0.1 ------------------------------------


def test_the_llm_prompt_shows_the_score_metrics_and_a_single_market_answer_is_repaired(clean_env, monkeypatch):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_llm_server import FakeLLM, last_user_message

    single = "```strat\n" + example_path("sma_cross").read_text() + "```"
    portfolio = "```strat\n" + MOMENTUM.read_text().replace("every 21 bars", "every 42 bars") + "```"
    other = "```strat\n" + MOMENTUM.read_text().replace("top 10%", "top 20%") + "```"
    with FakeLLM([single, portfolio, other]) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert main(["evolve", "--from", str(MOMENTUM), "--data", DATA, *SPLIT_FLAGS, "--proposer", "llm",
                     "--runs-dir", str(clean_env / "runs"), "--no-report", "--run", "l", "--iterations", "3"]) == 0
    first, repair, second = llm.requests
    system = first["messages"][0]["content"]
    assert "This run searches portfolio strategies" in system and "universe of 20 assets" in system
    assert "{{" not in system and "rank_ic_tstat (its t-statistic)" in system
    prompt = last_user_message(first)
    for metric in ("rank_ic_tstat", "ic_mean", "long_short_spread", "turnover", "holdings"):
        assert f"| {metric} |" in prompt  # the parent's table shows the score's metrics
    assert "| num_trades |" not in prompt
    assert "this run searches portfolio strategies" in last_user_message(repair)
    rs = records(clean_env / "runs" / "l")
    assert rs[1]["repairs"] == 1 and rs[1]["status"] in ("keep", "discard")
    assert "rebalance every 42 bars" in (clean_env / "runs" / "l" / rs[1]["strategy"]).read_text()
    assert rs[2]["repairs"] == 0 and rs[2]["status"] in ("keep", "discard")


# --- the sealed test, the run's statistics and the report ---------------------------------------------


def test_a_portfolio_run_opens_its_sealed_test_and_reports_on_the_portfolios_returns(clean_env, capsys):
    import math

    import pandas as pd

    from autostrat.sim.backtest import buy_and_hold
    from autostrat.tape.portfolio_eval import evaluate_scores

    assert evolve(clean_env, "--run", "r", "--iterations", "5", "--max-fails", "5") == 0
    # --no-report is in evolve(); run the report the way a user would, then read what it wrote
    assert main(["report", "r", "--runs-dir", str(clean_env / "runs")]) == 0
    out = capsys.readouterr().out
    folder = clean_env / "runs" / "r"
    sealed = json.loads((folder / "sealed.json").read_text())
    opening = sealed["openings"][-1]
    panel, s = load_panel(DATA), settings()
    for entry in opening["strategies"]:
        text = (folder / f"iter_{entry['iteration']:04d}.strat").read_text()
        want = backtest_portfolio(text, panel, s, periods=("test",))
        assert entry["test"] == pytest.approx(clean_json(want.metrics["test"]))  # NaN is null in JSON
    index = panel.benchmark()
    spans = backtest_portfolio(MOMENTUM, panel, s, periods=("test",)).spans
    assert opening["buy_hold"] == pytest.approx(clean_json(buy_and_hold(index, spans, s)["test"]))
    assert sealed["test_period"]["first"] == str(panel.dates[spans["test"][0]])

    report = json.loads((folder / "report.json").read_text())
    stats = report["stats"]
    best = next(r for r in records(folder) if r["iteration"] == stats["best_iteration"])
    r = np.load(folder / best["returns"]).astype(np.float64)
    lo, hi = json.loads((folder / "config.json").read_text())["returns_layout"]["validation"]
    r = r[lo:hi]  # the objective's period: what PSR and DSR read
    assert stats["track_record"] == len(r)
    assert stats["sharpe_daily"] == pytest.approx(r.mean() / r.std(ddof=1), rel=1e-9)
    d = r - r.mean()  # PSR (Bailey and Lopez de Prado 2012) with the series' skewness and raw kurtosis
    sr, skew, kurt = r.mean() / r.std(ddof=1), (d ** 3).mean() / (d ** 2).mean() ** 1.5, (d ** 4).mean() / (d ** 2).mean() ** 2
    z = sr * math.sqrt(len(r) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2)
    assert stats["psr"] == pytest.approx(0.5 * (1 + math.erf(z / math.sqrt(2))), rel=1e-6)
    assert math.isfinite(stats["dsr"]) and "pbo" in stats
    assert f"psr: {stats['psr']:.4f}" in out

    # the IC at each rebalance against pandas: the score's correlation with the next period's returns
    ic = report["portfolio"]["ic"]
    assert set(ic) == {"train", "validation", "test"}
    text = (folder / "best.strat").read_text()
    typed = load_checked(text, portfolio=True)
    score = evaluate_scores(typed, panel)[typed.portfolio.long.by]
    every = typed.portfolio.every
    a = spans["test"][0]
    for j in (0, 3):
        t = a + j * every
        frame = pd.DataFrame({"s": score[:, t], "f": panel.close[:, t + every] / panel.close[:, t] - 1})
        frame = frame[np.isfinite(frame.s) & np.isfinite(frame.f)]
        assert ic["test"]["dates"][j] == str(panel.dates[t])
        assert ic["test"]["ic"][j] == pytest.approx(frame.s.corr(frame.f), rel=1e-9)
        assert ic["test"]["rank_ic"][j] == pytest.approx(frame.s.rank().corr(frame.f.rank()), rel=1e-9)  # Spearman
    html = (folder / "report.html").read_text()
    assert 'id="portfolio"' in html and "equal-weight index" in html and "rank IC" in html
    assert "Portfolio (ranked at each rebalance close" in html and "Rules (checked at each close)" not in html
    assert report["card"]["rules"][0][0] == "hold long"

    # robustness: the portfolio's own numbers jittered, its costs doubled, all on the universe
    rob = report["robustness"]
    assert [row["name"] for row in rob["rows"]] == ["parameters jittered by +-20%", "costs doubled"]
    assert any(k["kind"] == "portfolio" and k["label"].startswith("rebalance every") for k in rob["knobs"])
    assert rob["found"]["validation_return"] == backtest_portfolio(text, panel, s).metrics["validation"]["total_return"]
    doubled = settings()
    doubled.backtest.commission_bps *= 2
    doubled.backtest.slippage_bps *= 2
    want = backtest_portfolio(text, panel, doubled).metrics["validation"]["total_return"]
    assert rob["rows"][1]["validation_return"] == [want, want, want]
    assert rob["points"] > 1 and "Robustness of the best strategy" in html

    # the ledger lists the opening under the universe's index
    assert main(["sealed", DATA, *SPLIT_FLAGS]) == 0
    assert "run r by report" in capsys.readouterr().out
