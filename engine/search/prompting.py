"""The model's prompts, filled from the resolved settings, and the reading of its answers.

Templates are markdown files in prompts/ (program.md, iteration.md, repair.md, compact.md, and
portfolio.md, added to the system prompt of a portfolio run) with
`{{name}}` placeholders. Every number and metric name a template shows comes from the settings or
the run: the templates hard-code no limit and no metric. Filling is strict: an unknown or a
missing placeholder is an error, so a template and this module cannot drift apart silently.

Only train and validation numbers ever reach a prompt: the records hold no other period.

`[search] prompts_dir` names a folder whose files replace the shipped templates of the same name
(any of them; the others stay). `check_prompts_dir` reads them before a run starts: each must be
one of the templates, use only the placeholders the shipped one knows, and keep the ones
the search cannot work without (REQUIRED).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autostrat.config import Settings
from autostrat.errors import ConfigError
from autostrat.lang.reference import reference_text
from autostrat.resources import prompts_dir, read_text
from autostrat.search.population import Member
from autostrat.search.prompt_metrics import metrics_table, shown_metrics
from autostrat.search.runs import fmt_number
from autostrat.sim.objective import Objective

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")


TEMPLATES = ("program", "iteration", "repair", "compact", "portfolio")
# What a replacement template must keep: without these the model could not do its job.
REQUIRED = {"program": {"language_reference", "objective"}, "iteration": {"parent_text", "last_result"},
            "repair": {"error"}, "compact": {"learnings"}, "portfolio": set()}


def template(name: str, folder: str = "") -> str:
    """The text of prompts/NAME (with or without .md), or of FOLDER/NAME when that file exists."""
    file = name if name.endswith(".md") else name + ".md"
    if folder and (Path(folder) / file).is_file():
        return read_text(Path(folder) / file, "prompt template")
    return (prompts_dir() / file).read_text(encoding="utf-8")


def check_prompts_dir(folder: str) -> list[str]:
    """The templates `folder` replaces (names); ConfigError for a folder or template that cannot serve."""
    if not folder:
        return []
    where = Path(folder)
    if not where.is_dir():
        raise ConfigError(f"search.prompts_dir {folder}: no such folder; it should hold replacements for "
                          f"{', '.join(t + '.md' for t in TEMPLATES)}")
    replaced = []
    for path in sorted(where.glob("*.md")):
        name = path.stem
        if name not in TEMPLATES:
            raise ConfigError(f"{path}: error: not a prompt template; the templates are "
                              f"{', '.join(t + '.md' for t in TEMPLATES)}")
        used, known = placeholders(read_text(path, "prompt template")), placeholders(template(name))
        unknown = sorted(used - known)
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            hint = f" (did you mean {{{{{close[0]}}}}}?)" if close else ""
            raise ConfigError(f"{path}: error: unknown placeholder {{{{{unknown[0]}}}}}{hint}; {name}.md can use "
                              + ", ".join("{{" + k + "}}" for k in sorted(known)))
        missing = sorted(REQUIRED[name] - used)
        if missing:
            raise ConfigError(f"{path}: error: the template must use " + ", ".join("{{" + k + "}}" for k in missing)
                              + "; without it the model cannot do its part")
        replaced.append(name)
    return replaced


def placeholders(text: str) -> set[str]:
    """The placeholder names a template uses."""
    return set(_PLACEHOLDER.findall(text))


def fill(text: str, values: dict[str, Any], name: str = "template") -> str:
    """Replace every {{key}} in one pass (values are not re-scanned); unknown keys are an error."""
    missing = sorted(placeholders(text) - set(values))
    if missing:
        raise KeyError(f"{name}: no value for placeholder(s) {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def strat_block(text: str) -> str:
    """Strategy text inside a ```strat fence."""
    return "```strat\n" + text.rstrip("\n") + "\n```"


def system_values(settings: Settings, objective: Objective, periods: dict[str, dict[str, Any]],
                  market: str, portfolio: bool = False) -> dict[str, Any]:
    """The placeholders of program.md."""
    s, bt = settings.search, settings.backtest
    fill_text = ("at the next bar's open" if bt.fill == "next_open" else "at the same bar's close")
    return {
        "objective": str(objective), "objective_description": objective_description(objective),
        "walk_forward": walk_forward_text(objective, periods.get("folds")), "population_size": s.population,
        "max_fails": s.max_fails, "iterations": s.iterations, "repair_attempts": s.repair_attempts,
        "metric_names": ", ".join(shown_metrics(objective, portfolio)), "market": market,
        "train_dates": _dates(periods.get("train")), "validation_dates": _dates(periods.get("validation")),
        "fill": fill_text, "commission_bps": f"{bt.commission_bps:g}", "slippage_bps": f"{bt.slippage_bps:g}",
        "initial_capital": f"{bt.initial_capital:g}", "language_reference": reference_text().rstrip(),
        "constraints": constraints_text(s.min_trades, s.max_drawdown), "tuning": tuning_text(s.tune, s.tune_pick),
    }


def tuning_text(tune: int, pick: str) -> str:
    """program.md's lines on tuned params ("" when tuning is off)."""
    if tune <= 0:
        return ""
    how = ("the best of them" if pick == "best" else
           "the one whose neighbours in the grid score best (a lucky corner does not win)")
    return (f"\n- Your params' ranges are searched: each `param x = v in LO..HI` is tried at up to {tune} "
            f"combinations of values across its range, and your candidate is scored as {how}; the kept "
            "strategy carries the chosen values. So propose structure and sensible ranges rather than "
            "single numbers: a param without a range stays as written.")


def constraints_text(min_trades: int, max_drawdown: float) -> str:
    """program.md's lines on the run's constraints ("" when there are none)."""
    rules = ([f"fewer than {min_trades} trades"] if min_trades else []) + \
        ([f"a drawdown deeper than {max_drawdown:.1%}"] if max_drawdown else [])
    if not rules:
        return ""
    return (f"\n- A candidate with {' or '.join(rules)} in train or in validation is discarded whatever its "
            "objective: it counts as a failure.")


def objective_description(objective: Objective) -> str:
    """What the objective measures, in words, for program.md."""
    markets = ""
    if objective.across:
        how = {"mean": "the mean", "median": "the median", "min": "the lowest value"}[objective.across]
        markets = (f", taken as {how} over the markets of the universe (each market is backtested on its "
                   "own; the tables show the aggregate and a per-market spread)")
    if not objective.folds:
        return f"the `{objective.metric}` of the {objective.period} period{markets}"
    how = "the mean" if objective.fold_agg == "mean" else "the lowest value"
    return (f"{how} of `{objective.metric}` over {objective.folds} {objective.fold_mode} walk-forward "
            f"folds of train and validation (listed below){markets}")


def walk_forward_text(objective: Objective, folds: dict[str, dict[str, Any]] | None) -> str:
    """The fold windows and how they are traded (program.md, after the periods), or "" without folds."""
    if not objective.folds:
        return ""
    kind = ("equal consecutive windows" if objective.fold_mode == "rolling"
            else "windows that all start on the first train bar and grow")
    lines = [f"\n\nThe objective uses {objective.folds} walk-forward folds of train and validation, {kind}. Each "
             "fold is traded on its own, from flat with the initial capital; the tables show every fold's "
             "numbers beside train and validation. Prefer ideas that hold in every fold."]
    for name, p in (folds or {}).items():
        lines.append(f"- {name}: {_dates(p)}")
    return "\n".join(lines)


def _dates(p: dict[str, Any] | None) -> str:
    if not p:
        return "none"
    if p.get("markets"):
        return f"{p['first']} to {p['last']}, {p['bars']} bars over {p['markets']} markets, each on its own dates"
    return f"{p['first']} to {p['last']}, {p['bars']} bars"


def system_prompt(settings: Settings, objective: Objective, periods: dict[str, dict[str, Any]], market: str,
                  portfolio: bool = False) -> str:
    """program.md, filled; in a portfolio run followed by portfolio.md."""
    folder = settings.search.prompts_dir
    text = fill(template("program", folder), system_values(settings, objective, periods, market, portfolio),
                "program.md")
    if not portfolio:
        return text
    meanings = "; ".join(f"{name} ({what})" for name, what in SCORE_MEANINGS.items())
    assets = (periods.get("train") or {}).get("assets", "many")
    return text + "\n\n" + fill(template("portfolio", folder), {"assets": assets, "score_metrics": meanings},
                                 "portfolio.md")


# What the score's metrics mean, for a portfolio run's system prompt (autostrat.sim.portfolio_metrics).
SCORE_MEANINGS = {
    "ic_mean": "the mean over rebalances of the correlation between the score and the next period's returns",
    "ic_tstat": "its t-statistic: above 2 is unlikely to be luck",
    "rank_ic_mean": "the same on ranks, robust to outliers", "rank_ic_tstat": "its t-statistic",
    "long_short_spread": "the mean next-period return of the top assets by score minus that of the bottom ones",
    "turnover": "the traded amount a year over the mean equity", "holdings": "the mean number of assets held",
}


def constrained_format(mode: str, max_tokens: int | None = None) -> str:
    """The answer format when a grammar constrains the answer (mode: typed, vllm, openai or gbnf):
    appended to the system prompt, it replaces the fenced format, which the grammar would refuse.
    The typed grammar's bounds are those the constraint sends for `max_tokens` (grammar_typed.bounds_for)."""
    if mode == "gbnf":
        from autostrat.lang.grammar_export import Bounds

        return ("## Answer format under the grammar constraint (it replaces the one above)\n\n"
                "Your answer is decoded under the language's grammar: write the bare strategy file, no "
                "```strat fence and no other text, starting with the `# hypothesis:` and `# learned:` "
                f"comment lines; at most {Bounds().statements} statements, one per line.")
    from autostrat.lang.grammar_typed import TypedBounds, bounds_for, longest_text

    b = TypedBounds() if max_tokens is None else bounds_for(max_tokens)
    where = "as the input of the write_strategy tool" if mode == "openai" else "as the whole answer"
    shorts = ", then optionally both `short when` and `cover when`" if b.shorts else " (no short side)"
    return f"""## Answer format under the typed grammar (it replaces the one above)

Your answer is decoded under a grammar that admits only strategies that check. Write the bare
strategy file {where}: no ```strat fence, no other text. In this order, one statement per line:

1. optionally `# hypothesis: <one line of at most {b.hypothesis_chars} characters>`;
2. `strategy "<a name of at most {b.name_chars} characters>"`;
3. up to {b.params} params, named p1, p2, ... in order, each a whole number of bars: `param p1 = 20`,
   or with the range a search may tune it in: `param p1 = 20 in 10..60`; then up to {b.fractions} more
   param(s) named f1, ..., each a number with at most one decimal or a percentage: `param f1 = 2.5 in 1..4`
   or `param f1 = 6% in 2%..15%` (a range holds its value; f params are not windows);
4. up to {b.values} named values: numbers named x1, x2, ... (up to {b.numbers}) and conditions named c1,
   c2, ... (up to {b.conditions}), each in order and used only after its line: `x1 = sma(close, p1)`,
   `c1 = close > x1`;
5. `buy when <condition>`, `sell when <condition>`{shorts};
6. optionally, in this order: `stop_loss 8%`, `take_profit 20%`, `trailing_stop 10%`, `max_hold 20`
   (a percentage param may stand for the percentage, a p param for the bars).

Spacing is as shown (one space around operators, `, ` between arguments). A condition has at
most {b.factors} operands in all, joined by `and` and `or` (`rsi(close, 14) < 30 and c1` has three); a side
of a comparison is a product, so put a sum in parentheses: `(high - low) / close > 2%`. A call's
arguments are prices, numbers, params or named values, not other calls: name the inner call first
(`x1 = rsi(close, 14)`, then `sma(x1, 5)`). Windows are whole numbers from 1 to 2520 or params.
Rename the names of the strategies shown to you the same way. The answer ends after the last line
and has at most {longest_text(b)} characters."""


def last_result(record: dict[str, Any] | None, objective: Objective, shown: set[int] = frozenset()) -> str:
    """What happened to the previous candidate, for the next prompt.

    Its metrics table is left out when the prompt shows it anyway (`shown`: kept iterations).
    """
    from autostrat.search.learnings import result_text

    if record is None:
        return "(none yet)"
    head = f"Iteration {record['iteration']} ({record['status']})"
    lines = [f"{head}: {result_text(record, objective)}"]
    if record.get("hypothesis"):
        lines.append(f"Its hypothesis: {record['hypothesis']}")
    if record["status"] == "duplicate" and record.get("duplicate_kind") == "portfolio":
        lines.append("It holds exactly the portfolio of an earlier strategy on train and validation (the same "
                     "holdings and trades), so it counted as a failure. Try a score that holds other assets.")
    elif record["status"] == "duplicate" and record.get("duplicate_kind") == "behaviour":
        lines.append("Its rules give exactly the signals of an earlier strategy on train and validation (a "
                     "dead branch or a renamed value changes nothing), so it counted as a failure. Try "
                     "rules that trade differently.")
    elif record["status"] == "duplicate":
        lines.append("It evaluates exactly like an earlier strategy (names, comments and formatting do not "
                     "count), so it cost no backtest and counted as a failure. Try something new.")
    elif record["status"] == "invalid" and record.get("error"):
        lines.append("The last error was:\n" + str(record["error"]).strip())
    elif record.get("metrics") and record["iteration"] not in shown:
        lines.append(metrics_table(record["metrics"], objective))
    elif record.get("metrics"):
        lines.append("Its metrics are in the kept strategies below.")
    return "\n".join(lines)


def kept_section(population: list[Member], parent: Member, objective: Objective) -> str:
    """The kept strategies, best first, with their metrics; the parent's text is shown elsewhere."""
    out = []
    for rank, m in enumerate(population, 1):
        out.append(f"### {rank}. iteration {m.iteration}: {objective} = {fmt_number(m.objective)}")
        out.append(metrics_table(m.metrics, objective))
        out.append("(the parent, shown below)" if m.iteration == parent.iteration else strat_block(m.text))
    return "\n\n".join(out)


def iteration_prompt(settings: Settings, objective: Objective, iteration: int, parent: Member,
                     population: list[Member], learnings: str, last: dict[str, Any] | None, fails: int) -> str:
    """iteration.md, filled: the state of the search and the request for the next candidate."""
    s = settings.search
    values = {
        "iteration": iteration, "iterations": s.iterations, "remaining": max(s.iterations - iteration - 1, 0),
        "objective": str(objective), "fails": fails, "max_fails": s.max_fails,
        "population_size": s.population, "kept": kept_section(population, parent, objective),
        "parent_iteration": parent.iteration, "parent_objective": fmt_number(parent.objective),
        "parent_metrics": metrics_table(parent.metrics, objective), "parent_text": strat_block(parent.text),
        "learnings": learnings.strip() or "(empty)", "last_result": last_result(last, objective, {m.iteration for m in population}),
    }
    return fill(template("iteration", settings.search.prompts_dir), values, "iteration.md")


def repair_prompt(error: str, attempt: int, attempts: int, folder: str = "") -> str:
    """repair.md (from `folder` when it holds one), filled with the error text."""
    return fill(template("repair", folder), {"error": error.rstrip(), "attempt": attempt, "attempts": attempts},
                "repair.md")


def compact_prompt(learnings: str, budget_chars: int, folder: str = "") -> str:
    """compact.md (from `folder` when it holds one), filled: the request to summarise the learnings log."""
    return fill(template("compact", folder),
                {"learnings": learnings.strip(), "budget_chars": int(budget_chars * 0.8)}, "compact.md")


# --- reading answers ---------------------------------------------------------------------------

# Reading is linear in the answer's length, whatever the model wrote: `*+` and `++` are possessive
# (Python 3.11), so the engine never retries the splits of a long run; a leading `^` with
# `[^\S\n]` (whitespace but the newline) keeps each attempt on its own line, where `^\s*` would
# rescan a run of blank lines once per line; pairing fences and dropping <think> blocks is done
# in Python over matches found in one pass.
_FENCE_LINE = re.compile(r"^[ \t]*+(`{3,}+|~{3,}+)[ \t]*+([A-Za-z0-9_+-]*+)([^\n]*+)(\n?)", re.M)
_THINK_OPEN = re.compile(r"<think>", re.I)
_THINK_CLOSE = re.compile(r"</think>", re.I)
_RULE = re.compile(r"^[^\S\n]*+(?:buy|sell|short|cover)\s++when\b", re.M)
_STRAT_LANGS = {"strat", "strategy"}
_PLAIN_LANGS = {"", "text", "txt", "plain", "plaintext"}
_NOTE_LANGS = {"markdown", "md"}


@dataclass
class Answer:
    """What a model's answer holds: the strategy text (None when there is none) and its notes."""

    strategy: str | None
    hypothesis: str = ""
    learned: str = ""
    problem: str = ""  # why no strategy was found


def read_answer(text: str | None) -> Answer:
    """Find the strategy file in an answer: a ```strat (or ``` / ```text) block, else the whole text.

    `# hypothesis:` and `# learned:` comment lines give the hypothesis and the lesson; a
    ```markdown block adds to the lesson. Linear in the length of `text` (see _FENCE_LINE): a
    10 MB answer of unclosed fences, <think> tags or blank lines is read in one pass.
    """
    text = strip_think(text or "").strip()
    if not text:
        return Answer(None, problem="the answer was empty")
    found = fenced_blocks(text)
    blocks = [(lang, body) for lang, body, _, _ in found]
    notes = "\n".join(b.strip() for lang, b in blocks if lang in _NOTE_LANGS).strip()
    strategy = next((b for lang, b in blocks if lang in _STRAT_LANGS), None)
    if strategy is None:
        strategy = next((b for lang, b in blocks if lang in _PLAIN_LANGS and _RULE.search(b)), None)
    if strategy is None:
        rest = _outside(text, found) if found else text
        if _RULE.search(rest):
            strategy = rest.strip() + "\n"
    if strategy is None:
        return Answer(None, learned=notes, problem=(
            "no strategy found in the answer: it has no ```strat block and no `buy when` / `sell when` "
            "rules. Answer with the whole strategy file in a ```strat block."))
    hypothesis = " ".join(_tagged(strategy, "hypothesis"))
    learned = "\n".join([*_tagged(strategy, "learned"), *([notes] if notes else [])])
    return Answer(strategy, hypothesis=hypothesis, learned=learned)


def strip_think(text: str) -> str:
    """`text` without its <think>...</think> blocks, in one pass; an unclosed <think> is kept as text."""
    out, pos = [], 0
    while (start := _THINK_OPEN.search(text, pos)) is not None:
        end = _THINK_CLOSE.search(text, start.end())
        if end is None:  # no later <think> can be closed either
            break
        out.append(text[pos : start.start()])
        pos = end.end()
    out.append(text[pos:])
    return "".join(out)


def fenced_blocks(text: str) -> list[tuple[str, str, int, int]]:
    """The fenced blocks of `text`: (language in lower case, body, start, end) in order.

    A block opens at a line of three or more backticks or tildes and an optional language, and
    closes at a line of the same fence alone; an unclosed block runs to the end. Its span
    (start, end) runs from the opening line to the end of the closing line, newline excluded.
    """
    blocks = []
    lines = _FENCE_LINE.finditer(text)
    for m in lines:
        if not m.group(4):  # the last line, without a newline, opens nothing
            continue
        fence, lang, body_start = m.group(1), m.group(2).lower(), m.end()
        for c in lines:  # the same iterator: the closing line is searched from here on, once
            if c.group(1) == fence and not c.group(2) and not c.group(3).strip(" \t\r"):
                blocks.append((lang, text[body_start : c.start()], m.start(), c.end() - len(c.group(4))))
                break
        else:
            blocks.append((lang, text[body_start:], m.start(), len(text)))
    return blocks


def _outside(text: str, blocks: list[tuple[str, str, int, int]]) -> str:
    parts, pos = [], 0
    for _, _, start, end in blocks:
        parts.append(text[pos:start])
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _tagged(text: str, tag: str) -> list[str]:
    pattern = re.compile(rf"^[^\S\n]*+#[^\S\n]*+{tag}[^\S\n]*+:([^\n]*+)", re.I | re.M)
    return [value for m in pattern.finditer(text) if (value := m.group(1).strip())]


def header_hypothesis(text: str) -> str:
    """The hypothesis a strategy's comments state (`# hypothesis:`), else its first comment line."""
    tagged = _tagged(text, "hypothesis")
    if tagged:
        return " ".join(tagged)
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#") and s.lstrip("#").strip():
            return s.lstrip("#").strip()
        if s and not s.startswith("#"):
            break
    return ""
