"""The pass bar: a condition over a run's final numbers, registered before the search starts.

    test.sharpe > 0.5 and dsr >= 0.95 and pbo < 0.3 and spa_pvalue < 0.05

A bar is one or more clauses joined by `and`; every clause is `NAME OP NUMBER` with OP one of
`<  <=  >  >=` and NUMBER a decimal (`-0.5`, `1e-3`, `5%` = 0.05). NAME is a metric of the best
strategy in a period (`train.METRIC`, `validation.METRIC`, `test.METRIC`, METRIC from
autostrat.sim.metrics, in a portfolio run from autostrat.sim.portfolio_metrics) or one of the run's statistics (`STATISTICS` below). There is no `or` and
no `not`: a registered bar is a list of conditions that must all hold, and each is graded and shown
on its own. The language is regular, so it is read by one tokenizer and a loop rather than a lark
grammar; errors still use the project's one format, with a caret under the offending token.

`parse_bar` checks a bar when a run starts (`autostrat.search.session.start_run`); the run's
config.json keeps its text (`settings.search.bar`) and a resume with another bar is refused.
autostrat.honest.verdict grades it once the sealed test has been opened.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from autostrat.errors import ConfigError, Diagnostic
from autostrat.sim.backtest import ALL_PERIODS
from autostrat.sim.metrics import METRIC_NAMES
from autostrat.sim.portfolio_metrics import PORTFOLIO_METRIC_NAMES

MAX_BAR_CHARS = 1000
MAX_CLAUSES = 20

# The run statistics a bar may name (keys of the report's `stats`, autostrat.honest.run_statistics
# and autostrat.honest.spa) and what each is, for did-you-mean and docs/overfitting.md.
STATISTICS = {
    "psr": "Probabilistic Sharpe Ratio of the best strategy (0..1)",
    "dsr": "Deflated Sharpe Ratio of the best strategy (0..1)",
    "pbo": "Probability of Backtest Overfitting over all trials (0..1)",
    "prob_oos_loss": "share of CSCV splits in which the in-sample best lost out of sample",
    "sharpe_annual": "annualised Sharpe ratio of the best on the selection period",
    "expected_max_sharpe_annual": "the best annualised Sharpe ratio expected from the trials by luck",
    "track_record": "days the best strategy's Sharpe ratio was measured on",
    "min_track_record": "days needed for PSR to reach 95%",
    "min_track_record_deflated": "days needed for DSR to reach 95%",
    "n_trials": "evaluated candidates",
    "spa_pvalue": "Hansen's SPA p-value: no trial beats buy and hold (0..1)",
    "rc_pvalue": "White's Reality Check p-value: no trial beats buy and hold (0..1)",
}
OPERATORS = ("<=", ">=", "<", ">")
_TOKEN = re.compile(r"\s*(?:(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?%?)"
                    r"|(?P<op><=|>=|==|!=|=|<|>)|(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)"
                    r"|(?P<other>\S))")


@dataclass(frozen=True)
class Clause:
    """One condition: `name op value` (value already divided by 100 when written with %)."""

    name: str
    op: str
    value: float
    text: str  # as written, e.g. "test.excess_return > 5%"

    def holds(self, x: float) -> bool:
        """Whether a known value meets the clause (the caller deals with unknown values)."""
        return {"<": x < self.value, "<=": x <= self.value, ">": x > self.value, ">=": x >= self.value}[self.op]


@dataclass(frozen=True)
class Bar:
    """A parsed pass bar: its clauses, all of which must hold."""

    clauses: tuple[Clause, ...]

    def __str__(self) -> str:
        return " and ".join(c.text for c in self.clauses)


def known_names(portfolio: bool = False) -> list[str]:
    """Every name a bar may use (in a portfolio run, with a portfolio's metrics)."""
    metrics = PORTFOLIO_METRIC_NAMES if portfolio else METRIC_NAMES
    return [f"{p}.{m}" for p in ALL_PERIODS for m in metrics] + list(STATISTICS)


def _error(text: str, column: int, message: str, hint: str = "") -> ConfigError:
    return ConfigError(Diagnostic(message, 1, column, hint, "bar", text).format())


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, 1-based column) of each token."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # only trailing blanks are left
            break
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind) + 1))
        pos = m.end()
    return out


def _check_name(text: str, word: str, column: int, portfolio: bool) -> str:
    names = known_names(portfolio)
    if word in names:
        return word
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else ""
    period, dot, metric = word.partition(".")
    if not close and dot and period in ALL_PERIODS:
        hint = f"metrics are {', '.join(PORTFOLIO_METRIC_NAMES if portfolio else METRIC_NAMES)}"
    elif not close:
        hint = f"names are PERIOD.METRIC ({', '.join(ALL_PERIODS)}) or {', '.join(STATISTICS)}"
    return _fail(text, column, f"unknown name {word!r} in the bar", hint)


def _fail(text: str, column: int, message: str, hint: str = ""):
    raise _error(text, column, message, hint)


def parse_bar(text: str, portfolio: bool = False) -> Bar:
    """Read a bar (`NAME OP NUMBER and ...`); ConfigError, with a caret, for anything else.

    `portfolio`: the bar of a portfolio run, whose metrics are a portfolio's."""
    text = str(text)
    if len(text) > MAX_BAR_CHARS:
        raise ConfigError(f"bar: {len(text)} characters; a bar has at most {MAX_BAR_CHARS}")
    if "\n" in text or "\r" in text:
        raise ConfigError("bar: write the bar on one line (clauses joined by `and`)")
    tokens = _tokens(text)
    if not tokens:
        raise ConfigError("bar: empty; write clauses such as `test.sharpe > 0.5 and dsr >= 0.95`")
    clauses, i = [], 0
    example = "write NAME OP NUMBER, e.g. `dsr >= 0.95`"
    while True:
        if i >= len(tokens):
            _fail(text, len(text) + 1, "the bar ends where a clause should start", example)
        kind, word, col = tokens[i]
        if kind != "name" or word in ("and", "or", "not"):
            _fail(text, col, f"expected a name, found {word!r}", example)
        name = _check_name(text, word, col, portfolio)
        if i + 1 >= len(tokens) or tokens[i + 1][0] != "op":
            where = tokens[i + 1][2] if i + 1 < len(tokens) else len(text) + 1
            _fail(text, where, f"expected a comparison after {name!r}", f"use one of {' '.join(OPERATORS)}")
        op, op_col = tokens[i + 1][1], tokens[i + 1][2]
        if op not in OPERATORS:
            _fail(text, op_col, f"comparison {op!r} is not allowed in a bar",
                  f"use one of {' '.join(OPERATORS)}: a measured number is never exactly equal to a threshold")
        if i + 2 >= len(tokens) or tokens[i + 2][0] != "number":
            where = tokens[i + 2][2] if i + 2 < len(tokens) else len(text) + 1
            _fail(text, where, f"expected a number after {name} {op}", "e.g. 0.5, -0.1, 1e-3 or 5%")
        number = tokens[i + 2][1]
        value = float(number[:-1]) / 100 if number.endswith("%") else float(number)
        clauses.append(Clause(name, op, value, f"{name} {op} {number}"))
        if len(clauses) > MAX_CLAUSES:
            _fail(text, col, f"more than {MAX_CLAUSES} clauses", "a bar is a few conditions you would believe")
        i += 3
        if i >= len(tokens):
            return Bar(tuple(clauses))
        kind, word, col = tokens[i]
        if word == "or" or word == "not":
            _fail(text, col, f"{word!r} is not allowed in a bar",
                  "a bar is a list of conditions that must all hold: join them with `and`")
        if word != "and":
            _fail(text, col, f"expected `and` or the end of the bar, found {word!r}")
        i += 1
