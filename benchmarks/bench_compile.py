"""Where a first call's JIT compile time goes, on an empty numba cache.

Runs `autostrat.backtest(STRATEGY, "synthetic")` in a fresh process with an empty NUMBA_CACHE_DIR,
listens to numba's compile events, and prints the wall time and the functions that took the most
compile time of their own (a caller's time excludes its callees'). Run by hand:

    python benchmarks/bench_compile.py [--strategy grammar/examples/sma_cross.strat] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
from numba.core import event

records, stack = [], []

class Listener(event.Listener):
    def on_start(self, ev):
        stack.append([time.perf_counter(), 0.0])

    def on_end(self, ev):
        start, children = stack.pop()
        took = time.perf_counter() - start
        dispatcher = (ev.data or {}).get("dispatcher")
        name = getattr(getattr(dispatcher, "py_func", None), "__qualname__", str(dispatcher))
        records.append((name, took - children))
        if stack:
            stack[-1][1] += took

event.register("numba:compile", Listener())
t = time.perf_counter()
import autostrat
autostrat.backtest(sys.argv[1], "synthetic")
print(json.dumps({"wall": time.perf_counter() - t, "records": records}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategy", default="grammar/examples/sma_cross.strat")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", CHILD, args.strategy], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    own: dict[str, float] = {}
    for name, seconds in result["records"]:
        own[name] = own.get(name, 0.0) + seconds
    total = sum(own.values())
    print(f"first call of backtest({args.strategy!r}) on an empty cache: {result['wall']:.1f} s wall, "
          f"{total:.1f} s compiling {len(result['records'])} functions")
    for name, seconds in sorted(own.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {seconds:6.2f} s  {name}")


if __name__ == "__main__":
    main()
