"""Reading a chat completion's HTTP answer, whatever a server sends: text, token usage and finish
reason, or the failure it is (`Malformed`: retried; `NotOpenAI`: not a server to retry), and the
messages that name what could not be read. autostrat.search.llm's ChatModel uses these.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any

TOKEN_CAP = 10_000_000  # the most tokens one count of one call may say; a larger number is clamped


class Malformed(Exception):
    """An answer of the wrong shape: one failed attempt, retried like a server error."""


class NotOpenAI(Exception):
    """A body that is not JSON at all (an HTML page, say): the endpoint is not an OpenAI-style API."""


def read_completion(body: bytes, content_type: str,
                    messages: list[dict[str, str]]) -> tuple[str, dict[str, int], str]:
    """The text, token usage and finish reason of a chat completion body, whatever its shape.

    Raises Malformed (retried) for JSON of the wrong shape or cut off, NotOpenAI for a body that
    is no JSON at all. `content` may be text, null (an empty answer) or a list of content parts
    (their text parts are joined); a custom tool call's input takes its place.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        if body.lstrip()[:1] not in (b"{", b"[") and "json" not in content_type.lower():
            raise NotOpenAI(f"{content_type or 'no content type'}: {_snippet(body)}") from None
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise Malformed(f"the body is not valid JSON, perhaps cut off: {reason}") from None
    if not isinstance(data, dict):
        raise Malformed(f"the body is {_kind(data)}, not a JSON object")
    if "choices" not in data and data.get("error"):
        raise Malformed(f"the server answered with an error: {_snippet(json.dumps(data['error']).encode())}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise Malformed("`choices` is empty" if isinstance(choices, list) else f"`choices` is {_kind(choices)}, "
                        "not a list")
    first = choices[0]
    if not isinstance(first, dict):
        raise Malformed(f"`choices[0]` is {_kind(first)}, not an object")
    message = first.get("message")
    if not isinstance(message, dict):
        raise Malformed(f"`choices[0].message` is {_kind(message)}, not an object")
    text = _text(message.get("content"))
    tool = _tool_input(message.get("tool_calls"))
    if tool is not None:  # the `openai` constraint: the strategy is the custom tool's input
        text = tool
    reason = first.get("finish_reason")
    finish = reason.strip()[:40] if isinstance(reason, str) else ""
    return text, _usage(data.get("usage"), messages, text), finish


def _tool_input(calls: Any) -> str | None:
    """The input of the first custom tool call (`{"type": "custom", "custom": {"input": ...}}`), or None."""
    for call in calls if isinstance(calls, list) else []:
        custom = call.get("custom") if isinstance(call, dict) and call.get("type") == "custom" else None
        if isinstance(custom, dict) and isinstance(custom.get("input"), str):
            return custom["input"]
    return None


def _text(content: Any) -> str:
    if content is None:
        return ""  # the model said nothing: read_answer reports an empty answer
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
        parts = [p if isinstance(p, str) else p["text"] for p in content
                 if isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("text"), str)
                                           and p.get("type", "text") in ("text", "output_text"))]
        if content and not parts:
            raise Malformed("`choices[0].message.content` is a list with no text parts")
        return "".join(parts)
    raise Malformed(f"`choices[0].message.content` is {_kind(content)}, not text")


def _kind(value: Any) -> str:
    if value is None:
        return "null or missing"
    if isinstance(value, bool):
        return "true or false"
    return {str: "a string", int: "a number", float: "a number", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", errors="replace").strip() or "an empty body"


def unreadable(cfg, what) -> str:
    """Why the run stops on an answer that is no OpenAI-style body; `cfg` is the ModelConfig."""
    return (f"model {cfg.model} at {cfg.base_url or 'api.openai.com'}: unreadable answer ({what}); is "
            "OPENAI_BASE_URL an OpenAI-compatible endpoint (it usually ends in /v1)?")


def _count(value: Any) -> int | None:
    """A token count as an int in 0..TOKEN_CAP; None when it is not a count (negative, NaN, text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)) or value < 0:
        return None
    return int(min(value, TOKEN_CAP))


def _usage(raw: Any, messages: list[dict[str, str]], text: str) -> dict[str, int]:
    """Token usage from the server's `usage`, estimated (4 characters a token) where it is no count."""
    u = raw if isinstance(raw, dict) else {}
    p, c, t = (_count(u.get(k)) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    usage = {"prompt": p, "completion": c}
    if p is None:
        usage["prompt"] = math.ceil(sum(len(str(m.get("content") or "")) for m in messages) / 4)
    if c is None:
        usage["completion"] = math.ceil(len(text) / 4)
    # never less than its parts: a server's small or garbled total cannot make a call cost nothing
    usage["total"] = max(t or 0, usage["prompt"] + usage["completion"])
    usage["calls"] = 1
    if p is None or c is None:
        usage["estimated"] = 1  # calls whose counts were estimated
    return usage


def retry_after(response) -> float | None:
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


def cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    return f"{type(inner).__name__}: {inner}" if inner else str(exc)


def refused(cfg, exc) -> str:
    """Why the run stops on a 4xx that retrying cannot fix; `cfg` is the ModelConfig."""
    hint = {401: "check OPENAI_API_KEY", 403: "check the key's permissions",
            404: f"check the model name ({cfg.model}) and OPENAI_BASE_URL"}.get(exc.status_code,
                                                                              "see the message above")
    detail = str(exc.message or exc)[:300]
    return f"model {cfg.model} at {cfg.base_url or 'api.openai.com'} refused the request: " \
           f"HTTP {exc.status_code}: {detail}; {hint}"


