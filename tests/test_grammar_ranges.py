"""The typed grammar's numbers by value (autostrat.lang.grammar_ranges), against plain Python:
each tree matches exactly the numbers in its bounds, and a declared range always holds its value."""

from __future__ import annotations

import re

import pytest

from autostrat.lang import grammar_ranges as gr
from autostrat.lang.grammar_tree import regex_text


def matcher(tree):
    return re.compile(regex_text(tree, {}, bare=True)).fullmatch


def tenths_texts(t: int) -> list[str]:
    """How a value in tenths may be written: `I.D`, and `I` when it is whole."""
    return [f"{t // 10}.{t % 10}"] + ([str(t // 10)] if t % 10 == 0 else [])


@pytest.mark.parametrize("a,b", [(1, 1), (1, 9), (5, 17), (37, 37), (10, 99), (99, 1000), (120, 129),
                                 (129, 2520), (2500, 2520), (1, 2520)])
def test_whole_numbers_in_bounds_are_exactly_those_matched(a, b):
    match = matcher(gr.whole(a, b))
    assert {n for n in range(0, 3100) if match(str(n))} == set(range(a, b + 1))
    assert not match("0" + str(a))  # no leading zero


@pytest.mark.parametrize("a,b", [(1, 1), (1, 9), (5, 17), (10, 10), (15, 15), (20, 29), (29, 999), (100, 199),
                                 (1, 999)])
def test_numbers_with_tenths_in_bounds_are_exactly_those_matched(a, b):
    match = matcher(gr.tenths(a, b))
    for t in range(0, 1100):
        for text in tenths_texts(t):
            assert bool(match(text)) == (a <= t <= b), text


def test_classes_cover_every_value_once():
    for classes, top in ((gr.whole_classes(2520), 2520), (gr.tenths_classes(), gr.TENTHS_MAX)):
        covered = [v for a, b in classes for v in range(a, b + 1)]
        assert covered == list(range(1, top + 1))


def test_a_declared_whole_range_holds_its_value_and_common_ones_are_declarable():
    match = matcher(gr.declarations(gr.whole, gr.whole_classes(2520), 2520))
    for v in range(1, 140):
        for lo in range(0, 150):
            for hi in (lo, v, v + 1, 2 * v, 3 * v, 2520, 2521):
                assert not match(f"{v} in {lo}..{hi}") or 1 <= lo <= v <= hi <= 2520, (v, lo, hi)
    for text in ("20", "20 in 10..60", "2 in 2..10", "126 in 21..252", "55 in 20..120", "70 in 50..95",
                 "2520 in 1..2520"):
        assert match(text), text


def test_a_declared_percentage_range_holds_its_value():
    match = matcher(gr.declarations(gr.tenths, gr.tenths_classes(), gr.TENTHS_MAX, "%"))
    values = range(1, gr.TENTHS_MAX + 1, 7)
    for v in values:
        for lo in values:
            for hi in (lo, v, v + 9, 2 * v, gr.TENTHS_MAX):
                for tv, tlo, thi in zip(tenths_texts(v), tenths_texts(lo), tenths_texts(hi)):
                    assert not match(f"{tv}% in {tlo}%..{thi}%") or lo <= v <= hi
    for text in ("6% in 2%..15%", "0.5%", "99.9% in 0.1%..99.9%", "2.5% in 1%..4%"):
        assert match(text), text
    assert not match("100%") and not match("6 in 2..15")
