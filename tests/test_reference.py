"""The language reference: LANGUAGE.md's generated section, the compact text, and the registry."""

from __future__ import annotations

import re

import pytest

from autostrat.lang.reference import BEGIN, END, builtin_lines, builtins_markdown, reference_text, replace_generated
from autostrat.lang.registry import BUILTINS, GROUPS, MAX_LOOKBACK, SERIES, lookback
from autostrat.resources import examples_dir, grammar_dir

LANGUAGE_MD = grammar_dir() / "LANGUAGE.md"


def test_language_md_generated_section_is_current():
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    match = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    assert match, "LANGUAGE.md lost its generated-section markers"
    assert match.group() == builtins_markdown(), "run `autostrat reference --update grammar/LANGUAGE.md`"


def test_every_builtin_is_in_the_reference_text():
    text = reference_text()
    for b in BUILTINS.values():
        line = next(line for line in text.splitlines() if line.strip().startswith(b.signature + " "))
        assert b.doc in line
        assert ("-> condition" if b.result == "boolean" else "-> number") in line
    assert len(builtin_lines()) == len(BUILTINS) + len(GROUPS)


def test_every_builtin_is_in_the_markdown_tables_and_the_exact_definitions():
    table = builtins_markdown()
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    exact = text.split("### Exact definitions", 1)[1]
    for b in BUILTINS.values():
        assert f"| `{b.signature}` |" in table
        assert f"`{b.name}(" in exact, f"{b.name} has no exact definition in LANGUAGE.md"


def test_every_group_and_series_is_named():
    text = reference_text()
    for group in GROUPS:
        assert f"{group}:" in text
        assert f"### {group.capitalize()}" in builtins_markdown()
    assert " ".join(SERIES) in text
    assert str(MAX_LOOKBACK) in text
    assert {b.group for b in BUILTINS.values()} == set(GROUPS)


def test_markdown_table_cells_escape_pipes():
    for row in builtins_markdown().splitlines():
        if row.startswith("| `"):
            assert len(re.findall(r"(?<!\\)\|", row)) == 5, row


def test_replace_generated_keeps_the_rest():
    doc = f"intro\n{BEGIN}\nold\n{END}\noutro\n"
    assert replace_generated(doc) == f"intro\n{builtins_markdown()}\noutro\n"
    with pytest.raises(ValueError):
        replace_generated("no markers")


def test_the_registry_warmup_formulas_evaluate():
    # Each formula names only its own window arguments.
    for b in BUILTINS.values():
        windows = {p: 7 for p, k in zip(b.params, b.kinds) if k == "n"}
        assert lookback(b, windows) >= 0


def test_language_md_lists_every_example():
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    for path in examples_dir().glob("*.strat"):
        assert f"`{path.name}`" in text


def test_language_md_states_the_limits():
    from autostrat.lang.parse import MAX_DEPTH, MAX_NODES, MAX_SOURCE_BYTES, MAX_STATEMENTS

    text = LANGUAGE_MD.read_text(encoding="utf-8")
    for figure in (f"{MAX_SOURCE_BYTES:,}", str(MAX_STATEMENTS), str(MAX_DEPTH), f"{MAX_NODES:,}", "1e15",
                   str(MAX_LOOKBACK)):
        assert figure in text, figure


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```\n(.*?)^```$", text, re.M | re.S)


def test_language_md_example_program_checks():
    from autostrat.lang.check import load

    example = _code_blocks(LANGUAGE_MD.read_text(encoding="utf-8"))[0]
    typed = load(example)
    assert typed.warmup == 199  # sma(close, 200)
    assert set(typed.rules) == {"buy", "sell"} and set(typed.exits) == {"stop_loss", "take_profit"}


def test_language_md_error_examples_are_real_output():
    from autostrat.lang.check import load
    from autostrat.errors import StrategyError

    blocks = [b for b in _code_blocks(LANGUAGE_MD.read_text(encoding="utf-8")) if ": error: " in b]
    sources = [
        "# momentum: a filter\nx = close\nbuy when close = open\nsell when close < open\n",
        "# momentum\nbuy when clse > open\nsell when close < open\nstop_loss 8\n",
    ]
    assert len(blocks) == len(sources)
    for block, source in zip(blocks, sources):
        with pytest.raises(StrategyError) as info:
            load(source, "momentum.strat")
        assert info.value.format() + "\n" == block
