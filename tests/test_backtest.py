"""The public backtest API, end to end: text -> parse -> check -> compile -> VM -> simulate -> stats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import autostrat
from autostrat.sim.backtest import backtest, buy_and_hold, load_strategy, period_spans
from autostrat.tape.compile import compile
from autostrat.config import Settings
from autostrat.data.csv_file import market_from_frame
from autostrat.errors import AutostratError, StrategyError
from autostrat.sim.evaluate import evaluate_tape, metrics_dicts
from autostrat.resources import example_path
from autostrat.sim.simulation import simulate
from autostrat.sim.metrics import METRIC_NAMES, metrics
from autostrat.data.synthetic import synthetic_market
from seed_harness import seed_backtest

REL = 1e-9
SMA_CROSS = example_path("sma_cross")


@pytest.fixture(scope="module")
def market():
    return synthetic_market(seed=11, bars=6750)


def test_public_names_are_reexported():
    for name in ("parse", "check", "fmt", "canonical_hash", "compile", "backtest", "evaluate_many",
                 "sweep", "load_market", "Settings", "StrategyError"):
        assert hasattr(autostrat, name), name


def test_metrics_keys_and_periods(market):
    r = backtest(SMA_CROSS, market)
    assert list(r.metrics) == ["train", "validation"]  # the sealed test is not evaluated by default
    for period in r.metrics.values():
        assert list(period) == list(METRIC_NAMES)
    r3 = backtest(SMA_CROSS, market, periods=("train", "validation", "test"))
    assert list(r3.metrics) == ["train", "validation", "test"]
    assert r3.metrics["validation"] == r.metrics["validation"]


def test_result_views_are_consistent(market):
    r = backtest(SMA_CROSS, market)
    for period, (a, b) in r.spans.items():
        eq = r.equity.loc[pd.Timestamp(market.dates[a]) : pd.Timestamp(market.dates[b - 1])]
        assert len(eq) == b - a
        assert eq.iloc[-1] == pytest.approx(r.metrics[period]["final_equity"], rel=REL)
        trades = r.trades[r.trades.period == period]
        assert len(trades) == r.metrics[period]["num_trades"]
    sig = r.signals
    assert list(sig.columns) == ["buy", "sell"] and sig.dtypes.eq(bool).all()
    # The rule is sma(close, 20) > sma(close, 50): check it against pandas directly.
    c = pd.Series(market.close)
    expect = (c.rolling(20).mean() > c.rolling(50).mean()).to_numpy()
    np.testing.assert_array_equal(sig["buy"].to_numpy(), expect)


def test_simulation_matches_a_direct_simulate_call(market):
    s = Settings()
    r = backtest(SMA_CROSS, market, s)
    c = pd.Series(market.close)
    f, sl = c.rolling(20).mean(), c.rolling(50).mean()
    for period, (a, b) in r.spans.items():
        sim = simulate(market, (f > sl).to_numpy(float), (f < sl).to_numpy(float), settings=s,
                       start=a, stop=b, warmup=49)
        m = metrics(sim.equity, sim.position, sim.trades_array, market.close, a, b, 10_000.0)
        assert m == pytest.approx(r.metrics[period], rel=REL, nan_ok=True)


def test_overrides_change_costs_and_fill(market):
    base = backtest(SMA_CROSS, market)
    free = backtest(SMA_CROSS, market, commission_bps=0, slippage_bps=0)
    close = backtest(SMA_CROSS, market, fill="close", commission_bps=0, slippage_bps=0)
    v = "validation"
    assert free.metrics[v]["final_equity"] > base.metrics[v]["final_equity"]
    assert close.metrics[v]["final_equity"] != free.metrics[v]["final_equity"]
    with pytest.raises(AutostratError):
        backtest(SMA_CROSS, market, fill="tomorrow")


def test_accepts_text_program_and_typed(market):
    text = SMA_CROSS.read_text()
    typed = load_strategy(text)
    a = backtest(text, market).metrics
    b = backtest(typed, market).metrics
    c = backtest(autostrat.parse(text), market).metrics
    assert a == b == c
    with pytest.raises(StrategyError):
        backtest("buy when close >", market)
    with pytest.raises(AutostratError, match="no such file"):
        backtest("missing/file.strat", market)


def test_buy_and_hold_matches_the_buy_hold_metric(market):
    r = backtest(SMA_CROSS, market)
    hold = buy_and_hold(market, r.spans)
    for period in r.spans:
        assert hold[period]["total_return"] == pytest.approx(r.metrics[period]["buy_hold_return"], rel=REL)


# --- seed parity through the whole pipeline ----------------------------------------------------


def _seed_frames(seed: int):
    frame = synthetic_market(seed=seed, bars=3000, start="2010-01-04").frame().rename(columns=str.capitalize)
    cut = pd.Timestamp("2018-12-31")
    return frame.loc[:cut], frame.loc[cut + pd.Timedelta(days=1):]


@pytest.mark.parametrize("seed", [3, 7, 19])
def test_sma_cross_example_reproduces_the_seed_harness(seed):
    """grammar/examples/sma_cross.strat with fill=close and zero costs is the seed's baseline.

    The seed computes its features on train.csv and val.csv separately, so each window is given
    to autostrat as its own market and traded whole.
    """
    s = Settings()
    s.backtest.fill, s.backtest.commission_bps, s.backtest.slippage_bps = "close", 0.0, 0.0
    tape = compile(load_strategy(SMA_CROSS))
    for frame in _seed_frames(seed):
        lower = frame.rename(columns=str.lower)
        lower.index.name = "date"
        m = market_from_frame(lower, "window", "test", "")
        ours = metrics_dicts(evaluate_tape(tape, m, {"all": (0, len(m))}, s.backtest)[0], ["all"])["all"]
        theirs = seed_backtest(frame)
        assert ours["num_trades"] == theirs["num_trades"] > 3
        for mine, seeds in (("total_return", "total_return"), ("sharpe", "sharpe_ratio"),
                            ("max_drawdown", "max_drawdown"), ("final_equity", "final_cash")):
            assert ours[mine] == pytest.approx(theirs[seeds], rel=REL, abs=1e-12), mine


def test_period_spans_respect_the_split(market):
    s = Settings()
    spans = period_spans(market, s, ("train", "validation", "test"))
    dates = market.dates
    assert str(dates[spans["train"][1] - 1]) <= "2018-12-31" < str(dates[spans["validation"][0]])
    assert str(dates[spans["test"][0]]) >= "2023-01-01"
    with pytest.raises(AutostratError, match="unknown period"):
        period_spans(market, s, ("holdout",))
