"""K concurrent requests against the local model served once or N times behind the proxy (`serve-local --parallel N`).

Run by hand (it needs the `local` extra; a few minutes on 2 cores):

    python benchmarks/bench_serve_parallel.py [--requests 4] [--rounds 2] [--max-tokens 120]
                                              [--configs 1:0,1:2,2:0] [--mode typed] [--seed 7]

Each config is PARALLEL:THREADS (THREADS 0: the default, which is llama-cpp-python's own for one
server, half the cores, and all cores split between the servers for several). For each config it
starts `autostrat.search.local.LocalServer(parallel=PARALLEL)`, sends `--requests` real search
prompts at once (the llm proposer's system and iteration prompts, built as in
bench_local_model.py) with the `--mode` grammar, as `autostrat evolve --parallel K` does, and
measures the wall time until the last answer, `--rounds` times. It prints per config the median
wall time, the completion tokens and the tokens per second of wall time (the answers' lengths
differ between configs, since sampling does, so tokens per second is the fairer figure), and
the machine's load average before each config (the machine may be shared). A JSON summary goes
to the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time

from bench_local_model import prompts

from autostrat.config import Settings
from autostrat.search.constrain import request_body
from autostrat.search.local import MODEL_ALIAS, LocalServer
from autostrat.search.prompting import constrained_format


def one_round(client, convs, mode: str, max_tokens: int, temperature: float) -> dict:
    """All conversations at once; wall time and the answers' token counts."""
    results: list[dict | None] = [None] * len(convs)

    def ask(i: int) -> None:
        messages = convs[i]
        if mode != "off":  # what LlmProposer sends under a constraint
            messages = [{"role": "system", "content": messages[0]["content"] + "\n\n" + constrained_format(mode)},
                        *messages[1:]]
        r = client.chat.completions.create(model=MODEL_ALIAS, messages=messages, temperature=temperature,
                                           max_tokens=max_tokens, extra_body=request_body(mode) or None)
        results[i] = {"completion": r.usage.completion_tokens, "finish": r.choices[0].finish_reason}

    start = time.monotonic()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(convs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - start
    if any(r is None for r in results):
        raise SystemExit("a request failed; see the error above")
    tokens = sum(r["completion"] for r in results)
    return {"seconds": seconds, "completion_tokens": tokens, "tokens_per_second": tokens / seconds}


def run_config(parallel: int, threads: int, args, convs, temperature: float) -> dict:
    import openai

    load = os.getloadavg()[0]
    with LocalServer(seed=args.seed, threads=threads or None, parallel=parallel) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", timeout=3600, max_retries=0)
        rounds = []
        for n in range(args.rounds):
            r = one_round(client, convs, args.mode, args.max_tokens, temperature)
            rounds.append(r)
            print(f"parallel {parallel} threads {threads or 'default'} round {n + 1}: {r['seconds']:.1f}s "
                  f"{r['completion_tokens']} tokens {r['tokens_per_second']:.2f} tok/s", flush=True)
    return {"parallel": parallel, "threads": threads, "load_before": load,
            "seconds_median": statistics.median(r["seconds"] for r in rounds),
            "tokens_per_second_median": statistics.median(r["tokens_per_second"] for r in rounds),
            "completion_tokens": [r["completion_tokens"] for r in rounds], "rounds": rounds}


def configs(text: str) -> list[tuple[int, int]]:
    """The --configs list: PARALLEL:THREADS pairs, comma-separated."""
    try:
        out = [tuple(int(x) for x in item.split(":")) for item in text.split(",") if item.strip()]
        if not out or any(len(c) != 2 or c[0] < 1 or c[1] < 0 for c in out):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use PARALLEL:THREADS pairs, e.g. 1:0,2:0") from None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=4, help="concurrent requests per round (default 4)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=120)
    p.add_argument("--configs", type=configs, default=configs("1:0,1:2,2:0"))
    p.add_argument("--mode", choices=("off", "gbnf", "typed"), default="typed")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    settings = Settings()
    convs = prompts(args.requests, settings)
    summary = [run_config(par, thr, args, convs, settings.llm.temperature) for par, thr in args.configs]
    print(f"\n{args.requests} concurrent requests, mode {args.mode}, max_tokens {args.max_tokens}, "
          f"{os.cpu_count()} cores")
    print(f"{'parallel':>8} {'threads':>8} {'load':>5} {'wall s':>7} {'tok/s':>6}")
    for s in summary:
        print(f"{s['parallel']:8} {s['threads'] or 'default':>8} {s['load_before']:5.1f} {s['seconds_median']:7.1f} "
              f"{s['tokens_per_second_median']:6.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
