"""Prompt templates, their filling, the reading of answers, and the learnings log and its compaction."""

from __future__ import annotations

import re

import pytest

from autostrat.search import learnings as L
from autostrat.config import Settings
from autostrat.errors import AutostratError
from autostrat.search.population import Member
from autostrat.sim.objective import Objective
from autostrat.search.prompting import (
    compact_prompt, fill, iteration_prompt, last_result, metrics_table, placeholders, read_answer,
    repair_prompt, shown_metrics, system_prompt, template,
)
from autostrat.lang.reference import reference_text
from autostrat.resources import prompts_dir
from autostrat.sim.metrics import METRIC_NAMES

OBJ = Objective.parse("validation.total_return")
PERIODS = {"train": {"first": "2000-01-03", "last": "2003-12-31", "bars": 1042},
           "validation": {"first": "2004-01-01", "last": "2004-12-31", "bars": 262}}
TEMPLATES = ("program", "iteration", "repair", "compact", "portfolio")


def _metrics(v):
    m = {name: 0.0 for name in METRIC_NAMES}
    return {"train": dict(m, total_return=v / 2, buy_hold_return=0.3141),
            "validation": dict(m, total_return=v, buy_hold_return=0.2718)}


def _record(i, status="keep", v=0.5, **extra):
    r = {"iteration": i, "status": status, "parent": None if i == 0 else i - 1, "objective": v,
         "metrics": _metrics(v) if status in ("keep", "discard") else None,
         "hypothesis": f"idea number {i}", "learned": f"lesson {i}"}
    r.update(extra)
    return r


# --- templates -----------------------------------------------------------------------------------

def test_templates_hard_code_no_limits_and_no_metric_names():
    for name in TEMPLATES:
        text = template(name)
        code_free = re.sub(r"```.*?```", "", text, flags=re.S)
        assert not re.findall(r"\b\d+\b", code_free), f"{name}.md hard-codes a number"
        for metric in METRIC_NAMES:
            assert metric not in text, f"{name}.md names the metric {metric}"


def test_every_template_placeholder_is_filled():
    s = Settings()
    s.search.population, s.search.max_fails, s.search.iterations, s.search.repair_attempts = 7, 4, 33, 6
    system = system_prompt(s, Objective.parse("train.sharpe"), PERIODS, "SPY")
    parent = Member(2, 0.5, _metrics(0.5), "buy when close > open\nsell when close < open\n")
    other = Member(0, 0.25, _metrics(0.25), "buy when true\nsell when false\n")
    user = iteration_prompt(s, OBJ, 3, parent, [parent, other], "## iter 0\n- lesson", _record(2), 1)
    texts = [system, user, repair_prompt("x.strat:1:1: error: bad", 1, 6), compact_prompt("log", 1000)]
    for text in texts:
        assert "{{" not in text and "}}" not in text
    assert "7" in system and "4 failures" in system and "33 iterations" in system and "6 chances" in system
    assert "train.sharpe" in system and "2004-01-01 to 2004-12-31" in system
    assert reference_text().strip() in system
    listed = re.search(r"these metrics for both periods: (.*?)\.", system, re.S).group(1)
    assert listed.split(", ") == list(shown_metrics(Objective.parse("train.sharpe")))  # what the tables show
    assert "Iteration 3 of 33" in user and "Iterations left after this one: 29" in user
    assert "buy when close > open" in user and "buy when true" in user
    assert user.count("0.3141") >= 2  # buy and hold beside the strategy's numbers


def test_fill_is_strict_and_single_pass():
    with pytest.raises(KeyError, match="b"):
        fill("{{a}} {{b}}", {"a": 1})
    assert fill("{{a}}", {"a": "{{a}}"}) == "{{a}}"  # a value is never re-scanned
    for path in prompts_dir().glob("*.md"):
        assert placeholders(path.read_text()) or path.name == "__init__.py"


def test_metrics_table_puts_the_objective_first_and_shows_buy_and_hold():
    table = metrics_table(_metrics(0.5), Objective.parse("validation.sharpe"))
    rows = table.splitlines()
    assert rows[0] == "| metric | train | validation |"
    assert rows[2].startswith("| sharpe |")
    assert "| buy_hold_return | 0.3141 | 0.2718 |" in table
    assert metrics_table(None, OBJ) == "(not evaluated)"


def test_last_result_says_what_happened():
    assert "duplicate of iter 1" in last_result(_record(4, "duplicate", None, duplicate_of=1), OBJ)
    invalid = last_result(_record(4, "invalid", None, error="c.strat:2:5: error: unknown name\n  x\n  ^",
                                  repairs=2), OBJ)
    assert "invalid after 2 repairs" in invalid and "unknown name" in invalid and "^" in invalid
    discard = last_result(_record(4, "discard", 0.1, worst_kept=0.3), OBJ)
    assert "discarded (the worst kept is 0.3000)" in discard and "| total_return |" in discard
    kept = last_result(_record(4, "keep", 0.9), OBJ, shown={4})
    assert "| total_return |" not in kept and "kept" in kept


# --- answers -------------------------------------------------------------------------------------

STRAT = "# hypothesis: faster average\n# learned: slow lags\nbuy when close > sma(close, 10)\nsell when close < sma(close, 10)\n"


@pytest.mark.parametrize("answer", [
    f"Here it is.\n```strat\n{STRAT}```\nDone.",
    f"```\n{STRAT}```",
    f"```text\n{STRAT}```",
    STRAT,
    f"<think>maybe ```strat\nbuy when false\n```</think>\n```strat\n{STRAT}```",
    f"```markdown\n- notes first\n```\n```strat\n{STRAT}```",
])
def test_read_answer_finds_the_strategy(answer):
    a = read_answer(answer)
    assert a.strategy.strip() == STRAT.strip()
    assert a.hypothesis == "faster average"
    assert a.learned.startswith("slow lags")


def test_read_answer_takes_a_markdown_block_as_learnings():
    a = read_answer(f"```strat\n{STRAT}```\n```markdown\n- long lookbacks lag\n```")
    assert a.learned == "slow lags\n- long lookbacks lag"


def test_read_answer_unterminated_fence_keeps_the_rest():
    a = read_answer("```strat\nbuy when close > open\nsell when clo")
    assert a.strategy == "buy when close > open\nsell when clo"


@pytest.mark.parametrize("answer", ["", "   ", "I would add an RSI filter to reduce whipsaws.",
                                    "```python\ndef strategy(): pass\n```"])
def test_read_answer_without_a_strategy_says_so(answer):
    a = read_answer(answer)
    assert a.strategy is None and a.problem


# --- learnings -----------------------------------------------------------------------------------

def test_learnings_entry_has_hypothesis_result_and_lesson():
    text = L.render([_record(0), _record(1, "discard", 0.2, worst_kept=0.5)], OBJ)
    assert text.startswith(L.HEADER)
    assert "## iter 0: baseline" in text and "## iter 1: discard (parent 0)" in text
    assert "- hypothesis: idea number 1" in text and "- learned: lesson 1" in text
    assert "validation.total_return 0.2000 (total_return: train 0.1000, validation 0.2000; buy and hold " \
           "return: train 0.3141, validation 0.2718) -> discarded (the worst kept is 0.5000)" in text


def _many(n):
    statuses = ["keep", "discard", "invalid", "duplicate", "discard", "error"]
    out = []
    for i in range(n):
        status = "keep" if i == 0 else statuses[i % len(statuses)]
        v = 0.1 * i if status in ("keep", "discard") else None
        out.append(_record(i, status, v, error="boom", duplicate_of=0))
    return out


def test_learnings_below_the_budget_are_shown_in_full():
    records = _many(3)
    view = L.for_prompt(records, OBJ, 100_000)
    assert view.compacted == "" and all(f"## iter {i}" in view.text for i in range(3))


def test_fold_without_a_model_counts_the_oldest_entries():
    records = _many(30)
    view = L.for_prompt(records, OBJ, 2000)
    assert view.compacted == "folded" and len(view.text) <= 2000
    m = re.search(r"\(iterations 0-(\d+) folded into counts: (.*?); best", view.text)
    last_folded = int(m.group(1))
    older = records[: last_folded + 1]
    expected = {s: sum(r["status"] == s for r in older) for s in ("keep", "discard", "invalid", "duplicate", "error")}
    listed = dict((k, int(v)) for v, k in (part.split() for part in m.group(2).split(", ")))
    assert listed == {k: v for k, v in expected.items() if v}
    best = max((r for r in older if r["objective"] is not None), key=lambda r: r["objective"])
    assert f"at iter {best['iteration']}" in view.text
    assert "## iter 29:" in view.text and f"## iter {last_folded}:" not in view.text
    assert f"## iter {last_folded + 1}:" in view.text  # nothing between the fold and the entries


def test_summary_with_a_model_then_later_entries_after_it():
    records = _many(30)
    calls = []

    def summarise(text):
        calls.append(text)
        return "- momentum works\n- RSI filters do not", {"total": 50, "calls": 1}

    view = L.for_prompt(records, OBJ, 2000, None, summarise)
    assert len(calls) == 1 and "## iter 29" in calls[0]
    assert view.compacted == "summary" and view.summary == {"through": 29, "text": view.summary["text"]}
    assert view.text.startswith("Summary of iterations 0-29") and view.tokens == {"total": 50, "calls": 1}
    more = records + [_record(30, "keep", 3.0)]
    again = L.for_prompt(more, OBJ, 2000, view.summary, summarise)
    assert len(calls) == 1 and again.summary is None  # reused: summary + one entry fit
    assert "momentum works" in again.text and "## iter 30:" in again.text


def test_summary_too_long_or_empty_falls_back_to_folding():
    records = _many(30)
    for answer in ("", "x" * 5000):
        view = L.for_prompt(records, OBJ, 2000, None, lambda text: (answer, {"total": 7}))
        assert view.compacted == "folded" and view.tokens == {"total": 7} and len(view.text) <= 2000


def test_nan_objectives_fold_without_a_best():
    records = [_record(i, "invalid", None, error="bad") for i in range(40)]
    text = L.fold(records, OBJ, 1200)
    assert "40 invalid" in text or "invalid" in text.split(")")[0]
    assert "best" not in text.split(")")[0]


# --- replacement templates ([search] prompts_dir) ------------------------------------------------------

def test_a_prompts_dir_replaces_only_the_templates_it_holds(tmp_path):
    from autostrat.search.prompting import check_prompts_dir, repair_prompt

    (tmp_path / "repair.md").write_text("Fix this ({{attempt}}/{{attempts}}):\n{{error}}\n")
    assert check_prompts_dir(str(tmp_path)) == ["repair"]
    assert repair_prompt("bad rule", 1, 2, str(tmp_path)) == "Fix this (1/2):\nbad rule\n"
    assert "Your strategy could not be used" in repair_prompt("bad rule", 1, 2)  # the shipped one


@pytest.mark.parametrize("name, text, message", [
    ("repair.md", "{{error}} {{eror}}", "unknown placeholder {{eror}} (did you mean {{error}}?)"),
    ("repair.md", "Try again.", "must use {{error}}"),
    ("iteration.md", "{{parent_text}}", "must use {{last_result}}"),
    ("system.md", "hello", "not a prompt template; the templates are program.md"),
    ("compact.md", b"{{learnings}} caf\xe9", "not UTF-8 text"),
])
def test_a_template_that_cannot_serve_is_refused_before_the_run(tmp_path, name, text, message):
    from autostrat.search.prompting import check_prompts_dir

    (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(AutostratError, match=re.escape(message)):
        check_prompts_dir(str(tmp_path))
    with pytest.raises(AutostratError, match="no such folder"):
        check_prompts_dir(str(tmp_path / "nope"))
