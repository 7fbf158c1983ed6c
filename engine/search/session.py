"""Starting and resuming a run: its config.json, its data, its proposer, its null run.

`autostrat evolve` is a thin layer over these functions; a notebook calls them the same way:

    run, market = start_run(Path("runs/spy1"), "spy1", settings)          # or resume_run(...)
    search = Search(run, settings, objective, run_evaluator(market, settings), make_proposer(...),
                    run.config["baseline"]["text"], run.config["baseline"]["path"])
    outcome = search.run()

config.json (written once by `start_run`, updated by `resume_run` and `run_null`):

    {"autostrat_version", "run", "created": UTC ISO 8601, "settings": Settings.to_dict(),
     "data": data_info(...) (spec, name, source, sha256, bars, first, last; markets on a universe),
     "periods": {period: {first, last, bars}}, "returns_layout", "returns_series" (on a universe: what
     the returns files hold), "folds" (with walk-forward folds),
     "grammar_sha256", "baseline": {"path", "text"}, "model" (llm proposer: model and base_url),
     "portfolio": true on a portfolio run (its baseline has `hold` statements; data a Panel),
     the pass bar in settings.search.bar (checked by `start_run`, fixed from then on),
     "resumed": [UTC times], "null_run": NAME-null, or in a null run "null_of": what it matches,
     "sealed_openings": how often the sealed test was opened (autostrat.honest.sealed)}

`start_run` and `resume_run` return the run locked for this process (RunFolder.lock): a second
process on it is refused until `run.unlock()` or the end of this one. Everything a start needs
(the baseline checks, the model endpoint, replacement prompts, the data) is checked before the
folder is made, so a failed start leaves nothing behind.
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any, Callable

from autostrat import __version__
from autostrat.config import Settings
from autostrat.data.load import load_data
from autostrat.data.panel import Panel
from autostrat.data.panel_spec import load_panel
from autostrat.data.universe import Universe
from autostrat.errors import ConfigError
from autostrat.lang.parse import parse
from autostrat.resources import example_path, grammar_path
from autostrat.search.bar import parse_bar
from autostrat.search.constrain import constraint_for
from autostrat.search.llm import ChatModel, LlmProposer, ModelConfig, llm_configured
from autostrat.search.loop import Search
from autostrat.search.memory import (Start, checked_text, inherited_learnings, resolve_from, same_starts,
                                     split_specs, starts_config)
from autostrat.search.proposal import MutateProposer
from autostrat.search.summary import describe_reason
from autostrat.search.prompting import check_prompts_dir
from autostrat.search.nullrun import null_market, null_of, null_run_name, rebuild_market
from autostrat.search.runs import RunFolder
from autostrat.search.tune import MAX_TUNE, PICKS
from autostrat.sim.evaluator import Evaluator, make_evaluator
from autostrat.sim.objective import Objective
from autostrat.sim.portfolio_evaluator import PortfolioEvaluator

# Settings a resumed run must keep: changing them would change what the records mean.
IDENTITY = ("split.", "backtest.", "search.objective", "search.population", "search.seed", "search.folds",
            "search.fold_mode", "search.fold_agg", "search.across")
SPA_REPS = (100, 20_000)  # the range of search.spa_reps: a test worth reading, at a bounded cost
NULL_ON_UNIVERSE = ("--null runs on one market's matched noise; on a universe, run the null search per "
                    "market (--data ONE_MARKET --null)")
NULL_ON_PORTFOLIO = ("--null runs on one market's matched noise; for a portfolio run, search the null universe "
                     "instead: --data synthetic-universe:premium=0 (same seed and size)")

Out = Callable[[str], None]
MAX_PARALLEL = 64  # candidates per step: each is a thread and an open request to the model


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def grammar_sha() -> str:
    """The sha256 of the strategy grammar a run's strategies are read with."""
    return hashlib.sha256(grammar_path().read_bytes()).hexdigest()


def new_run_name(runs_dir: Path, prefix: str) -> str:
    """PREFIX-YYYYmmdd-HHMMSS, with -2, -3, ... when that folder exists."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name, n = f"{prefix}-{stamp}", 1
    while (runs_dir / name).exists():
        n += 1
        name = f"{prefix}-{stamp}-{n}"
    return name


def check_numbers(settings: Settings, portfolio: bool = False) -> None:
    """ConfigError when a search budget setting is below its minimum (or spa_reps outside its range),
    or a setting a portfolio run cannot honour is on in one."""
    s = settings.search
    if portfolio and (s.min_trades or s.niches):  # both count round trips, which a portfolio does not make
        what = f"search.min_trades {s.min_trades}" if s.min_trades else "search.niches"
        raise ConfigError(f"{what}: a portfolio has no round trips to count; leave --min-trades and --niches out "
                          "of a portfolio run")
    for key, low in (("iterations", 1), ("population", 1), ("max_fails", 1), ("repair_attempts", 0),
                     ("max_total_tokens", 0), ("learnings_budget_chars", 200), ("parallel", 1), ("min_trades", 0)):
        if getattr(s, key) < low:
            raise ConfigError(f"search.{key} must be at least {low}, got {getattr(s, key)}")
    if s.parallel > MAX_PARALLEL:
        raise ConfigError(f"search.parallel must be at most {MAX_PARALLEL} candidates per step, got {s.parallel}")
    if not 0.0 <= s.max_drawdown < 1.0:
        raise ConfigError(f"search.max_drawdown must be a fraction from 0 (off) to below 1, e.g. 0.25 for a 25% "
                          f"fall, got {s.max_drawdown}")
    if not 0 <= s.tune <= MAX_TUNE:
        raise ConfigError(f"search.tune must be from 0 (off) to {MAX_TUNE} variants per candidate, got {s.tune}")
    if s.tune_pick not in PICKS:
        raise ConfigError(f"search.tune_pick {s.tune_pick!r}: use best or robust")
    if s.dedupe not in ("behaviour", "text"):
        raise ConfigError(f"search.dedupe {s.dedupe!r}: use behaviour or text")
    if not SPA_REPS[0] <= s.spa_reps <= SPA_REPS[1]:
        raise ConfigError(f"search.spa_reps must be from {SPA_REPS[0]} to {SPA_REPS[1]}, got {s.spa_reps}")


def check_bar_change(path: Path, registered: str, given: str, portfolio: bool = False) -> None:
    """ConfigError unless `given` is the bar the run registered (spacing aside): a bar never changes."""
    def canonical(text: str) -> str:
        return str(parse_bar(text, portfolio)) if text.strip() else ""
    if canonical(given) != canonical(registered):
        before = f"the bar {registered!r}" if registered.strip() else "no bar"
        raise ConfigError(f"{path}: cannot resume with --bar {given!r}: the run registered {before} before its "
                          "first iteration, and a bar set after the results are in is no bar at all. Resume "
                          "without --bar (the registered one is graded), or start a new run with another --run NAME")


def choose_proposer(settings: Settings, out: Out = print) -> None:
    """Resolve an empty search.proposer: llm when a model is configured, else mutate (said via `out`)."""
    chosen = settings.search.proposer
    if chosen not in ("", "llm", "mutate"):
        raise ConfigError(f"search.proposer {chosen!r}: use llm or mutate")
    if not chosen:
        chosen = "llm" if llm_configured(settings.llm) else "mutate"
        if chosen == "mutate":
            out("no model configured (OPENAI_BASE_URL or OPENAI_API_KEY, in the environment or .env): "
                "using the offline mutate proposer")
    settings.search.proposer = chosen


def data_info(spec: str, data) -> dict:
    """config.json's `data`: what the run searched, with the hash a resume checks."""
    if isinstance(data, Panel):
        return {"spec": spec, "name": data.spec or "universe", "source": "panel", "sha256": data.sha256,
                "assets": data.n_assets, "bars": len(data), "first": str(data.dates[0]),
                "last": str(data.dates[-1])}
    if isinstance(data, Universe):
        return {"spec": spec, "name": data.name, "source": "universe", "sha256": data.sha256,
                "markets": [{"name": m.name, "source": m.source, "sha256": m.sha256, "bars": len(m),
                             "first": str(m.dates[0]), "last": str(m.dates[-1])} for m in data],
                "bars": sum(len(m) for m in data), "first": min(str(m.dates[0]) for m in data),
                "last": max(str(m.dates[-1]) for m in data)}
    return {"spec": spec, "name": data.name, "source": data.source, "sha256": data.sha256, "bars": len(data),
            "first": str(data.dates[0]), "last": str(data.dates[-1])}


def load_run_data(run: RunFolder, settings: Settings, consequence: str, *, required: bool = True):
    """The market (or universe) a run searched, checked against the sha256 in its config.json.

    A null run's market is rebuilt from the real one. The one "data changed since the run began"
    check: ConfigError ending with `consequence` (what using other data would do). With
    `required=False` a config.json without a hash is accepted.
    """
    if run.config.get("portfolio"):
        market = load_panel(settings.data.spec, settings.data)
    else:
        market = load_data(settings.data.spec, settings.data)
        if not isinstance(market, Universe):
            market = rebuild_market(run.config, market)
    want = (run.config.get("data") or {}).get("sha256")
    if (want or required) and market.sha256 != want:
        raise ConfigError(f"{run.path}: the data changed since this run started: {settings.data.spec} now has "
                          f"sha256 {market.sha256[:16]}..., the run used {str(want)[:16]}...{consequence}")
    return market


def start_run(path: Path, name: str, settings: Settings, baseline: str | Path | list[str] | None = None, *,
              null: bool = False, learnings_from: str | None = None) -> tuple[RunFolder, Any]:
    """Create run folder `path` with its config.json; the run and its market (or universe).

    `baseline` is what `--from` names: strategy files and run folders (autostrat.search.memory),
    the first strategy being iteration 0 (default: the sma_cross example). `learnings_from`: a
    run whose learnings this one starts from. `null`: the run will also be searched on matched
    noise, which needs a single market.
    A portfolio baseline makes a portfolio run (`"portfolio": true` in config.json): the data
    is loaded as a Panel and only portfolio strategies are candidates.
    """
    runs_dir = Path(settings.search.runs_dir)
    starts = resolve_from(baseline, runs_dir) if split_specs(baseline) else [_default_baseline()]
    portfolio = parse(starts[0].text, starts[0].path).is_portfolio
    Objective.from_settings(settings.search, portfolio=portfolio)
    check_numbers(settings, portfolio)
    if settings.search.bar.strip():
        parse_bar(settings.search.bar, portfolio)
    prior = inherited_learnings(learnings_from, runs_dir) if learnings_from else None
    check_model(settings)
    if portfolio and null:
        raise ConfigError(NULL_ON_PORTFOLIO)
    market = load_panel(settings.data.spec, settings.data) if portfolio else load_data(settings.data.spec,
                                                                                       settings.data)
    if isinstance(market, Universe) and null:
        raise ConfigError(NULL_ON_UNIVERSE)
    evaluator = run_evaluator(market, settings)  # fails early when a period is empty
    config = {
        "autostrat_version": __version__, "run": name, "created": _now(),
        "settings": settings.to_dict(), "data": data_info(settings.data.spec, market),
        "periods": evaluator.period_dates(), "returns_layout": evaluator.returns_layout,
        **({"returns_series": evaluator.returns_series} if evaluator.returns_series else {}),
        **({"folds": evaluator.fold_dates()} if evaluator.fold_spans else {}),
        "grammar_sha256": grammar_sha(),
        **({"portfolio": True} if portfolio else {}),
        **starts_config(starts),
        **({"learnings_from": {"run": prior[0], "text": prior[1]}} if prior else {}),
    }
    if settings.search.proposer == "llm":
        config["model"] = ModelConfig.resolve(settings.llm).public()
    return RunFolder.create(path, config, lock="evolve"), market


def _default_baseline() -> Start:
    source = example_path("sma_cross")
    return Start(str(source), checked_text(source, "baseline strategy"), str(source))


def resume_run(path: Path, fresh: Settings, overrides: list[tuple[str, Any, str]], baseline: str | Path | None = None,
               warn: Out = print) -> tuple[RunFolder, Settings, Any]:
    """Reopen run folder `path`: its run, its settings with `overrides` applied, and its market.

    `overrides` lists (dotted setting, value, where it came from), e.g. ("search.iterations", 80,
    "--iterations"); changing one of the IDENTITY settings is a ConfigError, as is another
    `baseline` or other data. How to reach the model comes from `fresh`: it may change between
    sessions. `warn` gets a line when the grammar changed since the run started.
    """
    run = RunFolder.open(path).lock("evolve")
    try:
        return _resume(run, path, fresh, overrides, baseline, warn)
    except BaseException:
        run.unlock()
        raise


def _resume(run: RunFolder, path: Path, fresh: Settings, overrides, baseline, warn: Out):
    settings = Settings()
    settings.apply(run.config.get("settings", {}), source=str(path / "config.json"))
    settings.llm = fresh.llm
    mismatches = []
    for dotted, value, source in overrides:
        if dotted == "search.bar":
            check_bar_change(path, settings.search.bar, str(value), bool(run.config.get("portfolio")))
            continue
        section, key = dotted.split(".")
        before = getattr(getattr(settings, section), key)
        settings.set(dotted, value, source=source)
        after = getattr(getattr(settings, section), key)
        if after != before and dotted.startswith(IDENTITY):
            mismatches.append(f"{dotted}: the run has {before!r}, you gave {after!r}")
    if mismatches:
        raise ConfigError(f"{path}: cannot resume with different settings:\n  " + "\n  ".join(mismatches)
                          + "\nstart a new run with another --run NAME, or leave these flags out")
    if split_specs(baseline) and not same_starts(run.config, resolve_from(baseline, Path(fresh.search.runs_dir))):
        raise ConfigError(f"{path}: the run started from another baseline ({run.config['baseline']['path']}) or "
                          "other starting strategies; leave --from out to resume it")
    check_numbers(settings, bool(run.config.get("portfolio")))
    market = load_run_data(run, settings, " Resuming would mix results from different data; start a new run "
                                          "with another --run NAME")
    if isinstance(market, Universe) and not run.config.get("returns_series"):
        raise ConfigError(f"{path}: this universe run's returns files hold the markets' returns laid end to end, "
                          "and new iterations keep the equal-weight average across markets; the two cannot be "
                          "mixed in one run's statistics. Start a new run with another --run NAME")
    if run.config.get("grammar_sha256") != grammar_sha():
        warn("warning: the strategy grammar changed since this run started; its strategies are re-read "
             "with the current one")
    config = dict(run.config, settings=settings.to_dict())
    config.setdefault("resumed", []).append(_now())
    run.write_config(config)
    return run, settings, market


def run_evaluator(data, settings: Settings):
    """The evaluator of a run's data: PortfolioEvaluator on a Panel (a portfolio run), else make_evaluator's."""
    return PortfolioEvaluator(data, settings) if isinstance(data, Panel) else make_evaluator(data, settings)


def check_model(settings: Settings, out: Out | None = None) -> None:
    """What the llm proposer needs, checked: a model endpoint and any replacement prompt templates.

    `out`, when given, hears which templates are replaced.
    """
    if settings.search.proposer != "llm":
        return
    for name in check_prompts_dir(settings.search.prompts_dir):
        if out:
            out(f"prompts: {name}.md from {settings.search.prompts_dir}")
    if not llm_configured(settings.llm):
        raise ConfigError("the llm proposer needs a model endpoint: set OPENAI_BASE_URL (a local server such as "
                          "http://localhost:11434/v1) or OPENAI_API_KEY (OpenAI), in the environment or .env; "
                          "or use --proposer mutate")


def make_proposer(settings: Settings, objective: Objective, evaluator, market: str, out: Out = print):
    """The proposer search.proposer names: MutateProposer, or LlmProposer on the configured model."""
    if settings.search.proposer == "mutate":
        return MutateProposer()
    check_model(settings, out)
    config = ModelConfig.resolve(settings.llm)
    portfolio = bool(getattr(evaluator, "portfolio", False))
    mode = settings.llm.constrain
    if portfolio and mode not in ("", "auto", "off"):
        raise ConfigError(f"llm.constrain {mode}: the exported grammars write single-market strategies, so a "
                          "portfolio run cannot constrain the model's answers; use --constrain off")
    # A portfolio run's answers are checked and repaired, never constrained (see the error above).
    constraint = constraint_for("off" if portfolio else mode, config.base_url, config.api_key,
                                max_tokens=config.max_tokens)
    out(constraint.describe())
    model = ChatModel(config, extra_body=constraint.extra_body)
    periods = {**evaluator.period_dates(), **({"folds": evaluator.fold_dates()} if evaluator.fold_spans else {})}
    return LlmProposer(model, settings, objective, periods, market, constraint.mode, portfolio)


def run_null(run: RunFolder, settings: Settings, market, objective: Objective,
             should_stop: Callable[[], bool] = lambda: False, out: Out = print):
    """The same search, same settings and budget, on the matched synthetic market; its outcome.

    The null run's folder is NAME-null beside `run`; a second call resumes it.
    """
    name = null_run_name(run.name)
    path = run.path.parent / name
    null = null_market(market, settings.search.seed)
    if RunFolder.exists(path):
        nrun = RunFolder.open(path).lock("evolve --null")
        if (nrun.config.get("data") or {}).get("sha256") != null.sha256:
            nrun.unlock()
            raise ConfigError(f"{path}: this null run was made on another market; remove the folder to redo it")
        nrun.write_config(dict(nrun.config, settings=settings.to_dict()))  # the real run's current budget
    else:
        config = {k: v for k, v in run.config.items() if k not in ("null_run", "resumed")}
        config.update(run=null_run_name(run.name), settings=settings.to_dict(), created=_now(),
                      null_of=null_of(run.name, market, settings.search.seed, null),
                      data=data_info(settings.data.spec, null))
        nrun = RunFolder.create(path, config, lock="evolve --null")
    try:
        return _search_null(run, nrun, name, null, settings, market, objective, should_stop, out)
    finally:
        nrun.unlock()


def _search_null(run, nrun, name, null, settings, market, objective, should_stop, out):
    if run.config.get("null_run") != name:
        run.write_config(dict(run.config, null_run=name))
    evaluator = Evaluator(null, settings)
    info = nrun.config["null_of"]
    out(f"null run: {name} on {null.name}: daily volatility {info['null_daily_vol']:.5f} "
        f"(the data: {info['daily_vol']:.5f}), same settings and budget")
    base = run.config["baseline"]
    search = Search(nrun, settings, objective, evaluator, make_proposer(settings, objective, evaluator, market.name, out),
                    base["text"], base["path"], out=lambda line: out("null " + line), should_stop=should_stop,
                    starts=run.config.get("starts"))
    outcome = search.run()
    best = outcome.population[0].objective if outcome.population else float("nan")
    out(f"null run stopped: {describe_reason(outcome.reason, settings)} after {len(outcome.records)} iterations; "
        f"best {objective} on noise = {best:.4f}")
    return outcome
