"""The learnings log: one entry per iteration (hypothesis, actual result, the model's lesson).

learnings.md is rebuilt from the iteration records after every iteration, so it always agrees with
them and a resumed run never writes an entry twice. The full log stays on disk; the prompt gets
a compacted view when the log outgrows `search.learnings_budget_chars`:

- with a model: the model summarises the log in one extra call; the summary (and which iterations
  it covers) is kept in learnings_summary.json, and later entries are shown in full after it until
  the two together pass the budget again, when a new summary replaces it;
- without a model (or when the summary comes back empty or too long): the oldest entries are
  folded into one line of counts, and the newest entries that fit are shown in full.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from autostrat.search.runs import as_float, fmt_number
from autostrat.sim.objective import Objective, rank_key

HEADER = ("# Learnings\n\nOne entry per iteration: the hypothesis, the actual result on train and "
          "validation, and the lesson drawn.\n")

# summarise(text) -> (summary text, token usage dict)
Summariser = Callable[[str], "tuple[str, dict[str, int]]"]


def _one_line(text: Any, limit: int = 400) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def result_text(record: dict[str, Any], objective: Objective) -> str:
    """The actual result of one iteration in one line (train and validation only)."""
    status = record["status"]
    if status == "invalid":
        first = str(record.get("error") or "").strip().splitlines()[:1]
        repairs = record.get("repairs") or 0
        tries = f" after {repairs} repair{'s' if repairs != 1 else ''}" if repairs else ""
        return f"invalid{tries}: {_one_line(first[0] if first else 'no strategy', 200)}"
    if status == "duplicate" and record.get("duplicate_kind") == "portfolio":
        return f"duplicate of iter {record.get('duplicate_of')}: the same portfolio on train and validation"
    if status == "duplicate" and record.get("duplicate_kind") == "behaviour":
        return f"duplicate of iter {record.get('duplicate_of')}: the same signals on train and validation"
    if status == "duplicate":
        return f"duplicate of iter {record.get('duplicate_of')}: not evaluated"
    if status == "error":
        return f"error: {_one_line(record.get('error'), 200)}"
    m = record.get("metrics") or {}
    tr, va = m.get("train") or {}, m.get("validation") or {}
    text = (f"{objective} {fmt_number(record.get('objective'))} ({objective.metric}: train "
            f"{fmt_number(tr.get(objective.metric))}, validation {fmt_number(va.get(objective.metric))}; "
            f"buy and hold return: train {fmt_number(tr.get('buy_hold_return'))}, validation "
            f"{fmt_number(va.get('buy_hold_return'))})")
    if "rank_ic_tstat" in va and objective.metric != "rank_ic_tstat":  # a portfolio: how well its score ranks
        text = text[:-1] + (f"; rank IC t-statistic: train {fmt_number(tr.get('rank_ic_tstat'))}, validation "
                            f"{fmt_number(va.get('rank_ic_tstat'))})")
    if status == "keep":
        return text + " -> kept"
    if record.get("constraint"):
        return text + f" -> discarded: it breaks a constraint: {record['constraint']}"
    worst = record.get("worst_kept")
    return text + (f" -> discarded (the worst kept is {fmt_number(worst)})" if worst is not None else " -> discarded")


# the heading of an iteration without a parent, by its proposer (autostrat.search.memory)
NO_PARENT = {"from": "{status} (a starting strategy)", "hand": "{status} (added by hand)"}


def entry(record: dict[str, Any], objective: Objective) -> str:
    """One iteration's entry of learnings.md."""
    i = record["iteration"]
    if record.get("parent") is None:
        head = f"## iter {i}: " + NO_PARENT.get(record.get("proposer"), "baseline").format(status=record["status"])
    else:
        head = f"## iter {i}: {record['status']} (parent {record['parent']})"
    lines = [head, f"- hypothesis: {_one_line(record.get('hypothesis') or record.get('description'))}",
             f"- result: {result_text(record, objective)}"]
    learned = str(record.get("learned") or "").strip()
    if learned:
        lines.append("- learned: " + learned.replace("\n", "\n  "))
    return "\n".join(lines) + "\n"


def render(records: list[dict[str, Any]], objective: Objective, prior: str = "") -> str:
    """The whole learnings.md; `prior`: another run's learnings it started from (--learnings-from)."""
    return HEADER + ("\n" + prior if prior else "") + "".join("\n" + entry(r, objective) for r in records)


def prior_view(prior: str, budget: int) -> str:
    """Another run's learnings as a prompt shows them: its newest entries that fit in `budget` characters."""
    if len(prior) <= budget:
        return prior
    head, *entries = re.split(r"(?m)^(?=### iter )", prior)
    head = head[: budget // 4]
    kept: list[str] = []
    used = len(head) + 100  # room for the line saying what was left out
    for text in reversed(entries):
        if used + len(text) > budget:
            break
        kept.append(text)
        used += len(text)
    note = f"({len(entries) - len(kept)} older entries of that run left out; its learnings.md has them all.)\n\n"
    return head + note + "".join(reversed(kept))


def _entries(records, objective) -> str:
    return "\n".join(entry(r, objective) for r in records)


def fold(records: list[dict[str, Any]], objective: Objective, budget: int) -> str:
    """The log within `budget` characters: the newest entries in full, the older folded into counts."""
    kept: list[str] = []
    used = 0
    reserve = 400  # room for the line of counts
    for r in reversed(records):
        text = entry(r, objective)
        if used + len(text) + 1 > budget - reserve and kept:
            break
        kept.append(text)
        used += len(text) + 1
    older = records[: len(records) - len(kept)]
    parts = []
    if older:
        counts = Counter(r["status"] for r in older)
        listed = ", ".join(f"{counts[s]} {s}" for s in ("keep", "discard", "invalid", "duplicate", "error")
                           if counts[s])
        best = max(older, key=lambda r: rank_key(as_float(r.get("objective"))))
        best_value = as_float(best.get("objective"))
        best_text = "" if math.isnan(best_value) else \
            f"; best {objective} among them {fmt_number(best_value)} at iter {best['iteration']}"
        parts.append(f"(iterations {older[0]['iteration']}-{older[-1]['iteration']} folded into counts: "
                     f"{listed}{best_text}.)\n")
    parts.extend(reversed(kept))
    return "\n".join(parts)


@dataclass
class PromptLearnings:
    """The learnings as the prompt shows them, and what compacting them cost."""

    text: str
    compacted: str = ""  # "", "summary" or "folded"
    summary: dict[str, Any] | None = None  # a new learnings_summary.json to write, if any
    tokens: dict[str, int] | None = None  # usage of the summarising call, if one was made


def for_prompt(records: list[dict[str, Any]], objective: Objective, budget: int,
               summary: dict[str, Any] | None = None, summarise: Summariser | None = None,
               prior: str = "") -> PromptLearnings:
    """The learnings for the next prompt, within `budget` characters when possible.

    `summary` is the current learnings_summary.json ({"through": iteration, "text": ...});
    `summarise` asks a model to summarise (None: fold without a model). `prior`, another run's
    learnings (--learnings-from), comes first, in at most half the budget (prior_view).
    """
    if prior:
        shown = prior_view(prior, budget // 2)
        own = for_prompt(records, objective, budget - len(shown), summary, summarise)
        own.text = shown + ("\n" + own.text if own.text else "")
        return own
    full = _entries(records, objective)
    if len(full) <= budget or not records:
        return PromptLearnings(full)
    if summarise is None:
        return PromptLearnings(fold(records, objective, budget), "folded")
    if summary and isinstance(summary.get("through"), int) and summary["through"] < len(records):
        view = _with_summary(summary, records, objective)
        if len(view) <= budget:
            return PromptLearnings(view, "summary")
        source = summary["text"] + "\n\n" + _entries(records[summary["through"] + 1:], objective)
    else:
        source = full
    text, tokens = summarise(source)
    text = (text or "").strip()
    if not text or len(text) > budget:
        return PromptLearnings(fold(records, objective, budget), "folded", tokens=tokens)
    new = {"through": records[-1]["iteration"], "text": text}
    return PromptLearnings(_with_summary(new, records, objective), "summary", new, tokens)


def _with_summary(summary: dict[str, Any], records, objective) -> str:
    through = summary["through"]
    rest = _entries(records[through + 1:], objective)
    head = f"Summary of iterations 0-{through} (the full log is kept on disk):\n{summary['text'].strip()}\n"
    return head + ("\n" + rest if rest else "")
