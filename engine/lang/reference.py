"""The language reference, generated from the built-in registry.

One source feeds three readers: `autostrat reference` (a person at a terminal), the generated
section of grammar/LANGUAGE.md, and the language reference inside the model's prompt.
"""

from __future__ import annotations

import re
from pathlib import Path

from autostrat.lang.registry import BUILTINS, GROUPS, MAX_LOOKBACK, SERIES

BEGIN = "<!-- BEGIN GENERATED: builtins (autostrat reference --update FILE) -->"
END = "<!-- END GENERATED: builtins -->"

_SYNTAX = f"""\
A strategy is a list of statements, one per line; `#` starts a comment.
  strategy "name"                      optional
  param NAME = NUMBER [in LO..HI]      a tunable constant and its search range
  NAME = expr                          bind a name once, before use
  buy when COND / sell when COND       required: enter and exit a long position
  short when COND / cover when COND    optional, together: enter and exit a short position
  stop_loss P% / take_profit P% / trailing_stop P% / max_hold N   optional exits
Expressions: numbers (0.5, 5% is 0.05), true, false, the series {' '.join(SERIES)}, bound names,
built-in calls, + - * /, unary -, comparisons < <= > >= == != (not chained), and or not,
parentheses, and lag x[n] (n bars ago; n a whole-number literal; there is no way to look ahead).
Types: number series and conditions (boolean series). Rules need conditions, arithmetic needs
numbers. Windows (n, m, fast, slow, signal) are integer literals or integer params, 1..{MAX_LOOKBACK}.
Timing: a rule sees bar t's close and earlier bars; orders fill at the next bar's open (or at the
close, by setting). Warm-up values are NaN; x/0 is NaN; any comparison with NaN is false; rules
are ignored until the longest lookback of the rules has passed."""


def builtin_lines() -> list[str]:
    """One line per built-in: signature and doc, grouped."""
    out = []
    for group in GROUPS:
        out.append(f"{group}:")
        for b in BUILTINS.values():
            if b.group == group:
                result = "condition" if b.result == "boolean" else "number"
                out.append(f"  {b.signature:<36} -> {result:<9} {b.doc}")
    return out


def reference_text() -> str:
    """The compact reference: syntax summary and every built-in (terminal and prompt)."""
    args = ("Arguments: x, y, lo, hi number series; c a condition; n, m, fast, slow, signal windows; "
            "k a number constant. Functions with no series argument read the bar's high, low, close, volume.")
    return "\n".join([_SYNTAX, "", "Built-in functions", args, *builtin_lines()]) + "\n"


def builtins_markdown() -> str:
    """The generated section of LANGUAGE.md: a table per group."""
    out = [BEGIN, ""]
    for group in GROUPS:
        out += [f"### {group.capitalize()}", "", "| function | result | warm-up | definition |", "|---|---|---|---|"]
        for b in BUILTINS.values():
            if b.group != group:
                continue
            result = "condition" if b.result == "boolean" else "number"
            doc = b.doc.replace("|", "\\|")  # |x| would end the table cell
            out.append(f"| `{b.signature}` | {result} | {b.warmup} | {doc} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def update_language_md(path: str | Path) -> bool:
    """Rewrite the generated section of LANGUAGE.md in place; True when it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    new = replace_generated(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
        return True
    return False


def replace_generated(text: str) -> str:
    """The text with its generated section replaced by the registry's current one."""
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"the markers {BEGIN!r} ... {END!r} are missing")
    return pattern.sub(lambda _: builtins_markdown(), text)
