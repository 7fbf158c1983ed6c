"""The proxy of `serve-local --parallel N` in front of real HTTP servers on 127.0.0.1 (no model needed).

Concurrency is asserted without timing: the backends hold each request at a barrier or an event
(with a generous timeout as a hang guard), so N requests complete only if the proxy really sends
them to N backends at once, and a request beyond N is seen waiting in the pool before it is let go.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autostrat.cli import main
from autostrat.search.constrain import constraint_for, request_body
from autostrat.errors import ConfigError
from autostrat.search.local import LocalServer, server_available
from autostrat.search.local_proxy import Backend, NoBackend, Pool, start_proxy
from fake_llm_server import Answer, Cut, Drop, FakeLLM, ServerError
from processes import wait_until

HANG_GUARD = 60.0  # seconds a held request waits at most: only reached when the test fails


def _post(port: int, body: dict | bytes, path: str = "/v1/chat/completions", headers: dict | None = None):
    """(status, parsed JSON or raw bytes) of one POST through the proxy."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_GUARD * 2)
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        raw = r.read()
    finally:
        conn.close()
    try:
        return r.status, json.loads(raw)
    except ValueError:
        return r.status, raw


def _get(port: int, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_GUARD)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def _chat(text: str) -> dict:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def _concurrently(calls):
    """Run the callables in threads at once; their results in order."""
    results = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - reported through the assertion
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_GUARD * 3)
    return results


def _proxy(fakes, **limits):
    return start_proxy([Backend(f.server.server_address[1]) for f in fakes], **limits)


def test_n_requests_reach_n_backends_at_once():
    barrier = threading.Barrier(3, timeout=HANG_GUARD)

    def script(body, index):  # answers only once all three are held at the same time
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return ServerError(500)
        return Answer("answer to " + body["messages"][0]["content"])

    fakes = [FakeLLM(script).start() for _ in range(3)]
    proxy = _proxy(fakes)
    try:
        results = _concurrently([lambda i=i: _post(proxy.port, _chat(f"q{i}")) for i in range(3)])
        assert [r[0] for r in results] == [200, 200, 200], results
        assert sorted(r[1]["choices"][0]["message"]["content"] for r in results) == [
            "answer to q0", "answer to q1", "answer to q2"]
        assert [len(f.requests) for f in fakes] == [1, 1, 1]
    finally:
        proxy.close()
        for f in fakes:
            f.stop()


def test_a_request_waits_while_every_backend_is_busy_then_completes():
    go = threading.Event()
    fakes = [FakeLLM(lambda body, i: Answer("ok") if go.wait(HANG_GUARD) else ServerError(500)).start()
             for _ in range(2)]
    proxy = _proxy(fakes)
    try:
        box = {}
        waiter = threading.Thread(target=lambda: box.setdefault("r", _concurrently(
            [lambda i=i: _post(proxy.port, _chat(f"q{i}")) for i in range(3)])))
        waiter.start()
        assert wait_until(lambda: proxy.pool.busy() == 2 and proxy.pool.waiting == 1, HANG_GUARD), \
            (proxy.pool.busy(), proxy.pool.waiting)
        assert sum(len(f.requests) for f in fakes) == 2  # the third is held in the proxy, not sent
        go.set()
        waiter.join(HANG_GUARD * 3)
        assert [r[0] for r in box["r"]] == [200, 200, 200], box["r"]
        assert sum(len(f.requests) for f in fakes) == 3
        assert [f.most_in_flight for f in fakes] == [1, 1]  # a backend never holds two requests
        # The proxy frees a backend just after the answer's last byte: the client may be faster.
        assert wait_until(lambda: proxy.pool.busy() == 0 and proxy.pool.waiting == 0, HANG_GUARD)
    finally:
        go.set()
        proxy.close()
        for f in fakes:
            f.stop()


def test_a_backend_that_dies_with_a_request_gives_502_and_the_others_go_on():
    fakes = [FakeLLM([Drop()]).start(), FakeLLM(lambda body, i: Answer("ok")).start()]
    proxy = _proxy(fakes)
    try:
        status, body = _post(proxy.port, _chat("a"))  # the first idle backend takes it and drops it
        assert status == 502
        message = body["error"]["message"]
        assert message.startswith("autostrat serve-local: error: ") and "out of service, 1 left" in message
        for _ in range(3):
            status, body = _post(proxy.port, _chat("b"))
            assert status == 200 and body["choices"][0]["message"]["content"] == "ok"
        assert len(fakes[0].requests) == 1 and len(fakes[1].requests) == 3
        assert [b.port for b in proxy.pool.live()] == [fakes[1].server.server_address[1]]
    finally:
        proxy.close()
        for f in fakes:
            f.stop()


def test_a_backend_that_refuses_the_connection_is_skipped_and_none_left_gives_502():
    fakes = [FakeLLM(lambda body, i: Answer(f"from {i}")).start() for _ in range(2)]
    proxy = _proxy(fakes)
    try:
        fakes[0].stop()  # its port refuses connections now: the request goes on to the other
        status, body = _post(proxy.port, _chat("a"))
        assert status == 200 and len(fakes[1].requests) == 1
        assert proxy.pool.backends[0].dead == "it refused the connection"
        fakes[1].stop()
        status, body = _post(proxy.port, _chat("b"))
        assert status == 502 and "every model server has stopped" in body["error"]["message"]
    finally:
        proxy.close()


def test_a_backend_whose_process_exited_is_skipped_without_a_502():
    exited = threading.Event()
    fakes = [FakeLLM(lambda body, i: Answer(f"from {n}")).start() for n in range(2)]
    backends = [Backend(fakes[0].server.server_address[1], lambda: not exited.is_set()),
                Backend(fakes[1].server.server_address[1])]
    proxy = start_proxy(backends)
    try:
        exited.set()
        status, body = _post(proxy.port, _chat("x"))
        assert status == 200 and len(fakes[0].requests) == 0 and len(fakes[1].requests) == 1
        assert backends[0].dead == "its process exited"
    finally:
        proxy.close()
        for f in fakes:
            f.stop()


def test_an_answer_cut_short_by_a_backend_takes_it_out_of_service():
    fakes = [FakeLLM([Cut('{"choices": []}', 5)]).start(), FakeLLM(lambda body, i: Answer("ok")).start()]
    proxy = _proxy(fakes)
    try:
        with pytest.raises(http.client.IncompleteRead):
            _post(proxy.port, _chat("x"))
        assert proxy.pool.backends[0].dead.startswith("it broke off an answer")
        assert _post(proxy.port, _chat("y"))[0] == 200 and len(fakes[1].requests) == 1
    finally:
        proxy.close()
        for f in fakes:
            f.stop()


def test_the_request_body_is_bounded():
    fake = FakeLLM(lambda body, i: Answer("ok")).start()
    proxy = _proxy([fake], max_body=1000)
    try:
        status, body = _post(proxy.port, _chat("x" * 2000))
        assert status == 413
        assert "over the limit of 1000" in body["error"]["message"] and body["error"]["code"] == 413
        assert fake.requests == []
        assert _post(proxy.port, _chat("x" * 100))[0] == 200  # the limit, not the proxy, refused it
        status, body = _post(proxy.port, b"{}", headers={"Content-Length": "-5"})
        assert status == 400
    finally:
        proxy.close()
        fake.stop()


def test_the_waiting_line_is_bounded():
    busy = Backend(1, busy=True)
    with pytest.raises(NoBackend) as exc:
        Pool([busy], max_waiting=0).acquire()
    assert exc.value.status == 503 and "larger --parallel" in str(exc.value)


def test_gets_and_statuses_are_relayed_and_auto_sees_llama_cpp_python():
    models = {"object": "list", "data": [{"id": "smollm2-135m", "object": "model", "owned_by": "me"}]}
    openapi = {"openapi": "3.1.0", "info": {"title": "\U0001f999 llama.cpp Python API", "version": "0.3.36"}}
    fakes = [FakeLLM([ServerError(429)], gets={"/v1/models": models, "/openapi.json": openapi}).start()
             for _ in range(2)]
    proxy = _proxy(fakes)
    try:
        status, raw, _ = _get(proxy.port, "/v1/models")
        assert status == 200 and json.loads(raw) == models
        assert _get(proxy.port, "/props")[0] == 404  # llama-cpp-python has none: the probe moves on
        c = constraint_for("auto", f"http://127.0.0.1:{proxy.port}/v1")
        assert c.mode == "typed" and c.extra_body == request_body("typed")
        assert "llama-cpp-python" in c.reason
        assert _post(proxy.port, _chat("x"))[0] == 429
    finally:
        proxy.close()
        for f in fakes:
            f.stop()


class _Streaming(BaseHTTPRequestHandler):
    """Answers with server-sent events in chunked transfer encoding, as a streamed completion is sent."""

    protocol_version = "HTTP/1.1"
    EVENTS = [b'data: {"n": %d}\n\n' % i for i in range(5)] + [b"data: [DONE]\n\n"]

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in self.EVENTS:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")


def test_a_streamed_answer_is_relayed_whole():
    backend = ThreadingHTTPServer(("127.0.0.1", 0), _Streaming)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    proxy = start_proxy([Backend(backend.server_address[1])])
    try:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=HANG_GUARD)
        for _ in range(2):  # the client's connection stays usable after a chunked answer
            conn.request("POST", "/v1/chat/completions", body=b'{"stream": true}')
            r = conn.getresponse()
            assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
            assert r.read() == b"".join(_Streaming.EVENTS)
        conn.close()
    finally:
        proxy.close()
        backend.shutdown()
        backend.server_close()


def test_parallel_servers_get_their_own_ports_seeds_threads_and_logs(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    s = LocalServer(port=8765, threads=4, seed=10, parallel=2, model=model, log_path=tmp_path / "server.log")
    assert s.base_url == "http://127.0.0.1:8765/v1" and len(s.backends) == 2
    ports = [b.port for b in s.backends]
    assert len(set(ports + [8765])) == 3
    assert [b.seed for b in s.backends] == [10, 11]
    assert [b.threads for b in s.backends] == [2, 2]
    assert [b.log_path for b in s.backends] == [tmp_path / "server.1.log", tmp_path / "server.2.log"]
    cmd = s.backends[1].command()
    assert cmd[cmd.index("--n_threads") + 1] == "2" and cmd[cmd.index("--n_threads_batch") + 1] == "2"
    assert cmd[cmd.index("--port") + 1] == str(ports[1])
    one = LocalServer(port=8765, threads=4, seed=10, model=model)
    assert one.backends == [] and "--n_threads_batch" not in one.command()  # --parallel 1: as before
    assert [b.threads for b in LocalServer(threads=1, parallel=3, model=model).backends] == [1, 1, 1]


@pytest.mark.parametrize("n", ["0", "17"])
def test_serve_local_refuses_a_parallel_out_of_range(n, capsys):
    assert main(["serve-local", "--parallel", n]) == 2
    err = capsys.readouterr().err
    assert f"error: serve-local --parallel {n}: use 1 to 16" in err, err


def test_past_its_connection_limit_the_proxy_accepts_no_more_until_one_closes():
    fake = FakeLLM(lambda body, i: Answer("ok")).start()
    proxy = _proxy([fake], max_connections=1)
    try:
        first = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=HANG_GUARD)
        first.request("GET", "/nothing")  # a kept-alive connection holds the one slot
        assert first.getresponse().read()
        box = {}
        second = threading.Thread(target=lambda: box.setdefault("r", _post(proxy.port, _chat("x"))))
        second.start()
        second.join(1.0)
        assert "r" not in box and fake.requests == []  # held in the kernel's queue, not answered
        first.close()
        second.join(HANG_GUARD)
        assert box["r"][0] == 200 and len(fake.requests) == 1
    finally:
        proxy.close()
        fake.stop()


@pytest.mark.skipif(not server_available(), reason="the local extra is not installed: pip install -e '.[local]'")
def test_a_busy_port_is_refused_before_any_model_server_starts(tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = LocalServer(port=port, parallel=2, model=model)
        with pytest.raises(ConfigError, match=f"serve-local --port {port}: cannot listen on 127.0.0.1:{port}"):
            s.start()
    assert s.pids == [] and s.proxy is None
