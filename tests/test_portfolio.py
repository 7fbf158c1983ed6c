"""Portfolio strategies: the simulator against a plain-Python loop, the cross-sectional kernels
and the staged score evaluation against pandas, causality at random cut points, and the planted
momentum premium found (and not found in the null universe)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autostrat.config import Settings
from autostrat.data.market import Market
from autostrat.data.panel import Panel, equal_weight_index, panel_from_universe
from autostrat.data.panel_spec import load_panel
from autostrat.data.synthetic_universe import momentum_universe
from autostrat.data.universe import Universe
from autostrat.lang.check import load as load_checked
from autostrat.lang.registry import BUILTINS

from autostrat.resources import examples_dir
from autostrat.sim.portfolio import portfolio_nb
from autostrat.sim.portfolio_backtest import backtest_portfolio
from autostrat.tape.portfolio_eval import cross_section, evaluate_scores
from autostrat.tape.xsection import XS_CODE


def load(text: str):
    """Parse and check where portfolio strategies are allowed."""
    return load_checked(text, portfolio=True)


MOMENTUM = examples_dir() / "portfolio" / "momentum_12_1.strat"


def random_panel(seed: int, assets: int = 7, bars: int = 160) -> Panel:
    """Random prices with every kind of gap: late entries, a market that stops trading, halts."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (assets, bars)), axis=1))
    open_ = close * np.exp(rng.normal(0, 0.005, (assets, bars)))
    absent = rng.uniform(size=(assets, bars)) < 0.03
    absent[0, : bars // 5] = True  # enters late
    absent[1, bars // 2:] = True  # stops trading for good
    cols = {"open": open_, "high": np.maximum(open_, close) * 1.01, "low": np.minimum(open_, close) * 0.99,
            "close": close, "volume": rng.uniform(1e5, 1e6, (assets, bars))}
    for v in cols.values():
        v[absent] = np.nan
    dates = np.arange(np.datetime64("2001-01-01"), np.datetime64("2001-01-01") + bars)
    return Panel(tuple(f"a{i}" for i in range(assets)), dates, **cols)


# --- the simulator against a plain-Python loop ------------------------------------------------------


def _pick(score, weight, close, t, top, fraction, taken):
    eligible = [a for a in range(score.shape[0]) if not math.isnan(close[a, t]) and math.isfinite(score[a, t])
                and math.isfinite(weight[a, t])]
    if not eligible:
        return []
    ordered = sorted(eligible, key=lambda a: (-score[a, t] if top else score[a, t], a))
    k = max(1, int(math.floor(fraction * len(eligible) + 1e-9)))
    picked = []
    for a in ordered:
        if len(picked) == k:
            break
        if a not in taken:
            picked.append(a)
            taken.add(a)
    return picked


def _weights(picked, weight, t, top, by_value, gross, cap):
    k = len(picked)
    if by_value:
        vals = pd.Series([weight[a, t] if top else -weight[a, t] for a in picked])
        ranks = vals.rank(method="average").to_numpy()
        w = list(ranks / ranks.sum() * gross)
    else:
        w = [gross / k] * k
    if cap > 0:
        for _ in range(k):
            excess = sum(x - cap for x in w if x > cap)
            w = [min(x, cap) for x in w]
            free = sum(x for x in w if x < cap)
            if excess <= 0 or free <= 0:
                break
            w = [x + excess * x / free if x < cap else x for x in w]
    return w


def reference_portfolio(open_, close, long_score, short_score, weight, long_side, short_side, by_value, cap,
                        every, start, stop, commission, slippage, capital):
    """The module docstring of autostrat.sim.portfolio, bar by bar in plain Python."""
    n_assets = close.shape[0]
    shares = [0.0] * n_assets
    last = [math.nan] * n_assets
    cash, traded = capital, 0.0
    equity, holdings = [], []
    gross = 0.5 if long_side and short_side else 1.0
    target = None
    for t in range(start, stop):
        if target is not None:
            value = cash + sum(shares[a] * (last[a] if math.isnan(open_[a, t]) else open_[a, t])
                               for a in range(n_assets) if shares[a] != 0)
            if value > 0:
                for a in range(n_assets):
                    if math.isnan(open_[a, t]):
                        continue
                    delta = target[a] * value / open_[a, t] - shares[a]
                    if delta != 0:
                        cash -= delta * open_[a, t] + (commission + slippage) * abs(delta) * open_[a, t]
                        traded += abs(delta) * open_[a, t]
                        shares[a] += delta
            target = None
        for a in range(n_assets):
            if not math.isnan(close[a, t]):
                last[a] = close[a, t]
        equity.append(cash + sum(shares[a] * last[a] for a in range(n_assets) if shares[a] != 0))
        holdings.append(sum(1 for s in shares if s != 0))
        if (t - start) % every == 0 and t < stop - 1:
            target = [0.0] * n_assets
            taken: set[int] = set()
            for side, score, sign in ((long_side, long_score, 1), (short_side, short_score, -1)):
                if side is None:
                    continue
                top, fraction = side
                picked = _pick(score, weight, close, t, top, fraction, taken)
                if picked:
                    for a, w in zip(picked, _weights(picked, weight, t, top, by_value, gross, cap)):
                        target[a] = sign * w
    return np.array(equity), np.array(holdings), traded


@pytest.mark.parametrize("seed", range(8))
def test_picking_a_small_side_of_a_large_universe_matches_a_full_sort(seed):
    """The simulator sorts only the values of the lowest buckets that hold the side: the picks, their
    order (ties by asset) and what is taken must be the full stable sort's, with many ties, many
    assets already taken, values far apart (one bucket holding nearly all, or a range too wide for
    buckets) and values a subnormal apart (a range too narrow for them)."""
    from autostrat.sim.portfolio import BUCKETS, _pick_nb

    rng = np.random.default_rng(seed)
    n = 300
    score = rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0], size=(n, 3)) if seed % 2 else rng.normal(size=(n, 3))
    score[rng.uniform(size=score.shape) < 0.1] = np.nan
    if seed % 4 == 2:
        score[rng.integers(0, n, 3), 1] = [1e300, -1e300, 1e12]  # the others share a bucket or two
    if seed % 4 == 3:
        score[rng.integers(0, n, 2), 1] = [1.7e308, -1.7e308]  # a range too wide for buckets
    if seed == 5:
        score[:, 2] = rng.integers(-2, 3, n) * 5e-324  # a range too narrow for buckets (subnormal)
    close = np.where(rng.uniform(size=(n, 3)) < 0.05, np.nan, 1.0)
    weight = np.ones((n, 3))
    for t in range(3):  # each bar's column: the normal values, the far-apart ones, the narrow ones
        for top in (True, False):
            for fraction in (0.01, 0.03, 0.1, 0.2, 0.5):
                taken_set = set(rng.choice(n, size=int(rng.integers(0, 40)), replace=False).tolist())
                taken = np.zeros(n, dtype=np.bool_)
                taken[list(taken_set)] = True
                picked, values, where = np.empty(n, np.int64), np.empty(n), np.empty(n, np.int64)
                k = _pick_nb(score, weight, close, t, top, fraction, True, taken, picked, values, where,
                             np.empty(BUCKETS + 1, np.int64))
                want = _pick(score, weight, close, t, top, fraction, taken_set)
                assert picked[:k].tolist() == want
                assert set(np.flatnonzero(taken).tolist()) == taken_set


@pytest.mark.parametrize("seed", range(6))
def test_simulator_matches_a_plain_python_loop(seed):
    rng = np.random.default_rng(100 + seed)
    p = random_panel(seed)
    scores = rng.normal(size=p.close.shape)
    scores[rng.uniform(size=scores.shape) < 0.1] = np.nan
    other = rng.normal(size=p.close.shape)
    long_side = (bool(seed % 2), float(rng.choice([0.2, 0.34, 0.5])))
    short_side = (not long_side[0], 0.3) if seed % 3 else None
    by_value = seed % 2 == 0
    weight = other if by_value else np.ones_like(other)
    cap = [0.0, 0.3, 0.2][seed % 3]
    every = int(rng.integers(1, 9))
    start, stop = int(rng.integers(0, 20)), int(rng.integers(120, 161))
    args = (p.open, p.close, scores, -scores, weight)
    got = portfolio_nb(*args, True, long_side[0], long_side[1], short_side is not None,
                       short_side[0] if short_side else False, short_side[1] if short_side else 0.0,
                       by_value, cap, every, start, stop, 0.001, 0.0005, 10_000.0)
    want = reference_portfolio(*args, long_side, short_side, by_value, cap, every, start, stop, 0.001, 0.0005,
                               10_000.0)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10)
    np.testing.assert_array_equal(got[1], want[1])
    assert got[2] == pytest.approx(want[2], rel=1e-10)
    assert want[1].max() > 0  # the case traded


def test_a_market_without_a_bar_is_neither_bought_nor_sold():
    p = random_panel(3, assets=4, bars=60)
    close, open_ = np.array(p.close), np.array(p.open)
    open_[:, 11] = np.nan  # nobody trades on bar 11: the rebalance decided at 10 fills nothing
    close[:, 10] = np.where(np.isnan(close[:, 10]), 1.0, close[:, 10])
    scores = np.tile(np.arange(4.0), (60, 1)).T  # asset 3 always ranks first
    eq, held, traded = portfolio_nb(open_, close, scores, scores, np.ones_like(scores), True, True, 0.25, False,
                                    False, 0.0, False, 0.0, 1, 10, 30, 0.0, 0.0, 1000.0)
    assert held[0] == 0 and held[1] == 0  # bar 11: the orders found no open
    assert held[2] == 1  # bar 12: bought at the open
    assert np.all(eq[:2] == 1000.0)


# --- cross-sectional kernels against pandas --------------------------------------------------------


def _pandas_xs(x: np.ndarray, kind: str) -> np.ndarray:
    frame = pd.DataFrame(x.T)  # rows: bars, columns: assets
    g = frame.stack().groupby(level=0)  # stack drops NaN: the assets in the universe at each bar
    if kind == "rank":
        out = g.rank()
    elif kind == "percentile":
        out = g.rank(pct=True)
    elif kind == "demean":
        out = frame.stack() - g.transform("mean")
    else:
        std = g.transform(lambda s: s.std(ddof=0))
        out = (frame.stack() - g.transform("mean")) / std.where(std != 0)
    return out.unstack().reindex(index=frame.index, columns=frame.columns).to_numpy().T


@pytest.mark.parametrize("kind", sorted(XS_CODE))
def test_cross_sectional_kernels_match_pandas(kind):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 80)).round(1)  # rounding makes ties
    x[rng.uniform(size=x.shape) < 0.2] = np.nan
    x[:, 7] = np.nan  # a bar with nobody
    x[:, 9] = 2.5  # a bar where every value is the same
    np.testing.assert_allclose(cross_section(kind, x), _pandas_xs(x, kind), rtol=1e-12, atol=1e-12)


# --- the staged score evaluation -------------------------------------------------------------------


def test_scores_match_pandas_per_asset_then_across():
    p = random_panel(8, assets=9, bars=90)
    typed = load("""
m = roc(close, 5)
s = sma(rank(m), 3) - percentile(close)[2] + demean(volume) / 1000000
score = if_else(standardize(m) > 0, s, 0 - s)
hold long top 30% by score
rebalance every 5 bars
""")
    got = evaluate_scores(typed, p)["score"]

    def per_asset(x: np.ndarray, f) -> np.ndarray:
        out = np.full_like(x, np.nan)
        for a in range(x.shape[0]):
            rows = np.flatnonzero(np.isfinite(p.close[a]))  # every asset on its own bars
            out[a, rows] = f(pd.Series(x[a, rows])).to_numpy()
        return out

    m = per_asset(p.close, lambda s: s / s.shift(5) - 1)
    s = (per_asset(_pandas_xs(m, "rank"), lambda v: v.rolling(3).mean())
         - per_asset(_pandas_xs(p.close, "percentile"), lambda v: v.shift(2))
         + _pandas_xs(p.volume, "demean") / 1e6)
    z = _pandas_xs(m, "standardize")
    want = np.where(np.isfinite(p.close), np.where(z > 0, s, -s), np.nan)  # NaN > 0 is false: -s
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert np.isfinite(got).sum() > 300


@pytest.mark.parametrize("seed", range(4))
def test_scores_and_equity_are_causal_at_random_cuts(seed):
    p = random_panel(20 + seed, assets=6, bars=150)
    typed = load(MOMENTUM.read_text().replace("252", "20").replace("[21]", "[3]").replace("63", "10"))
    full = evaluate_scores(typed, p)["score"]
    cut = int(np.random.default_rng(seed).integers(40, 149))
    short = Panel(p.names, p.dates[:cut], *(getattr(p, c)[:, :cut] for c in ("open", "high", "low", "close", "volume")))
    part = evaluate_scores(typed, short)["score"]
    np.testing.assert_array_equal(part, full[:, :cut])
    args = (True, True, 0.3, True, False, 0.3, False, 0.0, 4, 0)
    eq_full = portfolio_nb(p.open, p.close, full, full, np.ones_like(full), *args, 150, 0.001, 0.0, 1e4)[0]
    eq_part = portfolio_nb(short.open, short.close, part, part, np.ones_like(part), *args, cut, 0.001, 0.0, 1e4)[0]
    np.testing.assert_array_equal(eq_part, eq_full[:cut])


# --- data -----------------------------------------------------------------------------------------


def test_panel_puts_markets_on_the_union_calendar():
    d = np.array(["2020-01-01", "2020-01-02", "2020-01-03", "2020-01-06"], dtype="datetime64[D]")
    one = np.array([1.0, 2.0, 3.0, 4.0])
    a = Market("A", d[[0, 1, 3]], one[:3], one[:3], one[:3], one[:3], one[:3], "test", "x")
    b = Market("B", d[[1, 2]], one[:2] + 10, one[:2] + 10, one[:2] + 10, np.array([10.0, 11.0]), one[:2], "test", "y")
    p = panel_from_universe(Universe((a, b)))
    assert list(p.dates) == list(d)
    np.testing.assert_array_equal(p.close, [[1, 2, np.nan, 3], [np.nan, 10, 11, np.nan]])
    # day 2: only A has two closes (1 -> 2); day 3: only B (10 -> 11); day 4: A's own previous close is day 2's
    np.testing.assert_allclose(equal_weight_index(p.close), [100, 200, 220, 330])


def test_synthetic_universe_is_seeded_and_has_gaps():
    a, b = momentum_universe(seed=4, assets=20, bars=500), momentum_universe(seed=4, assets=20, bars=500)
    np.testing.assert_array_equal(a.close, b.close)
    assert a.sha256 != momentum_universe(seed=5, assets=20, bars=500).sha256
    assert 0 < np.isnan(a.close).mean() < 0.3
    assert not np.isnan(momentum_universe(seed=4, assets=20, bars=500, churn=0).close).any()
    assert load_panel("synthetic-universe:seed=4,assets=20,bars=500").sha256 == a.sha256


def test_bad_synthetic_universe_spec_is_named():
    from autostrat.errors import DataError

    with pytest.raises(DataError, match="unknown option 'asets=3'.*did you mean 'assets'"):
        load_panel("synthetic-universe:asets=3")


# --- the planted premium --------------------------------------------------------------------------


def _ic_tstat(premium: float) -> float:
    r = backtest_portfolio(MOMENTUM, momentum_universe(seed=11, assets=80, premium=premium), periods=("train",))
    return r.metrics["train"]["ic_tstat"]


def test_momentum_finds_the_planted_premium_and_not_the_null():
    planted, null = _ic_tstat(0.2), _ic_tstat(0.0)
    print(f"IC t-statistic: planted {planted:.2f}, null {null:.2f}")
    assert planted > 3
    assert abs(null) < 3


def test_backtest_portfolio_refuses_a_single_asset_strategy():
    from autostrat.errors import AutostratError

    with pytest.raises(AutostratError, match="not a portfolio strategy"):
        backtest_portfolio("buy when close > open\nsell when close < open", momentum_universe(assets=5, bars=300))


def test_portfolio_result_has_equity_and_metrics_for_each_period():
    r = backtest_portfolio(MOMENTUM, "synthetic-universe:seed=2,assets=30", Settings())
    assert set(r.metrics) == {"train", "validation"}
    for name, (a, b) in r.spans.items():
        assert r.equity[name].shape == (b - a,) and r.equity[name][0] == 10_000.0
        assert r.metrics[name]["final_equity"] == r.equity[name][-1]
        assert r.metrics[name]["holdings"] > 0


# --- the command line -----------------------------------------------------------------------------


def test_cli_backtests_a_portfolio_strategy(capsys):
    from autostrat.cli import main

    data = ["--data", "synthetic-universe:seed=2,assets=20"]
    assert main(["backtest", str(MOMENTUM), *data, "--json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    want = backtest_portfolio(MOMENTUM, momentum_universe(seed=2, assets=20)).metrics
    assert set(out) == {"train", "validation"}
    assert out["validation"]["ic_tstat"] == pytest.approx(want["validation"]["ic_tstat"])
    assert main(["backtest", str(MOMENTUM), *data]) == 0
    text = capsys.readouterr().out
    assert "rebalance every 21 bars" in text and "ic_tstat" in text
    assert main(["backtest", str(MOMENTUM), *data, "--fill", "close"]) == 2
    assert "fills at the next open" in capsys.readouterr().err


def test_a_lagged_cross_sectional_condition_is_false_before_its_first_bar():
    p = random_panel(9, assets=5, bars=40)
    typed = load("c = rank(close) > 2\nscore = if_else(c[2], close, 0 - close)\nhold long top 20% by score\n"
                 "rebalance every 5 bars\n")
    got = evaluate_scores(typed, p)["score"]
    ranked = _pandas_xs(p.close, "rank") > 2
    for a in range(p.n_assets):
        rows = np.flatnonzero(np.isfinite(p.close[a]))
        lagged = np.concatenate([[False, False], ranked[a, rows][:-2]])  # two of the asset's own bars back
        want = np.where(lagged, p.close[a, rows], -p.close[a, rows])
        np.testing.assert_array_equal(got[a, rows], want)
        assert np.isnan(np.delete(got[a], rows)).all()


def test_a_universe_spec_loads_on_one_calendar():
    p = load_panel("synthetic:seed=1..3,bars=300")
    assert p.close.shape == (3, 300) and not np.isnan(p.close).any()
    assert p.names == ("synthetic:seed=1,bars=300", "synthetic:seed=2,bars=300", "synthetic:seed=3,bars=300")


def test_a_cross_sectional_call_of_a_constant_ties_every_asset():
    p = random_panel(4, assets=5, bars=30)
    typed = load("param k = 2\nscore = rank(5) + percentile(k) + demean(close) * 0\n"
                 "hold long top 20% by score\nrebalance every 5 bars\n")
    got = evaluate_scores(typed, p)["score"]
    count = np.isfinite(p.close).sum(axis=0)
    # everyone shares the mean rank (m + 1) / 2, and the percentile (m + 1) / 2 / m
    want = np.where(np.isfinite(p.close), (count + 1) / 2 + (count + 1) / 2 / count, np.nan)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def _implicit_bar_builtins() -> list[str]:
    from autostrat.tape.kernels import KERNELS, kernel_params

    bars = {"high", "low", "close", "volume"}
    return [n for n in KERNELS if n in BUILTINS and bars & set(kernel_params(n))]


def test_builtins_that_read_the_bars_unnamed_get_every_series_on_each_assets_own_bars():
    """atr, mfi, obv... read high, low, close or volume without naming them: the staged evaluation,
    which gathers only the series a tape reads, must hand them the asset's own series."""
    import dataclasses

    from autostrat.tape.compile import compile_many
    from autostrat.tape.kernel_table import kernel_table
    from autostrat.tape.prefix import no_prefixes
    from autostrat.tape.vm import ALL_INPUTS, run_tape_nb

    p = random_panel(31, assets=5, bars=120)
    names = _implicit_bar_builtins()
    assert {"atr", "mfi", "obv", "stoch_k"} <= set(names)
    for name in names:
        args = ", ".join("5" if k == "n" else "2" if k == "k" else "close" for k in BUILTINS[name].kinds)
        typed = load(f"score = {name}({args})\nhold long top 40% by score\nrebalance every 5 bars\n")
        got = evaluate_scores(typed, p)["score"]
        alone = compile_many([dataclasses.replace(typed, rules={"buy": typed.bindings["score"]}, exits={},
                                                  warmup=0, portfolio=None)])
        for a in range(p.n_assets):
            rows = np.flatnonzero(np.isfinite(p.close[a]))
            series = [np.ascontiguousarray(getattr(p, s)[a, rows]) for s in ("open", "high", "low", "close", "volume")]
            regs = run_tape_nb(alone.code, alone.consts, alone.n_regs, kernel_table(alone.code), *series,
                               ALL_INPUTS, *no_prefixes())
            np.testing.assert_array_equal(got[a, rows], regs[alone.outputs[0, 0]], err_msg=f"{name}, asset {a}")
        assert np.isfinite(got).sum() > 100, name
