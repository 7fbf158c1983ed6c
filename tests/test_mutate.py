"""The mutate proposer: every output checks, round-trips and is new; each operator does what it says."""

from __future__ import annotations

import collections
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.errors import AutostratError
from autostrat.lang.fmt import canonical_hash, fmt
from autostrat.lang.fmt import expr as expr_text
from autostrat.lang.fmt import number
from autostrat.search.mutate import MAX_CONDITIONS, OPERATORS, mutate, operator_of
from autostrat.search.mutate_ops import FAMILIES
from autostrat.lang.parse import parse
from autostrat.lang.registry import BUILTINS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "grammar" / "examples").glob("*.strat"))


@pytest.fixture(scope="module")
def examples() -> dict[str, N.Program]:
    return {p.stem: parse(p.read_text(), str(p)) for p in EXAMPLES}


def prog(text: str) -> N.Program:
    return parse(textwrap.dedent(text).strip() + "\n")


def draws(program, weights, seeds=range(60), parents=()):
    """(seed, child, description) for one mutation per seed."""
    for seed in seeds:
        child, desc = mutate([program, *parents], random.Random(seed), weights=weights)
        check(child)
        yield seed, child, desc


def binding(p: N.Program, name: str) -> N.Expr:
    return next(s.expr for s in p.statements if isinstance(s, N.Assign) and s.name == name)


def names(p: N.Program) -> set[str]:
    return {s.name for s in p.statements if isinstance(s, (N.Assign, N.Param))}


# --- every output is valid ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_chained_mutations_check_round_trip_and_differ(path, examples):
    main = examples[path.stem]
    others = [p for name, p in examples.items() if name != path.stem]
    rng = random.Random(path.stem)
    read_back: dict[str, N.Program] = {}
    kinds = collections.Counter()
    prev = None
    for _ in range(1000):
        parent = prev if prev is not None and rng.random() < 0.7 else main
        child, desc = mutate([parent, *rng.sample(others, 2)], rng)
        check(child)
        text = fmt(child)
        if text not in read_back:  # parse is the slow part; chains revisit some texts
            read_back[text] = parse(text)
            assert fmt(read_back[text]) == text
        assert read_back[text] == child, desc
        assert canonical_hash(child) != canonical_hash(parent), desc
        assert "\n" not in desc and desc
        assert text.startswith(f"# hypothesis: {desc}\n")
        kinds[operator_of(desc)] += 1
        prev = child
    assert set(kinds) == set(OPERATORS), kinds


def test_seeded_runs_are_reproducible(examples):
    def run(seed):
        rng = random.Random(seed)
        p, out = examples["sma_cross"], []
        for _ in range(150):
            p, _ = mutate([p, examples["rsi_reversion"], examples["long_short"]], rng)
            out.append(fmt(p))
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


_SCRIPT = """
import hashlib, random, sys
from autostrat.lang.fmt import fmt
from autostrat.search.mutate import mutate
from autostrat.lang.parse import parse
progs = [parse(open(p).read()) for p in sys.argv[1:]]
rng, p, h = random.Random(11), progs[0], hashlib.sha256()
for _ in range(200):
    p, d = mutate([p, *progs[1:]], rng)
    h.update(fmt(p).encode())
print(h.hexdigest())
"""


def test_runs_do_not_depend_on_the_string_hash_seed():
    # Set iteration order of strings changes with PYTHONHASHSEED; a draw must never follow it.
    files = [str(ROOT / "grammar/examples" / f) for f in
             ("keltner_params.strat", "bollinger_reversion.strat", "long_short.strat")]
    out = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        res = subprocess.run([sys.executable, "-c", _SCRIPT, *files], env=env, capture_output=True,
                             text=True, check=True, cwd=ROOT)
        out.append(res.stdout)
    assert out[0] == out[1]


def test_every_operator_is_drawn_in_proportion(examples):
    rng = random.Random(0)
    kinds = collections.Counter()
    names_ = list(examples)
    for i in range(700):
        a, b = rng.sample(names_, 2)
        _, desc = mutate([examples[a], examples[b]], rng)
        kinds[operator_of(desc)] += 1
    total = sum(OPERATORS.values())
    for kind, w in OPERATORS.items():
        assert kinds[kind] > 700 * w / total / 3, (kind, kinds)


# --- each operator does what it says ----------------------------------------------------------------


def _ops(a: N.Expr, b: N.Expr):
    """Pairs of differing Binary operators between two expressions of the same shape."""
    out = []
    for x, y in zip(N.walk(a), N.walk(b)):
        assert type(x) is type(y)
        if isinstance(x, N.Binary) and x.op != y.op:
            out.append((x.op, y.op))
    return out


def test_flip_turns_one_comparison_around():
    p = prog("""
        buy when close > open
        sell when false
    """)
    for _, child, desc in draws(p, {"flip": 1}, range(5)):
        assert desc == "flip > to < in buy rule"
        assert child.rules()["buy"].expr == N.Binary("<", N.Name("close"), N.Name("open"))
        assert child.rules()["sell"].expr == N.Bool(False)
    p = prog("""
        up = close >= open and volume > 0
        buy when up
        sell when close <= sma(close, 5)
    """)
    seen = set()
    for _, child, desc in draws(p, {"flip": 1}):
        m = re.fullmatch(r"flip (\S+) to (\S+) in (up|sell rule)", desc)
        assert m, desc
        old, new, where = m.groups()
        before = binding(p, "up") if where == "up" else p.rules()["sell"].expr
        after = binding(child, "up") if where == "up" else child.rules()["sell"].expr
        assert _ops(before, after) == [(old, new)]
        seen.add((old, new))
    assert seen == {(">=", "<="), (">", "<"), ("<=", ">="), ("and", "or")}


def test_param_moves_stay_in_range_and_integer_params_stay_whole():
    p = prog("""
        param fast = 20 in 5..100
        param k = 2 in 0.5..4
        param stop = 6% in 2%..15%
        param level = 0.3
        f = sma(close, fast)
        buy when close > bb_upper(close, fast, k) and f > level
        sell when close < f
        stop_loss stop
    """)
    moved = collections.Counter()
    for _, child, desc in draws(p, {"move": 1}, range(300)):
        params = child.params()
        for name, q in params.items():
            if q.lo is not None:
                assert q.lo.value <= q.value.value <= q.hi.value, desc
        assert float(params["fast"].value.literal).is_integer() and not params["fast"].value.percent
        assert params["stop"].value.percent
        m = re.fullmatch(r"param (\w+) (\S+) -> (\S+)", desc)
        if m:
            name, old, new = m.groups()
            assert old == number(p.params()[name].value) and new == number(params[name].value)
            moved[name] += 1
        else:
            assert re.fullmatch(r"(sma|bb_upper) window \d+ -> \d+ in .*|threshold .* -> .* in .*", desc), desc
    assert set(moved) == {"fast", "k", "stop", "level"}


def test_window_and_threshold_moves_match_their_description():
    p = prog("""
        r = rsi(close, 14)
        buy when r < 5 and zscore(close, 20) > -2
        sell when r > 95
    """)
    for _, child, desc in draws(p, {"move": 1}, range(200)):
        r = binding(child, "r")
        buy, sell = child.rules()["buy"].expr, child.rules()["sell"].expr
        z = buy.right.right
        assert isinstance(z, N.Unary) and z.operand.literal > 0  # negative levels stay `-x`
        assert 1 <= buy.left.right.literal <= 99 and 1 <= sell.right.literal <= 99
        m = re.fullmatch(r"(\w+) window (\d+) -> (\d+) in (.+)", desc)
        if m:
            func, old, new, where = m.groups()
            call = r if where == "r" else buy.right.left
            assert call.func == func and call.args[1].literal == float(new) != float(old)
            assert 1 <= int(new) <= 2520
            continue
        m = re.fullmatch(r"threshold (\S+) -> (\S+) in (buy|sell) rule", desc)
        assert m, desc
        old, new, rule = m.groups()
        now = {"buy": (expr_text(buy.left.right), expr_text(z)), "sell": (expr_text(sell.right),)}[rule]
        assert new in now and new != old


def test_swap_stays_in_family():
    p = prog("""
        f = sma(close, 20)
        buy when cross_above(close, f)
        sell when close < lowest(low, 10)
    """)
    seen = set()
    for _, child, desc in draws(p, {"swap": 1}, range(80)):
        m = re.fullmatch(r"swap (\w+) for (\w+) in (f|buy rule|sell rule)", desc)
        assert m, desc
        old, new, where = m.groups()
        seen.add(old)
        if old in BUILTINS:
            fam = next(f for f in FAMILIES if old in f)
            assert new in fam and new != old
            expr = binding(child, "f") if where == "f" else child.rules()[where.split()[0]].expr
            assert any(isinstance(n, N.Call) and n.func == new for n in N.walk(expr))
        else:
            assert {old, new} <= {"open", "high", "low", "close"}
    assert {"sma", "cross_above", "lowest", "close"} <= seen


def test_families_share_signature_and_result():
    for fam in FAMILIES:
        sigs = {(BUILTINS[f].kinds, BUILTINS[f].result) for f in fam}
        assert len(sigs) == 1, fam


def test_add_appends_one_condition_and_respects_the_limit():
    p = prog("""
        buy when close > open
        sell when close < open
    """)
    for _, child, desc in draws(p, {"add": 1}, range(60)):
        m = re.fullmatch(r"add condition (.+) to (buy|sell)( with or)?", desc)
        assert m, desc
        text, kind, with_or = m.groups()
        new = child.rules()[kind].expr
        assert new.op == ("or" if with_or else "and")
        assert new.left == p.rules()[kind].expr and expr_text(new.right) == text
        assert kind == "sell" or not with_or
    many = " and ".join(f"close > sma(close, {n})" for n in range(2, 2 + MAX_CONDITIONS))
    full = prog(f"""
        buy when {many}
        sell when close < open
    """)
    for _, _, desc in draws(full, {"add": 1}, range(30)):
        assert desc.endswith("to sell") or desc.endswith("to sell with or")
    both = prog(f"""
        buy when {many}
        sell when {many.replace('>', '<')}
    """)
    for _, _, desc in draws(both, {"add": 1, "flip": 1}, range(30)):
        assert operator_of(desc) == "flip"


def test_drop_removes_one_operand_and_prunes_what_it_used():
    p = prog("""
        param oversold = 10 in 2..30
        r = rsi(close, 2)
        uptrend = close > sma(close, 200)
        buy when r < oversold and uptrend and volume > 0
        sell when r > 70 or close < sma(close, 200)
    """)
    seen = set()
    for _, child, desc in draws(p, {"drop": 1}, range(60)):
        m = re.fullmatch(r"drop condition (.+) from (buy|sell)", desc)
        assert m, desc
        gone, kind = m.groups()
        old = [expr_text(e) for e in _operands(p.rules()[kind].expr)]
        new = [expr_text(e) for e in _operands(child.rules()[kind].expr)]
        assert gone in old and new == [e for e in old if e != gone]
        seen.add(gone)
        assert ("uptrend" in names(child)) == (gone != "uptrend")
        assert ("oversold" in names(child)) == (gone != "r < oversold")
        assert "r" in names(child)  # still used by the sell rule
    assert len(seen) == 5


def _operands(e: N.Expr) -> list[N.Expr]:
    op = e.op if isinstance(e, N.Binary) and e.op in N.LOGIC else None
    if op is None:
        return [e]
    out = []
    for side in (e.left, e.right):
        out += _operands(side) if isinstance(side, N.Binary) and side.op == op else [side]
    return out


def test_exit_add_change_remove():
    p = prog("""
        param stop = 6% in 2%..15%
        buy when close > open
        sell when close < open
        stop_loss stop
        max_hold 10
    """)
    seen = collections.Counter()
    for _, child, desc in draws(p, {"exit": 1}, range(150)):
        exits = child.exits()
        verb, kind = desc.split()[:2]
        seen[verb] += 1
        if verb == "add":
            assert kind in ("take_profit", "trailing_stop") and desc == f"add {kind} {expr_text(exits[kind].value)}"
        elif verb == "remove":
            assert kind not in exits and len(exits) == 1
            assert ("stop" in names(child)) == (kind != "stop_loss")  # an unused param goes too
        elif kind == "stop_loss":
            m = re.fullmatch(r"change stop_loss via param stop 6% -> (\S+)%", desc)
            assert m and 2 <= float(m.group(1)) <= 15
            assert child.params()["stop"].value == N.Num(float(m.group(1)), True)
        else:
            m = re.fullmatch(r"change max_hold 10 -> (\d+)", desc)
            assert m and exits["max_hold"].value == N.Num(float(m.group(1)))
    assert set(seen) == {"add", "change", "remove"}


# --- crossover ---------------------------------------------------------------------------------------


def test_crossover_brings_the_bindings_and_params_a_rule_needs(examples):
    sma, rsi = examples["sma_cross"], examples["rsi_reversion"]
    found = False
    for _, child, desc in draws(sma, {"crossover": 1}, range(40), parents=[rsi]):
        if desc != "crossover: buy from parent 2 'rsi(2) mean reversion in an uptrend'":
            continue
        found = True
        assert child.rules()["buy"].expr == rsi.rules()["buy"].expr
        assert child.rules()["sell"].expr == sma.rules()["sell"].expr
        for name in ("r", "uptrend", "period", "oversold"):  # what the rsi buy rule reads
            theirs = next(s for s in rsi.statements if getattr(s, "name", None) == name)
            mine = next(s for s in child.statements if getattr(s, "name", None) == name)
            assert mine == theirs
        assert "overbought" not in names(child)  # only the rsi sell rule reads it
        assert {"fast", "slow", "f", "s"} <= names(child)  # still read by the sell rule
    assert found


def test_crossover_renames_conflicts_and_reuses_identical_definitions():
    me = prog("""
        param n = 20 in 10..60
        f = sma(close, n)
        buy when close > f
        sell when close < f
    """)
    donor = prog("""
        param n = 20 in 10..60
        f = ema(close, n)
        g = f * 2
        buy when g > close and f > open
        sell when false
        short when close < f
        cover when close > f
        take_profit 20%
    """)
    seen = set()
    for _, child, desc in draws(me, {"crossover": 1}, range(60), parents=[donor]):
        part = re.fullmatch(r"crossover: (.+) from parent 2( \(renamed f to f_2\))?", desc).group(1)
        seen.add(part)
        stmts = [s for s in child.statements if isinstance(s, N.Param)]
        assert [s.name for s in stmts] == ["n"]  # identical param reused, not copied
        if part == "buy":
            assert binding(child, "f_2") == N.Call("ema", (N.Name("close"), N.Name("n")))
            assert binding(child, "g") == N.Binary("*", N.Name("f_2"), N.Num(2.0))
            assert expr_text(child.rules()["buy"].expr) == "g > close and f_2 > open"
            assert binding(child, "f") == binding(me, "f")  # still used by sell
        elif part == "short and cover":
            assert expr_text(child.rules()["short"].expr) == "close < f_2"
            assert "g" not in names(child)
        elif part == "sell":
            assert child.rules()["sell"].expr == N.Bool(False)
        else:
            assert part == "exits" and list(child.exits()) == ["take_profit"]
    assert seen == {"buy", "sell", "short and cover", "exits"}


def test_crossover_with_only_an_identical_donor_gives_up_clearly(examples):
    p = examples["sma_cross"]
    with pytest.raises(AutostratError, match=r"no valid new variant of 'sma 20/50 crossover' in 50 tries"):
        mutate([p, p], random.Random(0), weights={"crossover": 1})
    with pytest.raises(AutostratError, match="no operator applies"):
        mutate([p], random.Random(0), weights={"crossover": 1})
    with pytest.raises(AutostratError, match="at least one parent"):
        mutate([], random.Random(0))
    with pytest.raises(AutostratError, match="unknown operator 'jump'"):
        mutate([p], random.Random(0), weights={"jump": 1})


# --- header and descriptions --------------------------------------------------------------------------


@pytest.mark.parametrize("header, expect_rest", [
    ("# hypothesis: old idea\n# a second line\n", ["# a second line"]),
    ("# Hypothesis: Old Idea\n", []),
    ("# just a note\n", ["# just a note"]),
    ("", []),
])
def test_header_gets_the_hypothesis_line(header, expect_rest):
    p = parse(header + 'strategy "t"\n\nbuy when close > open\nsell when close < open\n')
    child, desc = mutate([p], random.Random(1))
    assert list(child.header_comments) == [f"# hypothesis: {desc}", *expect_rest]
    assert fmt(child).splitlines()[: len(expect_rest) + 2] == [f"# hypothesis: {desc}", *expect_rest, 'strategy "t"']


def test_operator_of_reads_descriptions():
    cases = {
        "sma window 20 -> 30 in f": "move", "param fast 20 -> 30": "move", "lag [1] -> [2] in buy rule": "move",
        "threshold 70 -> 75 in sell rule": "move", "swap ema for sma in s": "swap",
        "flip > to < in sell rule": "flip", "add condition rsi(close, 14) < 70 to buy": "add",
        "drop condition d < 30 from buy": "drop", "add stop_loss 8%": "exit", "remove max_hold 10": "exit",
        "change take_profit 20% -> 25%": "exit", "change stop_loss via param stop 6% -> 8%": "exit",
        "crossover: buy from parent 2": "crossover",
    }
    for desc, kind in cases.items():
        assert operator_of(desc) == kind
    with pytest.raises(ValueError):
        operator_of("something else")


def test_a_rewritten_statement_loses_its_comments_and_unchanged_ones_keep_theirs():
    text = ("# hypothesis: the parent's idea\n# learned: the parent's lesson\n# keep this note\n"
            "param fast = 10 in 2..50\n# the entry: price over its mean\nbuy when close > sma(close, fast)\n"
            "# the exit: price under its mean\nsell when close < sma(close, fast)  # trailing note\n")
    program = parse(text)
    for seed in range(30):
        child, desc = mutate([program], random.Random(seed), weights={"flip": 1, "move": 1})
        out = fmt(child)
        assert out.startswith(f"# hypothesis: {desc}\n# keep this note\n") and "learned" not in out
        for old, note in ((program.statements[1], "# the entry"), (program.statements[2], "# the exit")):
            new = next(s for s in child.statements if isinstance(s, N.Rule) and s.kind == old.kind)
            assert (note in out) == (new == old), (desc, out)


def test_crossover_names_its_donor_by_the_label_the_search_gives():
    a = parse("buy when close > sma(close, 10)\nsell when close < sma(close, 10)\n")
    b = parse('strategy "b"\nbuy when rsi(close, 2) < 10\nsell when rsi(close, 2) > 90\n')
    _, desc = mutate([a, b], random.Random(1), weights={"crossover": 1}, donor_labels=["iteration 7"])
    assert desc.startswith("crossover: ") and " from iteration 7 'b'" in desc
