"""Grammar-constrained decoding: what a model server takes, and the request field that carries it.

`[llm] constrain` (or `--constrain`) is one of:

- `typed`: the typed GBNF grammar (lang/grammar_typed: every answer it allows passes `check`) in the
  request's `grammar` field, which llama.cpp's llama-server and llama-cpp-python's server read;
- `gbnf`: the syntax-only GBNF grammar (lang/grammar_export) in the same field;
- `vllm`: the typed grammar as vLLM's structured output, `{"structured_outputs": {"grammar": ...}}`
  from vLLM 0.10.2 on and `{"guided_grammar": ...}` before (vLLM ignores a field it does not know,
  so the version decides; its default backend, xgrammar, reads GBNF as its EBNF);
- `openai`: the typed Lark grammar as a custom tool the model must call (OpenAI's API matches it
  with LLGuidance); the strategy is read from the tool call's input;
- `auto`: ask the server once, at the start, which kind it is, and use the mode that fits;
- `off`: no constraint; parse and check errors go back to the model (the repair loop).
- empty (the default): `auto` for a base URL on localhost or 127.0.0.1, else `off`.

A constrained answer is still parsed and checked like any other: a server may ignore the grammar.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

from autostrat.errors import ConfigError

MODES = ("auto", "typed", "gbnf", "vllm", "openai", "off")
TOOL_NAME = "write_strategy"  # the custom tool of the `openai` mode
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_STRUCTURED_OUTPUTS_SINCE = (0, 10, 2)  # vLLM renamed guided_* to structured_outputs; 0.12 dropped guided_*
MAX_PROBE_BYTES = 2**20  # a probe reads at most this much of an answer; a model list is a few KB


@dataclass(frozen=True)
class Server:
    """What a probe learned about an endpoint: its kind, and its version when it told one."""

    kind: str  # llama.cpp, llama-cpp-python, vllm, openai or unknown
    version: str = ""
    detail: str = ""  # what gave it away, for the one-line report


@dataclass(frozen=True)
class Constraint:
    """The chosen mode, the fields added to every chat request, and one line saying why."""

    mode: str  # gbnf, vllm or off
    extra_body: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def describe(self) -> str:
        """The line a run prints at its start."""
        return f"constrain: {self.mode}" + (f" ({self.reason})" if self.reason else "")


def request_body(mode: str, version: str = "", max_tokens: int | None = None) -> dict[str, Any]:
    """The extra request fields of a mode ("typed", "gbnf", "vllm", "openai" or "off").

    The typed grammar's bounds are the largest whose longest answer fits `max_tokens` (None: the
    full bounds), so no answer it allows is cut off; a ConfigError when none fits.
    """
    if mode == "off":
        return {}
    from autostrat.lang import grammar_export, grammar_typed

    if mode == "gbnf":
        return {"grammar": grammar_export.gbnf()}
    bounds = grammar_typed.TypedBounds() if max_tokens is None else grammar_typed.bounds_for(max_tokens)
    if mode == "typed":
        return {"grammar": grammar_typed.gbnf(bounds)}
    if mode == "vllm":
        if version and _version_tuple(version) < _STRUCTURED_OUTPUTS_SINCE:
            return {"guided_grammar": grammar_typed.gbnf(bounds)}
        return {"structured_outputs": {"grammar": grammar_typed.gbnf(bounds)}}
    if mode == "openai":
        tool = {"name": TOOL_NAME, "description": "Write the strategy file: the whole program, in the typed "
                "strategy language.", "format": {"type": "grammar", "grammar": {
                    "syntax": "lark", "definition": grammar_typed.lark_grammar(bounds)}}}
        return {"tools": [{"type": "custom", "custom": tool}],
                "tool_choice": {"type": "custom", "custom": {"name": TOOL_NAME}}}
    raise ConfigError(f"llm.constrain {mode!r}: use one of {', '.join(MODES)}")


def _fits(max_tokens: int | None) -> str:
    """What the typed grammar's bounds promise, for the run's one-line report."""
    if max_tokens is None:
        return ""
    from autostrat.lang import grammar_typed

    longest = grammar_typed.longest_text(grammar_typed.bounds_for(max_tokens))
    return f"; answers of at most {longest} characters, within max_tokens {max_tokens}"


def is_local(base_url: str | None) -> bool:
    """Whether the base URL names this machine (localhost, 127.0.0.1 or ::1)."""
    host = urllib.parse.urlsplit(base_url or "").hostname or ""
    return host in _LOCAL_HOSTS


def constraint_for(mode: str, base_url: str | None, api_key: str | None = None,
                   probe: Callable[..., Server] | None = None, max_tokens: int | None = None) -> Constraint:
    """The constraint for `mode` ([llm] constrain) against the server at `base_url` (None: OpenAI).

    `auto` probes the server once; `vllm` probes it only for its version. An empty mode is `auto`
    for a server on this machine and `off` for any other. The typed grammar's bounds fit
    `max_tokens` ([llm] max_tokens; see request_body).
    """
    mode = (mode or "").strip().lower()
    if not mode:
        if not is_local(base_url):
            return Constraint("off", {}, "the default away from localhost; set [llm] constrain to constrain "
                                         "the answers")
        mode = "auto"
    if mode not in MODES:
        raise ConfigError(f"llm.constrain {mode!r}: use one of {', '.join(MODES)}")
    probe = probe or probe_server
    if mode == "off":
        return Constraint("off", {}, "the repair loop fixes syntax errors")
    if mode == "gbnf":
        return Constraint("gbnf", request_body("gbnf"), "GBNF in the request's `grammar` field")
    if mode == "typed":
        return Constraint("typed", request_body("typed", max_tokens=max_tokens),
                          "typed GBNF in the request's `grammar` field" + _fits(max_tokens))
    if mode == "openai":
        return Constraint("openai", request_body("openai", max_tokens=max_tokens),
                          f"typed Lark grammar as the custom tool {TOOL_NAME}" + _fits(max_tokens))
    if mode == "vllm":
        server = probe(base_url, api_key) if base_url else Server("unknown")
        version = server.version if server.kind == "vllm" else ""
        field_name = next(iter(request_body("vllm", version, max_tokens)))
        return Constraint("vllm", request_body("vllm", version, max_tokens),
                          f"vLLM {version or '(version unknown)'}, field {field_name}, typed grammar"
                          + _fits(max_tokens))
    server = probe(base_url, api_key) if base_url else Server("openai", detail="no OPENAI_BASE_URL")
    if server.kind in ("llama.cpp", "llama-cpp-python"):
        return Constraint("typed", request_body("typed", max_tokens=max_tokens),
                          f"auto: {server.kind} server ({server.detail})" + _fits(max_tokens))
    if server.kind == "vllm":
        body = request_body("vllm", server.version, max_tokens)
        return Constraint("vllm", body, f"auto: vLLM {server.version or '(version unknown)'} ({server.detail}), "
                                        f"field {next(iter(body))}, typed grammar" + _fits(max_tokens))
    why = server.detail or "it named no grammar support"
    return Constraint("off", {}, f"auto: {server.kind} server takes no grammar ({why}); the repair loop fixes "
                                 "syntax errors" + ("; `openai` sends a grammar tool to models that take one"
                                                    if server.kind == "openai" else ""))


def probe_server(base_url: str, api_key: str | None = None, timeout: float = 3.0) -> Server:
    """Ask an OpenAI-compatible server what it is, with a few GET requests; never raises.

    Each GET reads at most MAX_PROBE_BYTES within `timeout` seconds in all; an answer that is too
    big, too slow, not JSON or of another shape than expected counts as no answer, and the
    Server's detail says why when nothing else told the kind.
    """
    base = base_url.rstrip("/")
    root = re.sub(r"/v1$", "", base)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "not-needed" else {}
    models, why = _get_json(f"{base}/models", headers, timeout)
    entries = models.get("data") if isinstance(models, dict) else None
    if models is not None and not isinstance(models, dict):
        why = f"answered {_kind(models)}, not an object with a `data` list"
    elif models is not None and not isinstance(entries, list):
        why = f"answered an object whose `data` is {_kind(entries)}, not a list"
    owners = {str(m.get("owned_by", ""))[:100] for m in (entries if isinstance(entries, list) else [])
              if isinstance(m, dict)}
    if "vllm" in owners:
        version = _field(_get_json(f"{root}/version", headers, timeout)[0], "version")
        return Server("vllm", version, "/v1/models owned_by vllm")
    if "llamacpp" in owners:
        return Server("llama.cpp", detail="/v1/models owned_by llamacpp")
    props = _get_json(f"{root}/props", headers, timeout)[0]
    if isinstance(props, dict) and ("default_generation_settings" in props or "total_slots" in props):
        return Server("llama.cpp", _field(props, "build_info"), "GET /props")
    api = _get_json(f"{root}/openapi.json", headers, timeout)[0]
    info = api.get("info") if isinstance(api, dict) else None
    title = _field(info, "title")
    if "llama.cpp" in title or "llama_cpp" in title:
        return Server("llama-cpp-python", _field(info, "version"), "openapi.json title")
    version = _get_json(f"{root}/version", headers, timeout)[0]
    if isinstance(version, dict) and set(version) == {"version"}:
        return Server("vllm", _field(version, "version"), "GET /version")
    if "api.openai.com" in base:
        return Server("openai", detail="api.openai.com")
    if why:
        return Server("unknown", detail=f"{base}/models {why}")
    return Server("unknown", detail=f"owned_by {', '.join(sorted(owners)) or 'nothing'}")


def _get_json(url: str, headers: dict[str, str], timeout: float) -> tuple[Any, str]:
    """The JSON at `url` and "", or None and why not ("did not answer", "answered more than 1 MiB"...).

    urllib's timeout bounds each socket operation, so a server that drips its answer would never
    trip it: the GET runs in a daemon thread that this one waits for at most `timeout` seconds
    (the thread itself stops reading at the deadline, or at the next byte after it).
    """
    deadline = time.monotonic() + timeout
    box: dict[str, tuple[Any, str]] = {}
    worker = threading.Thread(target=lambda: box.setdefault("result", _fetch(url, headers, timeout, deadline)),
                              name="autostrat-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return box.get("result", (None, f"did not answer within {timeout:g}s"))


def _fetch(url: str, headers: dict[str, str], timeout: float, deadline: float) -> tuple[Any, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = bytearray()
            while len(body) <= MAX_PROBE_BYTES:
                if time.monotonic() > deadline:
                    return None, f"did not answer within {timeout:g}s"
                chunk = response.read1(65536)  # what has arrived, not a full 64 KB
                if not chunk:
                    break
                body += chunk
            if len(body) > MAX_PROBE_BYTES:
                return None, f"answered more than {MAX_PROBE_BYTES >> 20} MiB"
            if response.length:  # read1 does not complain when the body stops short of Content-Length
                return None, "closed the connection before the end of its answer (cut off)"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        return None, f"did not answer ({type(exc).__name__}: {str(exc)[:120]})"
    try:
        value = json.loads(body.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return None, "answered something that is not JSON"
    return value, "" if value is not None else "answered null"


def _field(value: Any, key: str) -> str:
    """`value[key]` as short text when `value` is a JSON object, else ""."""
    return str(value.get(key, ""))[:100] if isinstance(value, dict) else ""


def _kind(value: Any) -> str:
    if value is None:
        return "missing or null"
    return {list: "a list", dict: "an object", str: "a string", bool: "true or false"}.get(type(value), "a number")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])
