"""Memory across runs: --from files and run folders, --learnings-from, evolve --add (autostrat.search.memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from autostrat.cli import main  # noqa: E402
from autostrat.data.load import load_market  # noqa: E402
from autostrat.lang.parse import parse  # noqa: E402
from autostrat.resources import example_path  # noqa: E402
from autostrat.search.learnings import for_prompt, prior_view  # noqa: E402
from autostrat.search.loop import MutateProposer, Search  # noqa: E402
from autostrat.search.memory import resolve_from, starts_config  # noqa: E402
from autostrat.search.runs import RunFolder, clean_json, read_results_tsv  # noqa: E402
from autostrat.sim.backtest import backtest, load_strategy  # noqa: E402
from autostrat.sim.evaluator import Evaluator  # noqa: E402
from autostrat.sim.objective import Objective  # noqa: E402
from fake_llm_server import FakeLLM, last_user_message, strategy_from  # noqa: E402
from search_runs import model_search, strip  # noqa: E402
from test_loop import DATA, SPLIT_FLAGS, evolve, progress, small_settings  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - session fixtures

TREND = ('# hypothesis: price above its {n}-day average is an uptrend\nstrategy "trend {n}"\n'
         "param n = {n} in 10..200\nbuy when close > sma(close, n)\nsell when close < sma(close, n)\n")
ALWAYS = 'strategy "always in"\nbuy when close > 0\nsell when close < 0\n'


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def records(folder: Path) -> list[dict]:
    return RunFolder.open(folder).load_records()


def top_k_by_hand(folder: Path, k: int) -> list[int]:
    """A run's final top-K from results.tsv alone: kept rows, higher objective first, then the earlier."""
    rows = [r for r in read_results_tsv(folder / "results.tsv") if r["status"] == "keep"]
    rows.sort(key=lambda r: (-float(r["objective"]), int(r["iteration"])))
    return [int(r["iteration"]) for r in rows[:k]]


# --- --from: files and run folders --------------------------------------------------------------------

def test_from_a_run_folder_and_files_starts_from_its_top_k_then_the_files(clean_env, warm, capsys):
    runs = clean_env / "runs"
    assert evolve(clean_env, "--run", "a", "--iterations", "10", "--max-fails", "10", "--proposer", "mutate",
                  "--no-report") == 0
    trend = write(clean_env, "trend.strat", TREND.format(n=100))
    assert evolve(clean_env, "--run", "b", "--iterations", "7", "--proposer", "mutate", "--no-report",
                  "--from", "a", "--from", f"{trend},{example_path('sma_cross')}") == 0
    out = capsys.readouterr().out
    top = top_k_by_hand(runs / "a", 3)
    got = records(runs / "b")
    a = {r["iteration"]: r for r in records(runs / "a")}
    # the top-K of a (best first), then the two files, each an iteration of b, before any proposal
    texts = [(runs / "a" / f"iter_{i:04d}.strat").read_text() for i in top]
    texts += [Path(trend).read_text(), example_path("sma_cross").read_text()]
    assert [(runs / "b" / r["strategy"]).read_text() for r in got[:5]] == texts
    assert [r["proposer"] for r in got] == ["baseline"] + ["from"] * 4 + ["mutate"] * 2
    assert all(r["parent"] is None for r in got[:5]) and all(r["parent"] is not None for r in got[5:])
    # the same data and settings: a starting strategy scores what it scored in a
    for r, i in zip(got[:3], top):
        assert r["objective"] == a[i]["objective"] and r["metrics"] == a[i]["metrics"]
    assert got[1]["description"].startswith(f"a iteration {top[1]}: ")
    # the example is a's iteration 0 (by text or by behaviour): a duplicate, judged like any candidate
    assert got[4]["status"] == "duplicate"
    config = json.loads((runs / "b" / "config.json").read_text())
    assert config["baseline"]["origin"] == f"a iteration {top[0]}" and len(config["starts"]) == 4
    assert progress(out)[-7:] == list(range(7))
    learnings = (runs / "b" / "learnings.md").read_text()
    assert f"## iter 1: {got[1]['status']} (a starting strategy)" in learnings
    # resume: the same --from is accepted, another is refused
    assert evolve(clean_env, "--run", "b", "--iterations", "8", "--from", f"a,{trend},{example_path('sma_cross')}",
                  "--no-report") == 0
    assert len(records(runs / "b")) == 8
    assert evolve(clean_env, "--run", "b", "--iterations", "9", "--from", trend) == 2
    assert "the run started from another baseline" in capsys.readouterr().err


def test_starting_strategies_not_kept_are_not_failures_in_a_row(tmp_path, warm):
    s = small_settings(iterations=5, max_fails=1, population=1, proposer="mutate")
    base = example_path("sma_cross").read_text()
    starts = [{"path": "same.strat", "text": base, "origin": "same.strat"},
              {"path": "t.strat", "text": TREND.format(n=20), "origin": "t.strat"}]
    out = _search(tmp_path / "r", s, base, starts).run()
    statuses = [r["status"] for r in out.records]
    assert statuses[1] == "duplicate" and out.records[1]["proposer"] == "from"
    # with max_fails 1 a failure ends the search: the starts did not, the first proposal ran
    assert len(out.records) >= 4 and out.records[3]["proposer"] == "mutate"


def _search(folder, s, baseline, starts):
    data = load_market(s.data.spec)
    run = RunFolder.open(folder) if RunFolder.exists(folder) else RunFolder.create(folder, {})
    return Search(run, s, Objective.parse(s.search.objective), Evaluator(data, s), MutateProposer(), baseline,
                  out=lambda line: None, starts=starts)


def test_resume_in_the_middle_of_the_starts_equals_an_uninterrupted_run(tmp_path, warm):
    texts = [TREND.format(n=n) for n in (30, 60, 90, 120)]
    starts = [{"path": f"t{k}.strat", "text": t, "origin": f"t{k}.strat"} for k, t in enumerate(texts[1:])]
    full = _search(tmp_path / "a", small_settings(iterations=12, max_fails=12, seed=2), texts[0], starts).run()
    _search(tmp_path / "b", small_settings(iterations=2, max_fails=12, seed=2), texts[0], starts).run()
    rest = _search(tmp_path / "b", small_settings(iterations=12, max_fails=12, seed=2), texts[0], starts).run()
    assert strip(rest.records) == strip(full.records)
    assert [r["proposer"] for r in full.records[:4]] == ["baseline", "from", "from", "from"]


@pytest.mark.parametrize("spec, message", [
    ("missing.strat", "missing.strat: error: no such file"),
    ("plain_folder", "plain_folder: error: a folder that is not a run (no config.json)"),
    ("bad.strat", "bad.strat:3:18: error:"),
])
def test_from_errors_name_the_file_and_create_nothing(clean_env, warm, capsys, spec, message):
    (clean_env / "plain_folder").mkdir()
    write(clean_env, "bad.strat", 'strategy "bad"\nbuy when close > 1\nsell when close <\n')
    ok = write(clean_env, "ok.strat", TREND.format(n=50))
    assert evolve(clean_env, "--run", "x", "--proposer", "mutate", "--from", f"{ok},{spec}") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (clean_env / "runs" / "x").exists()


def test_a_run_without_a_kept_strategy_and_too_many_starts_are_refused(tmp_path):
    run = RunFolder.create(tmp_path / "empty", {"settings": {"search": {"population": 2}}})
    with pytest.raises(Exception, match="the run has no kept strategy yet"):
        resolve_from([str(run.path)], tmp_path)
    path = write(tmp_path, "t.strat", TREND.format(n=40))
    with pytest.raises(Exception, match="more than 64 starting strategies"):
        resolve_from([",".join([path] * 65)], tmp_path)
    starts = resolve_from([f"{path},{path}"], tmp_path)
    assert starts_config(starts)["baseline"] == {"path": path, "text": TREND.format(n=40)}
    assert [s["origin"] for s in starts_config(starts)["starts"]] == [path]


# --- --learnings-from -----------------------------------------------------------------------------------

def test_learnings_from_another_run_come_first_in_the_log_and_the_prompt(clean_env, warm, capsys):
    runs = clean_env / "runs"
    assert evolve(clean_env, "--run", "a", "--iterations", "4", "--proposer", "mutate", "--no-report") == 0
    assert evolve(clean_env, "--run", "b", "--iterations", "3", "--proposer", "mutate", "--no-report",
                  "--learnings-from", "a") == 0
    a_log = (runs / "a" / "learnings.md").read_text()
    b_log = (runs / "b" / "learnings.md").read_text()
    assert b_log.index("## Learnings of run a") < b_log.index("### iter 0: baseline") < b_log.index("\n## iter 0:")
    for i in range(4):  # each of a's entries, one level down
        entry = a_log[a_log.index(f"## iter {i}:"):].split("\n\n")[0]
        assert "#" + entry in b_log
    config = json.loads((runs / "b" / "config.json").read_text())
    assert config["learnings_from"]["run"] == str(runs / "a")
    prompt = for_prompt(records(runs / "b"), Objective.parse("validation.total_return"), 6000,
                        prior=config["learnings_from"]["text"]).text
    assert prompt.startswith("## Learnings of run a") and "## iter 2:" in prompt
    capsys.readouterr()
    assert evolve(clean_env, "--run", "b", "--learnings-from", "a") == 2
    assert "a run takes another run's learnings when it starts" in capsys.readouterr().err
    assert evolve(clean_env, "--run", "c", "--learnings-from", "nope", "--proposer", "mutate") == 2
    assert "nope: error: no such run folder" in capsys.readouterr().err and not (runs / "c").exists()


def test_prior_view_keeps_the_newest_entries_within_the_budget():
    entries = "".join(f"### iter {i}: keep (parent 0)\n- hypothesis: {'x' * 50}\n\n" for i in range(20))
    prior = "## Learnings of run a\n\n" + entries
    assert prior_view(prior, len(prior)) == prior
    view = prior_view(prior, 600)
    assert len(view) <= 600 and view.startswith("## Learnings of run a\n\n(")
    kept = [int(line.split()[2].rstrip(":")) for line in view.splitlines() if line.startswith("### iter")]
    assert kept == list(range(20 - len(kept), 20)) and kept
    assert f"({20 - len(kept)} older entries of that run left out" in view


# --- evolve --run NAME --add FILE ----------------------------------------------------------------------

def test_add_evaluates_a_hand_written_strategy_by_the_runs_rules_then_the_search_goes_on(clean_env, warm, capsys,
                                                                                         ledger_home):
    runs = clean_env / "runs"
    # a run of the baseline alone: the population has room, so a new strategy is kept by the rules
    assert evolve(clean_env, "--run", "h", "--proposer", "mutate", "--tune", "8", "--iterations", "1",
                  "--no-report") == 0
    capsys.readouterr()
    always = write(clean_env, "always.strat", ALWAYS)
    assert main(["evolve", "--run", "h", "--runs-dir", str(runs), "--add", always]) == 0
    out = capsys.readouterr().out
    assert f"added {always} to h as iteration 1: keep" in out and "resume the search with" in out
    added = records(runs / "h")[1]
    assert (added["proposer"], added["parent"], added["status"]) == ("hand", None, "keep")
    assert (runs / "h" / "iter_0001.strat").read_text() == ALWAYS
    plain = backtest(load_strategy(always), load_market(DATA), small_settings())
    for period in ("train", "validation"):
        assert added["metrics"][period] == clean_json(plain.metrics[period])
    assert "test" not in added["metrics"] and not (runs / "h" / "sealed.json").exists()
    assert not ledger_home.exists() or not any(ledger_home.iterdir())  # the sealed test was never opened
    assert "## iter 1: keep (added by hand)" in (runs / "h" / "learnings.md").read_text()
    # the same text again is a duplicate; a ranged strategy added to a tuned run is tuned
    assert main(["evolve", "--run", "h", "--runs-dir", str(runs), "--add", always]) == 0
    trend = write(clean_env, "trend.strat", TREND.format(n=50))
    assert main(["evolve", "--run", "h", "--runs-dir", str(runs), "--add", trend]) == 0
    got = records(runs / "h")
    assert got[2]["status"] == "duplicate" and got[2]["duplicate_of"] == 1
    assert got[3]["status"] == "keep" and got[3]["trials"] == got[3]["tuning"]["variants"] == 8
    kept = parse((runs / "h" / "iter_0003.strat").read_text())
    assert {"n": kept.params()["n"].value.value} == got[3]["tuning"]["chosen"]  # the kept file has the chosen value
    # the search resumes from the new state: after a keep, the next parent is the added strategy
    capsys.readouterr()
    assert evolve(clean_env, "--run", "h", "--iterations", "6", "--no-report") == 0
    assert progress(capsys.readouterr().out) == [4, 5]
    got = records(runs / "h")
    assert [r["iteration"] for r in got] == list(range(6)) and got[4]["parent"] == 3
    # the report reads a run with added strategies: each is a root of the lineage, every trial counted
    assert main(["report", "h", "--runs-dir", str(runs), "--no-robustness"]) == 0
    page = (runs / "h" / "report.html").read_text()
    assert f"added by hand: {always}" in page
    stats = json.loads((runs / "h" / "report.json").read_text())["stats"]
    assert stats["n_trials"] == sum(r.get("trials", 1) for r in got if r["status"] in ("keep", "discard"))


def test_add_errors_are_clear_and_record_nothing(clean_env, warm, capsys):
    runs = clean_env / "runs"
    assert evolve(clean_env, "--run", "e", "--iterations", "2", "--proposer", "mutate", "--no-report") == 0
    bad = write(clean_env, "bad.strat", 'strategy "bad"\nbuy when close >\nsell when close < 1\n')
    capsys.readouterr()
    for args, message in ((["--run", "e", "--add", bad], "bad.strat:2:17: error:"),
                          (["--run", "e", "--add", "nope.strat"], "nope.strat: error: no such file"),
                          (["--run", "zz", "--add", bad], "is not a run; give an existing run"),
                          (["--run", "e", "--add", bad, "--from", bad], "--add: error: cannot be combined with --from")):
        assert main(["evolve", "--runs-dir", str(runs), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert len(records(runs / "e")) == 2 and not (runs / "zz").exists()


def test_add_to_a_run_cut_in_the_middle_of_a_step_redoes_nothing_twice(tmp_path, warm):
    s = small_settings(iterations=9, max_fails=9, parallel=4, seed=1)
    base = example_path("sma_cross").read_text()
    _search(tmp_path / "r", s, base, None).run()
    for i in range(6, 9):  # a kill after iteration 5 of the step 5..8
        for f in (tmp_path / "r").rglob(f"iter_{i:04d}.*"):
            f.unlink()
    search = _search(tmp_path / "r", s, base, None)
    record = search.add(TREND.format(n=70), "t.strat")
    assert record["iteration"] == 5 and [r["iteration"] for r in records(tmp_path / "r")] == list(range(6))
    assert "step" not in record and record["proposer"] == "hand"


def test_parse_of_a_starting_strategy_names_its_file(tmp_path):
    path = write(tmp_path, "x.strat", 'strategy "x"\nbuy when close > sma(close, 0)\nsell when close < 1\n')
    with pytest.raises(Exception) as info:
        resolve_from([path], tmp_path)
    assert f"{path}:2:" in str(info.value) and "the baseline strategy does not check" in str(info.value)


def test_add_waits_for_no_one_a_run_in_use_is_refused(clean_env, warm, capsys):
    args = [sys.executable, "-m", "autostrat", "evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs",
            "--proposer", "mutate", "--no-report", "--run", "busy", "--iterations", "1000000",
            "--max-fails", "1000000"]  # a budget it cannot finish before it is killed
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        for line in first.stdout:  # the search holds the run once it reports an iteration
            if line.startswith("iter "):
                break
        path = write(clean_env, "t.strat", TREND.format(n=80))
        assert main(["evolve", "--run", "busy", "--runs-dir", "runs", "--add", path]) == 2
        assert f"in use by `autostrat evolve` (pid {first.pid})" in capsys.readouterr().err
    finally:
        first.kill()
        first.wait(timeout=30)
    assert all(r["proposer"] != "hand" for r in records(clean_env / "runs" / "busy"))


def test_a_model_is_shown_the_inherited_learnings_first(tmp_path, warm):
    prior = "## Learnings of run old\n\n### iter 0: baseline\n- hypothesis: PRIOR-MARKER trend filters help\n"
    RunFolder.create(tmp_path / "r", {"learnings_from": {"run": "old", "text": prior}})
    llm = FakeLLM(lambda body, i: strategy_from(last_user_message(body)))
    model_search(tmp_path / "r", llm, iterations=3, max_fails=3)
    prompt = (tmp_path / "r" / "prompts" / "iter_0001.md").read_text()
    assert "PRIOR-MARKER" in prompt and prompt.index("PRIOR-MARKER") < prompt.index("\n## iter 0: baseline")
    assert (tmp_path / "r" / "learnings.md").read_text().count("PRIOR-MARKER") == 1


def test_a_null_run_starts_from_the_same_strategies(clean_env, warm):
    trend = write(clean_env, "trend.strat", TREND.format(n=100))
    assert evolve(clean_env, "--run", "n", "--proposer", "mutate", "--iterations", "4", "--max-fails", "4",
                  "--from", f"{example_path('sma_cross')},{trend}", "--null", "--no-report") == 0
    null = records(clean_env / "runs" / "n-null")
    assert [r["proposer"] for r in null[:2]] == ["baseline", "from"]
    assert (clean_env / "runs" / "n-null" / "iter_0001.strat").read_text() == TREND.format(n=100)
