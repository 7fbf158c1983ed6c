"""The `llm` proposer: any OpenAI-compatible chat endpoint writes the next candidate.

The endpoint comes from OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL (a `.env` file in the
working directory is read; the environment wins), or from [llm] base_url and model. Local
servers (Ollama, LM Studio, llama.cpp, vLLM) need only OPENAI_BASE_URL.

Retries are done here, visibly, not by the client (its max_retries is 0): a rate limit (429,
honouring Retry-After), a server error (5xx), a timeout or a refused or dropped connection waits
`retry_backoff` seconds, doubling each time up to `retry_backoff_max`, for up to `max_retries`
retries. Then the run stops with ModelError (exit code 2) and says how to resume it; the
iteration in progress had written nothing that counts, so nothing is lost or repeated.

A server can answer anything, so the answer is read here, not by the client: `timeout` is a
total deadline per request (not httpx's per-read timeout), the body is read up to MAX_BODY_BYTES,
and a body of the wrong shape (cut-off JSON, `choices` that is not a list of objects, no
`message`, `content` that is not text) is one failed attempt, retried like a server error. Token
counts are made non-negative integers of at most TOKEN_CAP; a count the server leaves out or
garbles is estimated from the text (4 characters a token), so the token budget always counts
something. An answer longer than `max_answer_chars` is cut to that length (Reply.truncated).
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from autostrat.config import LlmSettings, Settings
from autostrat.errors import EXIT_USAGE, AutostratError, StrategyError
from autostrat.lang.parse import parse
from autostrat.search.llm_reply import (Malformed, NotOpenAI, cause, read_completion, refused, retry_after,
                                        unreadable)
from autostrat.search.proposal import Context, Proposal
from autostrat.search.steps import check_for_run
from autostrat.search.prompting import (compact_prompt, constrained_format, iteration_prompt, read_answer,
                                        repair_prompt, strip_think, system_prompt)
from autostrat.sim.objective import Objective

DEFAULT_MODEL = "gpt-4o-mini"
_RETRY_STATUS = {408, 409, 429}
MAX_BODY_BYTES = 64 * 2**20  # an answer's HTTP body is not read past this (a broken or hostile server)


class ModelError(AutostratError):
    """The model endpoint failed for good (after the retries, or with an error retrying cannot fix)."""

    exit_code = EXIT_USAGE


class EnvFileError(AutostratError):
    """A `.env` file in the working directory that cannot be read as UTF-8 text."""


def load_env() -> None:
    """Read ./.env into the environment without overriding variables that are already set.

    The file must be UTF-8 (a byte order mark is allowed); anything else is one EnvFileError
    naming the file and the first bad byte, not a traceback from deep inside python-dotenv.
    """
    from dotenv import load_dotenv

    path = Path.cwd() / ".env"
    if not path.is_file():
        return
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvFileError(f"{path}: cannot read the .env file ({exc.strerror or exc}); fix its permissions "
                           "or remove it") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)  # utf-8-sig counts after the BOM
        line = data[:at].count(b"\n") + 1
        raise EnvFileError(f"{path}: not UTF-8 text: byte 0x{data[at]:02x} at offset {at} (line {line}); "
                           "save the file as UTF-8, or remove it and set OPENAI_* in the environment") from None
    load_dotenv(stream=io.StringIO(text), override=False)


def llm_configured(settings: LlmSettings) -> bool:
    """True when an endpoint is configured: [llm] base_url, OPENAI_BASE_URL or OPENAI_API_KEY."""
    load_env()
    return bool(settings.base_url or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_KEY"))


@dataclass
class ModelConfig:
    """Where and how to call the model (the API key is never written to a run folder)."""

    base_url: str | None
    api_key: str = field(repr=False)
    model: str
    temperature: float
    max_tokens: int
    timeout: float
    max_retries: int
    backoff: float
    backoff_max: float
    max_answer_chars: int = 400_000

    @classmethod
    def resolve(cls, s: LlmSettings) -> "ModelConfig":
        """Settings first, then OPENAI_* variables (with .env), then defaults."""
        load_env()
        return cls(base_url=s.base_url or os.environ.get("OPENAI_BASE_URL") or None,
                   api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                   model=s.model or os.environ.get("OPENAI_MODEL") or DEFAULT_MODEL,
                   temperature=s.temperature, max_tokens=s.max_tokens, timeout=s.timeout,
                   max_retries=max(int(s.max_retries), 0), backoff=max(s.retry_backoff, 0.0),
                   backoff_max=max(s.retry_backoff_max, 0.0),
                   max_answer_chars=max(int(s.max_answer_chars), 1))

    def public(self) -> dict[str, Any]:
        """What config.json records about the model."""
        return {"model": self.model, "base_url": self.base_url or "https://api.openai.com/v1"}


@dataclass
class Reply:
    """One answer: its text, token usage, seconds spent (waits included), attempts and retry reasons.

    `finish` is the server's finish_reason: "stop" when the model ended the answer itself,
    "length" when it was cut off at max_tokens, "" when the server did not say. `truncated` is
    the answer's full length in characters when it was longer than max_answer_chars and `text`
    holds only its start; 0 otherwise.
    """

    text: str
    usage: dict[str, int]
    seconds: float
    attempts: int
    retries: list[str] = field(default_factory=list)
    finish: str = ""
    truncated: int = 0

    @property
    def cut_off(self) -> bool:
        """Whether the answer stopped at the token limit instead of ending by itself."""
        return self.finish == "length"


def add_usage(total: dict[str, int], usage: dict[str, int] | None) -> dict[str, int]:
    """Sum token usage dicts (prompt, completion, total, calls) into `total`."""
    for k, v in (usage or {}).items():
        total[k] = total.get(k, 0) + (v if type(v) is int and v > 0 else 0)  # counts are sanitised in _usage
    return total


class ChatModel:
    """A chat endpoint with visible retries. `log` gets one line per retry."""

    def __init__(self, config: ModelConfig, log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, extra_body: dict[str, Any] | None = None):
        self.config = config
        self.extra_body = extra_body or None  # request fields beyond OpenAI's, e.g. a grammar (autostrat.constrain)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.sleep = sleep
        self.client = self._new_client()

    def _new_client(self):
        import openai  # imported here: it takes a second, and the mutate proposer never needs it

        return openai.OpenAI(base_url=self.config.base_url, api_key=self.config.api_key,
                             timeout=self.config.timeout, max_retries=0)

    def chat(self, messages: list[dict[str, str]]) -> Reply:
        """The model's answer to `messages`, retrying transient failures; ModelError when it gives up."""
        import openai

        cfg = self.config
        start = time.monotonic()
        retries: list[str] = []
        for attempt in range(cfg.max_retries + 1):
            try:
                body, content_type = self._within_deadline(self._post, messages)
                text, usage, finish = read_completion(body, content_type, messages)
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRY_STATUS and exc.status_code < 500:
                    raise ModelError(refused(cfg, exc)) from None
                problem, wait = f"HTTP {exc.status_code}", retry_after(exc.response)
            except (openai.APITimeoutError, _Deadline):
                problem, wait = f"no answer within {cfg.timeout:g}s", None
            except openai.APIConnectionError as exc:
                problem, wait = f"connection failed ({cause(exc)})", None
            except Malformed as exc:
                problem, wait = f"malformed answer ({exc})", None
            except NotOpenAI as exc:  # e.g. an HTML page: not a server to retry
                raise ModelError(unreadable(cfg, exc)) from None
            except openai.APIError as exc:
                raise ModelError(unreadable(cfg, exc)) from None
            else:
                full = len(text)
                if full > cfg.max_answer_chars:
                    text = text[: cfg.max_answer_chars]
                    self.log(f"model: the answer has {full} characters; only the first {cfg.max_answer_chars} "
                             "are read ([llm] max_answer_chars)")
                return Reply(text, usage, time.monotonic() - start, attempt + 1, retries, finish,
                             full if full > cfg.max_answer_chars else 0)
            if attempt == cfg.max_retries:
                raise ModelError(
                    f"model {cfg.model} at {cfg.base_url or 'api.openai.com'}: {problem}; gave up after "
                    f"{attempt + 1} attempt{'s' if attempt else ''}. Check the server, or raise "
                    "[llm] max_retries / timeout")
            delay = cfg.backoff * 2 ** attempt if wait is None else wait
            delay = min(max(delay, 0.0), cfg.backoff_max)
            retries.append(f"{problem}; waited {delay:.3g}s")
            self.log(f"model: {problem}; retry {attempt + 1} of {cfg.max_retries} in {delay:.3g}s")
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _post(self, client, messages: list[dict[str, str]]) -> tuple[bytes, str]:
        """One chat request: the raw body (at most MAX_BODY_BYTES) and its content type.

        The body is streamed so that a huge one is refused without being held in memory; HTTP
        errors still come as the client's exceptions (APIStatusError and the like).
        """
        cfg = self.config
        with client.chat.completions.with_streaming_response.create(
                model=cfg.model, messages=messages, temperature=cfg.temperature,
                max_tokens=cfg.max_tokens, extra_body=self.extra_body) as response:
            content_type = response.headers.get("content-type", "")
            body = bytearray()
            try:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise Malformed(f"the body is larger than {MAX_BODY_BYTES >> 20} MiB")
            except Malformed:
                raise
            except Exception as exc:  # httpx's errors while the body arrives: the client does not wrap these
                import openai

                if "Timeout" in type(exc).__name__:
                    raise openai.APITimeoutError(request=response.http_request) from exc
                raise openai.APIConnectionError(message=str(exc), request=response.http_request) from exc
            return bytes(body), content_type

    def _within_deadline(self, request: Callable, messages: list[dict[str, str]]):
        """`request(client, messages)` with `timeout` as a deadline on the whole request.

        The client's timeout (httpx's) bounds each socket operation, not the request: a server
        that sends one byte every few seconds never trips it. So the request runs in a daemon
        thread and this thread waits for it at most `timeout` seconds. Past that, the client is
        closed (in the background, so that a stuck close cannot block us either), which drops its
        connection: the abandoned request fails at its next read, within one httpx timeout, and
        its result is never looked at. A fresh client takes the next attempt. Closing works
        whatever the request is doing (connecting, reading headers or a dripping body) and needs
        nothing private of openai or httpx.
        """
        client, box, done = self.client, {}, threading.Event()

        def run():
            try:
                box["value"] = request(client, messages)
            except BaseException as exc:  # handed to the waiting thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="autostrat-model-request", daemon=True).start()
        if not done.wait(max(self.config.timeout, 0.0)):
            self.client = self._new_client()
            threading.Thread(target=client.close, name="autostrat-model-close", daemon=True).start()
            raise _Deadline()
        if "error" in box:
            raise box["error"]
        return box["value"]


class _Deadline(Exception):
    """The whole request took longer than [llm] timeout."""


class LlmProposer:
    """Asks the model for a candidate; sends parse and check errors back for repair."""

    name = "llm"
    uses_prompt = True

    def __init__(self, model: ChatModel, settings: Settings, objective: Objective,
                 periods: dict[str, dict[str, Any]], market: str, constraint: str = "off", portfolio: bool = False):
        self.model = model
        self.settings = settings
        self.objective = objective
        self.portfolio = portfolio  # a portfolio run: only portfolio strategies check (autostrat.search.steps)
        self.system = system_prompt(settings, objective, periods, market, portfolio)
        if constraint != "off":  # the grammar refuses the fenced format: ask for the bare file
            self.system += "\n\n" + constrained_format(constraint, model.config.max_tokens)  # the bounds sent

    def summarise(self, learnings: str) -> tuple[str, dict[str, int]]:
        """The model's summary of a learnings log that outgrew its budget (one call)."""
        budget = self.settings.search.learnings_budget_chars
        reply = self.model.chat([{"role": "user", "content": compact_prompt(learnings, budget, self.settings.search.prompts_dir)}])
        return read_answer_notes(reply.text), reply.usage

    def propose_many(self, contexts: list[Context]) -> list[Proposal | BaseException]:
        """One candidate per context, the conversations sent at once (one thread each), in their order.

        Each conversation has its own retries and repairs; one that fails for good gives its
        exception in its place and the others are kept.
        """
        from concurrent.futures import ThreadPoolExecutor

        def one(ctx: Context) -> Proposal | BaseException:
            try:
                return self.propose(ctx)
            except Exception as exc:  # handed back in order: the loop commits the ones before it
                return exc

        if len(contexts) <= 1:
            return [one(ctx) for ctx in contexts]
        with ThreadPoolExecutor(max_workers=len(contexts), thread_name_prefix="autostrat-propose") as pool:
            return list(pool.map(one, contexts))

    def propose(self, ctx: Context) -> Proposal:
        """One candidate: the conversation, up to repair_attempts repairs, and what came of it."""
        user = iteration_prompt(self.settings, self.objective, ctx.iteration, ctx.parent, ctx.population,
                                ctx.learnings, ctx.last, ctx.fails)
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        tokens: dict[str, int] = {}
        responses, retries, seconds = [], [], 0.0
        attempts = max(int(self.settings.search.repair_attempts), 0)
        text, answer, error, finishes = "", None, "", []
        for repair in range(attempts + 1):
            reply = self.model.chat(messages)
            add_usage(tokens, reply.usage)
            seconds += reply.seconds
            retries += reply.retries
            finishes.append(reply.finish)
            cut = (f"truncated: {reply.truncated} characters, the first {len(reply.text)} kept"
                   if reply.truncated else "")
            responses.append(f"## answer {repair + 1} (tokens: {reply.usage.get('total', 0)}, "
                             f"finish: {reply.finish or 'unknown'}{', ' + cut if cut else ''})\n\n{reply.text}\n")
            answer = read_answer(reply.text)
            text = answer.strategy if answer.strategy is not None else reply.text
            if answer.strategy is None:
                error = answer.problem
            else:
                try:
                    program = parse(answer.strategy, "candidate.strat")
                    check_for_run(program, self.portfolio)
                except StrategyError as exc:
                    error = exc.format()
                else:
                    return Proposal(program=program, text=answer.strategy, hypothesis=answer.hypothesis,
                                    learned=answer.learned, tokens=tokens, repairs=repair,
                                    prompt=transcript(ctx.iteration, messages), response="\n".join(responses),
                                    model_seconds=seconds, retries=retries, finish=finishes)
            if reply.truncated:
                error = (f"the answer had {reply.truncated} characters; only the first {len(reply.text)} were "
                         f"read ([llm] max_answer_chars); write a much shorter answer.\n{error}")
            if reply.cut_off:
                error = (f"the answer was cut off at the token limit ({self.model.config.max_tokens} tokens) "
                         f"before it ended; write a shorter strategy.\n{error}")
            if repair < attempts:
                messages = messages + [{"role": "assistant", "content": reply.text},
                                       {"role": "user", "content": repair_prompt(error, repair + 1, attempts, self.settings.search.prompts_dir)}]
        return Proposal(program=None, text=text, status="invalid", error=error,
                        hypothesis=answer.hypothesis if answer else "", learned=answer.learned if answer else "",
                        tokens=tokens, repairs=attempts, prompt=transcript(ctx.iteration, messages),
                        response="\n".join(responses), model_seconds=seconds, retries=retries, finish=finishes)


def read_answer_notes(text: str) -> str:
    """A summary answer without think blocks or a wrapping ```markdown fence."""
    text = strip_think(text or "").strip()
    m = re.fullmatch(r"```[A-Za-z]*\s*\n(.*?)\n?```", text, re.S)
    return (m.group(1) if m else text).strip()


def transcript(iteration: int, messages: list[dict[str, str]]) -> str:
    """The messages of one iteration's conversation as markdown (prompts/iter_NNNN.md)."""
    parts = [f"<!-- iteration {iteration}: the messages sent to the model, in order -->\n"]
    for n, m in enumerate(messages):
        parts.append(f"## {m['role']} (message {n + 1})\n\n{m['content'].rstrip()}\n")
    return "\n".join(parts)
