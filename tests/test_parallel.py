"""Parallel steps, behaviour duplicates and constraints: the serial loop's records, K at once, resume."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from autostrat.data.load import load_market  # noqa: E402
from autostrat.lang.fmt import canonical_hash  # noqa: E402
from autostrat.lang.parse import parse  # noqa: E402
from autostrat.search.llm import ModelError  # noqa: E402
from autostrat.search.loop import Proposal, Search, broken_constraint  # noqa: E402
from autostrat.search.prompting import last_result, system_prompt  # noqa: E402
from autostrat.sim.evaluator import Evaluator  # noqa: E402
from autostrat.sim.objective import Objective  # noqa: E402
from autostrat.search.runs import RunFolder, clean_json  # noqa: E402
from fake_llm_server import FakeLLM, Hang, ServerError, strategy_from  # noqa: E402
from autostrat.cli import main  # noqa: E402
from autostrat.honest.run_statistics import run_statistics  # noqa: E402
from autostrat.search.tune import axes, grid_points, pick_index  # noqa: E402
from autostrat.sim.backtest import backtest, load_strategy  # noqa: E402
from search_runs import GOLDEN, model_search, mutate_records, scripted_model_records, settings, strip  # noqa: E402
from test_loop import DATA, SPLIT_FLAGS, check_folder_consistent, kill_and_resume  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - session fixtures


def golden(name):
    return clean_json(json.loads((GOLDEN / f"search_{name}.json").read_text()))


def same_records(got, want, where="records") -> None:
    """Equal record for record: every key, text, count and decision exactly; a float to 1e-9
    relative, because the stored records were computed on another CPU, whose math library may
    round a logarithm or a power in the last bit (the decisions and the strategies must still
    be identical)."""
    if isinstance(want, float) and isinstance(got, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(got) and math.isnan(want)), where
    elif isinstance(want, dict) and isinstance(got, dict):
        assert list(got) == list(want), where
        for k in want:
            same_records(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            same_records(g, w, f"{where}[{i}]")
    else:
        assert got == want, where


def test_parallel_1_reproduces_the_serial_loop_record_for_record(tmp_path):
    same_records(mutate_records(tmp_path / "m", dedupe="text"), golden("mutate"))
    same_records(scripted_model_records(tmp_path / "s", dedupe="text"), golden("scripted_model"))


# --- parallel steps with the mutate proposer: resume redoes a half-finished step ------------------

def test_parallel_steps_judge_in_order_and_resume_redoes_a_half_step(tmp_path):
    ref = mutate_records(tmp_path / "ref", parallel=4)
    assert [r["iteration"] for r in ref] == list(range(30))
    steps = [r.get("step") for r in ref[1:]]
    assert steps == [1 + 4 * (j // 4) for j in range(29)][: len(steps)]
    assert all(r["step_size"] == 4 for r in ref[1:29]) and ref[29]["step_size"] == 1
    assert [r["iteration"] for r in ref if r.get("step_end")] == [4, 8, 12, 16, 20, 24, 28, 29]
    # a step's parents come from the state before it: the first by the rule, the others drawn
    for first in range(1, 29, 4):
        before = ref[first - 1]
        if before["status"] == "keep":
            assert ref[first]["parent"] == before["iteration"]
    # kill in the middle of the step 9..12: its first two records are on disk, the rest are not
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "ref", part)
    for i in range(11, 30):
        for f in part.rglob(f"iter_{i:04d}.*"):
            f.unlink()
    again = mutate_records(part, parallel=4)
    assert again == ref


def test_a_stop_ends_the_step_at_the_record_that_reaches_it(tmp_path):
    records = mutate_records(tmp_path / "r", parallel=4, max_fails=2, iterations=200)
    fails = 0
    for r in records[1:]:
        fails = 0 if r["status"] == "keep" else fails + 1
    assert fails == 2 and records[-1].get("step_end")
    assert len(records) < 200


# --- a real chat server on 127.0.0.1: K requests in flight, faults stay in their candidate ---------

def iteration_of(body) -> int:
    m = re.search(r"^# Iteration (\d+) of", first_user(body), re.M)
    return int(m.group(1))


def first_user(body) -> str:
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


def test_k_requests_are_in_flight_at_once_and_recorded_in_iteration_order(tmp_path):
    # the gate holds each request until 4 are open together: concurrency without timing
    llm = FakeLLM(lambda body, i: strategy_from(first_user(body)), gate=4, gate_timeout=60)
    out = model_search(tmp_path / "r", llm, parallel=4, iterations=9, max_fails=9)
    assert llm.most_in_flight == 4 and len(llm.requests) == 8
    assert [r["iteration"] for r in out.records] == list(range(9))
    for r in out.records[1:]:
        prompt = (tmp_path / "r" / "prompts" / f"iter_{r['iteration']:04d}.md").read_text()
        assert f"# Iteration {r['iteration']} of" in prompt
        text = (tmp_path / "r" / r["strategy"]).read_text()
        asked = next(b for b in llm.requests if iteration_of(b) == r["iteration"])
        assert text.strip() in strategy_from(first_user(asked))  # its own answer, whatever order they came in


def test_a_fault_in_one_of_the_k_does_not_lose_the_others(tmp_path):
    seen: dict[int, int] = {}

    def script(body, index):
        it = iteration_of(body)
        n = seen[it] = seen.get(it, 0) + 1
        if it == 2 and n == 1:
            return ServerError(500)
        if it == 3:
            return "no strategy in this answer, sorry"
        if it == 4 and n == 1:
            return Hang(5)
        return strategy_from(first_user(body))

    out = model_search(tmp_path / "r", FakeLLM(script), timeout=1.0, parallel=4, iterations=5, max_fails=9,
                       repair_attempts=1)
    by = {r["iteration"]: r for r in out.records}
    assert [r["iteration"] for r in out.records] == [0, 1, 2, 3, 4]
    assert by[2]["status"] in ("keep", "discard") and "HTTP 500" in by[2]["retries"][0]
    assert by[3]["status"] == "invalid" and by[3]["repairs"] == 1
    assert by[4]["status"] in ("keep", "discard") and "no answer within" in by[4]["retries"][0]
    assert by[1]["status"] in ("keep", "discard") and not by[1].get("retries")


def test_a_model_that_fails_for_good_keeps_the_candidates_before_it(tmp_path):
    def script(body, index):
        return ServerError(500) if iteration_of(body) == 3 else strategy_from(first_user(body))

    with pytest.raises(ModelError):
        model_search(tmp_path / "r", FakeLLM(script), parallel=4, iterations=9, max_fails=9)
    records = RunFolder.open(tmp_path / "r").load_records()
    assert [r["iteration"] for r in records] == [0, 1, 2] and records[-1]["step_end"]
    # resumed with a working model, the search goes on from iteration 3
    out = model_search(tmp_path / "r", FakeLLM(lambda body, i: strategy_from(first_user(body))), parallel=4,
                       iterations=9, max_fails=9)
    assert [r["iteration"] for r in out.records] == list(range(9)) and out.records[3]["step"] == 3


# --- behaviour duplicates ----------------------------------------------------------------------------

CROSS = ('strategy "{name}"\nparam fast = 20 in 2..100\nparam slow = 50 in 10..250\n'
         "f = sma(close, fast)\ns = sma(close, slow)\nbuy when {buy}\nsell when f < s\n")


class Fixed:
    """Proposes the given texts at iterations 1, 2, ...; notes nothing."""

    name, uses_prompt = "fixed", False

    def __init__(self, texts):
        self.texts = texts

    def propose(self, ctx):
        text = self.texts[ctx.iteration - 1]
        return Proposal(parse(text), text)


def fixed_search(tmp_path, texts, baseline=None, **search):
    s = settings(**{"iterations": len(texts) + 1, "max_fails": 99, **search})
    market = load_market(s.data.spec)
    evaluator = Evaluator(market, s)
    run = RunFolder.create(tmp_path / "run", {"returns_layout": evaluator.returns_layout, "settings": s.to_dict()})
    return Search(run, s, Objective.parse(s.search.objective), evaluator, Fixed(texts),
                  baseline or CROSS.format(name="base", buy="f > s"), out=lambda line: None).run()


def test_same_signals_with_another_text_are_a_behaviour_duplicate(tmp_path):
    dead = CROSS.format(name="dead branch", buy="f > s or close < 0")  # close < 0 never holds
    always = CROSS.format(name="always true", buy="f > s and close > 0")  # close > 0 always holds
    other = CROSS.format(name="other", buy="f > s and close > f")
    texts = (dead, always, other, CROSS.format(name="b", buy="f > s"))
    assert len({canonical_hash(parse(t)) for t in texts}) == 4  # different texts to the text check
    out = fixed_search(tmp_path / "b", [dead, always, other])
    assert [r["status"] for r in out.records[1:3]] == ["duplicate", "duplicate"]
    assert all(r["duplicate_of"] == 0 and r["duplicate_kind"] == "behaviour" for r in out.records[1:3])
    assert "objective" not in out.records[1] and out.records[3]["status"] != "duplicate"
    learnings = (tmp_path / "b" / "run" / "learnings.md").read_text()
    assert "duplicate of iter 0: the same signals on train and validation" in learnings
    assert "same signals" in last_result(out.records[1], Objective.parse("validation.total_return"))
    text_only = fixed_search(tmp_path / "t", [dead, always, other], dedupe="text")
    assert text_only.records[1]["status"] != "duplicate" and "behaviour" not in text_only.records[1]


# --- constraints -------------------------------------------------------------------------------------

def test_constraints_discard_with_the_reason_in_record_prompt_and_learnings(tmp_path):
    other = CROSS.format(name="other", buy="f > s and close > f")
    out = fixed_search(tmp_path / "a", [other], min_trades=10_000)
    base, cand = out.records
    assert base["status"] == "keep" and "fewer than the 10000 required" in base["constraint"]  # the baseline stays
    assert cand["status"] == "discard" and cand["constraint"].startswith("train: ")
    assert "breaks a constraint: train:" in (tmp_path / "a" / "run" / "learnings.md").read_text()
    assert "breaks a constraint" in last_result(cand, Objective.parse("validation.total_return"))
    dd = fixed_search(tmp_path / "d", [other], max_drawdown=0.0001).records[1]
    assert dd["status"] == "discard" and "drawdown of" in dd["constraint"]
    free = fixed_search(tmp_path / "f", [other], min_trades=1, max_drawdown=0.99).records[1]
    assert "constraint" not in free
    told = system_prompt(settings(min_trades=12, max_drawdown=0.25), Objective.parse("validation.total_return"),
                         {}, "synthetic")
    assert "A candidate with fewer than 12 trades or a drawdown deeper than 25.0% in train or in validation is " \
           "discarded" in told
    assert "discarded whatever" not in system_prompt(settings(), Objective.parse("validation.total_return"), {}, "x")


def test_constraint_checks_hand_made_metrics():
    m = {"train": {"num_trades": 4, "max_drawdown": -0.2}, "validation": {"num_trades": 2, "max_drawdown": -0.5}}
    assert broken_constraint(m, 0, 0.0) == ""
    assert broken_constraint(m, 3, 0.0).startswith("validation: 2 trades")
    assert broken_constraint(m, 0, 0.3).startswith("validation: a drawdown of 50.0%")
    assert broken_constraint(m, 0, 0.1).startswith("train: a drawdown of 20.0%")


# --- kill -9 and Ctrl-C in the middle of steps, then resume ------------------------------------------

def test_kill_mid_step_then_resume_equals_an_uninterrupted_parallel_tuned_run(clean_env, warm):
    n = 26
    common = ["--data", DATA, *SPLIT_FLAGS, "--iterations", str(n), "--max-fails", str(n), "--seed", "5",
              "--proposer", "mutate", "--runs-dir", "runs", "--parallel", "4", "--tune", "50"]
    assert main(["evolve", *common, "--run", "ref"]) == 0
    kill_and_resume(clean_env, [*common, "--run", "k"], None, n, random.Random(7))
    assert main(["evolve", *common, "--run", "k"]) == 0
    ref, got = clean_env / "runs" / "ref", clean_env / "runs" / "k"
    assert (got / "results.tsv").read_text() == (ref / "results.tsv").read_text()
    assert (got / "learnings.md").read_text() == (ref / "learnings.md").read_text()
    assert strip(RunFolder.open(got).load_records()) == strip(RunFolder.open(ref).load_records())
    check_folder_consistent(got)


# --- tuned params ------------------------------------------------------------------------------------

def test_axes_grid_and_sample_always_hold_the_proposers_values():
    program = parse(CROSS.format(name="t", buy="f > s"))
    ax = axes(program)
    assert ax["fast"] == [2.0, 12.0, 20.0, 22.0, 31.0, 41.0, 51.0, 61.0, 71.0, 80.0, 90.0, 100.0]  # 2 + 9.8k rounded, and its own 20
    assert 50.0 in ax["slow"] and len(ax["slow"]) == 12
    names, points, values = grid_points(program, 10_000, random.Random(0))
    assert len(points) == 12 * 12 and len(set(points)) == len(points)  # the whole grid
    assert [values[k][i] for k, i in enumerate(points[0])] == [20.0, 50.0]  # the proposer's own first
    names, points, values = grid_points(program, 30, random.Random(0))
    assert len(points) == 30 and len(set(points)) == 30 and [values[k][i] for k, i in enumerate(points[0])] == [20.0, 50.0]
    small = parse('strategy "s"\nparam n = 3 in 1..5\nbuy when close > sma(close, n)\nsell when close < sma(close, n)\n')
    assert axes(small) == {"n": [1.0, 2.0, 3.0, 4.0, 5.0]}


def test_best_and_robust_picks_on_hand_made_values():
    nan = math.nan
    points = [(k,) for k in range(7)]
    values = [0.1, 0.2, 0.2, 0.2, 0.0, 0.9, -1.0]  # a lucky spike at 5 between 0.0 and -1.0
    assert pick_index(values, points, "best")[0] == 5
    k, scores = pick_index(values, points, "robust")
    # medians of each point and its neighbours: 0.15, 0.2, 0.2, 0.2, 0.2, 0.0 (of 0.0, 0.9, -1.0), -0.05
    assert scores[1:6] == [0.2, 0.2, 0.2, 0.2, 0.0] and k == 1  # the tie goes to the earliest
    assert pick_index([nan, 0.1], [(0,), (1,)], "best")[0] == 1
    assert pick_index([0.3, 0.3], [(0,), (5,)], "best")[0] == 0  # a tie goes to the earlier


def test_tuning_keeps_the_chosen_values_whose_metrics_equal_a_plain_backtest(tmp_path):
    out = fixed_search(tmp_path, [CROSS.format(name="a", buy="f > s and close > f")], tune=40, tune_pick="robust")
    record = out.records[1]
    tuning = record["tuning"]
    assert record["trials"] == tuning["variants"] == 40 and tuning["pick"] == "robust"
    assert tuning["proposed"] == {"fast": 20.0, "slow": 50.0}
    kept = (tmp_path / "run" / record["strategy"]).read_text()
    program = parse(kept)
    assert {n: p.value.value for n, p in program.params().items()} == tuning["chosen"]
    s = settings()
    plain = backtest(load_strategy(tmp_path / "run" / record["strategy"]), load_market(s.data.spec), s)
    for period in ("train", "validation"):
        assert clean_json(record["metrics"][period]) == clean_json(plain.metrics[period])
    stats = run_statistics(RunFolder.open(tmp_path / "run"))
    assert stats["n_trials"] == 1 + 40  # the baseline and the forty variants


def test_tuning_in_parallel_steps_counts_every_variant(tmp_path):
    records = mutate_records(tmp_path / "r", parallel=4, tune=25, iterations=13)
    tuned = [r for r in records if r.get("tuning")]
    assert tuned and all(r["trials"] == r["tuning"]["variants"] <= 25 for r in tuned)
    want = sum(r.get("trials", 1) for r in records if r["status"] in ("keep", "discard"))
    assert run_statistics(RunFolder.open(tmp_path / "r"))["n_trials"] == want


def test_the_report_shows_steps_and_tuning(clean_env, warm):
    args = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--iterations", "7", "--max-fails", "7", "--proposer", "mutate",
            "--runs-dir", "runs", "--parallel", "3", "--tune", "12", "--run", "t"]
    assert main(args) == 0
    page = (clean_env / "runs" / "t" / "report.html").read_text()
    assert "Steps, tuning and constraints" in page and "variants" in page
    assert "<td>1 (3)</td>" in page and "<td>4 (3)</td>" in page
    stats = json.loads((clean_env / "runs" / "t" / "report.json").read_text())["stats"]
    records = RunFolder.open(clean_env / "runs" / "t").load_records()
    assert stats["n_trials"] == sum(r.get("trials", 1) for r in records if r["status"] in ("keep", "discard"))


def test_tuned_variants_count_in_the_variance_of_the_trials_sharpe(tmp_path):
    out = fixed_search(tmp_path, [CROSS.format(name="a", buy="f > s and close > f")], tune=30)
    base, tuned = out.records
    run = RunFolder.open(tmp_path / "run")
    stats = run_statistics(run)
    # by hand: the baseline's daily Sharpe on validation and every variant's annualised one / sqrt(252)
    returns = run.read_returns(0).astype(float)
    lo, hi = run.config["returns_layout"]["validation"]
    r = returns[lo:hi]
    daily = [statistics.fmean(r) / statistics.stdev(r)]
    daily += [v / math.sqrt(252) for v in tuned["tuning"]["sharpes"]["validation"] if v is not None]
    assert len(daily) == 31 and stats["n_trials"] == 31
    assert stats["var_trials"] == pytest.approx(statistics.variance(daily), rel=1e-9)


@pytest.mark.parametrize("flags, message", [
    (["--parallel", "0"], "search.parallel must be at least 1"),
    (["--parallel", "65"], "search.parallel must be at most 64"),
    (["--max-drawdown", "1.5"], "search.max_drawdown must be a fraction"),
    (["--min-trades", "-1"], "search.min_trades must be at least 0"),
    (["--tune", "10001"], "search.tune must be from 0 (off) to 10000"),
])
def test_out_of_range_settings_are_one_clear_error(clean_env, capsys, flags, message):
    args = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--proposer", "mutate", "--runs-dir", "runs", "--run", "x", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (clean_env / "runs" / "x").exists()
