"""Causality: no value on bar t depends on a later bar.

For each program and a random cut point t, every rule and every sub-expression computed by the VM
on the full history must equal, on bars 0..t, the same computed on the history cut after bar t
(Market.slice(0, t + 1)): bit for bit, NaN in the same places. The language has no way to write a
reference to a later bar; this checks that no kernel, lowering or register reuse introduces one.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import programs
from test_vm import MARKETS, jit, market, markets, node_values, program_files, sub_expressions  # noqa: F401

from autostrat.lang.check import check
from autostrat.tape.compile import RULE_ORDER, compile
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.parse import parse
from autostrat.tape.vm import run_tape

RANDOM = settings(max_examples=100, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def assert_causal(typed, market, cut: int) -> None:
    """Rules and sub-expressions on bars 0..cut agree between the full and the cut history."""
    part = market.slice(0, cut + 1)
    tape = compile(typed)
    full, short = run_tape(tape, market), run_tape(tape, part)
    for kind, reg in zip(RULE_ORDER, tape.outputs[0]):
        if reg >= 0:
            assert np.array_equal(full[reg, : cut + 1], short[reg], equal_nan=True), f"{kind} at cut {cut}"
    nodes = sub_expressions(typed)
    whole, head = node_values(typed, nodes, market), node_values(typed, nodes, part)
    for e in nodes:
        same = np.array_equal(whole[e][: cut + 1], head[e], equal_nan=True)
        assert same, f"{expr_text(e)[:200]}: bar {np.flatnonzero(whole[e][: cut + 1] != head[e])[:1]} at cut {cut}"


def cuts(size: int) -> list[int]:
    """Cut points: the first bars, around typical windows, mid-history and the last bars."""
    return [0, 1, 2, 13, 14, 49, 200, size // 2, size - 2, size - 1]


@pytest.mark.parametrize("market_name", sorted(MARKETS))
@pytest.mark.parametrize("path", program_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_program_files_are_causal(path, market_name, markets):
    typed = check(parse(path.read_text(encoding="utf-8"), str(path)))
    market = markets[market_name]
    for cut in cuts(len(market)):
        assert_causal(typed, market, cut)


@RANDOM
@given(program=programs(layout=False), market_name=st.sampled_from(sorted(MARKETS)), data=st.data())
def test_random_programs_are_causal(program, market_name, data, jit):
    bars = market(market_name)
    cut = data.draw(st.integers(0, len(bars) - 1), label="cut")
    assert_causal(check(program), bars, cut)
