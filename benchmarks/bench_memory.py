"""Peak memory and wall time of streamed sweeps and bulk runs, as the commands run them.

    python benchmarks/bench_memory.py                       # 1,000,000 variants, 100,000 files, 2 workers
    python benchmarks/bench_memory.py --points 100000 --files 10000 --where here --only sweep

Runs, each in a subprocess writing every row to --out in a temporary folder:
  - `autostrat sweep` of sma_cross over a grid of --points variants (fast x slow) on the default
    synthetic market (6,750 bars);
  - `autostrat bulk` over --files generated strategy files (--files-from a list), same market;
  - both again with `--scheduler local:N` (N = --workers): `--where here|dask|both`.
For each it prints the wall time, the peak RSS of the autostrat process itself, the peak of the
sum over its whole process tree (sampled every 0.2 s; the Dask scheduler and workers included),
and the rows written. Needs psutil (installed with the dask extra). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

MB = 2**20


def measure(cmd: list[str], cwd: Path) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS of the process, peak RSS summed over its tree, its stdout's first line)."""
    start = time.perf_counter()
    errors = (cwd / "stderr.txt").open("w+")  # a file, not a pipe: nobody reads it while the run goes
    proc = psutil.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=errors, text=True)
    own = tree = 0
    while proc.poll() is None:
        try:
            rss = proc.memory_info().rss
            kids = sum(c.memory_info().rss for c in proc.children(recursive=True) if c.is_running())
        except psutil.Error:
            rss, kids = 0, 0
        own, tree = max(own, rss), max(tree, rss + kids)
        time.sleep(0.2)
    wall = time.perf_counter() - start
    out = proc.stdout.read()
    errors.seek(0)
    err = errors.read()
    errors.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{out}\n{err[-3000:]}")
    return wall, own, tree, out.splitlines()[0] if out else ""


def write_files(folder: Path, count: int) -> Path:
    """`count` distinct SMA and RSI strategies, one file each, and the list naming them."""
    paths = []
    side = math.isqrt(count) + 1
    for i in range(count):
        a, b = 2 + i % side, 3 + i // side + i % side
        if i % 2:
            text = (f"# strategy {i}\nbuy when sma(close, {a}) > sma(close, {b})\n"
                    f"sell when sma(close, {a}) < sma(close, {b})\n")
        else:
            text = f"# strategy {i}\nbuy when rsi(close, {a}) < 30 and close > sma(close, {b})\nsell when rsi(close, {a}) > 70\n"
        path = folder / f"s{i:07d}.strat"
        path.write_text(text)
        paths.append(str(path))
    listing = folder / "files.txt"
    listing.write_text("\n".join(paths) + "\n")
    return listing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1_000_000, help="sweep grid points (a square fast x slow grid)")
    ap.add_argument("--files", type=int, default=100_000, help="strategy files for bulk")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers for the cluster runs")
    ap.add_argument("--where", choices=("here", "dask", "both"), default="both",
                    help="in this process, on a local Dask cluster, or both (default)")
    ap.add_argument("--only", choices=("sweep", "bulk"), help="only one of the two commands")
    args = ap.parse_args()
    exe = [sys.executable, "-m", "autostrat"]
    side = math.isqrt(args.points)
    fast, slow = side, args.points // side
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        tmp = Path(tmp)
        from autostrat.resources import example_path

        runs = []
        if args.only != "bulk":
            sweep = [*exe, "sweep", str(example_path("sma_cross")), "--param", f"fast=1:{fast}:1",
                     "--param", f"slow=1:{slow}:1", "--data", "synthetic", "--top", "3"]
            runs.append((f"sweep {fast * slow:,} variants", sweep))
        if args.only != "sweep":
            listing = write_files(tmp, args.files)
            bulk = [*exe, "bulk", "--files-from", str(listing), "--data", "synthetic", "--top", "3"]
            runs.append((f"bulk {args.files:,} files", bulk))
        subprocess.run([*exe, "sweep", str(example_path("sma_cross")), "--param", "fast=5:10:5",
                        "--data", "synthetic"], check=True, capture_output=True)  # warm the JIT cache
        schedulers = {"here": [None], "dask": [f"local:{args.workers}"],
                      "both": [None, f"local:{args.workers}"]}[args.where]
        print(f"{'run':<28}{'where':>10}{'wall s':>10}{'us/row':>9}{'peak RSS MB':>13}{'tree MB':>10}  rows")
        for label, cmd in runs:
            for scheduler in schedulers:
                out = tmp / "out.csv"
                full = [*cmd, "--out", str(out)] + (["--scheduler", scheduler] if scheduler else [])
                wall, own, tree, first = measure(full, tmp)
                rows = sum(1 for _ in out.open()) - 1
                out.unlink()
                print(f"{label:<28}{scheduler or 'here':>10}{wall:>10.1f}{wall / rows * 1e6:>9.0f}"
                      f"{own / MB:>13.0f}{tree / MB:>10.0f}  {rows:,}  ({first})", flush=True)


if __name__ == "__main__":
    main()
