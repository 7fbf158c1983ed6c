"""The VM against the slow reference evaluator (tests/reference_eval.py).

Every example, every golden program and hypothesis-random programs are compiled and run on a
synthetic market and on a market with extreme moves; each rule must equal the reference's
(booleans exactly, NaN never). Each instruction is also checked locally: its register must equal
the reference definition applied to the VM's own values of its operands (NaN positions identical,
values to 1e-9 relative), which pins every opcode's wiring without rounding amplification.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_eval import BINARY, ReferenceEvaluator, evaluate, reference_function
from strategies import programs

from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.tape.compile import RULE_ORDER, compile, compile_many
from autostrat.data.market import Market
from autostrat.lang.fmt import expr as expr_text
from autostrat.tape.kernels import warm_up_all
from autostrat.lang.parse import parse
from autostrat.lang.registry import BUILTINS
from autostrat.data.synthetic import synthetic_market
from autostrat.tape.vm import run_tape

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "grammar" / "examples").glob("*.strat"))
RTOL = 1e-9


def golden_ok() -> list[Path]:
    """Golden programs marked `# expect: ok`."""
    ok = re.compile(r"#\s*expect:\s*ok\s*$", re.M)
    return [p for p in sorted((ROOT / "tests" / "programs").glob("*.strat"))
            if ok.search(p.read_text(encoding="utf-8"))]


def program_files() -> list[Path]:
    """Every valid program file: the examples and the golden programs marked ok."""
    return EXAMPLES + golden_ok()


def file_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


# ------------------------------------------------------------------------------- markets


def extreme_market(bars: int = 700, seed: int = 5) -> Market:
    """A synthetic market with crashes, spikes, a flat stretch (all four prices equal), prices from
    hundredths of a cent to millions, and zero-volume bars."""
    base = synthetic_market(seed, bars)
    close = np.array(base.close)
    close[100:] *= 0.35  # a 65% crash in one bar
    close[200:] *= 4.0  # a fourfold spike
    close[300:340] = close[299]  # a flat stretch: zero ranges, zero deviations, flat RSI
    close[450:] *= 0.02  # a 98% collapse
    close[451:] *= 30.0  # and a thirtyfold rebound
    close[500:] *= 1e-4  # prices fall to hundredths of a cent
    close[600:] *= 1e5  # and jump far above where they started
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1.0 + np.abs(base.high / np.maximum(base.open, base.close) - 1.0))
    low = np.minimum(open_, close) * (1.0 - np.abs(1.0 - base.low / np.minimum(base.open, base.close)))
    high[300:340] = low[300:340] = open_[300:340] = close[300:340]
    volume = np.array(base.volume)
    volume[[0, 50, 51, 52, 310, 650]] = 0.0
    return Market(name="extreme", dates=base.dates, open=open_, high=high, low=low, close=close,
                  volume=volume, source="synthetic", sha256="")


MARKETS = {"synthetic": lambda: synthetic_market(11, 1500), "extreme": extreme_market}


@pytest.fixture(scope="session")
def jit() -> None:
    """Compile (or load from numba's cache) every kernel and the VM once per session."""
    warm_up_all()
    tape = compile(check(parse("buy when close > open\nsell when close < open\n")))
    run_tape(tape, synthetic_market(1, 50))


@functools.lru_cache(maxsize=None)
def market(name: str) -> Market:
    """One of MARKETS, built once per session."""
    return MARKETS[name]()


@pytest.fixture(scope="session")
def markets(jit) -> dict[str, Market]:
    return {name: market(name) for name in MARKETS}


RANDOM = settings(max_examples=100, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BATCHES = settings(RANDOM, max_examples=40)


# ---------------------------------------------------------------------------- comparisons


def assert_same_series(got: np.ndarray, want: np.ndarray, what: str, atol: float = 0.0) -> None:
    """NaN at the same bars and values equal to RTOL, or within atol (infinities equal)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    if not np.array_equal(nan_got, nan_want):
        bad = np.flatnonzero(nan_got != nan_want)
        raise AssertionError(f"{what}: NaN differs at bars {bad[:10].tolist()} "
                             f"(vm {got[bad[:5]].tolist()}, reference {want[bad[:5]].tolist()})")
    ok = ~nan_got
    close = np.isclose(got[ok], want[ok], rtol=RTOL, atol=atol) | (got[ok] == want[ok])
    if not close.all():
        bad = np.flatnonzero(ok)[~close]
        raise AssertionError(f"{what}: values differ at bars {bad[:10].tolist()} "
                             f"(vm {got[bad[:5]].tolist()}, reference {want[bad[:5]].tolist()})")


# Built-ins that work bar by bar; the others carry magnitudes forward (windows, recursions).
ELEMENTWISE = {"abs", "log", "sqrt", "exp", "sign", "min", "max", "clip", "if_else"}


class _TieAware(ReferenceEvaluator):
    """The reference evaluator, except that a comparison whose operands are equal up to rounding
    (and a cross at such a bar) takes the VM's answer: at a tie, rounding decides either way.

    Rounding is judged against the magnitude of what went into the operands, bar by bar: the
    difference of two ~100 prices may be off by 1e-14 even when it should be 0.
    """

    def __init__(self, typed, market, vm_values):
        super().__init__(typed, market)
        self.vm = vm_values
        self.ties = 0
        self.scales: dict[N.Expr, np.ndarray] = {}
        self.seen: dict[N.Expr, np.ndarray] = {}

    def expr(self, e):
        compare = isinstance(e, N.Binary) and e.op in N.COMPARISONS
        cross = isinstance(e, N.Call) and e.func in ("cross_above", "cross_below")
        if not (compare or cross):
            value = super().expr(e)
            self.seen[e] = value
            self.scales[e] = self.scale(e, value)
            return value
        left, right = (e.left, e.right) if compare else e.args
        a, b = self.expr(left), self.expr(right)
        value = BINARY[e.op](a, b) if compare else reference_function(e.func)(a, b)
        with np.errstate(invalid="ignore"):
            tie = np.abs(a - b) <= RTOL * np.maximum(self.scales[left], self.scales[right])
        if cross:
            tie = tie | np.concatenate(([False], tie[:-1]))
        self.ties += int(tie.sum())
        value = np.where(tie, self.vm[e], value)
        self.seen[e] = self.scales[e] = value
        return value

    def scale(self, e, value) -> np.ndarray:
        """The magnitude of the values an expression was computed from, at each bar: its rounding
        error is about RTOL times that, or less."""
        own = _magnitude(value)
        if isinstance(e, N.Name) and e.id in self.typed.bindings:
            return self.scales[self.typed.bindings[e.id]]
        if isinstance(e, N.Lag):
            inner = self.scales[e.expr]
            return np.maximum(own, np.concatenate((np.zeros(min(e.n, len(inner))), inner))[: len(inner)])
        if isinstance(e, N.Binary) and e.op in ("*", "/"):
            sa, sb = self.scales[e.left], self.scales[e.right]
            if e.op == "*":
                return _magnitude(sa * sb)
            with np.errstate(all="ignore"):
                b = np.abs(self.seen[e.right])
                return np.maximum.reduce([own, _magnitude(sa / b), _magnitude(own * sb / b)])
        if isinstance(e, (N.Unary, N.Binary)):
            return np.maximum.reduce([own, *(self.scales[k] for k in N.children(e))])
        if not isinstance(e, N.Call):
            return own
        b = BUILTINS[e.func]
        parts = [own] + [self.scales[a] for a, kind in zip(e.args, b.kinds) if kind in "xc"]
        parts += [_magnitude(a) for a in self.last_args if isinstance(a, np.ndarray)]
        scale = np.maximum.reduce(parts)
        return scale if e.func in ELEMENTWISE else np.maximum.accumulate(scale)


def _magnitude(values: np.ndarray) -> np.ndarray:
    """|values|, 0 where not finite (an infinity or NaN carries no rounding scale)."""
    return np.where(np.isfinite(values), np.abs(values), 0.0)


def rule_values(typed, market) -> dict[str, np.ndarray]:
    """The compiled program's rule registers, by kind (absent rules have register -1)."""
    tape = compile(typed)
    regs = run_tape(tape, market)
    out = {}
    for kind, reg in zip(RULE_ORDER, tape.outputs[0]):
        assert (reg == -1) == (kind not in typed.rules), kind
        if reg >= 0:
            out[kind] = regs[reg].copy()
    return out


def assert_rules_match(typed, market) -> None:
    """Every rule register of the compiled program equals the reference evaluator's rule exactly.

    Ties aside (see _TieAware), the reference alone decides: it shares nothing with the VM."""
    got = rule_values(typed, market)
    for kind, value in got.items():
        assert not np.isnan(value).any(), f"{kind}: a rule is never NaN"
        assert np.isin(value, (0.0, 1.0)).all(), f"{kind}: a rule is 0.0 or 1.0"
    want = evaluate(typed, market)
    if all(np.array_equal(got[k], want[k]) for k in want):
        return
    nodes = sub_expressions(typed)
    values = node_values(typed, nodes, market)
    if any(np.isinf(v).any() for v in values.values()):
        return  # the language defines no arithmetic on infinities (exp overflows to inf)
    judge = _TieAware(typed, market, values)
    want = judge.rules()
    for kind, value in got.items():
        assert np.array_equal(value, want[kind]), (
            f"{kind}: differs at bars {np.flatnonzero(value != want[kind])[:10].tolist()} "
            f"({judge.ties} tied comparisons)")


def sub_expressions(typed) -> list[N.Expr]:
    """Every distinct node that becomes an instruction, from the rules and the bindings they use."""
    seen: dict[N.Expr, None] = {}
    stack = list(typed.rules.values())
    while stack:
        e = stack.pop()
        if isinstance(e, N.Name):
            if e.id in typed.bindings:
                stack.append(typed.bindings[e.id])
            continue
        if isinstance(e, N.Call):
            b = BUILTINS[e.func]
            kids = [a for a, kind in zip(e.args, b.kinds) if kind in "xc"]
        else:
            kids = list(N.children(e))
        seen.setdefault(e, None)
        stack.extend(kids)
    return list(seen)


def node_values(typed, nodes, market) -> dict[N.Expr, np.ndarray]:
    """The VM's value of each node: each compiled as the one rule of its own program, all in one
    tape (compile_many), so the VM computes the whole program once."""
    batch = [dataclasses.replace(typed, rules={"buy": e}) for e in nodes]
    tape = compile_many(batch)
    regs = run_tape(tape, market)
    return {e: regs[tape.outputs[i, 0]].copy() for i, e in enumerate(nodes)}


class _Local(ReferenceEvaluator):
    """The reference definition of one node applied to the VM's values of its operands."""

    def __init__(self, typed, market, values):
        super().__init__(typed, market)
        self.values = values
        self.root = None
        self.operands: list[np.ndarray] = []

    def expr(self, e):
        if self.root is None:
            self.root = e
            return super().expr(e)
        if isinstance(e, N.Name) and e.id in self.typed.bindings and self.typed.bindings[e.id] in self.values:
            e = self.typed.bindings[e.id]
        value = self.values[e] if e in self.values else super().expr(e)
        self.operands.append(value)
        return value

    def scale(self, want: np.ndarray) -> float:
        """The largest finite magnitude among the node's operands, bar inputs and result."""
        arrays = [want, *self.operands, *(a for a in self.last_args if isinstance(a, np.ndarray))]
        finite = [np.abs(a[np.isfinite(a)]) for a in arrays]
        return max((float(f.max()) for f in finite if f.size), default=0.0)


def assert_each_instruction(typed, market) -> None:
    """Every instruction's register equals its reference definition on the VM's operand values:
    NaN at the same bars, values equal to RTOL relative to the magnitude of the operands (rounding
    in a difference of two large numbers is not an error of the difference)."""
    nodes = sub_expressions(typed)
    values = node_values(typed, nodes, market)
    for e in nodes:
        local = _Local(typed, market, values)
        want = local.expr(e)
        inputs = local.operands + [a for a in local.last_args if isinstance(a, np.ndarray)]
        if any(np.isinf(a).any() for a in inputs):
            continue  # the language defines no arithmetic on infinities (exp overflows to inf)
        assert_same_series(values[e], want, expr_text(e)[:300], atol=RTOL * local.scale(want))


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("market_name", sorted(MARKETS))
@pytest.mark.parametrize("path", program_files(), ids=file_id)
def test_program_files_match_reference(path, market_name, markets):
    typed = check(parse(path.read_text(encoding="utf-8"), str(path)))
    assert_rules_match(typed, markets[market_name])
    assert_each_instruction(typed, markets[market_name])


# Corners the random programs reach only now and then: every form of constant and window, lags
# of conditions and of calls, windows longer than the market, division by zero, -0.
CORNERS = {
    "constants": "param k = 1.5\nparam p = 3% in 1%..9%\n"
                 "buy when bb_upper(close, 20, -1) > close and bb_lower(close, 10, k) < close\n"
                 "sell when keltner_upper(14, -0.5) < close or keltner_lower(5, p) > close\n",
    "windows": "param n = 7 in 2..30\nparam m = 3 in 1..5\n"
               "buy when stoch_d(n, m) > stoch_d(m, n) and macd_hist(close, n, 12, m) > 0\n"
               "sell when macd_signal(open, 26, n, m) < macd(open, m, n) or corr(close, open, n) > 0.5\n",
    "long windows": "buy when sma(close, 2000) > 0 or percent_rank(close, 1999) > 1 or close[1600] > 0\n"
                    "sell when rsi(close, 2520) > 50 or adx(1500) > 20 or bars_since_low(low, 2520) > 1\n",
    "condition lags": "up = close > open\nbuy when (up and up[1])[2] or not (not up[3])[1]\n"
                      "sell when bars_since(up[5]) > 3 and if_else(up[2], 1, 0) == 0\n"
                      "short when cross_above(close, open)[1]\ncover when (true)[4] and not (false)[2]\n",
    "arithmetic": "z = close - close\nbuy when close / z > 0 or -0 * close < 0 or (close / 0) != 1\n"
                  "sell when sign(z) == 0 and -(-close) == close and log(z) < 1 and sqrt(-close) > 0\n",
}


@pytest.mark.parametrize("market_name", sorted(MARKETS))
@pytest.mark.parametrize("name", sorted(CORNERS))
def test_corner_programs_match_reference(name, market_name, markets):
    typed = check(parse(CORNERS[name], name))
    assert_rules_match(typed, markets[market_name])
    assert_each_instruction(typed, markets[market_name])


@RANDOM
@given(program=programs(), market_name=st.sampled_from(sorted(MARKETS)))
def test_random_programs_match_reference(program, market_name, jit):
    typed = check(program)
    assert_each_instruction(typed, market(market_name))
    assert_rules_match(typed, market(market_name))


def test_batch_outputs_equal_single_outputs(markets):
    """compile_many shares sub-expressions and registers across programs; every program's rules
    must still come out exactly as when it is compiled alone."""
    typed = [check(parse(p.read_text(encoding="utf-8"), str(p))) for p in program_files()]
    bars = markets["synthetic"]
    batch = compile_many(typed)
    regs = run_tape(batch, bars)
    assert len(batch) < sum(len(compile(t)) for t in typed), "the batch shares nothing"
    for p, t in enumerate(typed):
        single = compile(t)
        alone = run_tape(single, bars)
        for kind, rb, rs in zip(RULE_ORDER, batch.outputs[p], single.outputs[0]):
            assert (rb == -1) == (rs == -1)
            if rs >= 0:
                assert np.array_equal(regs[rb], alone[rs]), f"{t.name}: {kind}"
        assert batch.warmups[p] == single.warmups[0]
        assert np.array_equal(batch.exits[p], single.exits[0], equal_nan=True)


@BATCHES
@given(batch=st.lists(programs(layout=False), min_size=2, max_size=5))
def test_random_batches_equal_single_outputs(batch, jit):
    typed = [check(p) for p in batch]
    tape = compile_many(typed)
    regs = run_tape(tape, market("extreme"))
    for p, t in enumerate(typed):
        single = compile(t)
        alone = run_tape(single, market("extreme"))
        for rb, rs in zip(tape.outputs[p], single.outputs[0]):
            assert (rb == -1) == (rs == -1)
            if rs >= 0:
                assert np.array_equal(regs[rb], alone[rs], equal_nan=True)


def test_lagged_condition_is_false_before_its_first_bar(markets):
    """`c[n]` of a condition is false (not NaN) in its first n bars, so `not c[1]` is true on
    bar 0 and bars_since(c[3]) waits for a real event; checked against plain loops."""
    bars = markets["synthetic"]
    text = ("up = close > open\n"
            "buy when not up[1]\n"
            "sell when bars_since(up[3] and up[3]) >= 2\n"
            "short when up[2] or false\n"
            "cover when (not up)[1]\n")
    values = rule_values(check(parse(text)), bars)
    up = [c > o for c, o in zip(bars.close, bars.open)]
    n = len(up)

    def lag(k, t):
        return up[t - k] if t >= k else False

    assert values["buy"].tolist() == [float(not lag(1, t)) for t in range(n)]
    assert values["short"].tolist() == [float(lag(2, t)) for t in range(n)]
    assert values["cover"].tolist() == [float(t >= 1 and not up[t - 1]) for t in range(n)]
    last, since = None, []
    for t in range(n):
        last = t if lag(3, t) else last
        since.append(last is not None and t - last >= 2)
    assert values["sell"].tolist() == [float(v) for v in since]
    assert values["buy"][0] == 1.0
