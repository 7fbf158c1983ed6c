"""The local model with and without the grammar constraints: how many answers parse and check, and how fast.

Run by hand (it needs the `local` extra and takes a while on 2 cores):

    python benchmarks/bench_local_model.py [--prompts 20] [--max-tokens 300] [--typed-max-tokens 2048]
                                           [--seed 7] [--threads N] [--modes off,gbnf,typed] [--evolve 10]

It starts SmolLM2-135M-Instruct with `autostrat.search.local.LocalServer`, builds `--prompts` real search
prompts (program.md and an iteration prompt whose parent is one of the example strategies, with
varied iteration numbers and learnings), and asks each once unconstrained (`off`), once with the
syntax-only GBNF grammar (`gbnf`) and once with the typed grammar (`typed`), as the llm proposer
would (its temperature, its token limit, and under a constraint the system prompt's constrained
answer format); `--modes` picks the conditions and their order. `off` and `gbnf` answers stop at
`--max-tokens`; `typed` ones at `--typed-max-tokens` (by default [llm] max_tokens), which also
picks the typed grammar's bounds, as a run does, so that none can be cut off. For each condition it prints
the share of answers that contain a strategy, parse and check, how many were cut off at the
token limit; completion tokens per second; and seconds per answer (one iteration's model time
without repairs). With `--evolve N` it then runs
`autostrat evolve --proposer llm --constrain typed --iterations N` against the same server and
counts the iterations that were evaluated (not invalid, duplicate or failed) and whether any beat
the baseline. A JSON summary goes to the last line of the output.
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
from autostrat.search.prompting import constrained_format, iteration_prompt, read_answer, system_prompt
from autostrat.resources import examples_dir

MODES = ("off", "gbnf", "typed")
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
        for mode in args.modes if args.prompts else ():  # --prompts 0: the evolve run alone
            rows = []
            limit = args.typed_max_tokens if mode == "typed" else args.max_tokens
            body = request_body(mode, max_tokens=limit if mode == "typed" else None)
            for n, messages in enumerate(convs):
                if mode != "off":  # what LlmProposer sends under a constraint
                    messages = [{"role": "system", "content": messages[0]["content"] + "\n\n"
                                 + constrained_format(mode, limit if mode == "typed" else None)}, *messages[1:]]
                start = time.monotonic()
                r = client.chat.completions.create(model=MODEL_ALIAS, messages=messages,
                                                   temperature=settings.llm.temperature, max_tokens=limit,
                                                   extra_body=body or None)
                seconds = time.monotonic() - start
                text = r.choices[0].message.content or ""
                row = {"seconds": seconds, "completion": r.usage.completion_tokens, "prompt": r.usage.prompt_tokens,
                       "finish": r.choices[0].finish_reason, **judge(text)}
                rows.append(row)
                print(f"{mode:5} {n + 1:3}/{len(convs)} {seconds:6.1f}s {row['completion']:4} tokens "
                      f"finish={row['finish']:6} strategy={row['strategy']!s:5} parses={row['parses']!s:5} "
                      f"checks={row['checks']}", flush=True)
            summary[mode] = summarise(rows)
        if args.evolve:
            summary["evolve_typed"] = evolve(server, args.evolve, args.typed_max_tokens)
    return summary


def evolve(server, iterations: int, max_tokens: int) -> dict:
    """`autostrat evolve --proposer llm --constrain typed` in a scratch folder: what its iterations became."""
    import contextlib
    import io
    import os
    import tempfile
    from pathlib import Path

    from autostrat.cli import main as cli

    with tempfile.TemporaryDirectory() as tmp:
        old = os.getcwd()
        os.chdir(tmp)
        saved = {k: os.environ.get(k) for k in server.environment()}
        os.environ.update(server.environment())
        try:
            Path("autostrat.toml").write_text(f"[llm]\nmax_tokens = {max_tokens}\ntimeout = 1800\nmax_retries = 0\n")
            start = time.monotonic()
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                code = cli(["evolve", "--run", "bench", "--data", "synthetic:bars=2000", "--train-end", "2003-12-31",
                            "--validation-start", "2004-01-01", "--validation-end", "2004-12-31",
                            "--test-start", "2005-01-01", "--runs-dir", "runs", "--proposer", "llm",
                            "--constrain", "typed", "--iterations", str(iterations)])
            seconds = time.monotonic() - start
            records = [json.loads(p.read_text()) for p in sorted(Path("runs/bench").glob("iter_*.json"))]
        finally:
            os.chdir(old)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    base = next((r.get("objective") for r in records if r["iteration"] == 0), None)
    tried = [r for r in records if r["iteration"] > 0]
    evaluated = [r for r in tried if r.get("status") in ("keep", "discard")]
    better = [r for r in evaluated if base is not None and r.get("objective") is not None and r["objective"] > base]
    statuses = {}
    for r in tried:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    print(f"evolve --constrain typed: exit {code}, {len(evaluated)} of {len(tried)} iterations evaluated "
          f"{statuses}, {len(better)} beat the baseline, {seconds:.0f}s", flush=True)
    return {"exit": code, "iterations": len(tried), "evaluated": len(evaluated), "statuses": statuses,
            "beat_baseline": len(better), "seconds": seconds}


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


def modes(text: str) -> tuple[str, ...]:
    """The --modes list: known conditions, comma-separated."""
    out = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in out if m not in MODES]
    if unknown or not out:
        raise argparse.ArgumentTypeError(f"unknown condition {', '.join(unknown) or '(none)'}: use {','.join(MODES)}")
    return out


def main() -> None:
    """Parse the flags, run, print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=20, help="prompts per condition (0: only the --evolve run)")
    p.add_argument("--max-tokens", type=int, default=300, help="the token limit of the off and gbnf answers")
    p.add_argument("--typed-max-tokens", type=int, default=Settings().llm.max_tokens,
                   help="the token limit of the typed answers and the evolve run; it picks the typed grammar's "
                        "bounds (default: [llm] max_tokens, %(default)s)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="server threads (default: llama-cpp-python's)")
    p.add_argument("--modes", type=modes, default=MODES, help="conditions to run, in order (default: off,gbnf,typed)")
    p.add_argument("--evolve", type=int, default=0, metavar="N",
                   help="then run evolve --constrain typed for N iterations (default: skip)")
    args = p.parse_args()
    summary = run(args)
    print(f"\n{'condition':10} {'answers':>7} {'strategy':>8} {'parses':>7} {'checks':>7} {'cut':>4} {'tok/s':>6} "
          f"{'s/answer':>8}")
    for mode, s in summary.items():
        if mode not in MODES:
            continue
        print(f"{mode:10} {s['answers']:7} {s['strategy']:8.0%} {s['parses']:7.0%} {s['checks']:7.0%} "
              f"{s['cut_by_max_tokens']:4} {s['completion_tokens_per_second']:6.1f} {s['seconds_per_answer_mean']:8.1f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
