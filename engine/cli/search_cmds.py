"""`autostrat evolve`: the search loop from the command line (new runs, resume, demo)."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import re
import signal
import sys
from pathlib import Path

from autostrat import __version__
from autostrat.cli.common import FLAG_SETTINGS, add_data_options, add_split_options, settings_from_args
from autostrat.config import Settings
from autostrat.search.constrain import MODES, constraint_for
from autostrat.data.load import load_data
from autostrat.data.universe import Universe
from autostrat.errors import EXIT_OK, EXIT_USAGE, AutostratError, ConfigError
from autostrat.search.llm import ChatModel, LlmProposer, ModelConfig, ModelError, llm_configured, load_env
from autostrat.search.loop import MutateProposer, Search, describe_reason, summary_table
from autostrat.search.nullrun import null_market, null_of, null_run_name, rebuild_market
from autostrat.sim.objective import Evaluator, Objective, make_evaluator
from autostrat.resources import example_path, grammar_path
from autostrat.search.runs import RunFolder

DEMO_ITERATIONS = 20
EXIT_INTERRUPTED = 130
SEARCH_FLAGS = {
    "proposer": "search.proposer", "objective": "search.objective", "iterations": "search.iterations",
    "population": "search.population", "max_fails": "search.max_fails", "seed": "search.seed",
    "max_total_tokens": "search.max_total_tokens", "runs_dir": "search.runs_dir", "constrain": "llm.constrain",
    "folds": "search.folds", "fold_mode": "search.fold_mode", "fold_agg": "search.fold_agg",
    "across": "search.across",
}
# Settings a resumed run must keep: changing them would change what the records mean.
IDENTITY = ("split.", "backtest.", "search.objective", "search.population", "search.seed", "search.folds",
            "search.fold_mode", "search.fold_agg", "search.across")

_HELP = """\
Search for a better strategy. Iteration 0 evaluates the baseline (--from, default the SMA 20/50
crossover); each later iteration proposes a candidate from a parent (a language model, or the
offline mutation proposer), checks it, evaluates it on train and validation, and keeps the best
--population by --objective. It stops after --max-fails failures in a row or --iterations.
With --folds N the objective is the mean (--fold-agg min: the worst) of its metric over N
walk-forward folds of train and validation (--fold-mode rolling: equal consecutive windows;
anchored: windows growing from the first bar). On a universe (--data SPY,QQQ,IWM or
universe:FILE) every metric is the mean (--across median or min) over the markets, and the model
sees each market's numbers.

At the end, the sealed test period is evaluated once for the final population and
runs/NAME/report.html is written (see `autostrat report`). --null also runs the same search, with
the same budget, on a synthetic market with the data's volatility (runs/NAME-null), so the report
can show what the search finds when there is nothing to find.

Every iteration is saved in runs/NAME/ as it completes. `autostrat evolve --run NAME` on an
existing run resumes it where it stopped. Ctrl-C stops after the current iteration.

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
                   "gbnf (llama.cpp servers), vllm, auto (ask the server) or off (default: llm.constrain, off)")
    p.add_argument("--seed", type=int, metavar="N", help="seed of the parent draws and the mutations (default 0)")
    p.add_argument("--from", dest="from_file", metavar="FILE", help="the baseline strategy (default: sma_cross)")
    p.add_argument("--runs-dir", metavar="DIR", help="folder of run folders (default: search.runs_dir, else runs)")
    p.add_argument("--folds", type=int, metavar="N",
                   help="walk-forward objective: the metric over N folds of train+validation (default 0: off)")
    p.add_argument("--fold-mode", choices=("rolling", "anchored"),
                   help="rolling: equal consecutive windows (default); anchored: windows grow from the first bar")
    p.add_argument("--fold-agg", choices=("mean", "min"), help="combine the folds by their mean (default) or minimum")
    p.add_argument("--across", choices=("mean", "median", "min"),
                   help="on a universe: combine the markets by their mean (default), median or minimum")
    p.add_argument("--null", action="store_true",
                   help="also run the same search on a synthetic market with the data's volatility (NAME-null)")
    p.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    p.add_argument("--demo", action="store_true",
                   help=f"offline demo: synthetic data, the mutate proposer, {DEMO_ITERATIONS} iterations")
    add_data_options(p)
    add_split_options(p)
    p.set_defaults(handler=run_evolve)


def run_evolve(args: argparse.Namespace) -> int:
    """Start or resume a run, search, print the summary; the exit code."""
    load_env()
    if args.demo:
        args.data = args.data or "synthetic"
        args.proposer = args.proposer or "mutate"
        args.iterations = args.iterations or DEMO_ITERATIONS
    fresh = settings_from_args(args, SEARCH_FLAGS)
    runs_dir = Path(fresh.search.runs_dir)
    name = args.run or _new_name(runs_dir, "demo" if args.demo else "run")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
        raise ConfigError(f"--run {name!r}: use letters, digits, '.', '_' and '-' (a folder name, no path)")
    path = runs_dir / name
    resume_cmd = f"autostrat evolve --run {name}" + (f" --runs-dir {runs_dir}" if str(runs_dir) != "runs" else "")
    if RunFolder.exists(path):
        run, settings, market = _resume(path, args, fresh)
        print(f"run: {name} (resuming: {_count(path)} iterations saved)", flush=True)
    else:
        settings = fresh
        _resolve_proposer(settings)
        run, market = _start(path, name, settings, args)
        print(f"run: {name} (new)", flush=True)
    universe = isinstance(market, Universe)
    if universe and args.null:
        raise ConfigError("--null runs on one market's matched noise; on a universe, run the null search per "
                          "market (--data ONE_MARKET --null)")
    objective = Objective.from_settings(settings.search, universe=universe)
    evaluator = make_evaluator(market, settings)
    label = (run.config.get("null_of") or {}).get("data_spec_name", market.name)  # a null run is told the real name
    proposer = _proposer(settings, objective, evaluator, label)
    print(f"proposer={proposer.name} data={market.name}{f' ({len(market)} markets)' if universe else ''} "
          f"objective={objective} "
          f"iterations={settings.search.iterations} population={settings.search.population} "
          f"max_fails={settings.search.max_fails} seed={settings.search.seed}", flush=True)
    base = run.config["baseline"]
    stop = {"requested": False}
    search = Search(run, settings, objective, evaluator, proposer, base["text"], base["path"],
                    out=lambda line: print(line, flush=True), should_stop=lambda: stop["requested"])
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
            outcome = _run_null(run, settings, market, objective, stop)
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


def _finish(path: Path, market) -> None:
    """Open the sealed test period for the final population, write the report, print its numbers."""
    from autostrat.report.build import summary_lines, write_report

    html_path, report = write_report(path, by="evolve", market=market)
    print("honest evaluation (train and validation statistics; test sealed until now):")
    for line in summary_lines(report):
        print(line)
    print(f"report: {html_path}", flush=True)


def _run_null(run: RunFolder, settings: Settings, market, objective: Objective, stop: dict):
    """The same search, same settings and budget, on the matched synthetic market; its outcome."""
    name = null_run_name(run.name)
    path = run.path.parent / name
    null = null_market(market, settings.search.seed)
    if RunFolder.exists(path):
        nrun = RunFolder.open(path)
        if (nrun.config.get("data") or {}).get("sha256") != null.sha256:
            raise ConfigError(f"{path}: this null run was made on another market; remove the folder to redo it")
        nrun.write_config(dict(nrun.config, settings=settings.to_dict()))  # the real run's current budget
    else:
        config = {k: v for k, v in run.config.items() if k not in ("null_run", "resumed")}
        config.update(run=null_run_name(run.name), settings=settings.to_dict(),
                      created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      null_of=null_of(run.name, market, settings.search.seed, null),
                      data=data_info(settings.data.spec, null))
        nrun = RunFolder.create(path, config)
    if run.config.get("null_run") != name:
        run.write_config(dict(run.config, null_run=name))
    evaluator = Evaluator(null, settings)
    info = nrun.config["null_of"]
    print(f"null run: {name} on {null.name}: daily volatility {info['null_daily_vol']:.5f} "
          f"(the data: {info['daily_vol']:.5f}), same settings and budget", flush=True)
    base = run.config["baseline"]
    search = Search(nrun, settings, objective, evaluator, _proposer(settings, objective, evaluator, market.name),
                    base["text"], base["path"], out=lambda line: print("null " + line, flush=True),
                    should_stop=lambda: stop["requested"])
    outcome = search.run()
    best = outcome.population[0].objective if outcome.population else float("nan")
    print(f"null run stopped: {describe_reason(outcome.reason, settings)} after {len(outcome.records)} iterations; "
          f"best {objective} on noise = {best:.4f}", flush=True)
    return outcome


def _new_name(runs_dir: Path, prefix: str) -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name, n = f"{prefix}-{stamp}", 1
    while (runs_dir / name).exists():
        n += 1
        name = f"{prefix}-{stamp}-{n}"
    return name


def _count(path: Path) -> int:
    return sum(1 for _ in path.glob("iter_*.json"))


def _resolve_proposer(settings: Settings) -> None:
    chosen = settings.search.proposer
    if chosen not in ("", "llm", "mutate"):
        raise ConfigError(f"search.proposer {chosen!r}: use llm or mutate")
    if not chosen:
        chosen = "llm" if llm_configured(settings.llm) else "mutate"
        if chosen == "mutate":
            print("no model configured (OPENAI_BASE_URL or OPENAI_API_KEY, in the environment or .env): "
                  "using the offline mutate proposer", flush=True)
    settings.search.proposer = chosen


def _check_numbers(settings: Settings) -> None:
    s = settings.search
    for key, low in (("iterations", 1), ("population", 1), ("max_fails", 1), ("repair_attempts", 0),
                     ("max_total_tokens", 0), ("learnings_budget_chars", 200)):
        if getattr(s, key) < low:
            raise ConfigError(f"search.{key} must be at least {low}, got {getattr(s, key)}")


def _start(path: Path, name: str, settings: Settings, args) -> tuple[RunFolder, object]:
    Objective.from_settings(settings.search)
    _check_numbers(settings)
    source = Path(args.from_file) if args.from_file else example_path("sma_cross")
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AutostratError(f"{source}: cannot read the baseline strategy ({exc})") from None
    market = load_data(settings.data.spec, settings.data)
    if isinstance(market, Universe) and args.null:
        raise ConfigError("--null runs on one market's matched noise; on a universe, run the null search per "
                          "market (--data ONE_MARKET --null)")
    evaluator = make_evaluator(market, settings)  # fails early when a period is empty
    config = {
        "autostrat_version": __version__, "run": name,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": settings.to_dict(), "data": data_info(settings.data.spec, market),
        "periods": evaluator.period_dates(), "returns_layout": evaluator.returns_layout,
        **({"folds": evaluator.fold_dates()} if evaluator.fold_spans else {}),
        "grammar_sha256": _grammar_sha(),
        "baseline": {"path": str(source), "text": text},
    }
    if settings.search.proposer == "llm":
        config["model"] = ModelConfig.resolve(settings.llm).public()
    return RunFolder.create(path, config), market


def _resume(path: Path, args, fresh: Settings):
    run = RunFolder.open(path)
    settings = Settings()
    settings.apply(run.config.get("settings", {}), source=str(path / "config.json"))
    settings.llm = fresh.llm  # how to reach the model may change between sessions
    mismatches = []
    for dest, dotted in {**FLAG_SETTINGS, **SEARCH_FLAGS}.items():
        value = getattr(args, dest, None)
        if value is None or dotted in ("search.runs_dir",):
            continue
        section, key = dotted.split(".")
        before = getattr(getattr(settings, section), key)
        settings.set(dotted, value, source=f"--{dest.replace('_', '-')}")
        after = getattr(getattr(settings, section), key)
        if after != before and dotted.startswith(IDENTITY):
            mismatches.append(f"{dotted}: the run has {before!r}, you gave {after!r}")
    if mismatches:
        raise ConfigError(f"{path}: cannot resume with different settings:\n  " + "\n  ".join(mismatches)
                          + "\nstart a new run with another --run NAME, or leave these flags out")
    if args.from_file and Path(args.from_file).read_text(encoding="utf-8") != run.config["baseline"]["text"]:
        raise ConfigError(f"{path}: the run started from another baseline ({run.config['baseline']['path']}); "
                          "leave --from out to resume it")
    _check_numbers(settings)
    market = load_data(settings.data.spec, settings.data)
    if not isinstance(market, Universe):
        market = rebuild_market(run.config, market)
    want = run.config.get("data", {}).get("sha256")
    if market.sha256 != want:
        raise ConfigError(f"{path}: the data changed since this run started: {settings.data.spec} now has "
                          f"sha256 {market.sha256[:16]}..., the run used {str(want)[:16]}... Resuming would mix "
                          "results from different data; start a new run with another --run NAME")
    if run.config.get("grammar_sha256") != _grammar_sha():
        print("warning: the strategy grammar changed since this run started; its strategies are re-read "
              "with the current one", file=sys.stderr)
    config = dict(run.config, settings=settings.to_dict())
    config.setdefault("resumed", []).append(datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    run.write_config(config)
    return run, settings, market


def data_info(spec: str, data) -> dict:
    """config.json's `data`: what the run searched, with the hash a resume checks."""
    if isinstance(data, Universe):
        return {"spec": spec, "name": data.name, "source": "universe", "sha256": data.sha256,
                "markets": [{"name": m.name, "source": m.source, "sha256": m.sha256, "bars": len(m),
                             "first": str(m.dates[0]), "last": str(m.dates[-1])} for m in data],
                "bars": sum(len(m) for m in data), "first": min(str(m.dates[0]) for m in data),
                "last": max(str(m.dates[-1]) for m in data)}
    return {"spec": spec, "name": data.name, "source": data.source, "sha256": data.sha256, "bars": len(data),
            "first": str(data.dates[0]), "last": str(data.dates[-1])}


def _proposer(settings: Settings, objective: Objective, evaluator, market: str):
    if settings.search.proposer == "mutate":
        return MutateProposer()
    if not llm_configured(settings.llm):
        raise ConfigError("the llm proposer needs a model endpoint: set OPENAI_BASE_URL (a local server such as "
                          "http://localhost:11434/v1) or OPENAI_API_KEY (OpenAI), in the environment or .env; "
                          "or use --proposer mutate")
    config = ModelConfig.resolve(settings.llm)
    constraint = constraint_for(settings.llm.constrain, config.base_url, config.api_key)
    print(constraint.describe(), flush=True)
    model = ChatModel(config, extra_body=constraint.extra_body)
    periods = {**evaluator.period_dates(), **({"folds": evaluator.fold_dates()} if evaluator.fold_spans else {})}
    return LlmProposer(model, settings, objective, periods, market)


def _grammar_sha() -> str:
    return hashlib.sha256(grammar_path().read_bytes()).hexdigest()


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
