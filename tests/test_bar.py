"""The pass bar: its syntax (autostrat.search.bar), its registration and immutability
(autostrat.search.session), and its grading, fail-closed and once (autostrat.honest.verdict)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_loop import DATA, SPLIT_FLAGS, market, small_settings, warm  # noqa: E402,F401 - fixtures

from autostrat.cli import main  # noqa: E402
from autostrat.errors import ConfigError  # noqa: E402
from autostrat.honest.verdict import VERDICT_FILE, grade, grade_run  # noqa: E402
from autostrat.search.bar import MAX_BAR_CHARS, STATISTICS, parse_bar  # noqa: E402
from autostrat.search.runs import RunFolder  # noqa: E402
from autostrat.search.session import resume_run, start_run  # noqa: E402


def test_a_valid_bar_reads_as_its_clauses():
    bar = parse_bar("test.sharpe > 0.5 and dsr>=0.95 and  pbo < 0.3 and test.excess_return > 5% and spa_pvalue < 1e-2")
    assert [(c.name, c.op, c.value) for c in bar.clauses] == [
        ("test.sharpe", ">", 0.5), ("dsr", ">=", 0.95), ("pbo", "<", 0.3), ("test.excess_return", ">", 0.05),
        ("spa_pvalue", "<", 0.01)]
    assert str(bar) == ("test.sharpe > 0.5 and dsr >= 0.95 and pbo < 0.3 and test.excess_return > 5% "
                        "and spa_pvalue < 1e-2")
    assert parse_bar(str(bar)) == bar
    assert parse_bar("validation.max_drawdown >= -0.2").clauses[0].holds(-0.1)


@pytest.mark.parametrize("text, message, hint", [
    ("dssr >= 0.95", "unknown name 'dssr'", "did you mean 'dsr'?"),
    ("test.sharp > 0.5", "unknown name 'test.sharp'", "did you mean 'test.sharpe'?"),
    ("foo.bar > 1", "unknown name 'foo.bar'", "names are PERIOD.METRIC"),
    ("dsr = 0.95", "comparison '=' is not allowed", "use one of"),
    ("dsr == 0.95", "comparison '==' is not allowed", "use one of"),
    ("dsr > 0.9 or pbo < 0.3", "'or' is not allowed", "join them with `and`"),
    ("not dsr > 0.9", "expected a name, found 'not'", ""),
    ("dsr >", "expected a number after dsr >", ""),
    ("dsr > high", "expected a number after dsr >", ""),
    ("dsr 0.9", "expected a comparison after 'dsr'", ""),
    ("dsr > 0.9 and", "the bar ends where a clause should start", ""),
    ("dsr > 0.9 pbo < 0.3", "expected `and` or the end of the bar, found 'pbo'", ""),
    ("(dsr > 0.9)", "expected a name, found '('", ""),
])
def test_a_bad_bar_says_where_and_what_to_do(text, message, hint):
    with pytest.raises(ConfigError) as info:
        parse_bar(text)
    out = str(info.value)
    assert out.startswith("bar:1:") and message in out and hint in out
    assert "^" in out  # a caret under the offending token


def test_bar_size_and_shape_are_bounded():
    with pytest.raises(ConfigError, match="at most"):
        parse_bar("dsr > 0.5 and " * (MAX_BAR_CHARS // 10))
    with pytest.raises(ConfigError, match="more than 20 clauses"):
        parse_bar(" and ".join(["dsr > 0.5"] * 21))
    with pytest.raises(ConfigError, match="empty"):
        parse_bar("   ")
    with pytest.raises(ConfigError, match="one line"):
        parse_bar("dsr > 0.5\nand pbo < 0.3")


def _report(stats=None, test=None, sealed_reason=""):
    base = {name: 0.5 for name in STATISTICS}
    base.update(pbo_reason="", spa_reason="")
    base.update(stats or {})
    metrics = {"validation": {"sharpe": 1.0}}
    if test is not None:
        metrics["test"] = test
    return {"stats": base, "best": {"iteration": 3, "metrics": metrics},
            "sealed": {"reason": sealed_reason, "openings": [{"opened_at": "t1", "after_iteration": 9}]}}


def test_grading_passes_only_when_every_clause_holds():
    bar = parse_bar("test.sharpe > 0.4 and dsr >= 0.5 and validation.sharpe > 0.9")
    verdict = grade(bar, _report(test={"sharpe": 0.45}))
    assert verdict["result"] == "PASS" and all(c["passed"] for c in verdict["clauses"])
    verdict = grade(bar, _report(test={"sharpe": 0.35}))
    assert verdict["result"] == "FAIL" and [c["passed"] for c in verdict["clauses"]] == [False, True, True]
    assert verdict["clauses"][0]["value"] == 0.35 and verdict["clauses"][0]["reason"] == ""


def test_grading_fails_closed_on_unknown_values_and_says_why():
    bar = parse_bar("test.sharpe > -1 and pbo < 0.9 and spa_pvalue < 0.9 and dsr > -1")
    verdict = grade(bar, _report(stats={"pbo": math.nan, "pbo_reason": "need at least 2 strategies",
                                        "spa_pvalue": math.nan, "spa_reason": "the test needs at least 20 days",
                                        "dsr": math.nan},
                                 test={"sharpe": math.nan}))
    assert verdict["result"] == "FAIL" and not any(c["passed"] for c in verdict["clauses"])
    reasons = [c["reason"] for c in verdict["clauses"]]
    assert "NaN" in reasons[0] and "no trades" in reasons[0]
    assert "need at least 2 strategies" in reasons[1] and "at least 20 days" in reasons[2]
    assert "could not be computed" in reasons[3]
    no_test = grade(parse_bar("test.total_return > -1"), _report(sealed_reason="the split has no test period"))
    assert no_test["result"] == "FAIL" and "no test period" in no_test["clauses"][0]["reason"]


def test_a_run_registers_its_bar_and_refuses_another_on_resume(tmp_path, warm):
    with pytest.raises(ConfigError, match="did you mean 'dsr'"):
        start_run(tmp_path / "bad", "bad", small_settings(proposer="mutate", bar="dssr > 0.9"))
    assert not (tmp_path / "bad").exists()  # nothing made before the bar was checked

    settings = small_settings(proposer="mutate", bar="dsr >= 0.95 and test.sharpe > 0.5")
    run, _ = start_run(tmp_path / "r", "r", settings)
    run.unlock()
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["settings"]["search"]["bar"] == "dsr >= 0.95 and test.sharpe > 0.5"
    with pytest.raises(ConfigError, match="cannot resume with --bar 'dsr >= 0.5'.*registered the bar"):
        resume_run(tmp_path / "r", settings, [("search.bar", "dsr >= 0.5", "--bar")])
    run2, s2, _ = resume_run(tmp_path / "r", settings, [("search.bar", "dsr>=0.95 and test.sharpe>0.5", "--bar")])
    run2.unlock()  # the same bar, spaced differently, is the same bar
    assert s2.search.bar == "dsr >= 0.95 and test.sharpe > 0.5"

    plain, _ = start_run(tmp_path / "plain", "plain", small_settings(proposer="mutate"))
    plain.unlock()
    with pytest.raises(ConfigError, match="registered no bar"):
        resume_run(tmp_path / "plain", settings, [("search.bar", "dsr > 0.5", "--bar")])


def test_grade_run_grades_once_per_opening_of_the_sealed_test(tmp_path, warm):
    run, _ = start_run(tmp_path / "g", "g", small_settings(proposer="mutate", bar="test.sharpe > 0.4"))
    first = grade_run(run, _report(test={"sharpe": 0.3}))
    assert first["latest"]["result"] == "FAIL" and first["latest"]["sealed_opened_at"] == "t1"
    again = grade_run(run, _report(test={"sharpe": 0.9}))  # same opening: read back, not graded again
    assert again["latest"]["result"] == "FAIL" and len(again["gradings"]) == 1
    later = _report(test={"sharpe": 0.9})
    later["sealed"]["openings"].append({"opened_at": "t2", "after_iteration": 20})
    third = grade_run(run, later)
    assert third["latest"]["result"] == "PASS" and [g["result"] for g in third["gradings"]] == ["FAIL", "PASS"]
    (run.path / VERDICT_FILE).write_text("{torn")
    fourth = grade_run(run, later)
    assert "moved to damaged" in fourth["earlier_gradings_lost"] and any((run.path / "damaged").iterdir())
    run.unlock()
    plain, _ = start_run(tmp_path / "p", "p", small_settings(proposer="mutate"))
    assert grade_run(plain, _report()) is None and not (plain.path / VERDICT_FILE).exists()
    plain.unlock()


def test_evolve_with_a_bar_prints_and_writes_the_verdict(tmp_path, warm):
    args = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", str(tmp_path), "--run", "b", "--proposer",
            "mutate", "--iterations", "4", "--bar", "test.excess_return > -10 and spa_pvalue < 2 and dsr > 2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    text = out.getvalue()
    assert re.search(r"^spa_pvalue: \d\.\d{4}$", text, re.M) and re.search(r"^rc_pvalue: \d\.\d{4}$", text, re.M)
    assert "bar_result: FAIL" in text and re.search(r"^bar_clause: dsr > 2: \S+ FAIL", text, re.M)
    assert re.search(r"^bar_clause: spa_pvalue < 2: \S+ pass$", text, re.M)
    verdict = json.loads((tmp_path / "b" / VERDICT_FILE).read_text())
    assert verdict["gradings"][0]["result"] == "FAIL"
    html = (tmp_path / "b" / "report.html").read_text()
    assert "Pass bar: <span" in html and "SPA p-value" in html
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["verdict"]["latest"]["result"] == "FAIL" and report["stats"]["spa_series"] == "validation"

    args = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", str(tmp_path), "--run", "nb", "--proposer",
            "mutate", "--iterations", "3"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    assert "bar: none registered" in out.getvalue() and not (tmp_path / "nb" / VERDICT_FILE).exists()
    assert "No pass bar was registered" in (tmp_path / "nb" / "report.html").read_text()
