"""The Dask executor: the same numbers as the local path, through worker loss, and clear errors.

One LocalCluster of two single-threaded worker processes on 127.0.0.1 serves the module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("distributed", reason="the Dask executor needs the optional `distributed` package (.[dask])")

from autostrat.sim.bulk import LocalExecutor, sweep  # noqa: E402
from autostrat.sim.cluster import DaskExecutor, open_executor  # noqa: E402
from autostrat.config import Settings  # noqa: E402
from autostrat.errors import AutostratError  # noqa: E402
from autostrat.resources import example_path  # noqa: E402
from autostrat.data.load import load_universe  # noqa: E402
from processes import alive, descendants, wait_until  # noqa: E402

# four markets with train, validation and test; the fifth ends before the test period (NaN metrics)
UNIVERSE = "synthetic:seed=1..4,bars=1500,start=2015-01-01,synthetic:seed=5,bars=1200,start=2015-01-01"
GRID = {"fast": list(range(5, 30)), "slow": [40, 60, 80, 100]}
PERIODS = ("train", "validation", "test")
CHUNK = 4  # 100 variants -> 25 chunks: enough to kill a worker mid-run
# Seconds after which a connection attempt with a 1 or 2 s timeout counts as hung. A guard
# against hangs, far above any machine's time, not a speed claim.
HANG_GUARD = 120


@pytest.fixture(scope="module")
def settings():
    s = Settings()
    for key, value in {"train_end": "2017-12-31", "validation_start": "2018-01-01",
                       "validation_end": "2019-06-30", "test_start": "2020-01-01"}.items():
        s.set(f"split.{key}", value)
    return s


@pytest.fixture(scope="module")
def universe():
    return load_universe(UNIVERSE)


def _sweep(universe, settings, **kw):
    return sweep(example_path("sma_cross"), GRID, universe, settings, periods=PERIODS, chunk_size=CHUNK, **kw)


@pytest.fixture(scope="module")
def expected(universe, settings):
    return _sweep(universe, settings)


@pytest.fixture(scope="module")
def executor():
    with open_executor("local:2", window=8) as ex:  # 8 of 25 chunks in flight: a sliding window
        yield ex


@pytest.fixture
def cluster(executor):
    """The module's executor with both workers up (a previous test may have killed some)."""
    executor.client.wait_for_workers(2, timeout=60)
    return executor


def _assert_identical(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    cols = [c for c in want.columns if "." in c]
    np.testing.assert_array_equal(got[cols].to_numpy(float), want[cols].to_numpy(float))  # NaNs equal


def test_dask_sweep_equals_local_path(cluster, universe, settings, expected):
    assert isinstance(cluster, DaskExecutor)
    seen = []
    frame = _sweep(universe, settings, executor=cluster, progress=lambda done, total: seen.append((done, total)))
    _assert_identical(frame, expected)
    assert len(frame) == 100 * len(universe)
    assert np.isnan(frame["test.total_return"]).sum() == 100  # the fifth market has no test period
    assert seen == [(i, 25) for i in range(1, 26)]


def test_a_streamed_sweep_on_the_cluster_writes_the_local_bytes(cluster, universe, settings, expected):
    import io

    from autostrat.sim.stream import stream_rows, sweep_batches

    keys = list(GRID)
    texts = []
    for executor in (None, cluster):
        out, per_asset = io.BytesIO(), io.BytesIO()
        result = stream_rows(sweep_batches(example_path("sma_cross"), GRID, universe, CHUNK), universe, settings,
                             objective="validation.sharpe", top=5, named=False, keys=keys, out=out,
                             per_asset=per_asset, periods=PERIODS, executor=executor)
        assert result.rows == 100 and result.per_asset_rows == 100 * len(universe)
        texts.append((out.getvalue().decode(), per_asset.getvalue().decode()))
    assert texts[0] == texts[1]  # rows in the same order, whichever worker finished first
    assert texts[1][1] == expected.to_csv(index=False)
    from autostrat.sim.bulk import across_assets_frame

    assert texts[1][0] == across_assets_frame(expected, "mean", keys=keys).to_csv(index=False)


def test_map_takes_jobs_only_as_the_window_allows_and_hands_results_in_order(cluster, universe, settings):
    from autostrat.sim.bulk import asset_slices, chunk_metrics, tape_arrays, universe_spans
    from autostrat.sim.grid import sweep_points
    from autostrat.sim.simulate import evaluation_args
    from autostrat.tape.template import compile_batch

    typed = sweep_points(example_path("sma_cross"), GRID)
    _, spans = universe_spans(universe, settings, PERIODS)
    costs = evaluation_args(settings.backtest)
    jobs = [(tape_arrays(compile_batch(typed[p:p + CHUNK])), asl)
            for p in range(0, len(typed), CHUNK) for asl in asset_slices(universe, 2)]
    taken = []

    def lazily():
        for job in jobs:
            taken.append(job)
            yield job

    handed = 0
    for i, result in enumerate(cluster.map(lazily(), universe, spans, costs)):
        assert len(taken) - handed <= cluster.window  # submitted and not yet handed over
        tape, asl = jobs[i]
        np.testing.assert_array_equal(result, chunk_metrics(tape, universe.markets[asl], spans[asl], costs))
        handed += 1
    assert handed == len(jobs) > 3 * cluster.window


def test_markets_travel_once_per_worker(cluster, universe, settings, expected):
    _sweep(universe, settings, executor=cluster)
    markets = list(cluster._markets)
    assert len(markets) == len(universe)
    who_has = cluster.client.who_has(markets)
    workers = set(cluster.client.nthreads())
    assert all(set(holders) == workers for holders in who_has.values()), who_has  # broadcast to every worker
    assert not cluster.client.amm.running()  # which would drop the spare copies between runs
    _assert_identical(_sweep(universe, settings, executor=cluster), expected)
    assert cluster._markets == markets  # the same universe is not scattered again


def test_killed_worker_chunks_are_rerun(cluster, universe, settings, expected, monkeypatch):
    client = cluster.client
    pids = client.run(os.getpid)
    monkeypatch.setattr(cluster, "window", 25)  # every chunk in flight: the victim surely holds some
    killed = []

    def progress(done, total):
        if killed:
            return
        deadline = time.monotonic() + 5
        while not (busy := {w: len(k) for w, k in client.processing().items() if k}):
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        victim = max(busy, key=busy.get)  # the worker running chunks right now
        os.kill(pids[victim], signal.SIGKILL)
        killed.append(busy[victim])

    frame = _sweep(universe, settings, executor=cluster, progress=progress)
    assert killed and killed[0] > 0
    _assert_identical(frame, expected)
    client.wait_for_workers(2, timeout=60)
    assert len(set(client.run(os.getpid).values()) - set(pids.values())) == 1  # the nanny restarted it


def test_every_worker_killed_markets_scattered_again(cluster, universe, settings, expected):
    client = cluster.client
    pids = client.run(os.getpid)
    before = list(cluster._scatter(universe))
    killed = []

    def progress(done, total):
        if not killed:  # every copy of the scattered markets is lost
            for pid in pids.values():
                os.kill(pid, signal.SIGKILL)
            killed.append(done)

    frame = _sweep(universe, settings, executor=cluster, progress=progress)
    assert killed
    _assert_identical(frame, expected)
    assert cluster._markets != before  # scattered again


def test_connect_to_a_running_scheduler(cluster, universe, settings, expected, capsys, monkeypatch):
    addr = cluster.client.scheduler.address  # the module's scheduler, reached by address as a remote one
    with open_executor(addr.removeprefix("tcp://"), window=8) as remote:
        assert isinstance(remote, DaskExecutor)
        _assert_identical(_sweep(universe, settings, executor=remote), expected)
    assert capsys.readouterr().err.strip() == f"dask: using the Dask scheduler at {addr}: 2 workers, 2 threads"
    import autostrat.sim.cluster

    monkeypatch.setattr(autostrat.sim.cluster, "source_hash", lambda: "0123456789abcdef")  # here, not on the workers
    with pytest.raises(AutostratError, match="runs other autostrat sources.*install the same commit"):
        with open_executor(addr):
            pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("spec, message", [
    ("local:0", "local:N with N >= 1"),
    ("local:abc", "local:N with N >= 1"),
    ("local", "local:N with N >= 1"),
    ("localhost-ish:x", "not a scheduler address"),
    ("garbage !!", "not a scheduler address: write tcp://HOST:PORT"),
    ("http://127.0.0.1:8786", "not a scheduler address"),
    ("tcp://127.0.0.1:99999", "not a scheduler address"),
    ("tcp://127.0.0.1:{closed}", "could not reach a Dask scheduler at tcp://127.0.0.1:{closed}.*`dask scheduler`"
                                 ".*`dask worker tcp://127.0.0.1:{closed} --nthreads 1`.*local:N"),
    ("127.0.0.1:{closed}", "could not reach a Dask scheduler at tcp://127.0.0.1:{closed}"),
    ("localhost:{closed}", "could not reach a Dask scheduler at tcp://localhost:{closed}"),
])
def test_bad_scheduler_addresses(spec, message):
    port = _closed_port()
    start = time.perf_counter()
    with pytest.raises(AutostratError, match=message.format(closed=port)):
        with open_executor(spec.format(closed=port)):
            pass
    assert time.perf_counter() - start < HANG_GUARD


def test_port_that_never_answers():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        addr = f"127.0.0.1:{server.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(AutostratError, match=f"could not reach a Dask scheduler at tcp://{addr} within 2 s"):
            with open_executor(addr, timeout=2):
                pass
        assert time.perf_counter() - start < HANG_GUARD


def test_scheduler_without_workers():
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0") as empty:
        addr = empty.scheduler_address
        start = time.perf_counter()
        with pytest.raises(AutostratError, match=f"scheduler at {addr} has no workers after 1 s.*dask worker {addr}"):
            with open_executor(addr, worker_timeout=1):
                pass
        assert time.perf_counter() - start < HANG_GUARD


def test_without_distributed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` raises ImportError
    with pytest.raises(AutostratError, match=r'pip install -e "\.\[dask\]"'):
        with open_executor("local:2"):
            pass
    with pytest.raises(AutostratError, match=r"\.\[dask\]"):
        with open_executor("tcp://127.0.0.1:8786"):
            pass


def test_no_scheduler_runs_here():
    with open_executor(None) as ex:
        assert isinstance(ex, LocalExecutor)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_local_cluster_dies_with_the_process_that_started_it(tmp_path):
    # `--scheduler local:N` starts worker processes; none may outlive a kill -9 of the command.
    code = ("import sys, time; from autostrat.sim.cluster import open_executor\n"
            "with open_executor('local:2') as ex:\n"
            "    print('ready', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        workers = descendants(proc.pid)
        assert len(workers) >= 2, workers
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert wait_until(lambda: not any(alive(p) for p in workers), 30), \
            f"Dask worker processes outlived their parent: {[p for p in workers if alive(p)]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_same_sources_check_reads_every_subpackage(tmp_path, monkeypatch):
    # A worker with another kernel, two folders down, runs other code: the hash must see it.
    from autostrat.sim import cluster

    root = Path(cluster.__file__).parent.parent
    files = {p.relative_to(root).as_posix() for p in root.rglob("*.py")}
    assert {"tape/kernels_rolling.py", "sim/simulate.py", "cli/__init__.py", "errors.py"} <= files
    before = cluster.source_hash()
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda p: real(p) + (b"#" if p.name == "kernels_rolling.py" else b""))
    assert cluster.source_hash() != before
