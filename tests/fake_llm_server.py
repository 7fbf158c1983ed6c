"""A real OpenAI-compatible chat server on 127.0.0.1 for the tests, with scripted answers and faults.

    with FakeLLM(["```strat\\n...```", RateLimit(0.05), ServerError(), Hang(2), Drop()]) as llm:
        os.environ["OPENAI_BASE_URL"] = llm.base_url
        ...
    llm.requests  # every request body received, in order

A script is a list (consumed in order; when it runs out the server answers 500 "script exhausted")
or a callable `(request_body, index) -> action`. An action is a string (the answer's content),
an Answer (content and token counts), or a fault: RateLimit (429 with Retry-After), ServerError
(500), Hang (no answer for a while, past the client's timeout), Drop (the connection is closed
without an answer), Raw (any status and body), and the hostile ones: Json (any JSON value as the
body), Cut (the headers promise more bytes than are sent before the connection closes), Drip
(headers, then the body one byte at a time) and Huge (a body of N bytes, streamed).
`FakeLLM(script, gets={"/v1/models": action})` also answers GET requests, for the probes of
`--constrain auto`. `FakeLLM(script, delay=2.0)` waits that long before each chat answer, and
`llm.most_in_flight` is the most chat requests it held at once. With `gate=N` each chat request
is held until N are in flight together (at most `gate_timeout` seconds, a hang guard), so a test
of concurrency does not depend on timing. The real openai client talks to
it over HTTP: nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Answer:
    content: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"  # "length": the answer was cut off at max_tokens


@dataclass
class RateLimit:
    retry_after: float | str = 0.05


@dataclass
class ServerError:
    status: int = 500


@dataclass
class Hang:
    seconds: float = 5.0


@dataclass
class Drop:
    pass


@dataclass
class Raw:
    """Any status and body, e.g. an HTML page from something that is not an OpenAI-style server."""

    body: str | bytes
    status: int = 200
    content_type: str = "text/html"


@dataclass
class Json:
    """Any JSON value as the body: an answer of an unusual shape (a bare value in `gets` is sent as Json)."""

    payload: Any
    status: int = 200


@dataclass
class Cut:
    """A body cut short: Content-Length says len(body) but only `at` bytes are sent, then the connection closes."""

    body: str
    at: int


@dataclass
class Drip:
    """Headers at once, then the body one byte every `interval` seconds (until the server stops).

    With `whole`, the status line and the headers drip too.
    """

    body: str
    interval: float = 0.2
    content_type: str = "application/json"
    whole: bool = False


@dataclass
class Huge:
    """A body of `size` bytes (`fill` repeated), streamed in 1 MiB writes."""

    size: int
    fill: bytes = b" "
    content_type: str = "application/json"


Action = Any


def completion(content: Any = "ok", usage: Any = None, finish: Any = "stop", **message: Any) -> dict:
    """A chat completion body with any content, usage and finish_reason (all may be odd)."""
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": finish,
                         "message": {"role": "assistant", "content": content, **message}}],
            **({} if usage is None else {"usage": usage})}


class FakeLLM:
    """The server. `start()` (or `with`) binds a free port; `base_url` ends in /v1."""

    def __init__(self, script: list[Action] | Callable[[dict, int], Action], gets: dict[str, Action] | None = None,
                 delay: float = 0.0, gate: int = 0, gate_timeout: float = 60.0):
        self.script = script
        self.delay = delay  # seconds before each chat answer (a slow model)
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate, self.gate_timeout = gate, gate_timeout
        self.released = -1  # the highest request index let through the gate
        self.gets = gets or {}  # GET path -> action (a dict or list is sent as JSON)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Condition()
        self.stopping = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "FakeLLM":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                with fake.lock:
                    index = len(fake.requests)
                    fake.requests.append(body)
                    action = fake._next(body, index)
                    fake.in_flight += 1
                    fake.most_in_flight = max(fake.most_in_flight, fake.in_flight)
                    fake.lock.notify_all()
                    if fake.gate:
                        fake.lock.wait_for(lambda: fake.in_flight >= fake.gate or fake.released >= index,
                                           fake.gate_timeout)
                        fake.released = max(fake.released, index)
                try:
                    if fake.delay:
                        fake.stopping.wait(fake.delay)
                    fake._act(self, action, body)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

            def do_GET(self):  # noqa: N802 - http.server API
                if self.path not in fake.gets:
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                action = fake.gets[self.path]
                faults = (Raw, Json, Cut, Drip, Huge, Hang, Drop, ServerError, RateLimit)
                fake._act(self, action if isinstance(action, faults) else Json(action), {})

            def _json(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> "FakeLLM":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _next(self, body: dict, index: int) -> Action:
        if callable(self.script):
            return self.script(body, index)
        if index < len(self.script):
            return self.script[index]
        return ServerError(500)

    def _act(self, handler, action: Action, body: dict) -> None:
        if isinstance(action, str):
            action = Answer(action)
        if isinstance(action, Answer):
            prompt = sum(len(m.get("content") or "") for m in body.get("messages", [])) // 4
            p = action.prompt_tokens if action.prompt_tokens is not None else prompt
            c = action.completion_tokens if action.completion_tokens is not None else len(action.content) // 4
            handler._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                "model": body.get("model", "fake"),
                "choices": [{"index": 0, "finish_reason": action.finish_reason,
                             "message": {"role": "assistant", "content": action.content}}],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}})
        elif isinstance(action, RateLimit):
            handler._json(429, {"error": {"message": "rate limited", "type": "rate_limit_exceeded"}},
                          {"Retry-After": str(action.retry_after)})
        elif isinstance(action, ServerError):
            handler._json(action.status, {"error": {"message": "server error", "type": "server_error"}})
        elif isinstance(action, Hang):
            self.stopping.wait(action.seconds)
            handler.close_connection = True
        elif isinstance(action, Raw):
            data = action.body if isinstance(action.body, bytes) else action.body.encode()
            handler.send_response(action.status)
            handler.send_header("Content-Type", action.content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        elif isinstance(action, Json):
            handler._json(action.status, action.payload)
        elif isinstance(action, (Cut, Drip, Huge)):
            self._send_body(handler, action)
        elif isinstance(action, Drop):
            handler.close_connection = True
            try:
                handler.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            raise TypeError(f"unknown action {action!r}")


    def _send_body(self, handler, action) -> None:
        size = action.size if isinstance(action, Huge) else len(action.body.encode())
        if isinstance(action, Drip) and action.whole:
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: {action.content_type}\r\nContent-Length: {size}\r\n"
                    "Connection: close\r\n\r\n")
            handler.close_connection = True
            try:
                for byte in head.encode() + action.body.encode():
                    if self.stopping.wait(action.interval):
                        return
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
            except OSError:
                pass
            return
        handler.send_response(200)
        handler.send_header("Content-Type", getattr(action, "content_type", "application/json"))
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        handler.close_connection = True
        try:
            if isinstance(action, Cut):
                handler.wfile.write(action.body.encode()[: action.at])
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
            elif isinstance(action, Drip):
                handler.wfile.flush()
                for byte in action.body.encode():
                    if self.stopping.wait(action.interval):
                        return
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
            else:
                block = (action.fill * (2**20 // len(action.fill) + 1))[: 2**20]
                for start in range(0, action.size, len(block)):
                    handler.wfile.write(block[: action.size - start])
        except OSError:  # the client gave up first: what these actions are for
            pass


def drip_seconds(action: Drip) -> float:
    """How long a Drip takes to send its whole body (its headers not counted)."""
    return len(action.body.encode()) * action.interval


def last_user_message(body: dict) -> str:
    """The content of the last user message of a request."""
    users = [m.get("content") or "" for m in body.get("messages", []) if m.get("role") == "user"]
    return users[-1] if users else ""


def strategy_from(text: str, tag: str = "") -> str:
    """A valid strategy answer chosen by a hash of `text`: the same request gets the same answer."""
    h = int(hashlib.sha256((tag + text).encode()).hexdigest(), 16)
    fast = 5 + h % 40
    slow = fast + 10 + (h >> 8) % 120
    parts = [f"# hypothesis: sma {fast}/{slow} with variant {(h >> 16) % 4}",
             f"# learned: answer {h % 997}", f'strategy "fake {fast}/{slow}"',
             f"param fast = {fast} in 2..100", f"param slow = {slow} in 10..250",
             "f = sma(close, fast)", "s = sma(close, slow)"]
    variant = (h >> 16) % 4
    if variant == 0:
        parts += ["buy when f > s", "sell when f < s"]
    elif variant == 1:
        parts += ["buy when cross_above(f, s)", "sell when cross_below(f, s)", f"stop_loss {5 + h % 10}%"]
    elif variant == 2:
        parts += [f"buy when f > s and rsi(close, 14) < {50 + h % 30}", "sell when f < s"]
    else:
        parts += ["buy when close > f and f > s", "sell when close < s", f"max_hold {20 + h % 60}"]
    return "```strat\n" + "\n".join(parts) + "\n```\n"
