"""The registered pass bar, graded once against the sealed test and the run's statistics.

A run started with a bar (`search.bar`, autostrat.search.bar) is graded when its report is built
after the sealed test was opened: each clause gets the value of its name (the best strategy's
metric in train, validation or test; or a run statistic), and PASS needs every clause to hold.
Fail-closed: a value that is unknown (no test period, NaN, a statistic that could not be
computed) fails its clause, and the clause says why.

Graded once per opening of the sealed test: verdict.json keeps every grading, and a later report
on the same opening reads the grading back instead of grading again (another `--pbo-splits` cannot
turn a FAIL into a PASS). A resumed run that opens the test again is graded again, and the earlier
gradings stay in the file for the report to show.

    verdict.json: {"bar": text, "registered": when the run started (config.json's created),
                   "gradings": [{"result": "PASS" | "FAIL", "graded_at", "sealed_opened_at",
                                 "after_iteration", "best_iteration",
                                 "clauses": [{"clause", "name", "op", "threshold", "value",
                                              "passed", "reason"}]}]}
"""

from __future__ import annotations

import datetime
import json
import math
from typing import Any

from autostrat.files import atomic_write
from autostrat.honest.sealed import latest_opening
from autostrat.search.bar import STATISTICS, Bar, parse_bar
from autostrat.search.runs import RunFolder, clean_json

VERDICT_FILE = "verdict.json"
_REASONS = {"pbo": "pbo_reason", "prob_oos_loss": "pbo_reason", "spa_pvalue": "spa_reason", "rc_pvalue": "spa_reason"}


def _number(x: Any) -> float:
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def lookup(name: str, report: dict[str, Any]) -> tuple[float, str]:
    """The value of a bar name in a report's dict, and why it is unknown ("" when it is known)."""
    if name in STATISTICS:
        stats = report["stats"]
        value = _number(stats.get(name))
        if math.isnan(value):
            why = stats.get(_REASONS.get(name, ""), "") or "it could not be computed for this run"
            return value, f"{name} is unknown: {why}"
        return value, ""
    period, _, metric = name.partition(".")
    metrics = (report["best"].get("metrics") or {}).get(period)
    if metrics is None:
        why = (((report.get("sealed") or {}).get("reason") or "it was not evaluated") if period == "test"
               else "the best strategy has no metrics for it")
        return math.nan, f"the {period} period is unknown: {why}"
    value = _number(metrics.get(metric))
    if math.isnan(value):
        return value, (f"{name} is unknown (NaN): the best strategy's {metric} has no value on {period} "
                       "(for example, it made no trades)")
    return value, ""


def grade(bar: Bar, report: dict[str, Any]) -> dict[str, Any]:
    """PASS when every clause holds; each clause with its value and, when unknown, the reason it failed."""
    clauses = []
    for c in bar.clauses:
        value, reason = lookup(c.name, report)
        passed = not reason and c.holds(value)
        clauses.append({"clause": c.text, "name": c.name, "op": c.op, "threshold": c.value, "value": value,
                        "passed": passed, "reason": reason})
    return {"result": "PASS" if all(c["passed"] for c in clauses) else "FAIL", "clauses": clauses}


def read_verdict(run: RunFolder) -> dict[str, Any] | None:
    """verdict.json of a run, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads((run.path / VERDICT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("gradings"), list) else None


def grade_run(run: RunFolder, report: dict[str, Any]) -> dict[str, Any] | None:
    """The run's verdict (verdict.json, written when this opening of the sealed test is first graded).

    None when the run registered no bar. The returned dict is verdict.json's content with
    `latest`, the grading of the current opening.
    """
    text = ((run.config.get("settings") or {}).get("search") or {}).get("bar", "")
    if not str(text).strip():
        return None
    bar = parse_bar(text, bool(run.config.get("portfolio")))
    opening = latest_opening(report.get("sealed")) or {}
    path = run.path / VERDICT_FILE
    data = read_verdict(run)
    if data is None:
        data = {"bar": str(bar), "registered": run.config.get("created"), "gradings": []}
        if path.exists():
            moved = run.move_aside(path, "cannot read the earlier gradings of the pass bar")
            data["earlier_gradings_lost"] = f"{VERDICT_FILE} could not be read; moved to {moved.relative_to(run.path)}"
    done = [g for g in data["gradings"]
            if isinstance(g, dict) and g.get("sealed_opened_at") == opening.get("opened_at")]
    if not done:
        grading = grade(bar, report)
        grading.update(graded_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                       sealed_opened_at=opening.get("opened_at"), after_iteration=opening.get("after_iteration"),
                       best_iteration=report["best"]["iteration"])
        data["gradings"].append(clean_json(grading))
        atomic_write(path, json.dumps(clean_json(data), indent=2) + "\n")
        done = [data["gradings"][-1]]
    return dict(data, latest=done[-1])


def verdict_lines(verdict: dict[str, Any] | None) -> list[str]:
    """The verdict as grep-able `key: value` lines (one line when no bar was registered)."""
    if verdict is None:
        return ["bar: none registered"]
    latest = verdict["latest"]
    lines = [f"bar: {verdict['bar']}", f"bar_result: {latest['result']}"]
    for c in latest["clauses"]:
        value = "unknown" if c["value"] is None else f"{c['value']:.4g}"
        lines.append(f"bar_clause: {c['clause']}: {value} {'pass' if c['passed'] else 'FAIL'}"
                     + (f" ({c['reason']})" if c["reason"] else ""))
    earlier = len(verdict["gradings"]) - 1
    if earlier > 0:
        lines.append(f"bar_earlier_gradings: {earlier} ({', '.join(g['result'] for g in verdict['gradings'][:-1])})")
    return lines
