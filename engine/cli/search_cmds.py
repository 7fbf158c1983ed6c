"""`autostrat evolve`: the search loop from the command line (new runs, resume, demo).

Parses the flags and prints; starting, resuming and the null run are autostrat.search.session's.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from pathlib import Path

from autostrat.cli.common import FLAG_SETTINGS, add_data_options, add_split_options, settings_from_args
from autostrat.data.universe import Universe
from autostrat.errors import EXIT_OK, EXIT_USAGE, ConfigError
from autostrat.search.constrain import MODES
from autostrat.search.llm import ModelError, load_env
from autostrat.search.loop import Search
from autostrat.search.memory import checked_text
from autostrat.search.summary import describe_reason, summary_table
from autostrat.search.runs import RunFolder
from autostrat.search.session import (NULL_ON_PORTFOLIO, NULL_ON_UNIVERSE, choose_proposer, make_proposer,
                                      new_run_name, resume_run, run_evaluator, run_null, start_run)
from autostrat.sim.objective import Objective

DEMO_ITERATIONS = 20
EXIT_INTERRUPTED = 130
SEARCH_FLAGS = {
    "proposer": "search.proposer", "objective": "search.objective", "iterations": "search.iterations",
    "population": "search.population", "max_fails": "search.max_fails", "seed": "search.seed",
    "max_total_tokens": "search.max_total_tokens", "runs_dir": "search.runs_dir", "constrain": "llm.constrain",
    "folds": "search.folds", "fold_mode": "search.fold_mode", "fold_agg": "search.fold_agg",
    "across": "search.across", "bar": "search.bar", "parallel": "search.parallel", "dedupe": "search.dedupe",
    "min_trades": "search.min_trades", "max_drawdown": "search.max_drawdown", "tune": "search.tune",
    "tune_pick": "search.tune_pick", "niches": "search.niches",
}

_HELP = """\
Search for a better strategy. Iteration 0 evaluates the baseline (--from, default the SMA 20/50
crossover); each later iteration proposes a candidate from a parent (a language model, or the
offline mutation proposer), checks it, evaluates it on train and validation, and keeps the best
--population by --objective. It stops after --max-fails failures in a row or --iterations.
With --folds N the objective is the mean (--fold-agg min: the worst) of its metric over N
walk-forward folds of train and validation (--fold-mode rolling: equal consecutive windows;
anchored: windows growing from the first bar). On a universe (--data SPY,QQQ,IWM or
universe:FILE) every metric is the mean (--across median or min) over the markets, and the model
sees each market's numbers. A portfolio baseline (--from a file with `hold` statements) searches
portfolio strategies on the universe --data names (synthetic-universe:... or any universe spec):
the objective reads the portfolio's metrics (also ic_mean, rank_ic_tstat, long_short_spread, ...).

At the end, the sealed test period is evaluated once for the final population and
runs/NAME/report.html is written (see `autostrat report`). --null also runs the same search, with
the same budget, on a synthetic market with the data's volatility (runs/NAME-null), so the report
can show what the search finds when there is nothing to find. --bar EXPR registers, before the
first iteration, the result you would believe; it is graded once at the end (PASS or FAIL, each
clause with its value, also in verdict.json) and cannot be changed on resume.

Memory across runs: --from takes strategy files and run folders (repeat it or give a comma
list); a run folder gives its final top-K, best first. The first strategy is the baseline and
each other one is evaluated as the next iteration before any proposal. --learnings-from RUN
starts the learnings (learnings.md and the prompts) from that run's. `autostrat evolve --run NAME
--add FILE` evaluates a strategy you wrote into the run as its next iteration, by the run's rules
(objective, constraints, tuning, duplicates), asks no proposer and does not open the sealed test;
resume the run afterwards to let the search go on from there.

With --parallel K each step asks for K candidates at once (a model gets K requests together) and
judges them in iteration order, as K iterations would be. --min-trades and --max-drawdown discard
candidates that trade too little or fall too deep, whatever their objective.

Every iteration is saved in runs/NAME/ as it completes. `autostrat evolve --run NAME` on an
existing run resumes it where it stopped. Ctrl-C stops after the current iteration (step).

  autostrat evolve --demo                      a short offline search on synthetic data
  autostrat evolve --run spy1 --data SPY       a new run named spy1 (resume: same command)
  OPENAI_BASE_URL=http://localhost:11434/v1 OPENAI_MODEL=qwen3:32b autostrat evolve --proposer llm

Exit codes: 0 finished, 2 usage or input error, or the model endpoint failed (resume later),
3 internal error, 130 interrupted (resume later).
"""


def register(sub) -> None:
    """Add the `evolve` subcommand."""
    p = sub.add_parser("evolve", help="search for better strategies (language model or mutation), resumable",
                       description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", metavar="NAME", help="run folder name under the runs folder; an existing run resumes "
                                                 "(default: a new run named after the time)")
    p.add_argument("--proposer", choices=("llm", "mutate"),
                   help="who writes candidates (default: llm when a model is configured, else mutate)")
    p.add_argument("--objective", metavar="PERIOD.METRIC",
                   help="what to maximise: a train or validation metric (default validation.total_return)")
    p.add_argument("--iterations", type=int, metavar="N", help="iteration cap, the baseline included (default 50)")
    p.add_argument("--population", type=int, metavar="K", help="how many best candidates are kept (default 3)")
    p.add_argument("--max-fails", type=int, metavar="N", help="stop after N failures in a row (default 5)")
    p.add_argument("--max-total-tokens", type=int, metavar="N", help="stop once the model used N tokens (0: no limit)")
    p.add_argument("--constrain", choices=MODES, help="constrain the model's answers to the strategy grammar: "
                   "typed (llama.cpp servers; every answer checks), gbnf (syntax only), vllm, openai (a grammar "
                   "tool), auto (ask the server) or off (default: llm.constrain; unset: auto on localhost, else "
                   "off)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the parent draws and the mutations (default 0)")
    p.add_argument("--from", dest="from_file", metavar="FILE|RUN", action="append",
                   help="starting strategies: files, or run folders (their top-K); repeat it or give a comma list; "
                        "the first is the baseline (default: sma_cross)")
    p.add_argument("--learnings-from", metavar="RUN", help="start the learnings from this run's (a new run only)")
    p.add_argument("--add", metavar="FILE", help="evaluate this strategy into the existing run --run NAME as its "
                                                  "next iteration, then exit (no proposer, no sealed test)")
    p.add_argument("--niches", action="store_true", default=None,
                   help="after a failure, draw the parent from the top-K and the best candidate of each "
                        "exposure x trades-per-year cell (docs/search.md); default off")
    p.add_argument("--runs-dir", metavar="DIR", help="folder of run folders (default: search.runs_dir, else runs)")
    p.add_argument("--folds", type=int, metavar="N",
                   help="walk-forward objective: the metric over N folds of train+validation (default 0: off)")
    p.add_argument("--fold-mode", choices=("rolling", "anchored"),
                   help="rolling: equal consecutive windows (default); anchored: windows grow from the first bar")
    p.add_argument("--fold-agg", choices=("mean", "min"), help="combine the folds by their mean (default) or minimum")
    p.add_argument("--across", choices=("mean", "median", "min"),
                   help="on a universe: combine the markets by their mean (default), median or minimum")
    p.add_argument("--bar", metavar="EXPR",
                   help="the pass bar, registered now and graded once at the end, e.g. "
                        "'test.sharpe > 0.5 and dsr >= 0.95 and spa_pvalue < 0.05' (docs/overfitting.md)")
    p.add_argument("--parallel", type=int, metavar="K",
                   help="candidates per step, proposed at once and judged in iteration order (default 1)")
    p.add_argument("--dedupe", choices=("behaviour", "text"),
                   help="a duplicate has the same signals on train and validation (behaviour, default) or "
                        "the same canonical text only (text)")
    p.add_argument("--min-trades", type=int, metavar="N",
                   help="discard a candidate with fewer than N trades in train or validation (default 0: off)")
    p.add_argument("--max-drawdown", type=float, metavar="X",
                   help="discard a candidate whose drawdown in train or validation is deeper than the fraction X "
                        "(e.g. 0.3; default 0: off)")
    p.add_argument("--tune", type=int, metavar="N",
                   help="evaluate up to N variants of each candidate's ranged params in bulk and score it as the "
                        "chosen one (default 0: off; every variant counts as a trial)")
    p.add_argument("--tune-pick", choices=("best", "robust"),
                   help="the variant chosen: best objective (default) or best median over its grid neighbours")
    p.add_argument("--null", action="store_true",
                   help="also run the same search on a synthetic market with the data's volatility (NAME-null)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    p.add_argument("--demo", action="store_true",
                   help=f"offline demo: synthetic data, the mutate proposer, {DEMO_ITERATIONS} iterations")
    add_data_options(p)
    add_split_options(p)
    p.set_defaults(handler=run_evolve)


def _say(line: str) -> None:
    print(line, flush=True)


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_evolve(args: argparse.Namespace) -> int:
    """Start or resume a run, search, print the summary; the exit code.

    The run's lock is released when the command ends, however it ends (the null run's is
    released by run_null).
    """
    try:
        return _evolve(args)
    finally:
        for run in _HELD:
            run.unlock()
        _HELD.clear()


_HELD: list[RunFolder] = []  # the run folder this command locked


def _evolve(args: argparse.Namespace) -> int:
    load_env()
    if args.demo:
        args.data = args.data or "synthetic"
        args.proposer = args.proposer or "mutate"
        args.iterations = args.iterations or DEMO_ITERATIONS
    fresh = settings_from_args(args, SEARCH_FLAGS)
    runs_dir = Path(fresh.search.runs_dir)
    name = args.run or new_run_name(runs_dir, "demo" if args.demo else "run")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise ConfigError(f"--run {name!r}: use letters, digits, '.', '_' and '-' (a folder name, no path)")
    path = runs_dir / name
    if args.add:
        return _add(args, fresh, path, name)
    resume_cmd = f"autostrat evolve --run {name}" + (f" --runs-dir {runs_dir}" if str(runs_dir) != "runs" else "")
    if RunFolder.exists(path):
        if args.learnings_from:
            raise ConfigError(f"--learnings-from: {path} exists; a run takes another run's learnings when it "
                              "starts. Leave the flag out to resume it, or start a new run with another --run NAME")
        count = sum(1 for _ in path.glob("iter_*.json"))
        run, settings, market = resume_run(path, fresh, _overrides(args), args.from_file, warn=_warn)
        _HELD.append(run)
        print(f"run: {name} (resuming: {count} iterations saved)", flush=True)
    else:
        settings = fresh
        choose_proposer(settings, out=_say)
        run, market = start_run(path, name, settings, args.from_file, null=args.null,
                                learnings_from=args.learnings_from)
        _HELD.append(run)
        print(f"run: {name} (new)", flush=True)
    universe, portfolio = isinstance(market, Universe), bool(run.config.get("portfolio"))
    if (universe or portfolio) and args.null:
        raise ConfigError(NULL_ON_PORTFOLIO if portfolio else NULL_ON_UNIVERSE)
    objective = Objective.from_settings(settings.search, universe=universe, portfolio=portfolio)
    evaluator = run_evaluator(market, settings)
    data_name = run.config["data"]["name"]
    label = (run.config.get("null_of") or {}).get("data_spec_name", data_name)  # a null run is told the real name
    proposer = make_proposer(settings, objective, evaluator, label, out=_say)
    size = f" ({len(market)} markets)" if universe else f" (portfolio of {market.n_assets} assets)" if portfolio else ""
    print(f"proposer={proposer.name} data={data_name}{size} "
          f"objective={objective} "
          f"iterations={settings.search.iterations} population={settings.search.population} "
          f"max_fails={settings.search.max_fails} seed={settings.search.seed}", flush=True)
    base = run.config["baseline"]
    stop = {"requested": False}
    search = Search(run, settings, objective, evaluator, proposer, base["text"], base["path"],
                    out=_say, should_stop=lambda: stop["requested"], starts=run.config.get("starts"))
    restore = _install_stop_handler(stop)  # kept through the null run and the report: Ctrl-C ends a step
    try:
        outcome = search.run()
        print(f"stopped: {describe_reason(outcome.reason, settings)} after {len(outcome.records)} iterations "
              f"({outcome.ran} in this session)")
        print(f"top {len(outcome.population)} by {objective}:")
        print(summary_table(outcome.population, objective))
        print(f"run folder: {path}")
        print(f"best: {path / 'best.strat'}", flush=True)
        if outcome.reason != "interrupted" and args.null:
            outcome = run_null(run, settings, market, objective, lambda: stop["requested"], out=_say)
        if outcome.reason != "interrupted" and not args.no_report and not stop["requested"]:
            _finish(path, market)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"the run stopped; {len(search.records)} iterations are saved in {path}. "
              f"Resume with: {resume_cmd}" + (" --null" if args.null else ""), file=sys.stderr)
        return EXIT_USAGE
    finally:
        restore()
    if outcome.reason == "interrupted" or stop["requested"]:
        print(f"resume with: {resume_cmd}" + (" --null" if args.null else ""), file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _add(args: argparse.Namespace, fresh, path: Path, name: str) -> int:
    """`evolve --run NAME --add FILE`: one hand-written iteration into an existing run, under its lock."""
    given = [flag for flag, value in (("--from", args.from_file), ("--learnings-from", args.learnings_from),
                                      ("--demo", args.demo), ("--null", args.null)) if value]
    if given:
        raise ConfigError(f"--add: cannot be combined with {', '.join(given)}; --add evaluates one strategy into "
                          "an existing run by that run's settings")
    if not args.run or not RunFolder.exists(path):
        raise ConfigError(f"--add: {path} is not a run; give an existing run with --run NAME (and --runs-dir "
                          "when it is elsewhere)")
    text = checked_text(args.add)
    run, settings, market = resume_run(path, fresh, _overrides(args), None, warn=_warn)
    _HELD.append(run)
    objective = Objective.from_settings(settings.search, universe=isinstance(market, Universe),
                                        portfolio=bool(run.config.get("portfolio")))
    base = run.config["baseline"]
    search = Search(run, settings, objective, run_evaluator(market, settings), None, base["text"], base["path"],
                    out=_say, starts=run.config.get("starts"))
    record = search.add(text, args.add)
    print(f"added {args.add} to {name} as iteration {record['iteration']}: {record['status']}"
          + (f" ({record['constraint']})" if record.get("constraint") else ""))
    print(f"top {len(search.population)} by {objective}:")
    print(summary_table(search.population, objective))
    print(f"resume the search with: autostrat evolve --run {name}"
          + (f" --runs-dir {args.runs_dir}" if args.runs_dir else ""), flush=True)
    return EXIT_OK


def _overrides(args: argparse.Namespace) -> list[tuple[str, object, str]]:
    """The settings given as flags, as resume_run takes them: (dotted, value, which flag)."""
    out = []
    for dest, dotted in {**FLAG_SETTINGS, **SEARCH_FLAGS}.items():
        value = getattr(args, dest, None)
        if value is None or dotted in ("search.runs_dir",):
            continue
        out.append((dotted, value, f"--{dest.replace('_', '-')}"))
    return out


def _finish(path: Path, market) -> None:
    """Open the sealed test period for the final population, write the report, print its numbers."""
    from autostrat.report.build import summary_lines, write_report

    html_path, report = write_report(path, by="evolve", market=market)
    for notice in report.get("notices", []):
        print(f"warning: {notice}", file=sys.stderr)
    print("honest evaluation (train and validation statistics; test sealed until now):")
    for line in summary_lines(report):
        print(line)
    print(f"report: {html_path}", flush=True)


def _install_stop_handler(stop: dict):
    """First Ctrl-C (or SIGTERM): finish and save the current iteration, then stop. Second: stop now."""
    def handler(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping after the current iteration is saved (Ctrl-C again to stop now)", file=sys.stderr,
              flush=True)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (embedded use): keep the default behaviour
            pass

    def restore():
        for sig, old in previous.items():
            signal.signal(sig, old)
    return restore
