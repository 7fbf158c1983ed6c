"""The llm proposer against a real HTTP server on 127.0.0.1 (tests/fake_llm_server.py), with faults.

The real openai client talks to the fake server; nothing of the client is mocked.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from autostrat.sim import evaluator as O
from autostrat.sim.backtest import backtest
from autostrat.cli import main
from autostrat.config import LlmSettings
from autostrat.search.llm import ChatModel, ModelConfig, ModelError, llm_configured
from autostrat.search.runs import RunFolder, read_results_tsv

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import Answer, Drop, FakeLLM, Hang, RateLimit, Raw, ServerError, strategy_from  # noqa: E402
from test_loop import DATA, SPLIT_FLAGS, check_folder_consistent, kill_and_resume, progress, small_settings  # noqa: E402
from test_loop import warm, market  # noqa: E402,F401 - session fixtures

TOML = """\
[llm]
timeout = 1.5
retry_backoff = 0.01
retry_backoff_max = 0.5
max_retries = 3
"""


@pytest.fixture
def env(clean_env):
    """clean_env (tests/conftest.py) with fast retry settings in its autostrat.toml."""
    (clean_env / "autostrat.toml").write_text(TOML)
    return clean_env


def evolve(*args):
    return main(["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs", *args])


def key(body) -> tuple[int, int]:
    """(iteration, repair number) of a request; iteration -1 for a learnings summary request."""
    msgs = body["messages"]
    first = next(m["content"] for m in msgs if m["role"] == "user")
    m = re.search(r"^# Iteration (\d+) of", first, re.M)
    return (int(m.group(1)) if m else -1), sum(m["role"] == "assistant" for m in msgs)


class Plan:
    """Scripted answers per (iteration, repair): a list consumed one request at a time."""

    def __init__(self, plan=None, default=None):
        self.plan, self.used = plan or {}, defaultdict(int)
        self.default = default or (lambda it, body: strategy_from(f"fixed {it}"))

    def __call__(self, body, index):
        k = key(body)
        actions = self.plan.get(k)
        if actions and self.used[k] < len(actions):
            self.used[k] += 1
            return actions[self.used[k] - 1]
        return self.default(k[0], body)


def users(body) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


# --- the client and its retries ------------------------------------------------------------------

def _model(url, **kw):
    # timeout is a deadline on the whole request: generous, so that a busy machine does not trip it
    cfg = ModelConfig(base_url=url, api_key="k", model="m", temperature=0.0, max_tokens=64,
                      timeout=kw.pop("timeout", 5.0),
                      max_retries=kw.pop("max_retries", 3), backoff=0.01, backoff_max=kw.pop("backoff_max", 1.0))
    sleeps, logs = [], []
    return ChatModel(cfg, log=logs.append, sleep=sleeps.append), sleeps, logs


def test_answer_and_usage():
    with FakeLLM([Answer("hello", prompt_tokens=11, completion_tokens=3)]) as llm:
        model, sleeps, _ = _model(llm.base_url)
        reply = model.chat([{"role": "user", "content": "hi"}])
    assert reply.text == "hello" and reply.usage == {"prompt": 11, "completion": 3, "total": 14, "calls": 1}
    assert llm.requests[0]["messages"] == [{"role": "user", "content": "hi"}] and not sleeps


def test_rate_limit_honours_retry_after_capped():
    with FakeLLM([RateLimit(0.25), RateLimit(30), "ok"]) as llm:
        model, sleeps, logs = _model(llm.base_url, backoff_max=2.0)
        assert model.chat([{"role": "user", "content": "x"}]).text == "ok"
    assert sleeps == [0.25, 2.0] and "HTTP 429" in logs[0]


def test_server_errors_back_off_exponentially():
    with FakeLLM([ServerError(500), ServerError(503), "ok"]) as llm:
        model, sleeps, logs = _model(llm.base_url)
        assert model.chat([{"role": "user", "content": "x"}]).attempts == 3
    assert sleeps == [0.01, 0.02] and len(logs) == 2


def test_hang_and_dropped_connection_are_retried():
    with FakeLLM([Hang(3), Drop(), "ok"]) as llm:
        model, sleeps, logs = _model(llm.base_url, timeout=0.5)
        assert model.chat([{"role": "user", "content": "x"}]).text == "ok"
    assert "no answer within 0.5s" in logs[0] and "connection failed" in logs[1] and len(llm.requests) == 3


def test_gives_up_after_the_retry_budget_and_on_refused_connections():
    with FakeLLM([ServerError(500)] * 10) as llm:
        model, sleeps, _ = _model(llm.base_url, max_retries=2)
        with pytest.raises(ModelError, match="gave up after 3 attempts"):
            model.chat([{"role": "user", "content": "x"}])
    assert len(llm.requests) == 3 and len(sleeps) == 2
    closed = FakeLLM([]).start()
    url = closed.base_url
    closed.stop()
    model, sleeps, logs = _model(url, max_retries=1)
    with pytest.raises(ModelError, match="connection failed"):
        model.chat([{"role": "user", "content": "x"}])
    assert len(sleeps) == 1


def test_a_refused_request_is_not_retried():
    with FakeLLM([ServerError(401), "never"]) as llm:
        model, sleeps, _ = _model(llm.base_url)
        with pytest.raises(ModelError, match="HTTP 401.*OPENAI_API_KEY"):
            model.chat([{"role": "user", "content": "x"}])
    assert len(llm.requests) == 1 and not sleeps


def test_configuration_from_env_and_dotenv(env, monkeypatch):
    assert not llm_configured(LlmSettings())
    (env / ".env").write_text("OPENAI_BASE_URL=http://127.0.0.1:9/v1\nOPENAI_MODEL=from-dotenv\n")
    assert llm_configured(LlmSettings())
    cfg = ModelConfig.resolve(LlmSettings())
    assert (cfg.base_url, cfg.model, cfg.api_key) == ("http://127.0.0.1:9/v1", "from-dotenv", "not-needed")
    monkeypatch.setenv("OPENAI_MODEL", "from-env")
    assert ModelConfig.resolve(LlmSettings()).model == "from-env"  # the environment wins over .env
    assert ModelConfig.resolve(LlmSettings(model="from-settings")).model == "from-settings"


# --- whole runs ----------------------------------------------------------------------------------

BAD_SYNTAX = "```strat\n# hypothesis: typo\nbuy when close >> open\nsell when close < open\n```"
NO_SELL = "```strat\n# hypothesis: forgot the exit\nbuy when close > open\n```"
PROSE = "I would add an RSI filter to avoid whipsaws in choppy markets."


def test_every_fault_keeps_the_run_going_and_the_files_say_what_happened(env, warm, monkeypatch, capsys):
    dup = strategy_from("fixed 1").replace('strategy "', '# another comment\nstrategy "renamed ')
    plan = Plan({(1, 0): [RateLimit(0.2)], (2, 0): [ServerError(500), ServerError(502)], (3, 0): [Hang(3)],
                 (4, 0): [Drop()], (5, 0): [""], (6, 0): [PROSE], (6, 1): [PROSE], (6, 2): [PROSE],
                 (7, 0): [NO_SELL], (8, 0): [BAD_SYNTAX], (8, 1): [BAD_SYNTAX], (8, 2): [BAD_SYNTAX],
                 (9, 0): [dup]})
    with FakeLLM(plan) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "f", "--iterations", "12", "--max-fails", "20") == 0
    out, err = capsys.readouterr()
    assert progress(out) == list(range(12)) and "proposer=llm" in out
    assert "HTTP 429; retry 1 of 3 in 0.2s" in err  # Retry-After, not the 0.01s backoff
    assert "HTTP 500; retry 1 of 3 in 0.01s" in err and "HTTP 502; retry 2 of 3 in 0.02s" in err
    assert "no answer within 1.5s" in err and "connection failed" in err
    run = Path("runs/f")
    records = RunFolder.open(run).load_records()
    status = {r["iteration"]: r["status"] for r in records}
    assert {status[i] for i in (1, 2, 3, 4, 5, 7, 10, 11)} <= {"keep", "discard"}
    assert (status[6], status[8], status[9]) == ("invalid", "invalid", "duplicate")
    assert records[9]["duplicate_of"] == 1 and "metrics" not in records[9]
    assert records[1]["retries"] == ["HTTP 429; waited 0.2s"] and len(records[2]["retries"]) == 2
    assert "no answer within" in records[3]["retries"][0] and "connection failed" in records[4]["retries"][0]
    assert "retries" not in records[5]
    assert [records[i]["repairs"] for i in (1, 5, 6, 7, 8)] == [0, 1, 2, 1, 2]
    assert "no strategy found" in records[6]["error"] and (run / "iter_0006.strat").read_text().strip() == PROSE
    assert "candidate.strat:2:17: error:" in records[8]["error"] and "^" in records[8]["error"]
    assert len(llm.requests) == 2 + 3 + 2 + 2 + 2 + 3 + 2 + 3 + 1 + 1 + 1
    repair = next(b for b in llm.requests if key(b) == (7, 1))
    assert "missing `sell when` rule" in users(repair)[-1] and "repair 1 of 2" in users(repair)[-1]
    assert users(repair)[0] == users(next(b for b in llm.requests if key(b) == (7, 0)))[0]
    assert "duplicate of iter 1" in users(next(b for b in llm.requests if key(b) == (10, 0)))[0]
    for r in records[1:]:
        assert r["tokens"]["total"] > 0 and r["tokens"]["calls"] == r["repairs"] + 1
        assert (run / "prompts" / f"iter_{r['iteration']:04d}.md").is_file()
        answers = (run / "responses" / f"iter_{r['iteration']:04d}.md").read_text().count("## answer ")
        assert answers == r["repairs"] + 1
    learnings = (run / "learnings.md").read_text()
    assert all(f"## iter {i}:" in learnings for i in range(12)) and "invalid after 2 repairs" in learnings
    assert len(read_results_tsv(run / "results.tsv")) == 12


def test_an_answer_cut_off_at_the_token_limit_is_recorded_and_repaired(env, warm, monkeypatch):
    good = strategy_from("fixed 1")
    cut = Answer(good[: len(good) // 2], finish_reason="length")  # stops mid-statement
    plan = Plan({(1, 0): [cut], (1, 1): [good], (2, 0): [cut], (2, 1): [cut], (2, 2): [cut]})
    with FakeLLM(plan) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "cut", "--iterations", "3", "--max-fails", "5") == 0
    run = Path("runs/cut")
    records = RunFolder.open(run).load_records()
    assert records[1]["finish"] == ["length", "stop"] and records[1]["status"] in ("keep", "discard")
    assert records[2]["finish"] == ["length"] * 3 and records[2]["status"] == "invalid"
    assert "cut off at the token limit (2048 tokens)" in records[2]["error"]
    assert "finish" not in records[0]  # the baseline asked no model
    repair = next(b for b in llm.requests if key(b) == (1, 1))
    assert "cut off at the token limit" in users(repair)[-1]
    headings = re.findall(r"^## answer (\d) \(tokens: \d+, finish: (\w+)\)$",
                          (run / "responses" / "iter_0001.md").read_text(), re.M)
    assert headings == [("1", "length"), ("2", "stop")]


def test_a_prompts_dir_replaces_the_shipped_templates_in_a_run(env, warm, monkeypatch, capsys):
    mine = env / "my-prompts"
    mine.mkdir()
    (mine / "program.md").write_text("MY SYSTEM PROMPT for {{objective}}\n{{language_reference}}\n")
    (env / "autostrat.toml").write_text(TOML + f"[search]\nprompts_dir = {str(mine)!r}\n")
    with FakeLLM(Plan()) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "p", "--iterations", "2") == 0
    assert "prompts: program.md from " in capsys.readouterr().out
    system = llm.requests[0]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("MY SYSTEM PROMPT for validation.total_return")
    (mine / "iteration.md").write_text("{{parent_text}}")  # {{last_result}} is missing
    assert evolve("--run", "p2", "--iterations", "2") == 2
    assert "must use {{last_result}}" in capsys.readouterr().err and not Path("runs/p2").exists()


def test_model_down_stops_cleanly_and_resumes_without_loss(env, warm, monkeypatch, capsys):
    with FakeLLM(Plan({(2, 0): [ServerError(500)] * 10})) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "down", "--iterations", "4", "--proposer", "llm") == 2
    err = capsys.readouterr().err
    assert "gave up after 4 attempts" in err and "Resume with: autostrat evolve --run down" in err
    assert [r["iteration"] for r in RunFolder.open(Path("runs/down")).load_records()] == [0, 1]
    with FakeLLM(Plan()) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "down") == 0
    assert progress(capsys.readouterr().out) == [2, 3] and [key(b)[0] for b in llm.requests] == [2, 3]
    check_folder_consistent(Path("runs/down"))


def test_llm_proposer_without_a_model_is_a_clear_error(env, warm, capsys):
    assert evolve("--proposer", "llm") == 2
    assert "needs a model endpoint: set OPENAI_BASE_URL" in capsys.readouterr().err


def test_dotenv_selects_the_llm_proposer(env, warm, capsys):
    with FakeLLM(Plan()) as llm:
        (env / ".env").write_text(f"OPENAI_BASE_URL={llm.base_url}\n")
        assert evolve("--run", "dotenv", "--iterations", "2") == 0
    assert "proposer=llm" in capsys.readouterr().out and len(llm.requests) == 1


def test_token_budget_stops_the_run(env, warm, monkeypatch, capsys):
    with FakeLLM(Plan()) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "t", "--max-total-tokens", "1", "--proposer", "llm") == 0
    out = capsys.readouterr().out
    assert progress(out) == [0, 1] and "spent the token budget (1)" in out


def test_learnings_compaction_with_the_model(env, warm, monkeypatch):
    (env / "autostrat.toml").write_text(TOML + "[search]\nlearnings_budget_chars = 900\n")
    plan = Plan(default=lambda it, body: "- summarised: sma crosses work" if it < 0 else strategy_from(f"c {it}"))
    with FakeLLM(plan) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "c", "--iterations", "9", "--max-fails", "9", "--proposer", "llm") == 0
    summaries = [b for b in llm.requests if key(b)[0] < 0]
    assert summaries and "Below is the learnings log" in users(summaries[0])[0]
    run = Path("runs/c")
    summary = json.loads((run / "learnings_summary.json").read_text())
    records = RunFolder.open(run).load_records()
    assert summary["text"] == "- summarised: sma crosses work"
    compacted = [r for r in records if r.get("learnings_compacted") == "summary"]
    assert compacted and any(r["tokens"].get("compaction", 0) > 0 for r in compacted)
    later = (run / "prompts" / f"iter_{compacted[-1]['iteration']:04d}.md").read_text()
    assert "Summary of iterations 0-" in later and "summarised: sma crosses work" in later
    assert all(f"## iter {i}:" in (run / "learnings.md").read_text() for i in range(9))  # full log on disk


def test_no_test_period_number_reaches_a_prompt(env, warm, market, monkeypatch):
    asked = []
    real = O.evaluate_tape
    monkeypatch.setattr(O, "evaluate_tape",
                        lambda t, m, spans, bt: (asked.append(tuple(spans)), real(t, m, spans, bt))[1])
    with FakeLLM(Plan(default=lambda it, body: strategy_from(f"t {it}"))) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "sealed", "--iterations", "8", "--max-fails", "8", "--proposer", "llm") == 0
    assert set(asked) == {("train", "validation")}
    run = Path("runs/sealed")
    prompts = "\n".join(p.read_text() for p in (run / "prompts").glob("*.md"))
    sent = "\n".join(json.dumps(b) for b in llm.requests)
    settings = small_settings()
    secret = set()
    for r in RunFolder.open(run).load_records():
        if r["status"] in ("keep", "discard"):
            test = backtest((run / r["strategy"]).read_text(), market, settings, periods=("test",)).metrics["test"]
            for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "final_equity",
                         "buy_hold_return", "excess_return", "turnover", "avg_trade_return"):
                if abs(test[name]) >= 0.01:
                    secret |= {f"{test[name]:.4f}", f"{test[name]:.6f}"}
    assert len(secret) > 20
    shown = set(re.findall(r"-?\d+\.\d{4,6}", prompts + sent))
    assert not secret & shown
    first_test_day = str(market.dates[market.dates >= market.dates.dtype.type("2005-01-01")][0])
    assert first_test_day not in prompts and "2005-" not in prompts


def test_kill_and_resume_against_the_model_equal_an_uninterrupted_run(env, warm, monkeypatch):
    n = 16

    def script(body, index):  # depends on the request content only
        return strategy_from(json.dumps(body["messages"]), "kill")

    common = ["--data", DATA, *SPLIT_FLAGS, "--iterations", str(n), "--max-fails", str(n), "--seed", "2",
              "--proposer", "llm", "--runs-dir", "runs"]
    with FakeLLM(script) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert main(["evolve", *common, "--run", "ref"]) == 0
        # kill -9, Ctrl-C, kill -9 at random moments, resuming each time, then finish
        kill_and_resume(env, [*common, "--run", "k"], {"OPENAI_BASE_URL": llm.base_url}, n, random.Random(7))
        assert main(["evolve", *common, "--run", "k"]) == 0
    ref, got = env / "runs" / "ref", env / "runs" / "k"
    assert (got / "results.tsv").read_text() == (ref / "results.tsv").read_text()
    for p in sorted((ref / "prompts").glob("*.md")):
        assert (got / "prompts" / p.name).read_text() == p.read_text()
    check_folder_consistent(got)


def test_a_server_that_is_not_openai_compatible_is_a_clear_error():
    with FakeLLM([Answer("unused"), Raw("<html>hello</html>")]) as llm:
        model, sleeps, _ = _model(llm.base_url.replace("/v1", "/elsewhere"))
        with pytest.raises(ModelError, match="refused the request: HTTP 404.*model name"):
            model.chat([{"role": "user", "content": "x"}])
        model, sleeps, _ = _model(llm.base_url)
        model.chat([{"role": "user", "content": "x"}])
        with pytest.raises(ModelError, match="unreadable answer"):
            model.chat([{"role": "user", "content": "x"}])
    assert not sleeps
