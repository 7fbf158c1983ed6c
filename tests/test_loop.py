"""The search loop: selection rules against scripted objectives, evaluation, resume, kill -9, Ctrl-C, CLI."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autostrat.sim import evaluator as O
from autostrat.sim.backtest import backtest, load_strategy
from autostrat.cli import main
from autostrat.config import Settings
from autostrat.data.load import load_market
from autostrat.errors import ConfigError
from autostrat.search.loop import MutateProposer, Proposal, Search
from autostrat.sim.evaluator import Evaluation, Evaluator
from autostrat.sim.objective import beats, Objective
from autostrat.lang.parse import parse
from autostrat.resources import example_path
from autostrat.search.runs import RunFolder, read_results_tsv

DATA = "synthetic:bars=1500"
SPLIT = {"train_end": "2003-12-31", "validation_start": "2004-01-01", "validation_end": "2004-12-31",
         "test_start": "2005-01-01"}
SPLIT_FLAGS = [x for k, v in SPLIT.items() for x in (f"--{k.replace('_', '-')}", v)]


def small_settings(**search) -> Settings:
    s = Settings()
    s.data.spec = DATA
    for k, v in SPLIT.items():
        s.set(f"split.{k}", v)
    for k, v in search.items():
        s.set(f"search.{k}", v)
    return s


@pytest.fixture(scope="session")
def market():
    return load_market(DATA)


@pytest.fixture(scope="session")
def warm(market):
    """Compile (or load from the numba cache) everything an evaluation runs, once per session."""
    Evaluator(market, small_settings())(load_strategy(example_path("sma_cross")))
    return market



# --- the objective -----------------------------------------------------------------------------

def test_objective_parse_refuses_the_test_period_and_suggests_metrics():
    assert str(Objective.parse("train.sharpe")) == "train.sharpe"
    with pytest.raises(ConfigError, match="sealed"):
        Objective.parse("test.total_return")
    with pytest.raises(ConfigError, match="did you mean 'sharpe'"):
        Objective.parse("validation.sharp")
    with pytest.raises(ConfigError, match="PERIOD.METRIC"):
        Objective.parse("total_return")


def test_nan_ranks_worst_and_ties_do_not_beat():
    assert beats(-1e300, math.nan) and not beats(math.nan, -1e300)
    assert not beats(math.nan, math.nan) and not beats(0.5, 0.5) and beats(0.5000001, 0.5)


# --- the selection rules, against scripted objectives -----------------------------------------------

def strat(n: int, name: str | None = None) -> str:
    return (f'strategy "{name or f"c{n}"}"\nparam fast = {n + 2} in 1..500\n'
            "buy when close > sma(close, fast)\nsell when close < sma(close, fast)\n")


class Scripted:
    """Proposes strat(i) at iteration i, or what the plan says; notes what it was shown."""

    name, uses_prompt = "script", False

    def __init__(self, plan=None):
        self.plan, self.seen = plan or {}, []

    def propose(self, ctx):
        self.seen.append((ctx.iteration, ctx.parent.iteration, [m.iteration for m in ctx.population], ctx.fails))
        kind = self.plan.get(ctx.iteration, "new")
        if kind == "invalid":
            return Proposal(None, "buy when", status="invalid", error="candidate.strat:1:9: error: ...")
        text = strat(int(kind[4:]), "a copy") if kind.startswith("dup:") else strat(ctx.iteration)
        return Proposal(parse(text), text, hypothesis=f"h{ctx.iteration}")


def scripted_evaluator(values):
    def evaluate(typed):
        v = values[int(typed.name[1:])]
        if v == "boom":
            raise RuntimeError("kernel exploded")
        return Evaluation({"train": {"total_return": v / 2, "buy_hold_return": 0.1},
                           "validation": {"total_return": v, "buy_hold_return": 0.2}})
    return evaluate


def run_scripted(tmp_path, values, plan=None, **search):
    settings = small_settings(**search)
    proposer = Scripted(plan)
    lines = []
    search_ = Search(RunFolder.create(tmp_path / "run", {}), settings, Objective.parse("validation.total_return"),
                     scripted_evaluator(values), proposer, strat(0), out=lines.append)
    return search_.run(), proposer, lines


def test_population_failures_stop_and_parents(tmp_path):
    nan = math.nan
    values = [1.0, 0.5, 0.2, 0.1, nan, 0.3, 0.3, None, None, 9.9]
    outcome, proposer, lines = run_scripted(tmp_path, values, {7: "invalid", 8: "dup:1"},
                                            population=3, max_fails=3, iterations=50, seed=0)
    statuses = [r["status"] for r in outcome.records]
    assert statuses == ["keep", "keep", "keep", "discard", "discard", "keep", "discard", "invalid", "duplicate"]
    assert outcome.reason == "fails" and len(outcome.records) == 9
    assert [m.iteration for m in outcome.population] == [0, 1, 5]
    assert outcome.records[8]["duplicate_of"] == 1 and "objective" not in outcome.records[8]

    def draw(i, pop):
        return random.Random(f"0:{i}:parent").choice(pop)

    # hand-derived: after a keep the parent is the new candidate; after a failure a seeded draw
    expected = [(1, 0, [0], 0), (2, 1, [0, 1], 0), (3, 2, [0, 1, 2], 0), (4, draw(4, [0, 1, 2]), [0, 1, 2], 1),
                (5, draw(5, [0, 1, 2]), [0, 1, 2], 2), (6, 5, [0, 1, 5], 0), (7, draw(7, [0, 1, 5]), [0, 1, 5], 1),
                (8, draw(8, [0, 1, 5]), [0, 1, 5], 2)]
    assert proposer.seen == expected
    assert [r["parent"] for r in outcome.records[1:]] == [e[1] for e in expected]
    assert lines[3] == "iter 3 status=discard objective=0.1000 best=1.0000 parent=2 tokens=0 " \
                       f"seconds={outcome.records[3]['seconds']:.2f}"
    assert outcome.records[6]["worst_kept"] == 0.3


def test_nan_is_worst_in_the_population(tmp_path):
    nan = math.nan
    outcome, _, _ = run_scripted(tmp_path, [nan, -5.0, -5.0, nan, -4.0], population=1, max_fails=9, iterations=5)
    assert [r["status"] for r in outcome.records] == ["keep", "keep", "discard", "discard", "keep"]
    assert [m.iteration for m in outcome.population] == [4] and outcome.reason == "iterations"


def test_evaluation_error_is_a_failure_and_the_loop_goes_on(tmp_path):
    outcome, _, _ = run_scripted(tmp_path, [1.0, "boom", 2.0], iterations=3)
    assert [r["status"] for r in outcome.records] == ["keep", "error", "keep"]
    assert "kernel exploded" in outcome.records[1]["error"]
    assert outcome.records[1]["hash"]  # a resubmission would be a duplicate, not a second error


def test_a_seed_changes_the_draws_but_not_the_rules(tmp_path):
    values = [1.0, 0.5, 0.2, 0.1, 0.05, 0.01, 0.0, 0.3]
    draws = set()
    for seed in range(6):
        _, proposer, _ = run_scripted(tmp_path / str(seed), values, seed=seed, max_fails=9, iterations=8)
        draws.add(tuple(s[1] for s in proposer.seen[3:]))
    assert len(draws) > 1


# --- evaluation ----------------------------------------------------------------------------------

def test_evaluator_matches_backtest_and_never_computes_test(warm, monkeypatch):
    settings = small_settings()
    asked = []
    real = O.evaluate_tape
    monkeypatch.setattr(O, "evaluate_tape",
                        lambda tape, m, spans, bt: (asked.append(list(spans)), real(tape, m, spans, bt))[1])
    ev = Evaluator(warm, settings)
    typed = load_strategy((example_path("donchian_atr")))
    got = ev(typed)
    want = backtest(typed, warm, settings)
    assert asked == [["train", "validation"]] and got.metrics.keys() == want.metrics.keys()
    for period, values in want.metrics.items():  # equal, NaN included (profit_factor with no loss)
        assert [str(v) for v in got.metrics[period].values()] == [str(v) for v in values.values()]
    assert set(ev.spans) == {"train", "validation"}
    (a0, a1), (b0, b1) = ev.spans["train"], ev.spans["validation"]
    assert got.returns.dtype == np.float32 and len(got.returns) == (a1 - a0 - 1) + (b1 - b0 - 1)
    for period in ("train", "validation"):
        lo, hi = ev.returns_layout[period]
        r = got.returns[lo:hi].astype(np.float64)
        np.testing.assert_allclose(r, want.daily_returns(period), atol=1e-7)
        assert np.prod(1 + r) - 1 == pytest.approx(want.metrics[period]["total_return"], rel=1e-5, abs=1e-6)


# --- resume --------------------------------------------------------------------------------------

def _mutate_search(folder, settings, market):
    run = RunFolder.open(folder) if RunFolder.exists(folder) else RunFolder.create(folder, {})
    return Search(run, settings, Objective.parse(settings.search.objective), Evaluator(market, settings),
                  MutateProposer(), example_path("sma_cross").read_text(), out=lambda line: None)


def _strip(record):
    return {k: v for k, v in record.items() if k not in ("seconds", "model_seconds")}


def test_resume_in_process_equals_an_uninterrupted_run(tmp_path, warm):
    full = _mutate_search(tmp_path / "a", small_settings(iterations=14, max_fails=14, seed=3), warm).run()
    part = _mutate_search(tmp_path / "b", small_settings(iterations=6, max_fails=14, seed=3), warm).run()
    assert part.reason == "iterations" and len(part.records) == 6
    for junk in ("iter_0006.strat", "returns/iter_0006.npy", ".results.tsv.x.tmp"):
        (tmp_path / "b" / junk).write_text("left by a killed process")
    rest = _mutate_search(tmp_path / "b", small_settings(iterations=14, max_fails=14, seed=3), warm).run()
    assert rest.ran == len(full.records) - 6
    assert [_strip(r) for r in rest.records] == [_strip(r) for r in full.records]
    for name in ("results.tsv", "learnings.md", "best.strat"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert not list((tmp_path / "b").rglob("*.tmp"))
    assert len(list((tmp_path / "b" / "returns").glob("*.npy"))) == sum(
        r["status"] in ("keep", "discard") for r in full.records)


# --- the command line ----------------------------------------------------------------------------

def progress(out: str) -> list[int]:
    """The iterations of the progress lines in some output."""
    return [int(m.group(1)) for m in re.finditer(r"^iter (\d+) status=", out, re.M)]


def evolve(tmp_path, *args):
    return main(["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", str(tmp_path / "runs"), *args])


def test_cli_defaults_to_mutate_without_a_model_and_prints_the_folder(clean_env, warm, capsys):
    assert evolve(clean_env, "--run", "r1", "--iterations", "4") == 0
    out = capsys.readouterr().out
    assert out.count("no model configured") == 1 and "proposer=mutate" in out
    assert progress(out) == [0, 1, 2, 3]
    assert f"run folder: {clean_env / 'runs' / 'r1'}" in out and "buy&hold" in out
    config = json.loads((clean_env / "runs" / "r1" / "config.json").read_text())
    assert config["settings"]["search"]["proposer"] == "mutate" and len(config["data"]["sha256"]) == 64
    assert set(config["periods"]) == {"train", "validation"} and config["autostrat_version"]
    assert len(read_results_tsv(clean_env / "runs" / "r1" / "results.tsv")) == 4
    learnings = (clean_env / "runs" / "r1" / "learnings.md").read_text()
    assert [f"## iter {i}:" in learnings for i in range(4)] == [True] * 4


def test_cli_refuses_a_test_objective_and_a_changed_resume(clean_env, warm, capsys):
    assert evolve(clean_env, "--objective", "test.sharpe") == 2
    assert "sealed" in capsys.readouterr().err
    assert evolve(clean_env, "--run", "r", "--iterations", "2", "--proposer", "mutate") == 0
    assert evolve(clean_env, "--run", "r", "--objective", "train.sharpe") == 2
    assert "cannot resume with different settings" in capsys.readouterr().err
    assert evolve(clean_env, "--run", "r") == 0  # already finished: nothing new
    out = capsys.readouterr().out
    assert not progress(out) and "after 2 iterations (0 in this session)" in out
    assert evolve(clean_env, "--run", "r", "--iterations", "3") == 0  # a larger budget extends it
    assert progress(capsys.readouterr().out) == [2]


def test_cli_resume_refuses_changed_data(clean_env, warm, market, capsys):
    csv = clean_env / "prices.csv"
    market.frame().to_csv(csv)
    assert evolve(clean_env, "--data", str(csv), "--run", "d", "--iterations", "2", "--proposer", "mutate") == 0
    frame = market.frame()
    frame.iloc[-1, frame.columns.get_loc("volume")] += 1
    frame.to_csv(csv)
    assert evolve(clean_env, "--data", str(csv), "--run", "d", "--iterations", "3") == 2
    assert "the data changed since this run started" in capsys.readouterr().err


def test_demo_runs_offline(clean_env, warm, capsys):
    # How fast it runs is measured by hand (README, Performance), not asserted: wall-clock time
    # depends on the machine.
    assert main(["evolve", "--demo", "--runs-dir", str(clean_env / "runs")]) == 0
    out = capsys.readouterr().out
    assert "proposer=mutate" in out and "iterations=20" in out and "run folder: " in out


# --- kill -9 and Ctrl-C at random moments, then resume ---------------------------------------------

def _popen(cwd, args, env=None):
    """`python -m autostrat evolve args` in `cwd`; the environment without OPENAI_*, plus `env`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")} | (env or {})
    return subprocess.Popen([sys.executable, "-m", "autostrat", "evolve", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def interrupt_at(proc, line_prefix: str, delay: float, sig) -> tuple[int, str]:
    """Wait for a progress line, then send `sig` after `delay` seconds; the exit code and output."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(line_prefix):
            break
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    rest = proc.stdout.read()
    return proc.wait(timeout=60), "".join(seen) + rest


def check_folder_consistent(folder: Path, killed: bool = False) -> None:
    """Every record parses and its files exist; results.tsv has a row per record.

    Right after a kill, results.tsv may lack the last record's row (the record is the commit
    point; the derived files follow it and are rebuilt on resume), but never has a wrong row.
    """
    records = RunFolder.open(folder).load_records()
    rows = read_results_tsv(folder / "results.tsv") if (folder / "results.tsv").exists() else []
    assert len(rows) == len(records) or (killed and len(rows) == len(records) - 1)
    assert [r["iteration"] for r in rows] == [str(r["iteration"]) for r in records[: len(rows)]]
    assert [r["status"] for r in rows] == [r["status"] for r in records[: len(rows)]]
    for r in records:
        assert (folder / r["strategy"]).is_file()
        if r.get("returns"):
            np.load(folder / r["returns"])


def kill_and_resume(tmp_path, args, env, n_iterations, rng):
    """Run `evolve args` and interrupt it three times (kill -9, Ctrl-C, kill -9), resuming each time."""
    mark = 0
    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL):
        mark = min(mark + rng.randint(1, 5), n_iterations - 2)
        code, out = interrupt_at(_popen(tmp_path, args, env), f"iter {mark} ", rng.uniform(0, 0.05), sig)
        if sig == signal.SIGINT and code != 0:
            assert code == 130 and "resume with: autostrat evolve --run" in out
        check_folder_consistent(tmp_path / "runs" / "k", killed=True)


def test_kill_and_ctrl_c_then_resume_equal_an_uninterrupted_run(clean_env, warm):
    n = 24
    common = ["--data", DATA, *SPLIT_FLAGS, "--iterations", str(n), "--max-fails", str(n), "--seed", "5",
              "--proposer", "mutate", "--runs-dir", "runs"]
    assert main(["evolve", *common, "--run", "ref"]) == 0
    kill_and_resume(clean_env, [*common, "--run", "k"], None, n, random.Random(11))
    assert main(["evolve", *common, "--run", "k"]) == 0
    ref, got = clean_env / "runs" / "ref", clean_env / "runs" / "k"
    assert (got / "results.tsv").read_text() == (ref / "results.tsv").read_text()
    assert (got / "learnings.md").read_text() == (ref / "learnings.md").read_text()
    assert not list(got.rglob("*.tmp"))
    check_folder_consistent(got)
