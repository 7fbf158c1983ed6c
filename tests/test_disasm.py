"""The disassembler and `autostrat disasm`: every instruction shows the source line it came from."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import program_texts, programs
from test_vm import EXAMPLES, ROOT, program_files

from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.cli import main
from autostrat.tape.compile import RULE_ORDER, compile, compile_many
from autostrat.tape.disasm import disassemble
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.parse import parse

LINE = re.compile(r"^(\d{4})  (\w+) +r(\d+) <- (.*?)(?: +; (?:program (\d+) line )?(\d+): (.*))?$")
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def typed_file(path):
    return check(parse(path.read_text(encoding="utf-8"), str(path)))


def statement_at(program: N.Program, line: int):
    """The assignment or rule written on `line` of the program's source."""
    for s in program.statements:
        if isinstance(s, (N.Assign, N.Rule)) and s.span.line <= line <= s.span.end_line:
            return s
    return None


def assert_lines_show_source(typed_list, tape) -> None:
    """Each instruction line names a source line of its program, the statement there contains
    the instruction's expression, and the rules and exits are listed."""
    text = disassemble(tape)
    body = [line for line in text.splitlines() if not line.startswith(";")]
    assert len(body) == len(tape)
    for i, line in enumerate(body):
        m = LINE.match(line)
        assert m and m.group(6), f"instruction {i} shows no source line: {line!r}"
        program = int(m.group(5) or 0)
        assert int(m.group(1)) == i and m.group(2) and int(m.group(3)) == tape.code[i, 1]
        assert (m.group(5) is not None) == (len(typed_list) > 1)
        typed = typed_list[program]
        number = int(m.group(6))
        source = typed.program.source.split("\n")
        assert m.group(7) == source[number - 1].strip()
        stmt = statement_at(typed.program, number)
        assert stmt is not None, f"line {number} holds no assignment or rule: {line!r}"
        assert tape.texts[i] in expr_text(stmt.expr), f"{tape.texts[i]!r} is not on line {number}"
    for p, typed in enumerate(typed_list):
        rules = ", ".join(f"{k} r{r}" for k, r in zip(RULE_ORDER, tape.outputs[p]) if r >= 0)
        assert f"rules: {rules}" in text


@pytest.mark.parametrize("path", program_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_instruction_shows_its_source_line(path):
    typed = typed_file(path)
    assert_lines_show_source([typed], compile(typed))


def test_batch_names_each_instructions_program():
    typed = [typed_file(p) for p in program_files()]
    tape = compile_many(typed)
    assert_lines_show_source(typed, tape)


@PROPERTY
@given(texts=st.lists(program_texts(), min_size=1, max_size=3))
def test_random_programs_show_their_source_lines(texts):
    typed = [check(parse(t)) for t in texts]
    tape = compile(typed[0]) if len(typed) == 1 else compile_many(typed)
    assert_lines_show_source(typed, tape)


@PROPERTY
@given(program=programs(layout=False))
def test_programs_without_source_show_their_expressions(program):
    tape = compile(check(program))
    body = [line for line in disassemble(tape).splitlines() if not line.startswith(";")]
    for i, line in enumerate(body):
        assert line.endswith(f" ; {tape.texts[i]}"), line
        assert tape.texts[i]


def test_sma_cross_listing():
    typed = typed_file(EXAMPLES[[p.name for p in EXAMPLES].index("sma_cross.strat")])
    text = disassemble(compile(typed))
    assert text.splitlines()[0] == '; sma 20/50 crossover: 4 instructions, 9 registers, warm-up 49 bars'
    assert "0000  sma              r5 <- r3:close, n=20" in text
    assert "; 8: f = sma(close, fast)" in text
    assert "; 9: s = sma(close, slow)" in text
    assert text.rstrip().endswith("; rules: buy r7, sell r8")


def test_exits_and_constants_are_listed():
    typed = check(parse("buy when bb_lower(close, 20, -1.5) > close\nsell when close > 2.5\n"
                        "stop_loss 5%\ntrailing_stop 12%\nmax_hold 30\n"))
    text = disassemble(compile(typed))
    assert "k=-1.5" in text and " <- 2.5 " in text
    assert text.rstrip().endswith("; exits: stop_loss 0.05, trailing_stop 0.12, max_hold 30")


# ---------------------------------------------------------------------------------- CLI


def test_cli_disasm_prints_the_tape(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["disasm", "grammar/examples/sma_cross.strat"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out == disassemble(compile(typed_file(EXAMPLES[[p.name for p in EXAMPLES].index("sma_cross.strat")])))
    assert "sma" in out.out and out.err == ""


def test_cli_disasm_batch(capsys):
    paths = [str(p) for p in EXAMPLES[:3]]
    assert main(["disasm", "--batch", *paths]) == 0
    out = capsys.readouterr().out
    assert out == disassemble(compile_many([typed_file(p) for p in EXAMPLES[:3]]))
    assert "; program 0: rules:" in out and "; program 2: rules:" in out


def test_cli_disasm_several_files(capsys):
    paths = [str(p) for p in EXAMPLES[:2]]
    assert main(["disasm", *paths]) == 0
    out = capsys.readouterr().out
    assert f"; {paths[0]}\n" in out and f"; {paths[1]}\n" in out


def test_cli_disasm_bad_file_exits_1_with_the_error_format(tmp_path, capsys):
    bad = tmp_path / "bad.strat"
    bad.write_text("buy when close > sma(close, 0)\nsell when foo\n", encoding="utf-8")
    assert main(["disasm", str(bad)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(f"{bad}:1:29: error: window n of sma is 0")
    assert "    buy when close > sma(close, 0)\n" in out.err and "\n" + " " * 32 + "^\n" in out.err
    assert f"{bad}:2:11: error: unknown name 'foo'" in out.err


def test_cli_disasm_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["disasm", str(tmp_path / "missing.strat")]) == 2
    assert "no such file" in capsys.readouterr().err
