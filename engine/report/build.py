"""A run's report: everything that says how much of what the search found is real.

`build_report(path)` gathers, from the run folder and one backtest of the best strategy:
the search's progress, the sealed test period (opened here if the run's latest records were not
yet evaluated on it, see autostrat.honest.sealed), the top-K's metrics per period beside buy and hold,
PSR, DSR, PBO and the minimum track record (autostrat.honest.run_statistics), the SPA and Reality
Check p-values (autostrat.honest.spa), the registered pass bar's verdict (autostrat.honest.verdict),
the null run (when there is one), the robustness of the best (autostrat.honest.robustness), its
strategy card and the lineage of the kept strategies; and the red flags among them. `write_report` renders it as one self-contained
HTML file (autostrat.report.html) and writes report.json beside it; `summary_lines` gives the
`key: value` lines `autostrat evolve` prints at its end.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.panel import Panel
from autostrat.data.universe import Universe, across_assets
from autostrat.errors import AutostratError
from autostrat.files import atomic_write
from autostrat.honest.ledger import lookup
from autostrat.honest.red_flags import num as _num
from autostrat.honest.red_flags import red_flags
from autostrat.honest.robustness import robustness
from autostrat.honest.run_statistics import run_objective, run_settings, run_statistics
from autostrat.honest.sealed import latest_opening, open_seal, sealed_data, sealed_metrics, top_records
from autostrat.honest.spa import spa_statistics
from autostrat.honest.verdict import grade_run, verdict_lines
from autostrat.report.card import card
from autostrat.report.plots import equity_png, progress_png, result_curves
from autostrat.report.portfolio_report import portfolio_parts
from autostrat.search.nullrun import null_path
from autostrat.search.runs import RunFolder, clean_json
from autostrat.search.session import load_run_data
from autostrat.sim.backtest import ALL_PERIODS, backtest, buy_and_hold, period_spans
from autostrat.sim.objective import Objective
from autostrat.sim.walkforward import fold_spans

REPORT_FILE = "report.html"
REPORT_JSON = "report.json"


def load_run_market(run: RunFolder, settings: Settings) -> Market | Universe:
    """The market (or universe) the run searched (its data spec, or the null run's matched market),
    checked by sha256."""
    return load_run_data(run, settings, "; a report on other data would not describe this run", required=False)


def build_report(path: str | Path, *, by: str = "report", with_robustness: bool = True,
                 n_splits: int | None = None, market: Market | None = None) -> dict[str, Any]:
    """Everything the report shows, as a dict (plots as PNG bytes under `plots`).

    `autostrat report` (by="report") holds the run's lock while it works, so that it never writes
    sealed.json beside a search that is still running; `evolve` already holds it.
    """
    run = RunFolder.open(Path(path))
    if by == "report":
        run.lock("report")
    try:
        report = _build_report(run, by, with_robustness, n_splits, market)
    finally:
        run.unlock()
    report["notices"] = list(run.notices)  # what reading the folder found (a damaged record left out)
    return report


def _build_report(run: RunFolder, by: str, with_robustness: bool, n_splits: int | None,
                  market: Market | None) -> dict[str, Any]:
    records = run.load_records()
    if not records:
        raise AutostratError(f"{run.path}: the run has no iterations yet; run `autostrat evolve --run {run.name}`")
    settings = run_settings(run)
    objective = run_objective(run, settings)
    market = market or load_run_market(run, settings)
    sealed = open_seal(run, market, settings, records, by=by)
    ledger = _ledger(run, market, settings, sealed)
    stats = run_statistics(run, records, objective, n_splits)
    stats.update(spa_statistics(run, market, records, objective, settings))
    top = top_records(records, settings.search.population)
    best = top[0]
    if isinstance(market, Panel):  # a portfolio run (autostrat.report.portfolio_report)
        parts = portfolio_parts(market, settings, run.read_strategy(best["iteration"]), best["iteration"])
        return _assemble(run, records, settings, objective, stats, sealed, top, parts["hold"],
                         objective.value(parts["hold"]), f"{market.spec} ({market.n_assets} assets, portfolio)",
                         parts["periods"], {**parts["extra"], "ledger": ledger}, parts["result"], None, market,
                         with_robustness, n_splits, parts["equity_title"], strategy_card=parts["card"],
                         curves=parts["equity_curves"], plots={"portfolio": parts["plot"]})
    if isinstance(market, Universe):
        return _universe_report(run, records, settings, Objective.from_settings(settings.search, universe=True),
                                market, sealed, stats, top, best, with_robustness, n_splits, ledger)
    periods = tuple(p for p in ALL_PERIODS if p in period_spans(market, settings, ALL_PERIODS))
    result = backtest(run.read_strategy(best["iteration"]), market, settings, periods=periods)
    hold = buy_and_hold(market, result.spans, settings)
    folds = _folds(market, settings, result.spans)
    hold_objective = objective.value({**hold, **buy_and_hold(market, folds, settings)} if folds else hold)
    periods = {p: {"first": str(market.dates[a]), "last": str(market.dates[b - 1]), "bars": int(b - a)}
               for p, (a, b) in result.spans.items()}
    extra = {}
    if folds:
        extra["fold_periods"] = {f: {"first": str(market.dates[a]), "last": str(market.dates[b - 1]),
                                     "bars": int(b - a)} for f, (a, b) in folds.items()}
        extra["fold_buy_hold"] = buy_and_hold(market, folds, settings)
    return _assemble(run, records, settings, objective, stats, sealed, top, hold, hold_objective, market.name,
                     periods, {**extra, "ledger": ledger}, result, result.metrics, market, with_robustness, n_splits,
                     f"Best strategy (iteration {best['iteration']}) against buy and hold")


def _universe_report(run, records, settings, objective, universe, sealed, stats, top, best,
                     with_robustness, n_splits, ledger) -> dict[str, Any]:
    """build_report on a universe: metrics are the `search.across` aggregates over the markets; the
    equity chart shows the median market; a table lists every market."""
    across = settings.search.across
    text = run.read_strategy(best["iteration"])
    result = backtest(text, universe, settings, periods=ALL_PERIODS)
    holds, fold_holds, dates = {}, {}, {}
    for m in universe:
        spans = result.results[m.name].spans
        holds[m.name] = buy_and_hold(m, spans, settings)
        folds = _folds(m, settings, spans)
        if folds:
            fold_holds[m.name] = buy_and_hold(m, folds, settings)
        dates[m.name] = {p: (str(m.dates[a]), str(m.dates[b - 1]), int(b - a)) for p, (a, b) in spans.items()}
    hold = across_assets(holds, across)
    hold_all = {**hold, **across_assets(fold_holds, across)} if fold_holds else hold
    metrics = result.aggregate(across)
    by_market = {name: float((m.get(objective.period) or {}).get(objective.metric, math.nan))
                 for name, m in result.metrics.items()}
    ranked = sorted((v, n) for n, v in by_market.items() if not math.isnan(v))
    median_name = ranked[len(ranked) // 2][1] if ranked else universe.names[0]
    median = result.results[median_name]
    periods = {}
    for p in ALL_PERIODS:
        rows = [d[p] for d in dates.values() if p in d]
        if rows:
            periods[p] = {"first": min(r[0] for r in rows), "last": max(r[1] for r in rows),
                          "bars": sum(r[2] for r in rows), "markets": len(rows)}
    extra = {"universe": {"across": across, "median_market": median_name, "markets": result.metrics,
                          "buy_hold": holds}, "ledger": ledger}
    return _assemble(run, records, settings, objective, stats, sealed, top, hold, objective.value(hold_all),
                     f"{universe.name} ({len(universe)} markets, {across} over them)", periods, extra, median,
                     metrics, universe, with_robustness, n_splits,
                     f"Best strategy (iteration {best['iteration']}) on {median_name}, the median market, "
                     "against buy and hold")


def _assemble(run, records, settings, objective, stats, sealed, top, hold, hold_objective, market_name, periods,
              extra, result, card_metrics, data, with_robustness, n_splits, equity_title, *, strategy_card=None,
              curves=None, plots=None) -> dict[str, Any]:
    """The report's dict, built in one place for a market, a universe and a portfolio alike.

    `result` is the best strategy's backtest shown (on a universe, its median market's), `data` the
    market or universe its robustness is checked on, `extra` the keys only one kind of report has.
    A portfolio run gives its own card, equity curves and plots (autostrat.report.portfolio_report).
    """
    best = top[0]
    null = null_summary(run, n_splits)
    report: dict[str, Any] = {
        "run": run.name, "path": str(run.path), "config": run.config, "objective": str(objective),
        "objective_metric": objective.metric, "folds": objective.folds, "records": records, "stats": stats,
        "sealed": sealed, "top": [_top_entry(r, sealed) for r in top], "buy_hold": hold,
        "buy_hold_objective": hold_objective, "best": _top_entry(best, sealed), "null": null,
        "market_name": market_name, "periods": periods, **extra,
    }
    report["thresholds"] = {k: getattr(settings.honest, k) for k in ("flag_dsr_below", "flag_pbo_above",
                                                                     "flag_min_trades")}
    report["verdict"] = grade_run(run, report)  # the registered bar (None without one), graded once
    report["robustness"] = robustness(result.typed, data, settings, objective) if with_robustness else None
    report["card"] = strategy_card or card(result.typed, card_metrics, {p: v["bars"] for p, v in periods.items()},
                                           (extra.get("universe") or {}).get("markets"))
    report["source"] = run.read_strategy(best["iteration"])
    report["lineage"] = lineage(records, {r["iteration"] for r in top})
    report["flags"] = red_flags(report)
    report["plots"] = {
        "progress": progress_png(records, str(objective), hold_objective, null["best_objective"] if null else None),
        "equity": equity_png(curves or result_curves(result), equity_title), **(plots or {}),
    }
    return report


def _ledger(run: RunFolder, market, settings: Settings, sealed: dict[str, Any]) -> dict[str, Any] | None:
    """Every opening of this data's test period, across runs (autostrat.honest.ledger), and the
    red-flag thresholds; None without a test period."""
    period = sealed.get("test_period")
    if not period:
        return None
    latest = latest_opening(sealed)
    found = lookup(settings.honest.ledger_dir, sealed_data(market).name, period, run.path, latest["opened_at"] if latest else None)
    return {**found, "flag_earlier_runs": settings.honest.flag_earlier_runs,
            "flag_strategies": settings.honest.flag_strategies}


def _folds(market: Market, settings: Settings, spans) -> dict[str, tuple[int, int]]:
    s = settings.search
    if not s.folds:
        return {}
    return fold_spans(spans["train"][0], spans["validation"][1], s.folds, s.fold_mode)


def _top_entry(record: dict[str, Any], sealed: dict[str, Any]) -> dict[str, Any]:
    metrics = dict(record.get("metrics") or {})
    test = sealed_metrics(sealed, record["iteration"])
    if test is not None:
        metrics["test"] = test
    return {"iteration": record["iteration"], "objective": record.get("objective"), "parent": record.get("parent"),
            "description": record.get("description", ""), "metrics": metrics}


def null_summary(run: RunFolder, n_splits: int | None = None) -> dict[str, Any] | None:
    """The null run beside the real one: best objective, trials, DSR, PBO, volatility; None without one."""
    path = null_path(run.path, run.config)
    if path is None:
        return None
    null = RunFolder.open(path)
    records = null.load_records()
    if not records:
        return None
    stats = run_statistics(null, records, n_splits=n_splits)
    top = top_records(records, 1)
    info = null.config.get("null_of") or {}
    validation = ((top[0].get("metrics") or {}).get("validation") or {}) if top else {}
    return {"run": null.name, "path": str(null.path), "records": len(records), "trials": stats["n_trials"],
            "best_iteration": stats["best_iteration"], "best_objective": stats["best_objective"],
            "best_validation_sharpe": validation.get("sharpe"), "best_validation_return": validation.get("total_return"),
            "best_validation_buy_hold": validation.get("buy_hold_return"),
            "best_validation_excess": validation.get("excess_return"),
            "dsr": stats["dsr"], "pbo": stats["pbo"], "seed": info.get("seed"),
            "daily_vol": info.get("daily_vol"), "null_daily_vol": info.get("null_daily_vol"),
            "settings": null.config.get("settings", {}).get("search", {})}


def lineage(records: list[dict[str, Any]], top: set[int]) -> list[dict[str, Any]]:
    """The kept strategies as a forest: {iteration, objective, description, children, tried, in_top}."""
    nodes = {r["iteration"]: {"iteration": r["iteration"], "objective": r.get("objective"),
                              "description": r.get("description", ""), "children": [], "tried": 0,
                              "in_top": r["iteration"] in top}
             for r in records if r["status"] == "keep"}
    roots = []
    for r in records:
        parent = r.get("parent")
        if parent in nodes:
            nodes[parent]["tried"] += 1
        if r["status"] != "keep":
            continue
        if parent in nodes:
            nodes[parent]["children"].append(nodes[r["iteration"]])
        else:
            roots.append(nodes[r["iteration"]])
    return roots


def write_report(path: str | Path, **kwargs) -> tuple[Path, dict[str, Any]]:
    """Build the report and write report.html (self-contained) and report.json; (html path, report)."""
    from autostrat.report.html import render

    report = build_report(path, **kwargs)
    run_path = Path(report["path"])
    html_path = run_path / REPORT_FILE
    atomic_write(html_path, render(report))
    data = {k: v for k, v in report.items() if k not in ("plots", "records", "config", "card")}
    data["card"] = vars(report["card"])
    atomic_write(run_path / REPORT_JSON, json.dumps(clean_json(data), indent=2, default=str) + "\n")
    return html_path, report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The honest-evaluation numbers as grep-able `key: value` lines."""
    s = report["stats"]
    best = report["best"]["metrics"]

    def f(x, digits=4):
        x = _num(x)
        return "nan" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.{digits}f}")

    lines = [f"best_iteration: {s['best_iteration']}", f"best_objective: {f(s['best_objective'])}",
             f"trials: {s['n_trials']}", f"selection_period: {s['selection']}",
             f"sharpe_annual: {f(s['sharpe_annual'])}", f"psr: {f(s['psr'])}", f"dsr: {f(s['dsr'])}",
             f"expected_max_sharpe_annual: {f(s['expected_max_sharpe_annual'])}",
             f"pbo: {f(s['pbo'])}", f"prob_oos_loss: {f(s['prob_oos_loss'])}",
             f"spa_pvalue: {f(s['spa_pvalue'])}", f"rc_pvalue: {f(s['rc_pvalue'])}",
             f"degradation_slope: {f(s['degradation_slope'])}",
             f"track_record_days: {s['track_record']}", f"min_track_record_days: {f(s['min_track_record'], 0)}"]
    test = best.get("test")
    opening = latest_opening(report["sealed"])
    if test is not None:
        lines += [f"test_total_return: {f(test['total_return'])}", f"test_sharpe: {f(test['sharpe'])}",
                  f"test_buy_hold_return: {f(test['buy_hold_return'])}",
                  f"test_opened_at: {opening['opened_at'] if opening else ''}"]
    else:
        lines.append("test_total_return: none (no test period)")
    ledger = report.get("ledger")
    if ledger:
        lines += [f"test_openings_all_runs: {ledger['openings']}", f"test_opened_in_runs: {ledger['runs']}",
                  f"test_strategies_looked_at: {ledger['strategies']}",
                  f"test_count_unknown: {'yes' if ledger['count_unknown'] else 'no'}",
                  f"sealed_ledger: {ledger['path']}"]
    null = report.get("null")
    if null:
        lines += [f"null_best_objective: {f(null['best_objective'])}", f"null_dsr: {f(null['dsr'])}"]
    rob = report.get("robustness")
    if rob:
        lo, med, hi = rob["rows"][0]["objective"]
        lines.append(f"jitter_objective_min_median_max: {f(lo)} {f(med)} {f(hi)}")
    lines += verdict_lines(report.get("verdict"))
    lines.append(f"red_flags: {len(report['flags'])}")
    lines += [f"red_flag: {x}" for x in report["flags"]]
    return lines
