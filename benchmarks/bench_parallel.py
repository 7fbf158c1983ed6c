"""Wall time of a language-model search's proposals against a slow model: --parallel 1 vs 4 vs 8.

A chat server on 127.0.0.1 (tests/fake_llm_server.py) answers every request after DELAY seconds
with a valid strategy chosen by the prompt, and serves requests concurrently, as a model server
with K slots would. Each run is 1 + PROPOSALS iterations (the baseline, then the proposals) with
no failure limit. Run by hand:

    python benchmarks/bench_parallel.py [--delay 2] [--proposals 48] [--k 1 4 8]

It prints one `k: ... seconds: ... speedup: ...` line per K. The time is almost all waiting for
the model, so it hardly depends on the machine; docs/search.md quotes a run of it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_llm_server import FakeLLM, last_user_message, strategy_from  # noqa: E402
from search_runs import model_search  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=2.0, help="seconds per answer (default 2)")
    ap.add_argument("--proposals", type=int, default=48, help="candidates to propose (default 48)")
    ap.add_argument("--k", type=int, nargs="+", default=[1, 4, 8], help="--parallel values (default 1 4 8)")
    args = ap.parse_args()
    base = None
    for k in args.k:
        llm = FakeLLM(lambda body, i: strategy_from(last_user_message(body)), delay=args.delay)
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            out = model_search(Path(tmp) / "run", llm, timeout=args.delay * 10 + 30, parallel=k,
                               iterations=args.proposals + 1, max_fails=args.proposals + 1)
            seconds = time.perf_counter() - start
        base = base or seconds
        print(f"k: {k} proposals: {len(out.records) - 1} requests: {len(llm.requests)} "
              f"most_in_flight: {llm.most_in_flight} seconds: {seconds:.1f} speedup: {base / seconds:.2f}",
              flush=True)


if __name__ == "__main__":
    main()
