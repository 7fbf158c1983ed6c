"""The report's table of iterations for runs with parallel steps, tuned params or constraints.

One row per iteration: its step (the first iteration of the K candidates it was proposed with),
status, objective, and what tuning did (variants, pick, the proposer's values and the chosen
ones), or why it was a duplicate or broke a constraint. A serial run without these options has
no such table: its lineage and progress plot say it all.
"""

from __future__ import annotations

import html
from typing import Any

from autostrat.search.runs import fmt_number


def shown(records: list[dict[str, Any]]) -> bool:
    """Whether the run used parallel steps, tuning or constraints (behaviour duplicates alone are common)."""
    return any(r.get("step") is not None or r.get("tuning") or r.get("constraint") for r in records)


def _values(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in d.items())


def note(r: dict[str, Any]) -> str:
    """What the row says beside the numbers."""
    parts = []
    t = r.get("tuning")
    if t:
        parts.append(f"tuned ({t['pick']}, {t['variants']} variants): {_values(t['proposed'])} -> "
                     f"{_values(t['chosen'])}; proposed values scored {fmt_number(t.get('objective_proposed'))}")
    if r.get("constraint"):
        parts.append(f"constraint: {r['constraint']}")
    if r.get("duplicate_kind") == "portfolio":
        parts.append(f"same portfolio as iteration {r.get('duplicate_of')}")
    elif r.get("duplicate_kind"):
        parts.append(f"same signals as iteration {r.get('duplicate_of')}")
    elif r["status"] == "duplicate":
        parts.append(f"same text as iteration {r.get('duplicate_of')}")
    return "; ".join(parts)


def iterations_html(records: list[dict[str, Any]]) -> str:
    """The table, as HTML."""
    head = "<tr><th>iter</th><th>step</th><th>status</th><th>objective</th><th class=\"l\">note</th></tr>"
    rows = []
    for r in records:
        step = "" if r.get("step") is None else f"{r['step']} ({r.get('step_size')})"
        rows.append(f"<tr><td>{r['iteration']}</td><td>{html.escape(step)}</td><td>{html.escape(r['status'])}</td>"
                    f"<td>{fmt_number(r.get('objective'))}</td><td class=\"l\">{html.escape(note(r))}</td></tr>")
    return ("<p>Each iteration with the step it was proposed in (its first iteration and the number of "
            "candidates proposed together), and what tuning, constraints and duplicate checks did.</p>"
            f"<table>{head}{''.join(rows)}</table>")
