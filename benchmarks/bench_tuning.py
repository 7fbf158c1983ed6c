"""Do tuning and niches help out of sample? Mutate, +tune (best, robust), +niches on synthetic markets.

For each synthetic seed and each configuration it runs `autostrat evolve --proposer mutate
--iterations 50` in a fresh run folder (the report opens the sealed test period at the end) and
reads the grep-able summary lines. It prints one line per run and the mean per configuration:
the best validation objective, the sealed test return of the best strategy, buy and hold over
the test, the DSR and the number of trials. Run by hand:

    python benchmarks/bench_tuning.py [--seeds 1 2 3 4 5] [--tune 200] [--iterations 50] [--max-fails N] [--configs NAME ...]
    python benchmarks/bench_tuning.py --data GOOG.csv --split 2009-12-31 2010-01-01 2011-06-30 2011-07-01

`--data` replaces the synthetic seeds with data specs (a CSV of daily bars, for one), and
`--split` gives their train end, validation start and end, and test start.

The configurations: mutate, tune (--tune N), robust (--tune N --tune-pick robust), niches
(--niches) and tune+niches (--tune N --niches).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import tempfile

CONFIGS = {"mutate": "mutate", "tune": "mutate+tune{n} best", "robust": "mutate+tune{n} robust",
           "niches": "mutate+niches", "tune+niches": "mutate+tune{n} best+niches"}
KEYS = ("best_objective", "test_total_return", "test_buy_hold_return", "dsr", "trials")


def run(data: str, extra: list[str], iterations: int, folder: str, name: str) -> dict[str, float]:
    cmd = [sys.executable, "-m", "autostrat", "evolve", "--data", data, "--proposer", "mutate", "--iterations",
           str(iterations), "--run", name, "--runs-dir", folder, *extra]
    print(" ".join(cmd[1:]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    values = {}
    for key in KEYS:
        m = re.search(rf"^{key}: (\S+)", out, re.M)
        values[key] = float(m.group(1)) if m else math.nan
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--tune", type=int, default=200)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--max-fails", type=int, default=0, help="stop after N failures in a row (default: evolve's)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--data", nargs="+", help="data specs to run instead of the synthetic seeds")
    ap.add_argument("--split", nargs=4, metavar=("TRAIN_END", "VAL_START", "VAL_END", "TEST_START"),
                    help="the periods of --data (default: autostrat's split)")
    args = ap.parse_args()
    markets = args.data or [f"synthetic:seed={seed}" for seed in args.seeds]
    split = []
    if args.split:
        split = [f"--{k}={v}" for k, v in zip(("train-end", "validation-start", "validation-end", "test-start"),
                                              args.split)]
    tune = ["--tune", str(args.tune)]
    flags = {"mutate": [], "tune": tune, "robust": [*tune, "--tune-pick", "robust"], "niches": ["--niches"],
             "tune+niches": [*tune, "--niches"]}
    fails = ["--max-fails", str(args.max_fails)] if args.max_fails else []
    configs = {CONFIGS[c].format(n=args.tune): [*flags[c], *fails, *split] for c in args.configs}
    results: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as folder:
        for i, data in enumerate(markets):
            for n, (config, extra) in enumerate(configs.items()):
                v = run(data, extra, args.iterations, folder, f"m{i}-{n}")
                results[config].append(v)
                print(f"data: {data} config: {config} " + " ".join(f"{k}: {v[k]:.4f}" for k in KEYS), flush=True)
    for config, rows in results.items():
        means = {k: statistics.fmean(r[k] for r in rows) for k in KEYS}
        beat = sum(r["test_total_return"] > r["test_buy_hold_return"] for r in rows)
        print(f"mean config: {config} " + " ".join(f"{k}: {means[k]:.4f}" for k in KEYS)
              + f" test_beats_buy_hold: {beat}/{len(rows)}", flush=True)


if __name__ == "__main__":
    main()
