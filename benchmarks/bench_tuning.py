"""Do tuning and niches help out of sample? Mutate, +tune (best, robust), +niches on synthetic markets.

For each synthetic seed and each configuration it runs `autostrat evolve --proposer mutate
--iterations 50` in a fresh run folder (the report opens the sealed test period at the end) and
reads the grep-able summary lines. It prints one line per run and the mean per configuration:
the best validation objective, the sealed test return of the best strategy, buy and hold over
the test, the DSR and the number of trials. Run by hand:

    python benchmarks/bench_tuning.py [--seeds 1 2 3 4 5] [--tune 200] [--iterations 50] [--max-fails N] [--configs NAME ...]

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
    args = ap.parse_args()
    tune = ["--tune", str(args.tune)]
    flags = {"mutate": [], "tune": tune, "robust": [*tune, "--tune-pick", "robust"], "niches": ["--niches"],
             "tune+niches": [*tune, "--niches"]}
    fails = ["--max-fails", str(args.max_fails)] if args.max_fails else []
    configs = {CONFIGS[c].format(n=args.tune): [*flags[c], *fails] for c in args.configs}
    results: dict[str, list[dict[str, float]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            for n, (config, extra) in enumerate(configs.items()):
                v = run(f"synthetic:seed={seed}", extra, args.iterations, folder, f"s{seed}-{n}")
                results[config].append(v)
                print(f"seed: {seed} config: {config} " + " ".join(f"{k}: {v[k]:.4f}" for k in KEYS), flush=True)
    for config, rows in results.items():
        means = {k: statistics.fmean(r[k] for r in rows) for k in KEYS}
        beat = sum(r["test_total_return"] > r["test_buy_hold_return"] for r in rows)
        print(f"mean config: {config} " + " ".join(f"{k}: {means[k]:.4f}" for k in KEYS)
              + f" test_beats_buy_hold: {beat}/{len(rows)}", flush=True)


if __name__ == "__main__":
    main()
