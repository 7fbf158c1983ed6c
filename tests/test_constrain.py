"""Choosing and sending the grammar constraint: modes, the vLLM field by version, server probing.

The probes talk to small real HTTP servers on 127.0.0.1 that answer like llama.cpp's llama-server,
llama-cpp-python's server, vLLM and a server with no grammar support; the chat requests go to
tests/fake_llm_server.py through the real openai client.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autostrat.cli import main
from autostrat.search.constrain import MODES, Constraint, Server, constraint_for, probe_server, request_body
from autostrat.errors import ConfigError
from autostrat.lang import grammar_typed
from autostrat.lang.grammar_export import gbnf
from autostrat.search.llm import ChatModel, ModelConfig
from autostrat.config import LlmSettings

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import FakeLLM, Json, completion, strategy_from  # noqa: E402
from test_llm import env, evolve  # noqa: E402,F401 - the clean-environment fixture
from test_loop import warm, market  # noqa: E402,F401 - session fixtures


class Site:
    """A GET-only JSON server on 127.0.0.1: path -> payload; other paths answer 404."""

    def __init__(self, routes: dict[str, object]):
        self.routes, self.seen = routes, []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server API
                site.seen.append((self.path, self.headers.get("Authorization")))
                if self.path not in site.routes:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(site.routes[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def models(owner: str) -> dict:
    return {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": owner}]}


SERVERS = {
    "llama.cpp": {"/v1/models": models("llamacpp"), "/props": {"total_slots": 1, "build_info": "b5000"}},
    "llama.cpp (old, no owned_by)": {"/v1/models": models("me"), "/props": {"default_generation_settings": {}}},
    "llama-cpp-python": {"/v1/models": models("me"), "/openapi.json": {"info": {"title": "🦙 llama.cpp Python API",
                                                                                 "version": "0.3.16"}}},
    "vllm": {"/v1/models": models("vllm"), "/version": {"version": "0.11.0"}},
    "vllm (old)": {"/v1/models": models("vllm"), "/version": {"version": "0.9.2"}},
    "ollama": {"/v1/models": models("library"), "/api/version": {"version": "0.9.0"}},
}


@pytest.fixture
def site(request):
    s = Site(SERVERS[request.param])
    yield s
    s.close()


@pytest.mark.parametrize("site, kind, mode, field", [
    ("llama.cpp", "llama.cpp", "typed", "grammar"),
    ("llama.cpp (old, no owned_by)", "llama.cpp", "typed", "grammar"),
    ("llama-cpp-python", "llama-cpp-python", "typed", "grammar"),
    ("vllm", "vllm", "vllm", "structured_outputs"),
    ("vllm (old)", "vllm", "vllm", "guided_grammar"),
    ("ollama", "unknown", "off", None),
], indirect=["site"])
def test_auto_probes_the_server_once_and_picks_the_mode(site, kind, mode, field):
    assert probe_server(site.base_url).kind == kind
    site.seen.clear()
    c = constraint_for("auto", site.base_url, api_key="sk-test")
    assert c.mode == mode
    assert list(c.extra_body) == ([field] if field else [])
    assert c.describe().startswith(f"constrain: {mode} (auto: ")
    assert len(site.seen) <= 4 and all(auth == "Bearer sk-test" for _, auth in site.seen)


def test_the_grammar_sent_is_the_exported_gbnf():
    typed = grammar_typed.gbnf()
    assert request_body("gbnf") == {"grammar": gbnf()}
    assert request_body("typed") == {"grammar": typed}
    assert request_body("vllm", "0.10.2") == {"structured_outputs": {"grammar": typed}}
    assert request_body("vllm", "0.12.1") == {"structured_outputs": {"grammar": typed}}
    assert request_body("vllm", "0.10.1.1") == {"guided_grammar": typed}
    assert request_body("vllm", "") == {"structured_outputs": {"grammar": typed}}  # current vLLM
    assert request_body("off") == {}


def test_the_typed_grammar_fits_max_tokens_and_the_prompt_says_its_bounds():
    from autostrat.search.prompting import constrained_format

    for max_tokens in (10**6, 2048, 1000):
        bounds = grammar_typed.bounds_for(max_tokens)
        longest = grammar_typed.longest_text(bounds)
        assert longest <= max_tokens
        assert request_body("typed", max_tokens=max_tokens) == {"grammar": grammar_typed.gbnf(bounds)}
        lark = request_body("openai", max_tokens=max_tokens)["tools"][0]["custom"]["format"]["grammar"]["definition"]
        assert lark == grammar_typed.lark_grammar(bounds)
        vllm = request_body("vllm", "0.12.1", max_tokens)
        assert vllm == {"structured_outputs": {"grammar": grammar_typed.gbnf(bounds)}}
        c = constraint_for("typed", None, max_tokens=max_tokens)
        assert c.extra_body == {"grammar": grammar_typed.gbnf(bounds)}
        assert f"answers of at most {longest} characters, within max_tokens {max_tokens}" in c.describe()
        prompt = " ".join(constrained_format("typed", max_tokens).split())  # the prompt's lines joined
        assert f"has at most {longest} characters" in prompt and f"at most {bounds.factors} operands" in prompt
        assert f"up to {bounds.values} named values" in prompt and f"up to {bounds.params} params" in prompt
    assert grammar_typed.bounds_for(2048) != grammar_typed.TypedBounds()  # 2048 is below the full bounds' longest
    need = grammar_typed.longest_text(grammar_typed.LADDER[-1])
    for mode in ("typed", "openai", "vllm", "auto"):
        with pytest.raises(ConfigError, match=f"llm.max_tokens 300: .*at least {need}"):
            constraint_for(mode, "http://127.0.0.1:9/v1", probe=lambda *a: Server("llama.cpp"), max_tokens=300)
    assert constraint_for("gbnf", None, max_tokens=300).mode == "gbnf"  # the syntax grammar has no such bound


def test_explicit_modes_need_no_server_and_bad_modes_are_refused():
    def no_probe(*a, **k):
        raise AssertionError("gbnf and off must not probe")

    assert constraint_for("gbnf", "http://127.0.0.1:9/v1", probe=no_probe).extra_body == {"grammar": gbnf()}
    assert constraint_for("OFF", "http://127.0.0.1:9/v1", probe=no_probe) == Constraint(
        "off", {}, "the repair loop fixes syntax errors")
    c = constraint_for("vllm", "http://x/v1", probe=lambda *a: Server("vllm", "0.8.5"))
    assert c.extra_body == {"guided_grammar": grammar_typed.gbnf()} and "0.8.5" in c.reason
    assert constraint_for("auto", None, probe=no_probe).mode == "off"  # OpenAI itself takes no GBNF
    assert constraint_for("typed", None, probe=no_probe).extra_body == {"grammar": grammar_typed.gbnf()}
    assert constraint_for("openai", None, probe=no_probe).mode == "openai"
    with pytest.raises(ConfigError, match="use one of auto, typed, gbnf, vllm, openai, off"):
        constraint_for("regex", None)
    assert MODES == ("auto", "typed", "gbnf", "vllm", "openai", "off")


@pytest.mark.parametrize("site", ["llama.cpp"], indirect=True)
def test_the_default_is_auto_on_localhost_and_off_elsewhere(site):
    c = constraint_for("", site.base_url)
    assert c.mode == "typed" and c.describe().startswith("constrain: typed (auto: llama.cpp server")
    assert site.seen  # it asked the server once

    def no_probe(*a, **k):
        raise AssertionError("the default must not probe a remote server")

    for url in (None, "https://api.example.com/v1", "http://10.0.0.5:8000/v1"):
        c = constraint_for("", url, probe=no_probe)
        assert c.mode == "off" and "away from localhost" in c.reason
    assert constraint_for("", "http://localhost:8080/v1", probe=lambda *a: Server("llama.cpp")).mode == "typed"


def test_the_openai_mode_sends_the_typed_lark_grammar_as_a_custom_tool():
    strategy = 'strategy "t"\nbuy when close > open\nsell when close < open\n'
    call = {"id": "call_1", "type": "custom", "custom": {"name": "write_strategy", "input": strategy}}
    with FakeLLM([Json(completion(None, tool_calls=[call]))]) as llm:
        config = ModelConfig.resolve(LlmSettings(base_url=llm.base_url, model="m", max_retries=0))
        reply = ChatModel(config, extra_body=constraint_for("openai", llm.base_url).extra_body).chat(
            [{"role": "user", "content": "hi"}])
    sent = llm.requests[0]
    assert sent["tools"] == [{"type": "custom", "custom": {
        "name": "write_strategy", "description": sent["tools"][0]["custom"]["description"],
        "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": grammar_typed.lark_grammar()}}}}]
    assert sent["tool_choice"] == {"type": "custom", "custom": {"name": "write_strategy"}}
    assert reply.text == strategy


def test_the_repair_loop_still_works_when_a_server_ignores_the_grammar(env, warm, capsys):
    # The fake reads no grammar: its first answer of each iteration does not check; the repair does.
    def answer(body, i):
        if len(body["messages"]) == 2:
            return "buy when rsi(close) < 30\nsell when close\n"
        return strategy_from(str(body["messages"]))

    with FakeLLM(answer) as llm:
        env.joinpath(".env").write_text(f"OPENAI_BASE_URL={llm.base_url}\n")
        assert evolve("--run", "t", "--proposer", "llm", "--constrain", "typed", "--iterations", "2") == 0
    bounds = grammar_typed.bounds_for(LlmSettings().max_tokens)  # the bounds that fit the default max_tokens
    longest = grammar_typed.longest_text(bounds)
    assert (f"constrain: typed (typed GBNF in the request's `grammar` field; answers of at most {longest} "
            f"characters, within max_tokens {LlmSettings().max_tokens})") in capsys.readouterr().out
    assert all(r["grammar"] == grammar_typed.gbnf(bounds) and r["max_tokens"] >= longest for r in llm.requests)
    system = " ".join(llm.requests[0]["messages"][0]["content"].split())
    assert "Answer format under the typed grammar" in system and "no ```strat fence" in system
    assert f"up to {bounds.params} params, named p1" in system and f"has at most {longest} characters" in system
    assert any("rsi takes 2 arguments" in str(r["messages"]) for r in llm.requests)  # the error went back


def test_a_server_that_does_not_answer_leaves_the_constraint_off():
    site = Site({})
    url = site.base_url
    site.close()
    c = constraint_for("auto", url)
    assert c.mode == "off" and "did not answer" in c.reason


def test_chat_requests_carry_the_grammar():
    with FakeLLM(lambda body, i: strategy_from(str(body["messages"]))) as llm:
        config = ModelConfig.resolve(LlmSettings(base_url=llm.base_url, model="m", max_retries=0))
        ChatModel(config, extra_body=request_body("gbnf")).chat([{"role": "user", "content": "hi"}])
        ChatModel(config).chat([{"role": "user", "content": "hi"}])
    assert llm.requests[0]["grammar"] == gbnf()
    assert "grammar" not in llm.requests[1]


def test_evolve_sends_the_grammar_with_every_request(env, warm, capsys):
    with FakeLLM(lambda body, i: strategy_from(str(body["messages"]))) as llm:
        env.joinpath(".env").write_text(f"OPENAI_BASE_URL={llm.base_url}\n")
        assert evolve("--run", "g", "--proposer", "llm", "--constrain", "gbnf", "--iterations", "3") == 0
        assert evolve("--run", "a", "--proposer", "llm", "--constrain", "auto", "--iterations", "2") == 0
    out = capsys.readouterr().out
    assert "constrain: gbnf (GBNF in the request's `grammar` field)" in out
    assert "Answer format under the grammar constraint" in llm.requests[0]["messages"][0]["content"]
    assert "under the grammar constraint" not in llm.requests[-1]["messages"][0]["content"]  # auto chose off
    assert "constrain: off (auto: unknown server takes no grammar" in out  # the fake answers no GET
    with_grammar = [r for r in llm.requests if "grammar" in r]
    assert len(with_grammar) == 2 and all(r["grammar"] == gbnf() for r in with_grammar)
    assert len(llm.requests) == 3


def test_the_constrain_flag_is_checked(env, capsys):
    with pytest.raises(SystemExit):
        main(["evolve", "--constrain", "json"])
    assert "invalid choice" in capsys.readouterr().err
