"""How fast the language front end is: parse, check and fmt of every example strategy.

Run by hand, not by the test suite:

    python benchmarks/bench_parse.py [--runs 200]

For each file in grammar/examples it prints the median time of parse, check, parse + check and
fmt over many runs, then the overall rate of candidates (parse + check of one strategy) per
second: the front-end cost the search loop pays for every proposal before any backtest.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from autostrat.lang.check import check
from autostrat.lang.fmt import canonical_hash, fmt
from autostrat.lang.parse import parse
from autostrat.resources import examples_dir


def _median_us(fn, runs: int) -> float:
    """Median wall time of fn() in microseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def bench(paths: list[Path], runs: int) -> list[dict]:
    """One row of median timings (microseconds) per strategy file."""
    rows = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        program = parse(text, str(path))
        rows.append({
            "file": path.name,
            "lines": text.count("\n"),
            "parse": _median_us(lambda: parse(text, str(path)), runs),
            "check": _median_us(lambda: check(program), runs),
            "parse+check": _median_us(lambda: check(parse(text, str(path))), runs),
            "fmt": _median_us(lambda: fmt(program), runs),
            "hash": _median_us(lambda: canonical_hash(program), runs),
        })
    return rows


def main() -> None:
    """Print the table and the overall rate."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200, help="timed runs per file and stage (default 200)")
    args = ap.parse_args()
    paths = sorted(examples_dir().glob("*.strat"))
    parse(paths[0].read_text(encoding="utf-8"))  # build the parser once, outside the timings
    rows = bench(paths, args.runs)
    cols = ["parse", "check", "parse+check", "fmt", "hash"]
    print(f"median of {args.runs} runs, microseconds")
    print(f"{'file':<28}{'lines':>6}" + "".join(f"{c:>13}" for c in cols))
    for r in rows:
        print(f"{r['file']:<28}{r['lines']:>6}" + "".join(f"{r[c]:>13.0f}" for c in cols))
    total = sum(r["parse+check"] for r in rows)
    print(f"candidates/second (parse + check, mean over the examples): {len(rows) / total * 1e6:,.0f}")


if __name__ == "__main__":
    main()
