"""A model server that answers anything: odd shapes, garbled token counts, slow drips, huge bodies.

Every case is one failed attempt with a clear reason (retried, or recorded as an invalid answer),
never a traceback. The servers are real ones on 127.0.0.1 (tests/fake_llm_server.py); no test
asserts a speed: the only clock is a hang guard far above any machine's time.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path

import pytest

from autostrat.search import llm as llm_module
from autostrat.cli import main
from autostrat.config import LlmSettings, Settings
from autostrat.search.constrain import constraint_for, probe_server
from autostrat.errors import AutostratError
from autostrat.search.llm import ChatModel, EnvFileError, ModelConfig, ModelError, load_env, read_answer_notes
from autostrat.search.llm_reply import TOKEN_CAP
from autostrat.search.prompting import read_answer
from autostrat.search.runs import RunFolder

sys.path.insert(0, str(Path(__file__).parent))
from fake_llm_server import Cut, Drip, FakeLLM, Huge, Json, Raw, completion, drip_seconds, strategy_from  # noqa: E402
from test_llm import Plan, env, evolve, key  # noqa: E402,F401 - the clean-environment fixture
from test_loop import progress, warm, market  # noqa: E402,F401 - session fixtures

HANG_GUARD = 60.0  # seconds: only to catch a hang, far above what any machine takes
STRAT = strategy_from("hostile")


def _model(url, timeout=5.0, max_retries=3, max_answer_chars=400_000):
    cfg = ModelConfig(base_url=url, api_key="k", model="m", temperature=0.0, max_tokens=64, timeout=timeout,
                      max_retries=max_retries, backoff=0.01, backoff_max=0.05, max_answer_chars=max_answer_chars)
    sleeps, logs = [], []
    return ChatModel(cfg, log=logs.append, sleep=sleeps.append), sleeps, logs


def ask(model):
    return model.chat([{"role": "user", "content": "write a strategy"}])


def finishes(fn, *args):
    """fn(*args), failing the test if it does not return within HANG_GUARD seconds."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # raised again in the test's thread
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(HANG_GUARD)
    assert box, f"{getattr(fn, '__name__', fn)} did not return within {HANG_GUARD:g}s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- 7: answers of unusual shape -----------------------------------------------------------------

ODD = {
    "JSON cut off": (Raw('{"choices": [{"message": {"content": "buy wh', content_type="application/json"),
                     "not valid JSON, perhaps cut off"),
    "connection closed mid-body": (Cut(json.dumps(completion(STRAT)), at=40), "connection failed"),
    "a JSON list": (Json([1, 2]), "the body is a list, not a JSON object"),
    "a JSON number": (Json(42), "the body is a number"),
    "JSON null": (Json(None), "the body is null or missing"),
    "an error object with status 200": (Json({"error": {"message": "overloaded"}}),
                                        "answered with an error: {\"message\": \"overloaded\"}"),
    "choices null": (Json({"choices": None}), "`choices` is null or missing, not a list"),
    "choices missing": (Json({"id": "x"}), "`choices` is null or missing, not a list"),
    "choices a string": (Json({"choices": "buy when close > open"}), "`choices` is a string, not a list"),
    "choices numbers": (Json({"choices": [1, 2, 3]}), "`choices[0]` is a number, not an object"),
    "choices empty": (Json({"choices": []}), "`choices` is empty"),
    "message missing": (Json({"choices": [{"index": 0, "finish_reason": "stop"}]}),
                        "`choices[0].message` is null or missing, not an object"),
    "message a string": (Json({"choices": [{"message": STRAT}]}), "`choices[0].message` is a string"),
    "content a number": (Json(completion(42)), "`choices[0].message.content` is a number, not text"),
    "content an object": (Json(completion({"text": STRAT})), "`choices[0].message.content` is an object"),
    "content true": (Json(completion(True)), "`choices[0].message.content` is true or false"),
    "content parts without text": (Json(completion([1, 2, {"type": "image_url"}])),
                                   "a list with no text parts"),
    "JSON nested 100000 deep": (Raw("[" * 100_000, content_type="application/json"), "not valid JSON"),
    "invalid UTF-8": (Raw(b'{"choices": "\xff"}', content_type="application/json"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(ODD))
def test_an_answer_of_odd_shape_is_one_failed_attempt_with_its_reason(case):
    action, reason = ODD[case]
    with FakeLLM([action, "ok"]) as llm:
        model, sleeps, logs = _model(llm.base_url)
        reply = finishes(ask, model)
    assert reply.text == "ok" and reply.attempts == 2 and len(sleeps) == 1
    assert reason in logs[0] and "retry 1 of 3" in logs[0], logs
    assert reason in reply.retries[0]


def test_odd_answers_every_time_give_up_with_the_reason():
    with FakeLLM([Json({"choices": None})] * 5) as llm:
        model, sleeps, logs = _model(llm.base_url, max_retries=2)
        with pytest.raises(ModelError, match=r"malformed answer \(`choices` is null or missing, not a list\); "
                                             r"gave up after 3 attempts"):
            ask(model)
    assert len(llm.requests) == 3 and len(sleeps) == 2


def test_a_page_that_is_not_json_is_not_retried():
    with FakeLLM([Raw("<html>busy</html>"), "ok"]) as llm:
        model, sleeps, _ = _model(llm.base_url)
        with pytest.raises(ModelError, match=r"unreadable answer \(text/html: <html>busy</html>\).*ends in /v1"):
            ask(model)
    assert not sleeps and len(llm.requests) == 1


@pytest.mark.parametrize("content, text", [
    ([{"type": "text", "text": "```strat\n"}, {"type": "text", "text": "buy when close > open\n```"}],
     "```strat\nbuy when close > open\n```"),
    ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}, "b", 3], "ab"),
    ([{"type": "output_text", "text": "out"}], "out"),
    (None, ""),
    ("plain", "plain"),
    ([], ""),
])
def test_content_is_text_null_or_text_parts(content, text):
    with FakeLLM([Json(completion(content))]) as llm:
        model, sleeps, _ = _model(llm.base_url)
        reply = ask(model)
    assert reply.text == text and not sleeps


@pytest.mark.parametrize("finish, kept", [
    ("stop", "stop"), ("length", "length"), (None, ""), (42, ""), (["stop"], ""), ("x" * 5000, "x" * 40),
    ("  content_filter ", "content_filter"),
])
def test_an_odd_finish_reason_is_kept_short_or_dropped(finish, kept):
    with FakeLLM([Json(completion("hi", finish=finish))]) as llm:
        model, _, _ = _model(llm.base_url)
        reply = ask(model)
    assert reply.finish == kept and reply.cut_off == (kept == "length")


USAGES = {
    "counts": ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, (10, 5, 15), False),
    "strings": ({"prompt_tokens": "10", "completion_tokens": " 5 ", "total_tokens": "15"}, (10, 5, 15), False),
    "text that is no number": ({"prompt_tokens": "many", "completion_tokens": 5}, (None, 5, None), True),
    "negative": ({"prompt_tokens": -10**9, "completion_tokens": -5, "total_tokens": -10**9}, (None, None, None), True),
    "floats": ({"prompt_tokens": 10.7, "completion_tokens": 5.2, "total_tokens": 15.9}, (10, 5, 15), False),
    "enormous": ({"prompt_tokens": 1e30, "completion_tokens": 10**40, "total_tokens": 1e308},
                 (TOKEN_CAP, TOKEN_CAP, TOKEN_CAP * 2), False),
    "infinite and NaN": ({"prompt_tokens": float("inf"), "completion_tokens": float("nan")},
                         (TOKEN_CAP, None, None), True),
    "booleans": ({"prompt_tokens": True, "completion_tokens": False}, (None, None, None), True),
    "a total below its parts": ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 1}, (10, 5, 15), False),
    "usage a string": ("lots", (None, None, None), True),
    "usage a list": ([1, 2, 3], (None, None, None), True),
    "usage missing": (None, (None, None, None), True),
}


@pytest.mark.parametrize("case", list(USAGES))
def test_token_counts_are_sane_whatever_the_server_says(case):
    usage, (p, c, t), estimated = USAGES[case]
    answer = "x" * 400
    with FakeLLM([Json(completion(answer, usage=usage))]) as llm:
        model, _, _ = _model(llm.base_url)
        got = ask(model).usage
    assert all(type(v) is int and 0 <= v <= 2 * TOKEN_CAP for v in got.values()), got
    assert got["calls"] == 1 and got.get("estimated", 0) == int(estimated)
    assert got["completion"] == (c if c is not None else 100)  # estimated: 4 characters a token
    assert got["prompt"] == (p if p is not None else math.ceil(len("write a strategy") / 4))
    assert got["total"] == (t if t is not None else got["prompt"] + got["completion"])
    assert got["total"] >= got["prompt"] + got["completion"]


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": -10**9, "completion_tokens": -10**9, "total_tokens": -10**9},
    {"prompt_tokens": "lots", "completion_tokens": None, "total_tokens": "-5"},
])
def test_negative_or_garbled_counts_do_not_defeat_the_token_budget(env, warm, monkeypatch, capsys, usage):
    # estimated from the text: the prompt alone is a few thousand tokens, so 1000 stops the run
    with FakeLLM(lambda body, i: Json(completion(strategy_from(f"b {i}"), usage=usage))) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "b", "--iterations", "6", "--max-total-tokens", "1000", "--proposer", "llm") == 0
    out = capsys.readouterr().out
    assert progress(out) == [0, 1] and "spent the token budget (1000)" in out
    record = RunFolder.open(Path("runs/b")).load_records()[1]
    assert record["tokens"]["total"] > 1000 and record["tokens"]["estimated"] == 1


def test_an_enormous_count_is_clamped_and_spends_the_budget(env, warm, monkeypatch, capsys):
    usage = {"prompt_tokens": 1e30, "completion_tokens": 1e30, "total_tokens": 1e30}
    with FakeLLM(lambda body, i: Json(completion(strategy_from(f"e {i}"), usage=usage))) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "e", "--iterations", "10", "--max-total-tokens", "50000000", "--proposer", "llm") == 0
    out = capsys.readouterr().out
    assert progress(out) == [0, 1, 2, 3] and "spent the token budget (50000000)" in out
    totals = [r["tokens"]["total"] for r in RunFolder.open(Path("runs/e")).load_records()[1:]]
    assert totals and all(t == 2 * TOKEN_CAP for t in totals)


def test_a_run_records_odd_answers_and_goes_on(env, warm, monkeypatch, capsys):
    (env / "autostrat.toml").write_text((env / "autostrat.toml").read_text() + "max_answer_chars = 5000\n")
    parts = [{"type": "text", "text": STRAT[:30]}, {"type": "text", "text": STRAT[30:]}]
    huge = "I will think about this. " * 400_000 + STRAT  # 10 MB; the strategy lies past the cut
    plan = Plan({(1, 0): [Json({"choices": [7]})], (2, 0): [Json(completion(None))],
                 (3, 0): [Json(completion(parts))], (4, 0): [huge]})
    with FakeLLM(plan) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.base_url)
        assert evolve("--run", "odd", "--iterations", "5", "--max-fails", "9", "--proposer", "llm") == 0
    out, err = capsys.readouterr()
    assert progress(out) == list(range(5)) and "Traceback" not in err
    assert "malformed answer (`choices[0]` is a number, not an object); retry 1 of 3" in err
    assert f"the answer has {len(huge)} characters; only the first 5000 are read" in err
    run = Path("runs/odd")
    records = RunFolder.open(run).load_records()
    assert "`choices[0]` is a number" in records[1]["retries"][0] and records[1]["repairs"] == 0
    assert records[2]["repairs"] == 1  # the empty answer went back to the model
    assert "the answer was empty" in users_of(llm, (2, 1))[-1]
    assert records[3]["repairs"] == 0 and records[3]["status"] in ("keep", "discard")
    assert records[4]["repairs"] == 1
    told = users_of(llm, (4, 1))[-1]
    assert f"the answer had {len(huge)} characters; only the first 5000 were read" in told
    response = (run / "responses" / "iter_0004.md").read_text()
    assert f"truncated: {len(huge)} characters, the first 5000 kept" in response and len(response) < 20_000


def users_of(llm, k):
    body = next(b for b in llm.requests if key(b) == k)
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


def test_a_body_past_the_size_limit_is_not_read(monkeypatch):
    monkeypatch.setattr(llm_module, "MAX_BODY_BYTES", 2**20)
    with FakeLLM([Huge(5 * 2**20), "ok"]) as llm:
        model, sleeps, logs = _model(llm.base_url, timeout=30)
        assert finishes(ask, model).text == "ok"
    assert "malformed answer (the body is larger than 1 MiB)" in logs[0]


# --- 14: a total deadline per request ------------------------------------------------------------

def test_a_dripping_server_times_out_as_a_whole_request():
    drip = Drip(json.dumps(completion(STRAT)), interval=0.2)  # minutes of bytes, each 0.2 s apart
    assert drip_seconds(drip) > HANG_GUARD
    with FakeLLM([drip, drip, drip]) as llm:
        model, sleeps, logs = _model(llm.base_url, timeout=1.0, max_retries=1)

        def attempt():
            try:
                ask(model)
            except ModelError as exc:
                return str(exc)
            return "answered"

        message = finishes(attempt)  # the guard is far below the drip's length
    assert "no answer within 1s; gave up after 2 attempts" in message
    assert logs == ["model: no answer within 1s; retry 1 of 1 in 0.01s"] and len(llm.requests) == 2


def test_a_server_that_drips_its_headers_times_out_too():
    drip = Drip(json.dumps(completion(STRAT)), interval=0.2, whole=True)
    with FakeLLM([drip, "ok"]) as llm:
        model, sleeps, logs = _model(llm.base_url, timeout=1.0)
        reply = finishes(ask, model)
    assert reply.text == "ok" and logs[0] == "model: no answer within 1s; retry 1 of 3 in 0.01s"


def test_after_a_deadline_the_next_attempt_gets_a_fresh_connection():
    drip = Drip(json.dumps(completion("slow")), interval=0.2)
    with FakeLLM([drip, "fast"]) as llm:
        model, sleeps, logs = _model(llm.base_url, timeout=1.0)
        reply = finishes(ask, model)
    assert reply.text == "fast" and reply.attempts == 2 and "no answer within 1s" in logs[0]


# --- 8: --constrain auto against odd /v1/models answers ------------------------------------------

MODEL_LISTS = {
    "a list": ([{"owned_by": "llamacpp"}], "answered a list, not an object with a `data` list"),
    "a number": (42, "answered a number, not an object with a `data` list"),
    "a string": ("llamacpp", "answered a string"),
    "null": (Json(None), "answered null"),
    "data a number": ({"data": 5}, "answered an object whose `data` is a number, not a list"),
    "data an object": ({"data": {"owned_by": "vllm"}}, "whose `data` is an object, not a list"),
    "data missing": ({"object": "list"}, "whose `data` is missing or null"),
    "entries not objects": ({"data": [1, "vllm", None, [{"owned_by": "vllm"}]]}, "owned_by nothing"),
    "owned_by odd": ({"data": [{"owned_by": {"x": [1]}}, {"owned_by": None}]}, "owned_by "),
    "not JSON": (Raw("<html>", content_type="text/html"), "answered something that is not JSON"),
    "cut off": (Cut('{"data": [{"owned_by": "vllm"}]}', at=12), "closed the connection before the end of its answer"),
    "50 MB": (Huge(50 * 2**20), "answered more than 1 MiB"),
    "a drip": (Drip('{"data": [{"owned_by": "llamacpp"}]}', interval=0.2), "did not answer within 1s"),
}


@pytest.mark.parametrize("case", list(MODEL_LISTS))
def test_constrain_auto_survives_an_odd_model_list_and_says_why(case):
    answer, why = MODEL_LISTS[case]
    odd = {"/props": [1], "/openapi.json": {"info": "llama.cpp"}, "/version": ["0.11"]}
    with FakeLLM([], gets={"/v1/models": answer, **odd}) as llm:
        server = finishes(lambda: probe_server(llm.base_url, timeout=1.0))
    assert server.kind == "unknown" and why in server.detail, server


def test_constrain_auto_falls_back_with_the_reason(monkeypatch):
    with FakeLLM([], gets={"/v1/models": 42}) as llm:
        c = finishes(lambda: constraint_for("auto", llm.base_url))
    assert c.mode == "off" and c.extra_body == {}
    assert "answered a number, not an object with a `data` list" in c.describe()


# --- 15: reading huge and pathological answers in linear time ------------------------------------

MB10 = 10_000_000
PATHOLOGICAL = {
    "<think> without a close": "<think>" + "hmm, " * (MB10 // 5),
    "<think> repeated 1e6 times": "<think>" * 1_000_000 + "\n" + STRAT,
    "<think></think> pairs": "<think>a</think>" * 600_000,
    "1e6 blank lines": "buy" + "\n" * 1_000_000 + "when\n" + "\n \t\n" * 2_000_000,
    "1e5 unclosed fences": "```strat\n" * 100_000,
    "1e5 unclosed fences of growing length": "".join("`" * (3 + i % 50) + "x\n" for i in range(100_000)),
    "paired empty fences": "```\n" * 500_000,
    "a fence line of 10 MB without a newline": "```" + "a" * MB10,
    "10 MB of backticks": "`" * MB10,
    "a hypothesis line with 10 MB of spaces": "```strat\n# hypothesis: a" + " " * MB10 + "b\nbuy when x\n```\n",
    "spaces between the rule words": "buy" + " " * MB10 + "when",
}


@pytest.mark.parametrize("case", list(PATHOLOGICAL))
def test_read_answer_is_linear_on_pathological_answers(case):
    text = PATHOLOGICAL[case]
    assert len(text) >= 900_000
    answer = finishes(read_answer, text)
    assert answer.strategy is not None or answer.problem
    finishes(read_answer_notes, text)
    # Python-level work is bounded by the answer's structure (fences and think tags), not by
    # its size: count every Python and C call read_answer makes.
    calls = count_calls(read_answer, text)
    structure = text.count("```") + text.count("~~~") + text.lower().count("think>")
    assert calls <= 1000 + 32 * structure, (calls, structure)


def count_calls(fn, *args) -> int:
    calls = [0]

    def profile(frame, event, arg):
        if event in ("call", "c_call"):
            calls[0] += 1

    sys.setprofile(profile)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return calls[0]


def test_read_answer_keeps_its_meaning():
    assert read_answer("<think>x</think>\n" + STRAT).strategy.startswith("# hypothesis:")
    assert read_answer("<THINK>never closed\n" + STRAT).strategy is not None
    a = read_answer("intro\n~~~~ strat extra\nbuy when a\n~~~\n~~~~\n```markdown\n- lesson\n```")
    assert a.strategy == "buy when a\n~~~\n" and a.learned == "- lesson"
    assert read_answer("```\nbuy when x\nsell when y\n```").strategy == "buy when x\nsell when y\n"
    a = read_answer("# hypothesis:   spaced out   \n# learned:\nbuy when x\nsell when y")
    assert a.hypothesis == "spaced out" and a.learned == ""
    assert read_answer("```strat\r\nbuy when x\r\n```\r\nafter").strategy == "buy when x\r\n"


# --- .env that is not UTF-8 ----------------------------------------------------------------------

def test_a_dotenv_that_is_not_utf8_is_one_clear_error(env):
    (env / ".env").write_bytes(b"OPENAI_MODEL=caf\xe9\nOPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    with pytest.raises(EnvFileError, match=r"\.env: not UTF-8 text: byte 0xe9 at offset 16 \(line 1\); save "
                                           r"the file as UTF-8") as info:
        load_env()
    assert isinstance(info.value, AutostratError) and str(env / ".env") in str(info.value)


def test_a_dotenv_with_a_byte_order_mark_is_read(env, monkeypatch):
    (env / ".env").write_bytes(b"\xef\xbb\xbfOPENAI_MODEL=bom\n")
    load_env()
    assert ModelConfig.resolve(LlmSettings()).model == "bom"
    (env / ".env").write_bytes(b"\xef\xbb\xbfA=1\nOPENAI_MODEL=\xff\n")
    with pytest.raises(EnvFileError, match=r"byte 0xff at offset 20 \(line 2\)"):
        load_env()


def test_the_cli_says_what_is_wrong_with_the_dotenv(env, capsys):
    (env / ".env").write_bytes(b"# \x80\x81\n")
    assert evolve("--run", "x", "--iterations", "2") == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text: byte 0x80 at offset 2 (line 1)" in err and "Traceback" not in err


def test_max_answer_chars_is_a_setting():
    s = Settings()
    s.set("llm.max_answer_chars", 1234)
    assert ModelConfig.resolve(s.llm).max_answer_chars == 1234 and LlmSettings().max_answer_chars == 400_000
