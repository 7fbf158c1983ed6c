"""autostrat's simulator and metrics in `fill = close`, zero-cost mode reproduce the seed harness.

The seed loads train.csv and validation.csv as two frames and computes its features on each, so
both frames here are traded on their own, with signals from pandas SMAs of that frame alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autostrat.sim.metrics import as_kernel_array
from autostrat.sim.simulate import END, SIGNAL, simulate_nb
from autostrat.sim.metrics import metrics
from autostrat.data.synthetic import synthetic_market
from seed_harness import SEED_CAPITAL, seed_backtest

REL = 1e-9


@pytest.fixture(scope="session", autouse=True)
def _warm_jit():
    """Compile the kernels once for the session with the signature every test uses."""
    n = 60
    x = np.linspace(100.0, 110.0, n)
    z = np.zeros(n)
    eq, pos, tr = simulate_nb(x, x, x, x, z, z, z, z, 0, n, 0, True, 0.0, 0.0,
                              np.nan, np.nan, np.nan, -1, 1.0)
    metrics(eq, pos, tr, x, 0, n, 1.0)


def seed_frame(seed: int, bars: int, start: str) -> pd.DataFrame:
    """autostrat's synthetic market as the seed's CSV frame: Date index, capitalised columns."""
    frame = synthetic_market(seed=seed, bars=bars, start=start).frame()
    return frame.rename(columns=str.capitalize)


def seed_split(df: pd.DataFrame, train_end: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train rows up to train_end and validation rows after it, as the seed's prepare step."""
    cut = pd.Timestamp(train_end)
    return df.loc[:cut].copy(), df.loc[cut + pd.Timedelta(days=1):].copy()


def autostrat_baseline(df: pd.DataFrame) -> tuple[dict, np.ndarray, np.ndarray]:
    """The SMA 20/50 crossover through simulate_nb: buy while sma20 > sma50, sell while lower."""
    close = df["Close"].to_numpy(dtype=np.float64)
    fast = df["Close"].rolling(20).mean()
    slow = df["Close"].rolling(50).mean()
    entry = as_kernel_array(fast > slow)  # NaN compares false: no signal in warm-up
    exit_ = as_kernel_array(fast < slow)
    zeros = np.zeros(len(df))
    cols = [as_kernel_array(df[c]) for c in ("Open", "High", "Low", "Close")]
    equity, position, trades = simulate_nb(*cols, entry, exit_, zeros, zeros, 0, len(df), 0, True,
                                           0.0, 0.0, np.nan, np.nan, np.nan, -1, SEED_CAPITAL)
    return metrics(equity, position, trades, close, 0, len(df), SEED_CAPITAL), equity, trades


def assert_parity(df: pd.DataFrame) -> tuple[dict, dict]:
    seed = seed_backtest(df)
    ours, equity, trades = autostrat_baseline(df)
    np.testing.assert_allclose(equity, seed["portfolio_values"], rtol=REL, atol=0)
    assert ours["total_return"] == pytest.approx(seed["total_return"], rel=REL, abs=1e-12)
    assert ours["sharpe"] == pytest.approx(seed["sharpe_ratio"], rel=REL, abs=1e-12)
    assert ours["max_drawdown"] == pytest.approx(seed["max_drawdown"], rel=REL, abs=1e-12)
    assert ours["num_trades"] == seed["num_trades"]
    assert ours["final_equity"] == pytest.approx(seed["final_cash"], rel=REL, abs=0)
    # The fills themselves: every seed buy/sell price is an autostrat entry/exit price.
    prices = [p for row in trades for p in (row[2], row[3])]
    np.testing.assert_allclose(prices, [p for _, p in seed["fills"]], rtol=REL, atol=0)
    return seed, ours


@pytest.mark.parametrize("seed", [1, 7, 42, 2024])
def test_train_and_validation_frames_match_the_seed(seed):
    # 2010-01-04 .. mid 2021, split where the seed splits SPY: train ..2018, validation 2019..
    market = seed_frame(seed, 3000, "2010-01-04")
    train, validation = seed_split(market, "2018-12-31")
    assert len(train) > 2000 and len(validation) > 600
    for frame in (train, validation):
        seed_metrics, ours = assert_parity(frame)
        assert seed_metrics["num_trades"] >= 3  # the comparison exercised real trading


def test_position_open_at_the_end_is_closed_out_like_the_seed():
    # A steady uptrend after the warm-up: one buy, never a sell, so the close-out makes the trade.
    bars = 300
    close = 100.0 * np.exp(np.linspace(0.0, 0.6, bars)) * (1 + 0.002 * np.sin(np.arange(bars)))
    frame = pd.DataFrame({"Open": close, "High": close * 1.01, "Low": close * 0.99,
                          "Close": close, "Volume": 1e6},
                         index=pd.bdate_range("2019-01-01", periods=bars, name="Date"))
    seed_metrics, ours = assert_parity(frame)
    assert seed_metrics["num_trades"] == 1
    _, _, trades = autostrat_baseline(frame)
    assert trades[0, 6] == END and trades[0, 1] == bars - 1


def test_frame_too_short_for_the_averages_never_trades():
    frame = seed_frame(3, 45, "2019-01-01")  # SMA 50 is NaN on every row
    seed_metrics, ours = assert_parity(frame)
    assert seed_metrics["num_trades"] == 0 and ours["sharpe"] == 0.0
    assert ours["final_equity"] == SEED_CAPITAL


def test_crossing_back_and_forth_every_few_bars():
    # A sawtooth makes the averages cross often: many short trades, each a signal exit.
    bars = 600
    t = np.arange(bars)
    close = 100.0 + 8.0 * np.sin(t / 9.0) + 0.01 * t
    frame = pd.DataFrame({"Open": close, "High": close + 1, "Low": close - 1, "Close": close,
                          "Volume": 1e6}, index=pd.bdate_range("2001-01-01", periods=bars))
    seed_metrics, _ = assert_parity(frame)
    _, _, trades = autostrat_baseline(frame)
    assert seed_metrics["num_trades"] >= 8
    assert (trades[:-1, 6] == SIGNAL).all()


SEED_RULES = "buy when sma(close, 20) > sma(close, 50)\nsell when sma(close, 20) < sma(close, 50)\n"


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_backtest_with_period_indicators_reproduces_the_seed_on_both_periods(seed):
    # End to end through parse, check, compile, VM and simulator: `fill = close`, zero costs and
    # `indicators = "period"` give the seed harness's numbers on train and on validation, each
    # frame with its own warm-up. The default, "history", matches on train only.
    from autostrat import Settings, backtest
    from autostrat.data.market import Market

    frame = seed_frame(seed, 3000, "2010-01-04")
    train, validation = seed_split(frame, "2018-12-31")
    market = synthetic_market(seed=seed, bars=3000, start="2010-01-04")
    assert isinstance(market, Market)
    results = {}
    for mode in ("period", "history"):
        s = Settings()
        for key, value in {"split.two_way": True, "split.train_end": "2018-12-31",
                           "split.validation_start": "2019-01-01", "backtest.fill": "close",
                           "backtest.commission_bps": 0, "backtest.slippage_bps": 0,
                           "backtest.initial_capital": SEED_CAPITAL, "backtest.indicators": mode}.items():
            s.set(key, value)
        results[mode] = backtest(SEED_RULES, market, s)
    for period, part in (("train", train), ("validation", validation)):
        want = seed_backtest(part)
        got = results["period"].metrics[period]
        assert got["total_return"] == pytest.approx(want["total_return"], rel=REL, abs=1e-12)
        assert got["sharpe"] == pytest.approx(want["sharpe_ratio"], rel=REL, abs=1e-12)
        assert got["max_drawdown"] == pytest.approx(want["max_drawdown"], rel=REL, abs=1e-12)
        assert got["num_trades"] == want["num_trades"]
        np.testing.assert_allclose(results["period"].simulation(period).equity, want["portfolio_values"],
                                   rtol=REL, atol=0)
    assert results["history"].metrics["train"] == results["period"].metrics["train"]  # train starts at bar 0
    seed_validation = seed_backtest(validation)
    assert results["history"].metrics["validation"]["total_return"] != pytest.approx(
        seed_validation["total_return"], rel=1e-6)  # the history's warm-up trades earlier in validation


def test_bulk_and_the_search_honour_period_indicators():
    from autostrat import Settings, backtest, evaluate_many
    from autostrat.sim.evaluator import Evaluator
    from autostrat.sim.backtest import load_strategy

    market = synthetic_market(seed=5, bars=3000, start="2010-01-04")
    s = Settings()
    for key, value in {"split.train_end": "2015-12-31", "split.validation_start": "2016-01-01",
                       "split.validation_end": "2019-12-31", "split.test_start": "2020-01-01",
                       "backtest.indicators": "period"}.items():
        s.set(key, value)
    one = backtest(SEED_RULES, market, s).metrics
    frame = evaluate_many([SEED_RULES, SEED_RULES.replace("20)", "10)")], market, s)
    for period in ("train", "validation"):
        for metric, value in one[period].items():
            assert frame[f"{period}.{metric}"].iloc[0] == value
    evaluation = Evaluator(market, s)(load_strategy(SEED_RULES))
    assert evaluation.metrics["validation"] == one["validation"]
    r = backtest(SEED_RULES, market, s)
    returns = np.concatenate([r.daily_returns(p) for p in ("train", "validation")]).astype(np.float32)
    np.testing.assert_array_equal(evaluation.returns, returns)
