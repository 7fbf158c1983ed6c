"""The language commands, run in-process: `autostrat check`, `fmt`, `reference`."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from autostrat.cli import main
from autostrat.lang.reference import BEGIN, END, builtins_markdown, reference_text
from autostrat.lang.registry import BUILTINS
from autostrat.resources import examples_dir

GOOD = "param n = 20 in 5..100\nf = sma(close, n)\nbuy when close > f\nsell when close < f\n"
MESSY = "param n=20 in 5..100\nf = sma( close,n )\nbuy when (close>f)\nsell when close<f\n"
BAD = "buy when clse > open\nsell when close < open\nstop_loss 8\n"
BROKEN = "buy when (close > open\nsell when close < open\n"


@pytest.fixture
def files(tmp_path):
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture
def run(capsys, monkeypatch):
    """Run `autostrat ARGV...` in-process; return (exit code, stdout, stderr)."""
    def run_(*argv, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run_


# --- check --------------------------------------------------------------------------------------

def test_check_ok(run, files):
    path = files("good.strat", GOOD)
    code, out, err = run("check", str(path))
    assert code == 0
    assert out == f"{path}: ok (buy, sell; warm-up 19 bars)\n"
    assert err == ""


def test_check_quiet(run, files):
    code, out, err = run("check", "-q", str(files("good.strat", GOOD)))
    assert (code, out, err) == (0, "", "")


def test_check_errors_in_the_one_format(run, files):
    good, bad = files("good.strat", GOOD), files("bad.strat", BAD)
    code, out, err = run("check", str(good), str(bad))
    assert code == 1
    assert out == f"{good}: ok (buy, sell; warm-up 19 bars)\n"
    assert err == (
        f"{bad}:1:10: error: unknown name 'clse'\n"
        "    buy when clse > open\n"
        "             ^\n"
        "hint: did you mean 'close'?\n"
        "\n"
        f"{bad}:3:11: error: stop_loss 8 is out of range (more than 0, at most 100%)\n"
        "    stop_loss 8\n"
        "              ^\n"
        "hint: 8 means 800%; write 8% for 8 percent\n"
        "1 of 2 files failed the check\n"
    )


def test_check_a_parse_error(run, files):
    bad = files("broken.strat", BROKEN)
    code, out, err = run("check", str(bad))
    assert code == 1
    assert err.startswith(f"{bad}:1:10: error: unbalanced parentheses: this '(' is never closed\n")
    assert err.endswith("1 of 1 file failed the check\n")


def test_check_stdin(run):
    code, out, err = run("check", "-", stdin=GOOD)
    assert code == 0 and out == "-: ok (buy, sell; warm-up 19 bars)\n"


def test_check_every_example(run):
    paths = sorted(str(p) for p in examples_dir().glob("*.strat"))
    code, out, err = run("check", *paths)
    assert code == 0 and err == ""
    assert out.count(": ok (") == len(paths)


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.strat", "no such file"),
    (lambda d: d, "error: this is a folder, not a strategy"),
    (lambda d: (d / "latin1.strat").write_bytes(b"# caf\xe9\nbuy when true\n") and d / "latin1.strat", "latin1.strat:1: error: not UTF-8 text (byte 0xe9"),
])
def test_unreadable_file_exits_2(run, tmp_path, make, message):
    path = make(tmp_path)
    for command in ("check", "fmt"):
        code, out, err = run(command, str(path))
        assert code == 2
        assert message in err and str(path) in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    capsys.readouterr()


# --- fmt ----------------------------------------------------------------------------------------

def test_fmt_check_names_the_files_that_would_change(run, files):
    messy, clean = files("messy.strat", MESSY), files("clean.strat", GOOD)
    code, out, err = run("fmt", "--check", str(messy), str(clean))
    assert code == 1
    assert out == f"would reformat {messy}\n"
    assert messy.read_text() == MESSY  # --check writes nothing
    code, out, err = run("fmt", "--check", str(clean))
    assert (code, out) == (0, "")


def test_fmt_rewrites_in_place(run, files):
    messy = files("messy.strat", MESSY)
    code, out, err = run("fmt", str(messy))
    assert code == 0
    assert out == f"reformatted {messy}\n"
    assert messy.read_text() == GOOD
    code, out, err = run("fmt", str(messy))
    assert (code, out) == (0, "")


def test_fmt_normalises_line_ends_and_byte_order_mark(run, tmp_path):
    crlf = tmp_path / "crlf.strat"
    crlf.write_bytes(GOOD.replace("\n", "\r\n").encode())
    bom = tmp_path / "bom.strat"
    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    code, out, err = run("check", str(crlf), str(bom))
    assert code == 0
    code, out, err = run("fmt", "--check", str(crlf), str(bom))
    assert (code, out) == (1, f"would reformat {crlf}\nwould reformat {bom}\n")
    run("fmt", str(crlf), str(bom))
    assert crlf.read_bytes() == bom.read_bytes() == GOOD.encode()


def test_fmt_stdin_to_stdout(run):
    code, out, err = run("fmt", "-", stdin=MESSY)
    assert (code, out, err) == (0, GOOD, "")


def test_fmt_check_stdin(run):
    code, out, err = run("fmt", "--check", "-", stdin=MESSY)
    assert (code, out) == (1, "would reformat -\n")
    code, out, err = run("fmt", "--check", "-", stdin=GOOD)
    assert (code, out) == (0, "")


def test_fmt_a_file_that_does_not_parse(run, files):
    broken = files("broken.strat", BROKEN)
    code, out, err = run("fmt", str(broken))
    assert code == 2
    assert err.startswith(f"{broken}:1:10: error: unbalanced parentheses")
    assert broken.read_text() == BROKEN


def test_fmt_only_needs_a_parse_not_a_check(run, files):
    # Formatting a strategy with checker errors is allowed: the layout is fixed before the meaning.
    bad = files("bad.strat", "buy when clse>open\n")
    code, out, err = run("fmt", str(bad))
    assert code == 0 and bad.read_text() == "buy when clse > open\n"


# --- reference ----------------------------------------------------------------------------------

def test_reference_text(run):
    code, out, err = run("reference")
    assert code == 0 and out == reference_text()
    for name in BUILTINS:
        assert f"  {name}(" in out


def test_reference_markdown(run):
    code, out, err = run("reference", "--markdown")
    assert code == 0 and out == builtins_markdown() + "\n"


def test_reference_update(run, files):
    doc = files("LANGUAGE.md", f"# Title\n\nbefore\n\n{BEGIN}\nstale\n{END}\n\nafter\n")
    code, out, err = run("reference", "--update", str(doc))
    assert (code, out) == (0, f"{doc}: updated\n")
    assert doc.read_text() == f"# Title\n\nbefore\n\n{builtins_markdown()}\n\nafter\n"
    code, out, err = run("reference", "--update", str(doc))
    assert (code, out) == (0, f"{doc}: already up to date\n")


def test_reference_update_without_markers_or_file_exits_2(run, files, tmp_path):
    doc = files("plain.md", "# no markers here\n")
    code, out, err = run("reference", "--update", str(doc))
    assert code == 2 and "markers" in err
    code, out, err = run("reference", "--update", str(tmp_path / "nope.md"))
    assert code == 2 and "nope.md" in err
