"""The sealed test period: computed only after the loop, for the final top-K only, logged in sealed.json,
and never in a prompt."""

from __future__ import annotations

import datetime
import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autostrat.sim.backtest import backtest, buy_and_hold, period_spans
from autostrat.search.runs import RunFolder
from autostrat.honest.sealed import SEALED_FILE, open_seal, read_sealed, top_records

B = importlib.import_module("autostrat.sim.backtest")  # the module: `autostrat.sim.backtest` is also a function
O = importlib.import_module("autostrat.sim.evaluator")
BULK = importlib.import_module("autostrat.sim.bulk")

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import FakeLLM, strategy_from  # noqa: E402
from test_loop import _mutate_search, evolve, small_settings  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures


@pytest.fixture
def spy(monkeypatch):
    """Every evaluation autostrat runs, in order: (module, period names)."""
    calls = []
    for module in (O, B, BULK):
        real = module.evaluate_tape

        def wrapped(tape, m, spans, bt, _real=real, _name=module.__name__):
            calls.append((_name, tuple(spans)))
            return _real(tape, m, spans, bt)
        monkeypatch.setattr(module, "evaluate_tape", wrapped)
    return calls


def test_test_period_is_evaluated_after_the_loop_for_the_top_k_only(clean_env, warm, spy, capsys):
    assert evolve(clean_env, "--run", "s", "--iterations", "8", "--max-fails", "8", "--population", "2") == 0
    out = capsys.readouterr().out
    run = clean_env / "runs" / "s"
    loop = [i for i, (module, _) in enumerate(spy) if module == "autostrat.sim.evaluator"]
    tests = [i for i, (_, spans) in enumerate(spy) if "test" in spans]
    assert loop and tests and max(loop) < min(tests)  # the test period only after the last loop evaluation
    assert all(spans == ("train", "validation") for module, spans in spy if module == "autostrat.sim.evaluator")
    records = RunFolder.open(run).load_records()
    sealed = json.loads((run / SEALED_FILE).read_text())
    opened = datetime.datetime.fromisoformat(sealed["opened_at"]).timestamp()
    assert opened >= max((run / f"iter_{r['iteration']:04d}.json").stat().st_mtime for r in records)
    assert sealed["times_opened"] == 1 and sealed["openings"][0]["by"] == "evolve"
    assert sealed["openings"][0]["after_iteration"] == records[-1]["iteration"]
    top = top_records(records, 2)
    assert [s["iteration"] for s in sealed["openings"][0]["strategies"]] == [r["iteration"] for r in top]
    settings = small_settings()
    for s in sealed["openings"][0]["strategies"]:  # the test metrics of exactly these strategies
        want = backtest((run / f"iter_{s['iteration']:04d}.strat").read_text(), warm, settings,
                        periods=("test",)).metrics["test"]
        assert s["test"]["total_return"] == pytest.approx(want["total_return"], rel=1e-12)
    hold = buy_and_hold(warm, period_spans(warm, settings, ("test",)), settings)["test"]
    assert sealed["openings"][0]["buy_hold"]["total_return"] == pytest.approx(hold["total_return"])
    assert sealed["test_period"]["first"] == "2005-01-03"
    assert re.search(r"^test_total_return: -?\d+\.\d{4}$", out, re.M)
    assert f"test_opened_at: {sealed['opened_at']}" in out


def test_open_seal_once_per_state_and_every_opening_is_kept(tmp_path, warm):
    settings = small_settings(iterations=4, max_fails=4)
    _mutate_search(tmp_path / "r", settings, warm).run()
    run = RunFolder.open(tmp_path / "r")
    first = open_seal(run, warm, settings, by="evolve")
    again = open_seal(run, warm, settings, by="report")
    assert again == first and first["times_opened"] == 1  # nothing new: not opened again
    _mutate_search(tmp_path / "r", small_settings(iterations=7, max_fails=7), warm).run()
    third = open_seal(run, warm, settings, by="report")
    assert third["times_opened"] == 2 and third["opened_at"] == first["opened_at"]
    assert [o["by"] for o in third["openings"]] == ["evolve", "report"]
    assert third["openings"][1]["after_iteration"] == 6


def test_no_test_period_is_said_not_invented(tmp_path, warm):
    settings = small_settings(iterations=2)
    settings.split.two_way = True
    _mutate_search(tmp_path / "t", settings, warm).run()
    sealed = open_seal(RunFolder.open(tmp_path / "t"), warm, settings)
    assert sealed["test_period"] is None and "no test period" in sealed["reason"]
    assert sealed["openings"][0]["strategies"] == [] and read_sealed(tmp_path / "t") == sealed


def test_no_test_number_reaches_a_prompt_and_prompts_come_first(clean_env, warm, monkeypatch):
    with FakeLLM(lambda body, i: strategy_from(json.dumps(body["messages"]), "sealed")) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve(clean_env, "--run", "p", "--iterations", "6", "--max-fails", "6", "--proposer", "llm") == 0
    run = clean_env / "runs" / "p"
    sealed = json.loads((run / SEALED_FILE).read_text())
    secret = set()
    for s in sealed["openings"][0]["strategies"] + [{"test": sealed["openings"][0]["buy_hold"]}]:
        for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "final_equity"):
            v = s["test"][name]
            if v is not None and abs(v) >= 0.01:
                secret |= {f"{v:.4f}", f"{v:.6f}"}
    prompts = list((run / "prompts").glob("*.md"))
    assert prompts and secret
    shown = "\n".join(p.read_text() for p in prompts) + "\n".join(json.dumps(b) for b in llm.requests)
    assert not {x for x in secret if x in shown}
    opened = datetime.datetime.fromisoformat(sealed["opened_at"]).timestamp()
    assert max(p.stat().st_mtime for p in prompts) <= opened


def test_the_loop_does_not_import_the_sealed_period():
    code = ("import sys, autostrat.search.loop, autostrat.search.llm, autostrat.search.prompting, autostrat.search.learnings;"
            "print('autostrat.honest.sealed' in sys.modules, 'autostrat.report.build' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
