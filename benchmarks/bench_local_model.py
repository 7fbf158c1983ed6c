"""The local model with and without the grammar constraint: how many answers parse and check, and how fast.

Run by hand (it needs the `local` extra and takes a while on 2 cores):

    python benchmarks/bench_local_model.py [--prompts 20] [--max-tokens 300] [--seed 7] [--threads N]

It starts SmolLM2-135M-Instruct with `autostrat.search.local.LocalServer`, builds `--prompts` real search
prompts (program.md and an iteration prompt whose parent is one of the example strategies, with
varied iteration numbers and learnings), and asks each once unconstrained and once with the GBNF
grammar, as the llm proposer would (its temperature and token limit). For each condition it
prints the share of answers that contain a strategy, parse and check; completion tokens per
second; and seconds per answer (one iteration's model time without repairs). A JSON summary goes
to the last line of the output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from autostrat.lang.check import check
from autostrat.config import Settings
from autostrat.search.constrain import request_body
from autostrat.errors import StrategyError
from autostrat.search.local import MODEL_ALIAS, LocalServer
from autostrat.search.population import Member
from autostrat.sim.objective import Objective
from autostrat.lang.parse import parse
from autostrat.search.prompting import iteration_prompt, read_answer, system_prompt
from autostrat.resources import examples_dir

PERIODS = {"train": {"first": "2000-01-03", "last": "2003-12-31", "bars": 1000},
           "validation": {"first": "2004-01-02", "last": "2004-12-31", "bars": 252}}
LEARNINGS = ["", "- iteration 1: a longer slow average cut trades; validation return fell.",
             "- iteration 2: an RSI filter kept the win rate but halved exposure.\n- iteration 3: a 5% stop_loss "
             "helped on train only."]


def prompts(count: int, settings: Settings) -> list[list[dict[str, str]]]:
    """`count` conversations: the system prompt and an iteration prompt over an example parent."""
    objective = Objective.parse(settings.search.objective)
    system = system_prompt(settings, objective, PERIODS, "synthetic")
    examples = sorted(examples_dir().glob("*.strat"))
    out = []
    for i in range(count):
        text = examples[i % len(examples)].read_text(encoding="utf-8")
        parent = Member(iteration=i % 4, objective=0.05 * (i % 7), metrics={}, text=text)
        user = iteration_prompt(settings, objective, 1 + i % 9, parent, [parent], LEARNINGS[i % len(LEARNINGS)],
                                None, i % 3)
        out.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
    return out


def judge(text: str) -> dict[str, bool]:
    """Whether an answer holds a strategy, and whether that parses and checks."""
    answer = read_answer(text)
    source = answer.strategy if answer.strategy is not None else text
    result = {"strategy": answer.strategy is not None, "parses": False, "checks": False}
    try:
        program = parse(source, "answer.strat")
        result["parses"] = True
        check(program)
        result["checks"] = True
    except StrategyError:
        pass
    return result


def run(args) -> dict:
    """Both conditions over the same prompts; the summary."""
    settings = Settings()
    convs = prompts(args.prompts, settings)
    summary = {}
    with LocalServer(n_ctx=8192, seed=args.seed, threads=args.threads) as server:
        import openai

        client = openai.OpenAI(base_url=server.base_url, api_key="not-needed", timeout=1800, max_retries=0)
        for mode in ("off", "gbnf"):
            rows = []
            for n, messages in enumerate(convs):
                start = time.monotonic()
                r = client.chat.completions.create(model=MODEL_ALIAS, messages=messages,
                                                   temperature=settings.llm.temperature, max_tokens=args.max_tokens,
                                                   extra_body=request_body(mode) or None)
                seconds = time.monotonic() - start
                text = r.choices[0].message.content or ""
                row = {"seconds": seconds, "completion": r.usage.completion_tokens, "prompt": r.usage.prompt_tokens,
                       "finish": r.choices[0].finish_reason, **judge(text)}
                rows.append(row)
                print(f"{mode:5} {n + 1:3}/{len(convs)} {seconds:6.1f}s {row['completion']:4} tokens "
                      f"finish={row['finish']:6} strategy={row['strategy']!s:5} parses={row['parses']!s:5} "
                      f"checks={row['checks']}", flush=True)
            summary[mode] = summarise(rows)
    return summary


def summarise(rows: list[dict]) -> dict:
    """Shares, throughput and time per answer over one condition's rows."""
    n = len(rows)
    tokens = sum(r["completion"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    return {"answers": n, "strategy": sum(r["strategy"] for r in rows) / n, "parses": sum(r["parses"] for r in rows) / n,
            "checks": sum(r["checks"] for r in rows) / n, "cut_by_max_tokens": sum(r["finish"] == "length" for r in rows),
            "completion_tokens_per_second": tokens / seconds if seconds else 0.0,
            "seconds_per_answer_mean": seconds / n, "seconds_per_answer_median": statistics.median(r["seconds"] for r in rows),
            "completion_tokens_mean": tokens / n}


def main() -> None:
    """Parse the flags, run, print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=300)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="server threads (default: llama-cpp-python's)")
    args = p.parse_args()
    summary = run(args)
    print(f"\n{'condition':10} {'answers':>7} {'strategy':>8} {'parses':>7} {'checks':>7} {'cut':>4} {'tok/s':>6} "
          f"{'s/answer':>8}")
    for mode, s in summary.items():
        print(f"{mode:10} {s['answers']:7} {s['strategy']:8.0%} {s['parses']:7.0%} {s['checks']:7.0%} "
              f"{s['cut_by_max_tokens']:4} {s['completion_tokens_per_second']:6.1f} {s['seconds_per_answer_mean']:8.1f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
