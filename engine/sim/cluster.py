"""Run bulk evaluation on a Dask cluster: `--scheduler ADDRESS` or `--scheduler local:N`.

`open_executor(spec)` gives an executor for `universe_array` / `evaluate_many` / `sweep`:
None runs here (`LocalExecutor`), `local:N` starts a `distributed.LocalCluster` of N single-threaded
worker processes on this machine, anything else connects to a running scheduler
(`tcp://HOST:8786` or `HOST:8786`). `DaskExecutor.map` has `LocalExecutor.map`'s signature.

The work is the one pure function of the local path, `autostrat.bulk.chunk_metrics`, mapped over
the (programs x assets) chunks `autostrat.bulk.plan_chunks` cuts, with `parallel=False`: every
worker process runs one chunk on one thread, the cluster's parallelism is its workers.

What moves over the network:

- markets: once per worker. `client.scatter(markets, broadcast=True)` sends each market once
  from this process (through the scheduler) and the workers copy it among themselves. A Market
  is six float64/datetime arrays: bars x 48 bytes (324 KB for 6,750 bars), so every worker holds
  the whole universe (162 MB for 500 such markets). A worker that joins later, or restarts,
  fetches a market from a peer the first time a chunk needs it.
- per task: the chunk's tape arrays (code, constants, rule forms, warm-ups, exits of its programs,
  a few KB for 256 programs), the asset slice's span arrays and four cost numbers. Tapes are
  compiled here, once per program slice; at most `window` tasks are in flight, so a sweep of a
  million programs never holds all its tapes at once.
- per result: a float64 (programs x assets x periods x metrics) array, e.g. 256 x 8 x 2 x 15 x 8 B
  = 492 KB; it is released on the worker as soon as it is fetched, and handed over in chunk
  order, so a streamed sweep writes its rows in the same order wherever they were computed.

A worker lost mid-run (killed, crashed, network gone) has its running and queued chunks re-run
on the others by the scheduler; the markets survive on the other workers' copies. If every copy
of a market is gone (e.g. a one-worker cluster whose worker died), its chunks come back
cancelled: the markets are scattered again and those chunks submitted again (a few times at
most). Results are the same numbers as the local path, exactly: the same function on the same
arrays, the chunk order does not matter.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import re
import socket
import sys
import uuid
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np

from autostrat.errors import AutostratError

DEFAULT_PORT = 8786
CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler
WORKER_TIMEOUT = 30.0  # seconds a scheduler may have no worker before we give up
KEEP_COPIES = "distributed.scheduler.active-memory-manager.start"  # False keeps broadcast copies
_RESUBMITS = 3  # times a chunk whose inputs were lost is submitted again
_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-_]*)(?::(\d{1,5}))?$")
_LOCAL_HINT = "write local:N with N >= 1 worker processes, e.g. --scheduler local:2"
_START_HINT = ("start one with `dask scheduler` and workers with `dask worker {addr} --nthreads 1`, "
               "or use --scheduler local:N")


def _distributed():
    """The `distributed` module, or an AutostratError saying how to install it."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise AutostratError('the Dask executor (--scheduler) needs the optional package `distributed`: '
                             'pip install -e ".[dask]" in a checkout, or pip install "autostrat[dask]"') from None


def _run_chunk(tape: tuple, markets: list, spans: list[np.ndarray], costs: tuple) -> np.ndarray:
    """A worker's task: `chunk_metrics` on one thread.

    Arrays deserialised by Dask may be read-only or unaligned; the JIT would type (and compile)
    them as other signatures than the local path's, so the few small tape arrays are made plain
    (C-contiguous, aligned, writeable) again.
    """
    from autostrat.sim.bulk import chunk_metrics

    tape = tuple(np.require(x, requirements="CAW") if isinstance(x, np.ndarray) else x for x in tape)
    return chunk_metrics(tape, markets, spans, costs, parallel=False)


def source_hash() -> str:
    """A hash of autostrat's Python sources: workers must run the same code to give the same numbers."""
    root = Path(__file__).parent.parent  # the package: every subpackage's modules
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _worker_info() -> dict:
    import autostrat

    return {"version": autostrat.__version__, "sources": source_hash(), "pid": os.getpid()}


class DaskExecutor:
    """Runs the chunks as tasks on a Dask cluster; `map` yields their results in order.

    `window` bounds the chunks submitted and not yet handed over (default 8 per worker thread, at
    least 32): tapes are compiled here only as tasks are submitted, and a chunk that finishes
    before an earlier one waits, within the window, for its turn. `retries` re-runs a task that raised (a worker
    that died is handled by the scheduler, not by retries).
    """

    name = "dask"

    def __init__(self, client, window: int | None = None, retries: int = 1):
        self.client = client
        self.window = window
        self.retries = retries
        self._universe = None  # the universe whose markets are scattered, and their futures
        self._markets: list = []

    def threads(self) -> int:
        return sum(self.client.nthreads().values())

    def close(self) -> None:
        """Release the scattered markets on the workers."""
        if self._markets:
            with contextlib.suppress(Exception):
                self.client.cancel(self._markets)
        self._universe, self._markets = None, []

    def _scatter(self, universe, again: bool = False) -> list:
        """Futures of the universe's markets, on every worker; scattered once per universe."""
        if again or self._universe is not universe:
            self.close()
            self._markets = self.client.scatter(list(universe.markets), broadcast=True, hash=False)
            self._universe = universe
        return self._markets

    def map(self, jobs, universe, spans: list[np.ndarray], costs: tuple):
        """(tape arrays, asset slice) jobs in, their (P, A, S, M) metrics out, in the jobs' order.

        Jobs are taken from `jobs` only as the window allows: at most `window` jobs are submitted
        and not yet handed over, counting those finished early and waiting for an earlier one.
        So the client holds at most `window` tapes and results, however many jobs there are.
        """
        distributed = _distributed()
        client = self.client
        markets = self._scatter(universe)
        window = self.window or max(32, 8 * self.threads())
        run = uuid.uuid4().hex[:8]
        jobs = iter(jobs)
        args: dict[int, tuple] = {}  # job index -> (tape, asset slice), kept until handed over (to resubmit)
        resubmits: dict[int, int] = {}
        pending: dict = {}  # future -> job index; every future is held until its result is in
        finished: dict[int, np.ndarray] = {}  # results that came before an earlier job's
        taken = handed = 0  # jobs taken from `jobs`, results handed over
        # results are fetched in the background as tasks finish, and handed over in batches
        queue = distributed.as_completed(loop=client.loop, with_results=True, raise_errors=False)

        def take() -> list[int]:
            nonlocal taken
            new = []
            while taken - handed < window:
                job = next(jobs, None)
                if job is None:
                    break
                args[taken] = job
                new.append(taken)
                taken += 1
            return new

        def submit(indices: list[int]) -> None:
            if not indices:
                return
            keys = [f"autostrat-chunk-{run}-{i}-{resubmits.get(i, 0)}" for i in indices]
            futures = client.map(_run_chunk, [args[i][0] for i in indices],
                                 [markets[args[i][1]] for i in indices], [spans[args[i][1]] for i in indices],
                                 [costs] * len(indices), key=keys, pure=False, retries=self.retries)
            pending.update(zip(futures, indices))
            queue.update(futures)

        try:
            submit(take())
            for batch in queue.batches():
                again = []
                for future, result in batch:
                    i = pending.pop(future)
                    if isinstance(result, CancelledError):
                        # its inputs were lost (every copy of a market), or its result was lost between
                        # finishing and being fetched, or the scheduler restarted: submit it again
                        if resubmits.get(i, 0) >= _RESUBMITS:
                            raise AutostratError(f"chunk {i + 1} was cancelled by the Dask cluster "
                                                 f"{_RESUBMITS + 1} times (workers lost?); giving up")
                        resubmits[i] = resubmits.get(i, 0) + 1
                        again.append(i)
                        continue
                    if not isinstance(result, np.ndarray):  # the task raised: (type, exception, traceback)
                        _, exc, tb = result
                        if isinstance(exc, distributed.KilledWorker):
                            raise AutostratError(f"chunk {i + 1} killed every worker that ran it "
                                                 f"({exc}); see the workers' logs (out of memory?)") from None
                        raise exc.with_traceback(tb)
                    finished[i] = result
                while handed in finished:
                    args.pop(handed)
                    resubmits.pop(handed, None)
                    result = finished.pop(handed)
                    handed += 1
                    yield result
                if again and any(m.status != "finished" for m in markets):
                    markets = self._scatter(universe, again=True)
                submit(again + take())
        finally:
            if pending:  # stopped early (an error, or the consumer closed the generator)
                with contextlib.suppress(Exception):
                    client.cancel(list(pending))
            pending.clear()


def _local_workers(spec: str) -> int:
    text = spec.partition(":")[2].strip()
    if not text.isdigit() or int(text) < 1:
        cores = os.cpu_count() or 1
        raise AutostratError(f"--scheduler {spec!r}: {_LOCAL_HINT} (this machine has {cores} cores)")
    return int(text)


def _address(spec: str) -> str:
    text = spec.strip()
    m = _ADDRESS.match(text)
    if not m or (m.group(3) is not None and not 0 < int(m.group(3)) < 65536):
        raise AutostratError(f"--scheduler {spec!r} is not a scheduler address: write tcp://HOST:PORT "
                             f"(e.g. tcp://10.0.0.5:{DEFAULT_PORT}), HOST:PORT, or local:N for workers on this machine")
    scheme, host, port = m.group(1) or "tcp", m.group(2), m.group(3) or str(DEFAULT_PORT)
    return f"{scheme}://{host}:{port}"


def _probe(addr: str, host: str, port: int, timeout: float, hint: str) -> None:
    """Fail fast on a closed port, and at all on a port that accepts but never speaks.

    A Dask scheduler greets a new connection first; the client would wait for that greeting
    forever (its connect timeout covers only the TCP connection).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            greeting = sock.recv(1)
    except ConnectionRefusedError:
        raise AutostratError(f"could not reach a Dask scheduler at {addr}: connection refused (nothing "
                             f"listens there): {hint}") from None
    except socket.gaierror:
        raise AutostratError(f"could not reach a Dask scheduler at {addr}: the host name {host!r} does not "
                             f"resolve: {hint}") from None
    except TimeoutError:
        raise AutostratError(f"could not reach a Dask scheduler at {addr} within {timeout:g} s (no answer; is it "
                             f"the scheduler's port, 8786 by default?): {hint}") from None
    except OSError as exc:
        raise AutostratError(f"could not reach a Dask scheduler at {addr} ({exc.strerror or exc}): {hint}") from None
    if not greeting:
        raise AutostratError(f"{addr} closed the connection without answering like a Dask scheduler: {hint}")


def _connect(distributed, addr: str, timeout: float):
    hint = _START_HINT.format(addr=addr)
    scheme, _, hostport = addr.partition("://")
    host, _, port = hostport.rpartition(":")
    if scheme == "tcp":
        _probe(addr, host.strip("[]"), int(port), timeout, hint)
    try:
        return distributed.Client(addr, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError):
        raise AutostratError(f"could not reach a Dask scheduler at {addr} within {timeout:g} s: {hint}") from None
    except Exception as exc:  # a port that is not a Dask scheduler, a bad host name...
        raise AutostratError(f"could not connect to a Dask scheduler at {addr} ({type(exc).__name__}: {exc}): "
                             f"{hint}") from None


def _check_workers(client, addr: str, worker_timeout: float) -> None:
    try:
        client.wait_for_workers(1, timeout=worker_timeout)
    except (TimeoutError, OSError):
        raise AutostratError(f"the Dask scheduler at {addr} has no workers after {worker_timeout:g} s: start some "
                             f"with `dask worker {addr} --nthreads 1` on machines with autostrat installed") from None
    mine = _worker_info()
    infos = client.run(_worker_info, on_error="return")
    for worker, info in infos.items():
        if isinstance(info, BaseException):
            raise AutostratError(f"Dask worker {worker} cannot run autostrat ({type(info).__name__}: {info}): "
                                 "install the same autostrat version on every worker machine "
                                 '(pip install -e ".[dask]" in a checkout of the same commit)')
        if info["sources"] != mine["sources"]:
            raise AutostratError(f"Dask worker {worker} runs other autostrat sources (version {info['version']}, "
                                 f"sources {info['sources']}; here {mine['version']}, {mine['sources']}): install "
                                 "the same commit on every worker so results are the same")


def _quiet() -> None:
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


def _silence(client) -> None:
    """Silence Dask's loggers, in the workers and here (a local cluster's scheduler and nannies)."""
    with contextlib.suppress(Exception):
        client.run(_quiet)
    _quiet()


@contextlib.contextmanager
def open_executor(spec: str | None, *, timeout: float = CONNECT_TIMEOUT, worker_timeout: float = WORKER_TIMEOUT,
                  window: int | None = None):
    """An executor for a `--scheduler` spec, closed (cluster shut down, client disconnected) on exit.

    None: `LocalExecutor` (this process, all cores). `local:N`: a LocalCluster of N single-threaded
    worker processes. Otherwise the address of a running scheduler (`tcp://HOST:PORT`, `HOST:PORT`,
    `HOST`: port 8786). Prints one line to stderr saying what it connected to.
    """
    if spec is None:
        from autostrat.sim.bulk import LocalExecutor

        yield LocalExecutor()
        return
    spec = str(spec).strip()
    is_local = spec.lower() == "local" or spec.lower().startswith("local:")  # not localhost:8786
    if is_local:
        n = _local_workers(spec)
    else:
        addr = _address(spec)
    distributed = _distributed()
    with contextlib.ExitStack() as stack:
        if is_local:
            log = logging.getLogger("distributed")
            stack.callback(log.setLevel, log.level)  # restored last, once the cluster is closed
            # The scheduler's active memory manager would drop the workers' spare copies of the
            # markets whenever fewer chunks wait for them: keep one copy per worker instead.
            with importlib.import_module("dask").config.set({KEEP_COPIES: False}):
                cluster = stack.enter_context(distributed.LocalCluster(
                    n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address="127.0.0.1:0"))
            client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
            # Closing a LocalCluster races its workers' heartbeats: tracebacks ("Failed to communicate
            # with scheduler during heartbeat") that mean nothing once the results are in.
            stack.callback(_silence, client)
            addr = cluster.scheduler_address
            client.wait_for_workers(n, timeout=max(worker_timeout, 60.0))
            what = f"a local Dask cluster at {addr}"
        else:
            client = stack.enter_context(_connect(distributed, addr, timeout))
            _check_workers(client, addr, worker_timeout)
            what = f"the Dask scheduler at {addr}"
        threads = client.nthreads()
        print(f"dask: using {what}: {len(threads)} workers, {sum(threads.values())} threads", file=sys.stderr)
        executor = DaskExecutor(client, window=window)
        stack.callback(executor.close)
        yield executor
