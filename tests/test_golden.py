"""Golden strategy files: tests/programs/*.strat, each carrying its expected outcome in comments.

    # expect: ok                      parses and checks
    # expect: warmup N                ... with a static warm-up of N bars
    # expect error: LINE:COL TEXT     a diagnostic at LINE:COL whose message or hint contains TEXT

A file may expect several errors (the checker reports every problem at once); it must produce
exactly those diagnostics, no more. The warm-ups were worked out by hand from the definitions in
grammar/LANGUAGE.md, not copied from the checker.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.errors import StrategyError
from autostrat.lang.fmt import fmt
from autostrat.lang.parse import parse
from autostrat.lang.registry import BUILTINS

PROGRAMS = Path(__file__).parent / "programs"
FILES = sorted(PROGRAMS.glob("*.strat"))

_OK = re.compile(r"#\s*expect:\s*ok\s*$", re.M)
_WARMUP = re.compile(r"#\s*expect:\s*warmup\s+(\d+)\s*$", re.M)
_ERROR = re.compile(r"#\s*expect error:\s*(\d+):(\d+)\s+(.+?)\s*$", re.M)


def _expectations(text: str):
    errors = [(int(line), int(col), msg) for line, col, msg in _ERROR.findall(text)]
    warmups = [int(w) for w in _WARMUP.findall(text)]
    return bool(_OK.search(text)), warmups, errors


def test_there_are_golden_files():
    assert len([f for f in FILES if f.name.startswith("ok_")]) >= 10
    assert len([f for f in FILES if f.name.startswith("err_")]) >= 40


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_golden(path: Path):
    text = path.read_text(encoding="utf-8")
    ok, warmups, errors = _expectations(text)
    assert ok != bool(errors), f"{path.name}: expect either `ok` or errors, not both or neither"
    if ok:
        typed = check(parse(text, str(path)))
        for w in warmups:
            assert typed.warmup == w
        return
    with pytest.raises(StrategyError) as info:
        check(parse(text, str(path)))
    diags = info.value.diagnostics
    got = [(d.line, d.column, f"{d.message}\nhint: {d.hint}") for d in diags]
    assert len(diags) == len(errors), f"expected {errors}, got {got}"
    for (line, col, want), (gl, gc, gtext), d in zip(errors, got, diags):
        assert (gl, gc) == (line, col), f"{want!r}: expected at {line}:{col}, got {gl}:{gc}: {gtext}"
        assert want in gtext
        assert d.path == str(path)
        # The rendered error names the place and carries the source line when there is one.
        rendered = d.format()
        assert rendered.startswith(f"{path}:{line}:{col}: error: {d.message}")
        source = text.split("\n")[line - 1] if line <= text.count("\n") + 1 else ""
        if source.strip() and len(source) <= 200:  # longer lines are shown cut around the column
            assert rendered.split("\n")[1] == "    " + source.expandtabs(1)
            assert rendered.split("\n")[2] == "    " + " " * (col - 1) + "^"


def _calls(program: N.Program) -> set[str]:
    out = set()
    for s in program.statements:
        expr = getattr(s, "expr", None)
        if expr is not None:
            out |= {n.func for n in N.walk(expr) if isinstance(n, N.Call)}
    return out


def test_every_builtin_appears_in_a_valid_golden_file():
    used = set()
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        if _expectations(text)[0]:
            used |= _calls(parse(text, str(path)))
    # Golden programs are single-asset (test_vm runs them all); the cross-sectional built-ins are
    # pinned in tests/test_portfolio_lang.py and tests/test_portfolio.py.
    series = {name for name, b in BUILTINS.items() if not b.cross_sectional}
    assert used == series, f"not covered: {sorted(series - used)}"


def test_every_operator_appears_in_a_valid_golden_file():
    seen = set()
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        if not _expectations(text)[0]:
            continue
        for s in parse(text, str(path)).statements:
            expr = getattr(s, "expr", None)
            for node in N.walk(expr) if expr is not None else ():
                if isinstance(node, (N.Binary, N.Unary)):
                    seen.add(node.op)
                elif isinstance(node, N.Lag):
                    seen.add("[]")
                elif isinstance(node, N.Bool):
                    seen.add(str(node.value))
    want = set(N.ARITHMETIC) | set(N.COMPARISONS) | set(N.LOGIC) | {"not", "[]", "True", "False"}
    assert want <= seen, f"not covered: {sorted(want - seen)}"


@pytest.mark.parametrize("path", [f for f in FILES if f.name.startswith("ok_")], ids=lambda p: p.name)
def test_valid_golden_files_survive_formatting(path: Path):
    program = parse(path.read_text(encoding="utf-8"), str(path))
    text = fmt(program)
    again = parse(text)
    assert again == program
    assert fmt(again) == text
    assert check(again).warmup == check(program).warmup
