"""The sealed test period: evaluated once, after the search, for the final top-K only.

The search loop never computes the test period and no prompt holds a number of it. When a run
ends (`autostrat evolve`) or is reported (`autostrat report`), `open_seal` backtests the kept
strategies that ended in the population on the test period, beside buy and hold, and appends the
opening to the run's sealed.json:

    {"test_period": {"first", "last", "bars"} or null, "reason": why there is none, or "",
     "opened_at": the first opening (UTC, ISO 8601), "times_opened": N,
     "openings": [{"opened_at", "by": "evolve" | "report", "after_iteration", "records",
                   "strategies": [{"iteration", "hash", "objective", "test": {metric: value}}],
                   "buy_hold": {metric: value}}]}

On a portfolio run (`market` a Panel) the kept strategies are portfolio backtests
(autostrat.backtest_portfolio) on the test period, the test period and the buy and hold are the
universe's equal-weight index's (Panel.benchmark), and the ledger names that index.

A later opening happens only when the run has new iterations (a resumed run, a larger budget) or
another population; every opening is kept, so the file says how often the test was looked at.

The count is never reset. config.json keeps the number of openings too (`sealed_openings`), so a
sealed.json that is missing although the test was opened, or that cannot be read (it is moved
into damaged/), makes the next opening record `count_unknown` with the reason: the file says
from then on that the test was opened before an unknown number of times, and the report raises a
red flag.

Every opening is also appended to the ledger of the dataset's openings across runs
(autostrat.honest.ledger) before sealed.json records it: a look that cannot be recorded there is
not made.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.panel import Panel
from autostrat.data.universe import Universe, across_assets
from autostrat.files import atomic_write
from autostrat.honest.ledger import append_opening, ledger_path, ledger_root, make_entry
from autostrat.search.population import Member
from autostrat.search.runs import RunFolder, as_float, clean_json
from autostrat.sim.backtest import backtest, buy_and_hold, period_spans
from autostrat.sim.portfolio_backtest import backtest_portfolio

SEALED_FILE = "sealed.json"


def top_records(records: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The final population: the best `k` kept records, best first (NaN last, ties to the earlier)."""
    kept = [r for r in records if r.get("status") == "keep"]
    kept.sort(key=lambda r: Member(r["iteration"], as_float(r.get("objective")), {}, "").key)
    return kept[:k]


def best_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best kept record (the run's best.strat), or None."""
    top = top_records(records, 1)
    return top[0] if top else None


def read_sealed(path: Path) -> dict[str, Any] | None:
    """The run folder's sealed.json, or None when the test period was never opened."""
    try:
        return json.loads((Path(path) / SEALED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def latest_opening(sealed: dict[str, Any] | None) -> dict[str, Any] | None:
    """The most recent opening of a sealed.json, or None."""
    openings = (sealed or {}).get("openings") or []
    return openings[-1] if openings else None


def is_current(sealed: dict[str, Any] | None, records: list[dict[str, Any]], k: int) -> bool:
    """True when the latest opening covers exactly these records and this population."""
    latest = latest_opening(sealed)
    if latest is None or not records:
        return False
    wanted = [r["iteration"] for r in top_records(records, k)]
    return (latest.get("after_iteration") == records[-1]["iteration"]
            and [s["iteration"] for s in latest.get("strategies", [])] == wanted)


def open_seal(run: RunFolder, market: Market, settings: Settings, records: list[dict[str, Any]] | None = None,
              by: str = "evolve") -> dict[str, Any]:
    """Evaluate the test period for the final top-K (unless already done for these records); sealed.json.

    Returns the whole sealed.json content. K is the run's `search.population`.
    """
    records = run.load_records() if records is None else records
    index = sealed_data(market)
    k = settings.search.population
    sealed = _sealed_so_far(run)
    if is_current(sealed, records, k):
        return sealed
    opened_at = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
    opening: dict[str, Any] = {"opened_at": opened_at, "by": by,
                               "after_iteration": records[-1]["iteration"] if records else None,
                               "records": len(records), "strategies": [], "buy_hold": None}
    period = sealed_period(index, settings)
    if period is not None:
        sealed["test_period"] = period
        sealed["reason"] = ""
        for r in top_records(records, k):
            entry = {"iteration": r["iteration"], "hash": r.get("hash", ""), "objective": r.get("objective")}
            entry.update(_test_metrics(run.read_strategy(r["iteration"]), market, settings))
            opening["strategies"].append(entry)
        opening["buy_hold"] = _test_buy_hold(index, settings)
    else:
        sealed["test_period"] = None
        sealed["reason"] = ("the split has no test period (two_way, or no bars on or after test_start "
                            f"{settings.split.test_start})")
    if period is not None:
        entry = make_entry(run.name, run.path, opened_at, by, index.name, index.sha256, period,
                           opening["strategies"])
        path = ledger_path(ledger_root(settings.honest.ledger_dir), index.name)
        run.notices.extend(append_opening(path, entry))
    sealed["openings"].append(opening)
    sealed["opened_at"] = sealed["openings"][0]["opened_at"]
    sealed["times_opened"] = len(sealed["openings"])
    atomic_write(run.path / SEALED_FILE, json.dumps(clean_json(sealed), indent=2) + "\n")
    run.write_config(dict(run.config, sealed_openings=int(run.config.get("sealed_openings") or 0) + 1))
    return sealed


def sealed_data(market):
    """What the test period's dates, the ledger's name and the buy and hold are read from: the market
    or universe itself, or for a portfolio run (a Panel) the universe's equal-weight index."""
    return market.benchmark() if isinstance(market, Panel) else market


def _sealed_so_far(run: RunFolder) -> dict[str, Any]:
    """sealed.json as the next opening extends it; a lost count is marked `count_unknown`, never reset."""
    path = run.path / SEALED_FILE
    before = run.config.get("sealed_openings") or 0
    if not path.exists():
        if not before:
            return {"openings": []}
        return {"openings": [], "count_unknown": f"{SEALED_FILE} is missing, but config.json says the test period "
                                                 f"was opened {before} time{'s' if before != 1 else ''} before"}
    sealed = read_sealed(run.path)
    if isinstance(sealed, dict) and isinstance(sealed.get("openings"), list) \
            and all(isinstance(o, dict) for o in sealed["openings"]):
        return sealed
    moved = run.move_aside(path, "cannot read the record of the sealed test's openings")
    return {"openings": [], "count_unknown": f"{SEALED_FILE} could not be read (moved to "
                                             f"{moved.relative_to(run.path)}); the test period was opened before"}


def sealed_period(market, settings: Settings) -> dict[str, Any] | None:
    """The test period's dates and bars (on a universe: earliest, latest, summed, markets); None without one."""
    markets = list(market) if isinstance(market, Universe) else [market]
    rows = []
    for m in markets:
        spans = period_spans(m, settings, ("test",))
        if "test" in spans:
            a, b = spans["test"]
            rows.append({"first": str(m.dates[a]), "last": str(m.dates[b - 1]), "bars": int(b - a)})
    if not rows:
        return None
    if not isinstance(market, Universe):
        return rows[0]
    return {"first": min(r["first"] for r in rows), "last": max(r["last"] for r in rows),
            "bars": sum(r["bars"] for r in rows), "markets": len(rows)}


def _test_metrics(text: str, market, settings: Settings) -> dict[str, Any]:
    """{"test": metrics}; on a universe the `search.across` aggregate, and `test_by_asset` beside it."""
    if isinstance(market, Panel):
        return {"test": backtest_portfolio(text, market, settings, periods=("test",)).metrics["test"]}
    result = backtest(text, market, settings, periods=("test",))
    if not isinstance(market, Universe):
        return {"test": result.metrics["test"]}
    by_asset = {name: m["test"] for name, m in result.metrics.items() if "test" in m}
    return {"test": across_assets({n: {"test": m} for n, m in by_asset.items()}, settings.search.across)["test"],
            "test_by_asset": by_asset}


def _test_buy_hold(market, settings: Settings) -> dict[str, float]:
    if not isinstance(market, Universe):
        return buy_and_hold(market, period_spans(market, settings, ("test",)), settings)["test"]
    per = {m.name: buy_and_hold(m, spans, settings) for m in market
           if "test" in (spans := period_spans(m, settings, ("test",)))}
    return across_assets(per, settings.search.across)["test"]


def sealed_metrics(sealed: dict[str, Any] | None, iteration: int) -> dict[str, float] | None:
    """The latest opening's test metrics of one iteration, or None."""
    latest = latest_opening(sealed)
    for s in (latest or {}).get("strategies", []):
        if s["iteration"] == iteration:
            return s["test"]
    return None
