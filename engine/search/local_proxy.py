"""One OpenAI-compatible address in front of several model servers that each answer one request at a time.

llama-cpp-python's server holds a lock around its one model, so concurrent requests are answered
one after another. `autostrat serve-local --parallel N` starts N such servers (N copies of the
model) and this proxy on the printed port: each request goes to an idle backend and, while all N
are busy, waits for one to finish. A backend never gets a second request while it answers one,
and that holds for GET /v1/models too, which llama-cpp-python answers under the same lock (a
waiting request would also cut a streamed answer short: its `interrupt_requests`).

Everything is forwarded as it is, whatever the path: chat completions, GET /v1/models and the
paths `--constrain auto` probes (/props, /openapi.json, /version), so a client sees one
llama-cpp-python server. Answers are relayed as they arrive (a streamed answer stays streamed).

Limits: a request body over MAX_BODY_BYTES gets 413 and more than MAX_WAITING requests waiting
for a backend get 503 (OpenAI-style JSON errors); past MAX_CONNECTIONS open connections the proxy
accepts no more until one closes (they wait in the kernel's queue).

A backend that refuses the connection is taken out of service and the request goes to another
(nothing was sent). One that fails while it holds a request (the connection drops, or the
answer stops short) is taken out of service with a 502, or a cut-off answer, for that request;
the others go on. With none left, every request gets 502.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

HOST = "127.0.0.1"
MAX_BODY_BYTES = 16 * 2**20  # a prompt with the typed grammar is well under 1 MiB
MAX_WAITING = 64  # requests held while every backend is busy
MAX_CONNECTIONS = 256  # open client connections (each is a thread)
BACKEND_TIMEOUT = 3600.0  # seconds per socket operation towards a backend: a long answer on a slow CPU
CLIENT_TIMEOUT = 600.0  # seconds per socket operation towards a client (an idle keep-alive connection)
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
               "host", "content-length"}
_WHO = "autostrat serve-local"


@dataclass
class Backend:
    """One model server: its port, whether its process lives, and its state in the pool."""

    port: int
    alive: Callable[[], bool] = field(default=lambda: True)  # e.g. `lambda: process.poll() is None`
    name: str = ""
    busy: bool = False
    dead: str = ""  # why it is out of service ("" while it serves)

    def label(self) -> str:
        return self.name or f"the model server on port {self.port}"


class NoBackend(Exception):
    """No backend can take the request; `status` and the message say why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Pool:
    """The backends, handed out one request at a time each."""

    def __init__(self, backends: list[Backend], max_waiting: int = MAX_WAITING):
        self.backends = list(backends)
        self.max_waiting = max_waiting
        self.waiting = 0  # requests waiting for an idle backend right now
        self._cond = threading.Condition()

    def acquire(self) -> Backend:
        """An idle live backend, now marked busy; waits while all are busy. NoBackend if none can come."""
        with self._cond:
            if self.waiting >= self.max_waiting:
                raise NoBackend(503, f"{self.waiting} requests are already waiting for a model server "
                                     f"(the limit); retry later, or start serve-local with a larger --parallel")
            self.waiting += 1
            try:
                while True:
                    self._check()
                    live = [b for b in self.backends if not b.dead]
                    if not live:
                        raise NoBackend(502, "every model server has stopped (" + "; ".join(
                            f"{b.label()}: {b.dead}" for b in self.backends) + "); restart serve-local")
                    idle = next((b for b in live if not b.busy), None)
                    if idle is not None:
                        idle.busy = True
                        return idle
                    self._cond.wait(1.0)  # a backend's process may die while it is busy: look again
            finally:
                self.waiting -= 1

    def release(self, backend: Backend) -> None:
        with self._cond:
            backend.busy = False
            self._cond.notify_all()

    def mark_dead(self, backend: Backend, why: str) -> None:
        with self._cond:
            backend.dead = backend.dead or why
            self._cond.notify_all()

    def live(self) -> list[Backend]:
        """The backends still in service (a process found dead is taken out first)."""
        with self._cond:
            self._check()
            return [b for b in self.backends if not b.dead]

    def busy(self) -> int:
        with self._cond:
            return sum(b.busy for b in self.backends)

    def _check(self) -> None:
        for b in self.backends:
            if not b.dead and not b.alive():
                b.dead = "its process exited"
                self._cond.notify_all()


class ProxyServer(ThreadingHTTPServer):
    """The proxy's HTTP server; `serve()` runs it in a daemon thread, `close()` stops it."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, pool: Pool, port: int = 0, max_body: int = MAX_BODY_BYTES,
                 backend_timeout: float = BACKEND_TIMEOUT, max_connections: int = MAX_CONNECTIONS):
        self.pool, self.max_body, self.backend_timeout = pool, max_body, backend_timeout
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._thread: threading.Thread | None = None
        self._closing = False
        super().__init__((HOST, port), _Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def serve(self) -> "ProxyServer":
        self._thread = threading.Thread(target=self.serve_forever, name="autostrat-proxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing = True
        if self._thread is not None:
            self.shutdown()
            self._thread = None
        self.server_close()

    def process_request(self, request, client_address):
        # Past the limit, stop accepting: new connections wait in the kernel's queue, not in threads.
        while not self._slots.acquire(timeout=0.5):
            if self._closing:
                self.shutdown_request(request)
                return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _error_json(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": f"{_WHO}: error: {message}", "type": "proxy_error",
                                 "code": status}}).encode()


class _BackendFailed(Exception):
    """The backend's side of a relay failed (not the client's)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CLIENT_TIMEOUT
    server: ProxyServer

    def log_message(self, *args) -> None:  # the backends log every request already
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self._forward(None)

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self._read_body()
        if body is not None:
            self._forward(body)

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "send the request body with a Content-Length header, not chunked", close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(400, f"Content-Length {self.headers.get('Content-Length')!r} is not a byte count", close=True)
            return None
        if length > self.server.max_body:
            self._error(413, f"the request body has {length} bytes, over the limit of {self.server.max_body}; "
                             "send a shorter prompt", close=True)
            # Read (and drop) a body up to a few times the limit, so that the client, still sending,
            # reads the 413 instead of a reset connection; a larger one is cut off.
            left = length if length <= 4 * self.server.max_body else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _forward(self, body: bytes | None) -> None:
        while True:  # a backend that refuses the connection has seen nothing: the next one gets the request
            try:
                backend = self.server.pool.acquire()
            except NoBackend as exc:
                return self._error(exc.status, str(exc))
            try:
                if self._relay(backend, body):
                    return
            finally:
                self.server.pool.release(backend)

    def _relay(self, backend: Backend, body: bytes | None) -> bool:
        """Send the request to `backend` and its answer to the client; False if it refused the connection."""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(HOST, backend.port, timeout=self.server.backend_timeout)
        try:
            try:
                conn.connect()
            except ConnectionRefusedError:  # its process is gone (or going): nothing was sent
                self.server.pool.mark_dead(backend, "it refused the connection")
                return False
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            except socket.timeout:
                self._error(504, f"{backend.label()} did not answer within {self.server.backend_timeout:g}s")
                return True
            except (OSError, http.client.HTTPException) as exc:  # it died while it had the request
                why = f"{type(exc).__name__}: {str(exc)[:200]}" if str(exc) else type(exc).__name__
                self.server.pool.mark_dead(backend, f"the connection failed ({why})")
                left = len(self.server.pool.live())
                self._error(502, f"{backend.label()} failed ({why}); it is out of service, {left} left; "
                                 "retry the request")
                return True
            try:
                self._send_answer(response)
            except _BackendFailed as exc:  # headers are out: all that is left is to cut the answer short
                self.server.pool.mark_dead(backend, f"it broke off an answer ({exc})")
                self.close_connection = True
            except OSError:  # the client went away; the backend finishes its answer for nobody
                self.close_connection = True
            return True
        finally:
            conn.close()

    def _send_answer(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        no_body = response.status in (204, 304) or 100 <= response.status < 200
        length = response.length  # None when the backend streams without a Content-Length
        chunked = length is None and not no_body
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif not no_body:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        while not no_body:
            try:
                chunk = response.read1(65536)  # what has arrived: a streamed token goes on at once
            except (OSError, http.client.HTTPException) as exc:
                raise _BackendFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
            if not chunk:
                if response.length:  # the backend closed before the length it promised
                    raise _BackendFailed(f"closed with {response.length} bytes of the answer unsent")
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            self.wfile.flush()
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _error(self, status: int, message: str, close: bool = False) -> None:
        data = _error_json(status, message)
        self.send_response_only(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def start_proxy(backends: list[Backend], port: int = 0, **limits) -> ProxyServer:
    """The proxy on HOST:`port` (0: a free port), serving in a daemon thread."""
    return ProxyServer(Pool(backends), port, **limits).serve()
