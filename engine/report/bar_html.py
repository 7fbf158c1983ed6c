"""The report's pieces for the registered pass bar and the data-snooping test (SPA, Reality Check).

`bar_box` goes into the summary, `spa_row` into the statistics table of autostrat.report.html.
"""

from __future__ import annotations

import html
import math
from typing import Any


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _value(x: Any) -> str:
    if x is None:
        return "unknown"
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.4g}"


def bar_box(r: dict[str, Any]) -> str:
    """The verdict on the registered bar: PASS or FAIL, and each clause with its value; or "no bar"."""
    verdict = r.get("verdict")
    if verdict is None:
        return ('<h3>Pass bar</h3>\n<p class="muted">No pass bar was registered before this search '
                '(<code>evolve --bar</code>), so nothing here was decided before the numbers were in.</p>')
    latest = verdict["latest"]
    ok = latest["result"] == "PASS"
    rows = "".join(
        f'<tr><td class="l">{_e(c["clause"])}</td><td>{_e(_value(c["value"]))}</td>'
        f'<td class="l">{"pass" if c["passed"] else "<b>FAIL</b>"}{(": " + _e(c["reason"])) if c["reason"] else ""}'
        "</td></tr>" for c in latest["clauses"])
    earlier = verdict["gradings"][:-1]
    note = (f'<p class="muted">Graded {len(verdict["gradings"])} times, once per opening of the sealed test; '
            f'earlier: {_e(", ".join(g["result"] for g in earlier))}.</p>' if earlier else "")
    lost = verdict.get("earlier_gradings_lost")
    lost = f'<p class="muted">{_e(lost)}</p>' if lost else ""
    return (f'<h3>Pass bar: <span class="{"good" if ok else "bad"}"><b>{latest["result"]}</b></span></h3>\n'
            f'<p class="muted">Registered when the run started ({_e(verdict.get("registered"))}), before any '
            f'result was seen: <code>{_e(verdict["bar"])}</code>. Graded once, after the sealed test was opened '
            f'({_e(latest.get("sealed_opened_at"))}), on the best strategy '
            f'(iteration {_e(latest.get("best_iteration"))}) '
            'and the statistics below; an unknown value fails its clause.</p>\n'
            '<table><tr><th class="l">clause</th><th>value</th><th class="l">result</th></tr>' + rows + "</table>"
            + note + lost)


def spa_row(s: dict[str, Any]) -> tuple[str, str, str]:
    """(name, value, sentence) of the SPA test for the statistics table."""
    p, rc = s.get("spa_pvalue"), s.get("rc_pvalue")
    if s.get("spa_reason") or p is None or math.isnan(float(p)):
        return "SPA p-value", "n/a", f"Not computed: {s.get('spa_reason') or 'unknown reason'}"
    p = float(p)
    meaning = ("so at least one of them beats buy and hold beyond what this many tries explain" if p < 0.05 else
               "so the search's best is within what trying this many strategies gives when none beats buy and hold")
    return ("SPA p-value (Reality Check)", f"{p:.3f} ({float(rc):.3f})",
            f"Hansen's test over all {s['spa_trials']} trials' daily excess returns over buy and hold on "
            f"{s['spa_series']} ({s['spa_days']} days; stationary bootstrap, {s['spa_reps']} draws, mean block "
            f"{float(s['spa_block_length']):.1f} days): the chance of a best this good if no strategy tried beats "
            f"buy and hold is {p:.1%}, {meaning}. White's Reality Check, which does not scale by each trial's "
            "noise, is in brackets.")
