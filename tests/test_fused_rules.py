"""Rules read bar by bar (Tape.rules, Tape.run_code) against the VM's rule rows, bit for bit.

Evaluation skips the comparisons that only feed rules and compares their operands inside the
simulator (autostrat.sim.simulate.rule_bits_nb). The reference here is the other path: the full tape
writes every rule as a row of 1.0/0.0, simulate_nb trades those rows, metrics_nb scores them. The
two must agree in every bit of every metric, on every program file and on random programs, with
either fill, with costs and with the indicators run on each period alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import programs
from test_vm import MARKETS, RANDOM, jit, market, markets, program_files  # noqa: F401

from autostrat.config import Settings
from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.lang.parse import parse
from autostrat.sim.grid import set_param
from autostrat.sim.evaluate import evaluate_arrays, evaluate_tape, spans_array
from autostrat.sim.metrics import METRIC_NAMES, metrics_nb
from autostrat.sim.simulate import evaluation_args, period_simulation
from autostrat.tape.compile import FUSED_OPS, compile, compile_many
from autostrat.tape.template import compile_variants

SETTINGS = {
    "close, no costs": dict(fill="close", commission_bps=0.0, slippage_bps=0.0),
    "next open, costs": dict(fill="next_open", commission_bps=5.0, slippage_bps=2.0),
    "per period": dict(fill="next_open", commission_bps=1.0, slippage_bps=0.0, indicators="period"),
}


def settings_of(name: str) -> Settings:
    s = Settings()
    s.backtest = dataclasses.replace(s.backtest, **SETTINGS[name])
    return s


def reference(tape, market, spans, settings, program=0) -> np.ndarray:
    """Metrics through the VM's rule rows: simulate_nb over `Tape.code`'s registers, metrics_nb."""
    out = np.empty((len(spans), len(METRIC_NAMES)))
    bt = settings.backtest
    for j, (a, b) in enumerate(spans.values()):
        equity, position, trades = period_simulation(tape, market, a, b, bt, program=program)
        metrics_nb(equity, position, trades, market.close, a, b, bt.initial_capital, out[j])
    return out


def assert_same_bits(tape, market, settings) -> None:
    n = len(market)
    spans = {"first": (0, n // 3), "second": (n // 3, n - 40), "last": (n - 40, n)}
    got = evaluate_tape(tape, market, spans, settings.backtest)
    for p in range(tape.n_programs):
        want = reference(tape, market, spans, settings, p)
        assert got[p].tobytes() == want.tobytes(), (p, tape.names[p])


@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("market_name", sorted(MARKETS))
def test_program_files_score_as_their_rule_rows(market_name, setting, markets):
    typed = [check(parse(path.read_text(encoding="utf-8"), str(path))) for path in program_files()]
    market = markets[market_name]
    for t in typed:
        assert_same_bits(compile(t), market, settings_of(setting))
    assert_same_bits(compile_many(typed), market, settings_of(setting))  # shared registers, reused ones


@RANDOM
@given(program=programs(layout=False), market_name=st.sampled_from(sorted(MARKETS)),
       setting=st.sampled_from(sorted(SETTINGS)))
def test_random_programs_score_as_their_rule_rows(program, market_name, setting, jit):
    assert_same_bits(compile(check(program)), market(market_name), settings_of(setting))


def test_every_comparison_is_read_bar_by_bar_and_the_vm_skips_it(markets):
    ops = ("<", "<=", ">", ">=", "==", "!=")
    texts = [f"buy when sma(close, 3) {a} sma(close, 7)\nsell when close {b} open\n" for a in ops for b in ops]
    texts += ["buy when cross_above(close, sma(close, 5))\nsell when cross_below(close, sma(close, 5))\n",
              "buy when (close > open)[2]\nsell when not (close > open)\n",
              # NaN after the warm-up (the root of a negative number): != is false there, unlike IEEE
              "buy when sqrt(close - open) != sqrt(open - close)\nsell when sqrt(close - open) == 0\n",
              "buy when sqrt(close - open) >= sqrt(high - close)\nsell when sqrt(open - close) < 0.5\n"]
    typed = [check(parse(t)) for t in texts]
    tape = compile_many(typed)
    assert set(tape.rules[:, :2, 0].ravel().tolist()) - {-1} <= FUSED_OPS
    assert len(tape.run_code) < len(tape.code)
    for name in SETTINGS:
        for m in markets.values():
            assert_same_bits(tape, m, settings_of(name))


def test_a_comparison_another_instruction_reads_stays_a_register(markets):
    typed = check(parse("c = close > open\nbuy when c\nsell when not c\n"))
    tape = compile(typed)
    assert tape.rules[0, 0, 0] == -1 and tape.rules[0, 0, 1] >= 0  # `c` feeds `not`: kept as a row
    assert_same_bits(tape, markets["synthetic"], settings_of("next open, costs"))


def test_sweep_variants_keep_their_operands_alive(markets):
    text = ("param f = 5 in 2..40\nparam s = 30 in 10..90\n"
            "buy when ema(close, f) > sma(close, s)\nsell when ema(close, f) < sma(close, s)\n")
    base = check(parse(text))
    variants = []
    for f in (2, 5, 9, 30):
        for s in (10, 30, 31, 90):
            stmts = tuple(set_param(st_, {"f": f, "s": s}[st_.name]) if isinstance(st_, N.Param) else st_
                          for st_ in base.program.statements)
            variants.append(check(dataclasses.replace(base.program, statements=stmts)))
    tape = compile_variants(variants)
    for name in SETTINGS:
        assert_same_bits(tape, markets["extreme"], settings_of(name))


@pytest.mark.parametrize("market_name", sorted(MARKETS))
def test_a_batch_at_fill_close_mixing_exits_scores_each_program_as_alone(market_name, markets):
    """At fill close the programs without a stop, target, trailing stop or max_hold are scored by the
    simulators specialised for that and the others by the general ones, in and out of one batch,
    serial or parallel: every program's metrics have the bits its rule rows give."""
    typed = [check(parse(path.read_text(encoding="utf-8"), str(path))) for path in program_files()]
    assert any(t.exits for t in typed) and any(not t.exits for t in typed)
    market, settings = markets[market_name], settings_of("close, no costs")
    n = len(market)
    spans = {"first": (0, n // 2), "second": (n // 2, n)}
    tape = compile_many(typed)
    batch = evaluate_tape(tape, market, spans, settings.backtest)
    serial = evaluate_arrays(tape.run_code, tape.consts, tape.n_regs, tape.rules, tape.warmups, tape.exits,
                             market.open, market.high, market.low, market.close, market.volume,
                             spans_array(spans), *evaluation_args(settings.backtest)[:4], parallel=False)
    assert batch.tobytes() == serial.tobytes()
    for p, t in enumerate(typed):
        alone = evaluate_tape(compile(t), market, spans, settings.backtest)[0]
        assert batch[p].tobytes() == alone.tobytes() == reference(tape, market, spans, settings, p).tobytes(), t.name


def _bits_by_hand(x, y, kind, start, stop):
    """A rule's bits over [start, stop) by plain Python comparisons, the kernels' NaN rules included."""
    from autostrat.tape.opcodes import Op
    out = []
    for t in range(start, stop):
        u, v = x[t], y[t]
        if kind == -1:
            on = u > 0.0
        elif kind == Op.ne:
            on = u != v and not np.isnan(u) and not np.isnan(v)
        elif kind in (Op.cross_above, Op.cross_below):
            above = kind == Op.cross_above
            on = t >= 1 and ((u > v and x[t - 1] <= y[t - 1]) if above else (u < v and x[t - 1] >= y[t - 1]))
        else:
            on = {Op.gt: u > v, Op.lt: u < v, Op.ge: u >= v, Op.le: u <= v, Op.eq: u == v}[kind]
        out.append(1 if on else 0)
    return out


def test_rule_bits_match_plain_comparisons_at_every_period_edge():
    """rule_bits_nb indexes the period's slices from 0: every kind, on rows with NaNs and ties,
    over the whole history, an empty period and a short period starting at every later bar,
    gives the bits plain comparisons of the whole rows give, and writes nothing past the period."""
    from autostrat.sim.simulate import rule_bits_nb
    rng = np.random.default_rng(7)
    n = 60
    regs = rng.integers(0, 4, size=(3, n)).astype(np.float64) - 1.0  # ties, signs and zeros
    regs[:2, rng.integers(2, n, size=12)] = np.nan
    regs[:2, :2] = [[0.0, 1.0], [1.0, 0.0]]  # rows 0 and 1 cross at bar 1, the first bar of a period from 1
    for kind in [-1, *sorted(FUSED_OPS)]:
        for a, b in [(0, 1), (1, 0), (0, 2), (2, 1)]:
            for start, stop in [(0, n), (9, 9), *((s, min(n, s + 13)) for s in range(1, n))]:
                out = np.full(n + 2, 7, dtype=np.uint8)
                rule_bits_nb(regs, kind, a, b, start, stop, out)
                want = _bits_by_hand(regs[a], regs[b], kind, start, stop)
                assert out[:stop - start].tolist() == want, (kind, a, b, start)
                assert (out[stop - start:] == 7).all()
    out = np.full(5, 7, dtype=np.uint8)
    rule_bits_nb(regs, -1, -1, -1, 2, 6, out)  # no rule: off
    assert out.tolist() == [0, 0, 0, 0, 7]
