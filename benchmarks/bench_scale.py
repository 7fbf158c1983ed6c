"""Bulk evaluation at scale: in-process against a Dask LocalCluster, and what a big cluster would take.

Run by hand (needs the `dask` extra):

    python benchmarks/bench_scale.py [--variants 10000] [--assets 20] [--workers 2] [--tiny 400]

`--variants 200 --assets 4` is a quick mode (well under a minute). It sweeps the params fast and
slow of grammar/examples/sma_cross.strat into `--variants` programs, over `--assets` synthetic
markets of 6,750 daily bars (synthetic:seed=1..A), train and validation periods, default costs,
warm JIT. It prints:

  - wall time in-process (LocalExecutor: chunk after chunk, each simulated on all cores) and on a
    LocalCluster of `--workers` single-threaded worker processes (DaskExecutor), and that the two
    results are identical;
  - peak memory: ru_maxrss of this process for the in-process run; for the cluster run, the peak
    RSS (ru_maxrss) of each worker process, read in the worker, and the time to scatter the markets;
  - the per-task overhead Dask adds: (cluster wall x workers - pure compute) / tasks, where pure
    compute is the sum of the tasks' compute times from Dask's task stream, for the big run and for
    `--tiny` chunks of one program x one asset; and the round trip of an empty task;
  - from those, the estimated wall time of 100,000 strategies x 500 assets on a 32-node cluster
    with 2 and with 32 single-threaded workers per node, with its formula.

This machine's client, scheduler and workers share its cores: the cluster numbers include that
contention (the client compiles tapes and copies results while the workers compute).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time

import numpy as np

SCALE_PROGRAMS, SCALE_ASSETS, SCALE_NODES = 100_000, 500, 32


def _peak_rss_mb() -> float:
    """This process's peak resident memory (runs in a worker, too); ru_maxrss is KB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def _noop(x):
    return x


def variants(count: int):
    from autostrat.sim.grid import sweep_points
    from autostrat.resources import example_path

    n_fast = math.ceil(math.sqrt(count))
    n_slow = math.ceil(count / n_fast)
    grid = {"fast": [float(v) for v in range(5, 5 + n_fast)], "slow": [float(v) for v in range(20, 20 + 2 * n_slow, 2)]}
    typed = sweep_points(example_path("sma_cross"), grid)
    return list(typed[:count])  # the points' programs, built before anything is timed


def compute_seconds(stream: list[dict]) -> float:
    return sum(s["stop"] - s["start"] for task in stream for s in task["startstops"] if s["action"] == "compute")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", type=int, default=10_000, help="sweep variants (programs)")
    ap.add_argument("--assets", type=int, default=20, help="synthetic markets of 6,750 bars")
    ap.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (1 thread each)")
    ap.add_argument("--tiny", type=int, default=400, help="tasks of one program x one asset for the overhead")
    args = ap.parse_args()

    import autostrat
    from autostrat.sim.bulk import (DEFAULT_ASSETS_PER_CHUNK, LocalExecutor, plan_chunks, programs_per_chunk,
                                universe_array)
    from autostrat.tape.compile import compile_many
    from autostrat.data.load import load_universe

    settings = autostrat.Settings()
    typed, t_build = timed(lambda: variants(args.variants))
    universe = load_universe(f"synthetic:seed=1..{args.assets}")
    bars = len(universe.markets[0])
    chunks = plan_chunks(typed, universe)
    size = chunks[0][0].stop - chunks[0][0].start
    n_pa = len(typed) * len(universe)
    tiny_programs = max(1, args.tiny // 4)
    tiny_universe = load_universe("synthetic:seed=101..104")
    tiny_typed = typed[:tiny_programs]
    n_tiny = len(tiny_typed) * len(tiny_universe)

    # client-side compile: once per program slice, serial on the client
    slices = [typed[i:i + size] for i in range(0, min(len(typed), 20 * size), size)]
    _, t_compile = timed(lambda: [compile_many(s) for s in slices])
    compile_per_program = t_compile / sum(len(s) for s in slices)

    universe_array(typed[:8], universe, settings)  # warm the JIT
    universe_array(tiny_typed[:2], tiny_universe, settings, chunk_size=1, assets_per_chunk=1)
    rss_before = _peak_rss_mb()
    local, t_local = timed(lambda: universe_array(typed, universe, settings, executor=LocalExecutor())[0])
    rss_local = _peak_rss_mb()
    _, t_tiny_local = timed(lambda: universe_array(tiny_typed, tiny_universe, settings, chunk_size=1,
                                                   assets_per_chunk=1, executor=LocalExecutor()))

    import distributed
    from autostrat.sim.cluster import open_executor

    with open_executor(f"local:{args.workers}") as ex:
        client = ex.client
        _, t_scatter = timed(lambda: ex._scatter(universe))
        # warm every worker's JIT (load the cached kernels) with a small run on each
        universe_array(typed[: 2 * args.workers], universe, settings, chunk_size=1, executor=ex)
        universe_array(tiny_typed[:8], tiny_universe, settings, chunk_size=1, assets_per_chunk=1, executor=ex)
        workers_before = client.run(_rss_mb)
        with distributed.get_task_stream(client) as ts:
            remote, t_cluster = timed(lambda: universe_array(typed, universe, settings, executor=ex)[0])
        compute = compute_seconds(ts.data)
        workers_peak = client.run(_peak_rss_mb)
        with distributed.get_task_stream(client) as ts_tiny:
            _, t_tiny_cluster = timed(lambda: universe_array(tiny_typed, tiny_universe, settings, chunk_size=1,
                                                             assets_per_chunk=1, executor=ex))
        compute_tiny = compute_seconds(ts_tiny.data)
        n_empty = 2000
        _, t_empty = timed(lambda: client.gather(client.map(_noop, range(n_empty), pure=False)))

    identical = np.array_equal(local, remote, equal_nan=True)
    W = args.workers
    tasks = len(chunks)
    over_big = (t_cluster * W - compute) / tasks
    over_tiny = (t_tiny_cluster * W - compute_tiny) / n_tiny
    over_empty = t_empty * W / n_empty
    u_core = compute / n_pa  # single-core seconds per strategy x asset (VM run + simulation, 2 periods)
    out_mb = local.nbytes / 2**20

    print(f"sweep: {len(typed):,} variants of sma_cross (fast x slow) x {len(universe)} synthetic assets of "
          f"{bars:,} bars = {n_pa:,} strategy-asset evaluations; periods train, validation")
    print(f"chunks: {tasks:,} of {size} programs x {DEFAULT_ASSETS_PER_CHUNK} assets; result {out_mb:,.1f} MB "
          f"float64; {t_build:.1f} s to build and check the variants")
    print(f"machine: {os.cpu_count()} cores; LocalCluster: {W} worker processes x 1 thread")
    print()
    print(f"in-process (LocalExecutor, all cores)  {t_local:8.2f} s wall  "
          f"{t_local / n_pa * 1e6:7.1f} us per strategy-asset   peak RSS {rss_local:7.0f} MB "
          f"(before the run {rss_before:.0f} MB)")
    print(f"LocalCluster {W} workers (DaskExecutor)   {t_cluster:8.2f} s wall  "
          f"{t_cluster / n_pa * 1e6:7.1f} us per strategy-asset   peak RSS per worker "
          f"{' / '.join(f'{v:.0f}' for v in workers_peak.values())} MB (after warm-up "
          f"{' / '.join(f'{v:.0f}' for v in workers_before.values())} MB)")
    print(f"  identical to in-process: {'yes' if identical else 'NO'}; scatter of the {len(universe)} markets "
          f"to {W} workers {t_scatter:.2f} s; pure compute in tasks {compute:.2f} s "
          f"({u_core * 1e6:.1f} us per strategy-asset on one core)")
    print(f"client compile: {compile_per_program * 1e6:.1f} us per program (serial, once per program slice)")
    print()
    print("per-task overhead Dask adds = (cluster wall x workers - pure compute) / tasks")
    print(f"  big chunks   ({tasks:,} tasks of {size} x {DEFAULT_ASSETS_PER_CHUNK})   "
          f"({t_cluster:.2f} x {W} - {compute:.2f}) / {tasks:,} = {over_big * 1e3:8.2f} ms"
          + ("   (fewer tasks than 4 per worker: mostly idle workers, not overhead)" if tasks < 4 * W else
             "   (includes the last wave's idle workers)"))
    print(f"  tiny chunks  ({n_tiny:,} tasks of 1 x 1)       "
          f"({t_tiny_cluster:.2f} x {W} - {compute_tiny:.2f}) / {n_tiny:,} = {over_tiny * 1e3:8.2f} ms   "
          f"(in-process the same chunks take {t_tiny_local:.2f} s)")
    print(f"  empty tasks  ({n_empty:,} client.map of a no-op) {t_empty:.2f} x {W} / {n_empty:,} = "
          f"{over_empty * 1e3:8.2f} ms")

    # --- extrapolation ---------------------------------------------------------------------
    S, A, N = SCALE_PROGRAMS, SCALE_ASSETS, SCALE_NODES
    size = programs_per_chunk(typed[0], universe)  # plan_chunks' program slices (the markets are alike)
    n_tasks = math.ceil(S / size) * math.ceil(A / DEFAULT_ASSETS_PER_CHUNK)
    o = max(over_tiny, 0.0)
    sched = t_empty / n_empty  # one scheduler hands out tasks one after another
    chunk_s = size * DEFAULT_ASSETS_PER_CHUNK * u_core  # one chunk on one core: the last wave's tail
    result_gb = S * A * local.shape[2] * local.shape[3] * 8 / 1e9
    market_mb = sum(sum(getattr(m, c).nbytes for c in ("dates", "open", "high", "low", "close", "volume"))
                    for m in universe.markets) / len(universe) / 2**20
    client_compile = S * compile_per_program
    print()
    print(f"estimate: {S:,} strategies x {A} assets of {bars:,} bars on {N} nodes, one single-threaded worker per core")
    print("  T ~= max(compute, scheduler, client) + one chunk,   compute = (S x A x u + tasks x o) / (nodes x cores)")
    print(f"  u = {u_core * 1e6:.1f} us per strategy-asset on one core; o = {o * 1e3:.2f} ms per task "
          f"(tiny chunks above); tasks = ceil(S/{size}) x ceil(A/{DEFAULT_ASSETS_PER_CHUNK}) = {n_tasks:,}")
    print(f"  scheduler = tasks x {sched * 1e3:.2f} ms (one scheduler's wall per empty task, measured here) "
          f"= {n_tasks * sched:.0f} s;  client = S x {compile_per_program * 1e6:.0f} us compile = "
          f"{client_compile:.0f} s; one chunk = {size} x {DEFAULT_ASSETS_PER_CHUNK} x u = {chunk_s:.2f} s")
    print(f"  plus: {A} markets x {market_mb:.2f} MB = {A * market_mb:.0f} MB scattered once and held by every worker; "
          f"{result_gb:.1f} GB of float64 results gathered into the client's memory")
    for cores in (2, 32):
        compute_t = (S * A * u_core + n_tasks * o) / (N * cores)
        terms = {"compute": compute_t, "scheduler": n_tasks * sched, "client compile": client_compile}
        bound = max(terms, key=terms.get)
        total = terms[bound] + chunk_s
        print(f"  {cores:2d} cores/node ({N * cores:5,} workers): compute {compute_t:7.1f} s, scheduler "
              f"{terms['scheduler']:5.0f} s, client {client_compile:4.0f} s -> T ~= {total:7.1f} s "
              f"({total / 60:.1f} min, {bound}-bound); markets {A * market_mb * cores / 1024:.1f} GB per node")


if __name__ == "__main__":
    main()
