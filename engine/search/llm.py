"""The `llm` proposer: any OpenAI-compatible chat endpoint writes the next candidate.

The endpoint comes from OPENAI_BASE_URL, OPENAI_API_KEY and OPENAI_MODEL (a `.env` file in the
working directory is read; the environment wins), or from [llm] base_url and model. Local
servers (Ollama, LM Studio, llama.cpp, vLLM) need only OPENAI_BASE_URL.

Retries are done here, visibly, not by the client (its max_retries is 0): a rate limit (429,
honouring Retry-After), a server error (5xx), a timeout or a refused or dropped connection waits
`retry_backoff` seconds, doubling each time up to `retry_backoff_max`, for up to `max_retries`
retries. Then the run stops with ModelError (exit code 2) and says how to resume it; the
iteration in progress had written nothing that counts, so nothing is lost or repeated.
"""

from __future__ import annotations

import email.utils
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from autostrat.lang.check import check
from autostrat.config import LlmSettings, Settings
from autostrat.errors import EXIT_USAGE, AutostratError, StrategyError
from autostrat.search.loop import Context, Proposal
from autostrat.sim.objective import Objective
from autostrat.lang.parse import parse
from autostrat.search.prompting import compact_prompt, iteration_prompt, read_answer, repair_prompt, system_prompt

DEFAULT_MODEL = "gpt-4o-mini"
_RETRY_STATUS = {408, 409, 429}


class ModelError(AutostratError):
    """The model endpoint failed for good (after the retries, or with an error retrying cannot fix)."""

    exit_code = EXIT_USAGE


def load_env() -> None:
    """Read ./.env into the environment without overriding variables that are already set."""
    from dotenv import load_dotenv

    path = Path.cwd() / ".env"
    if path.is_file():
        load_dotenv(path, override=False)


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

    @classmethod
    def resolve(cls, s: LlmSettings) -> "ModelConfig":
        """Settings first, then OPENAI_* variables (with .env), then defaults."""
        load_env()
        return cls(base_url=s.base_url or os.environ.get("OPENAI_BASE_URL") or None,
                   api_key=os.environ.get("OPENAI_API_KEY") or "not-needed",
                   model=s.model or os.environ.get("OPENAI_MODEL") or DEFAULT_MODEL,
                   temperature=s.temperature, max_tokens=s.max_tokens, timeout=s.timeout,
                   max_retries=max(int(s.max_retries), 0), backoff=max(s.retry_backoff, 0.0),
                   backoff_max=max(s.retry_backoff_max, 0.0))

    def public(self) -> dict[str, Any]:
        """What config.json records about the model."""
        return {"model": self.model, "base_url": self.base_url or "https://api.openai.com/v1"}


@dataclass
class Reply:
    """One answer: its text, token usage, seconds spent (waits included), attempts and retry reasons."""

    text: str
    usage: dict[str, int]
    seconds: float
    attempts: int
    retries: list[str] = field(default_factory=list)


def add_usage(total: dict[str, int], usage: dict[str, int] | None) -> dict[str, int]:
    """Sum token usage dicts (prompt, completion, total, calls) into `total`."""
    for k, v in (usage or {}).items():
        total[k] = total.get(k, 0) + int(v or 0)
    return total


class ChatModel:
    """A chat endpoint with visible retries. `log` gets one line per retry."""

    def __init__(self, config: ModelConfig, log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep, extra_body: dict[str, Any] | None = None):
        self.config = config
        self.extra_body = extra_body or None  # request fields beyond OpenAI's, e.g. a grammar (autostrat.constrain)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.sleep = sleep
        import openai  # imported here: it takes a second, and the mutate proposer never needs it

        self.client = openai.OpenAI(base_url=config.base_url, api_key=config.api_key,
                                    timeout=config.timeout, max_retries=0)

    def chat(self, messages: list[dict[str, str]]) -> Reply:
        """The model's answer to `messages`, retrying transient failures; ModelError when it gives up."""
        import openai

        cfg = self.config
        start = time.monotonic()
        retries: list[str] = []
        for attempt in range(cfg.max_retries + 1):
            try:
                response = self.client.chat.completions.create(
                    model=cfg.model, messages=messages, temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens, extra_body=self.extra_body)
            except openai.APIStatusError as exc:
                if exc.status_code not in _RETRY_STATUS and exc.status_code < 500:
                    raise ModelError(_refused(cfg, exc)) from None
                problem, wait = f"HTTP {exc.status_code}", _retry_after(exc.response)
            except openai.APITimeoutError:
                problem, wait = f"no answer within {cfg.timeout:g}s", None
            except openai.APIConnectionError as exc:
                problem, wait = f"connection failed ({_cause(exc)})", None
            except openai.APIError as exc:
                raise ModelError(_unreadable(cfg, exc)) from None
            else:
                if not hasattr(response, "choices"):  # e.g. an HTML page: the client hands back the text
                    raise ModelError(_unreadable(cfg, str(response)[:200]))
                return Reply(_content(response), _usage(response), time.monotonic() - start, attempt + 1,
                             retries)
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


def _unreadable(cfg: ModelConfig, what) -> str:
    return (f"model {cfg.model} at {cfg.base_url or 'api.openai.com'}: unreadable answer ({what}); is "
            "OPENAI_BASE_URL an OpenAI-compatible endpoint (it usually ends in /v1)?")


def _content(response) -> str:
    choices = getattr(response, "choices", None) or []
    message = choices[0].message if choices else None
    return (getattr(message, "content", None) or "") if message else ""


def _usage(response) -> dict[str, int]:
    u = getattr(response, "usage", None)
    p = int(getattr(u, "prompt_tokens", 0) or 0)
    c = int(getattr(u, "completion_tokens", 0) or 0)
    return {"prompt": p, "completion": c, "total": int(getattr(u, "total_tokens", 0) or p + c), "calls": 1}


def _retry_after(response) -> float | None:
    headers = getattr(response, "headers", None) or {}
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(when.timestamp() - time.time(), 0.0)


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    return f"{type(inner).__name__}: {inner}" if inner else str(exc)


def _refused(cfg: ModelConfig, exc) -> str:
    hint = {401: "check OPENAI_API_KEY", 403: "check the key's permissions",
            404: f"check the model name ({cfg.model}) and OPENAI_BASE_URL"}.get(exc.status_code,
                                                                              "see the message above")
    detail = str(exc.message or exc)[:300]
    return f"model {cfg.model} at {cfg.base_url or 'api.openai.com'} refused the request: " \
           f"HTTP {exc.status_code}: {detail}; {hint}"


class LlmProposer:
    """Asks the model for a candidate; sends parse and check errors back for repair."""

    name = "llm"
    uses_prompt = True

    def __init__(self, model: ChatModel, settings: Settings, objective: Objective,
                 periods: dict[str, dict[str, Any]], market: str):
        self.model = model
        self.settings = settings
        self.objective = objective
        self.system = system_prompt(settings, objective, periods, market)

    def summarise(self, learnings: str) -> tuple[str, dict[str, int]]:
        """The model's summary of a learnings log that outgrew its budget (one call)."""
        budget = self.settings.search.learnings_budget_chars
        reply = self.model.chat([{"role": "user", "content": compact_prompt(learnings, budget)}])
        return read_answer_notes(reply.text), reply.usage

    def propose(self, ctx: Context) -> Proposal:
        """One candidate: the conversation, up to repair_attempts repairs, and what came of it."""
        user = iteration_prompt(self.settings, self.objective, ctx.iteration, ctx.parent, ctx.population,
                                ctx.learnings, ctx.last, ctx.fails)
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        tokens: dict[str, int] = {}
        responses, retries, seconds = [], [], 0.0
        attempts = max(int(self.settings.search.repair_attempts), 0)
        text, answer, error = "", None, ""
        for repair in range(attempts + 1):
            reply = self.model.chat(messages)
            add_usage(tokens, reply.usage)
            seconds += reply.seconds
            retries += reply.retries
            responses.append(f"## answer {repair + 1} (tokens: {reply.usage.get('total', 0)})\n\n{reply.text}\n")
            answer = read_answer(reply.text)
            text = answer.strategy if answer.strategy is not None else reply.text
            if answer.strategy is None:
                error = answer.problem
            else:
                try:
                    program = parse(answer.strategy, "candidate.strat")
                    check(program)
                except StrategyError as exc:
                    error = exc.format()
                else:
                    return Proposal(program=program, text=answer.strategy, hypothesis=answer.hypothesis,
                                    learned=answer.learned, tokens=tokens, repairs=repair,
                                    prompt=transcript(ctx.iteration, messages), response="\n".join(responses),
                                    model_seconds=seconds, retries=retries)
            if repair < attempts:
                messages = messages + [{"role": "assistant", "content": reply.text},
                                       {"role": "user", "content": repair_prompt(error, repair + 1, attempts)}]
        return Proposal(program=None, text=text, status="invalid", error=error,
                        hypothesis=answer.hypothesis if answer else "", learned=answer.learned if answer else "",
                        tokens=tokens, repairs=attempts, prompt=transcript(ctx.iteration, messages),
                        response="\n".join(responses), model_seconds=seconds, retries=retries)


def read_answer_notes(text: str) -> str:
    """A summary answer without think blocks or a wrapping ```markdown fence."""
    text = re.sub(r"<think>.*?</think>", "", text or "", flags=re.S | re.I).strip()
    m = re.fullmatch(r"```[A-Za-z]*\s*\n(.*?)\n?```", text, re.S)
    return (m.group(1) if m else text).strip()


def transcript(iteration: int, messages: list[dict[str, str]]) -> str:
    """The messages of one iteration's conversation as markdown (prompts/iter_NNNN.md)."""
    parts = [f"<!-- iteration {iteration}: the messages sent to the model, in order -->\n"]
    for n, m in enumerate(messages):
        parts.append(f"## {m['role']} (message {n + 1})\n\n{m['content'].rstrip()}\n")
    return "\n".join(parts)
