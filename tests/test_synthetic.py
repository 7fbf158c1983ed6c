"""Synthetic markets: deterministic, plausible, and matched to a real one (autostrat.data.synthetic)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autostrat.config import SplitSettings
from autostrat.data.load import load_market
from autostrat.data.market import Market
from autostrat.data.splits import periods
from autostrat.errors import DataError
from autostrat.data.synthetic import matched_synthetic, synthetic_market

SEEDS = [0, 1, 7, 42, 2024]


@pytest.fixture(scope="module")
def markets():
    return {seed: synthetic_market(seed=seed) for seed in SEEDS}


def log_returns(market) -> np.ndarray:
    return np.diff(np.log(market.close))


def test_same_seed_same_market():
    a, b = synthetic_market(seed=3, bars=800), synthetic_market(seed=3, bars=800)
    for column in ("dates", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(a, column), getattr(b, column)), column
    assert a.sha256 == b.sha256 and a.name == "synthetic:seed=3,bars=800"


def test_different_seeds_differ(markets):
    closes = [markets[s].close for s in SEEDS]
    assert all(not np.allclose(closes[i], closes[j]) for i in range(len(SEEDS)) for j in range(i))
    assert len({markets[s].sha256 for s in SEEDS}) == len(SEEDS)


def test_default_market_covers_the_default_split(markets):
    market = markets[7]
    assert len(market) == 6750 and str(market.dates[0]) == "2000-01-03"
    assert market.dates[-1] > np.datetime64("2023-12-31")
    assert list(periods(market, SplitSettings())) == ["train", "validation", "test"]
    assert market.source == "synthetic" and market.name == "synthetic:seed=7"


def test_business_days_strictly_increasing(markets):
    days = pd.DatetimeIndex(markets[7].dates)
    assert (days.day_of_week < 5).all() and days.is_monotonic_increasing and days.is_unique
    assert days.equals(pd.bdate_range("2000-01-03", periods=6750))


@pytest.mark.parametrize("seed", SEEDS)
def test_plausible_bars(markets, seed):
    m = markets[seed]
    for column in ("open", "high", "low", "close", "volume"):
        assert np.all(np.isfinite(getattr(m, column))) and np.all(getattr(m, column) > 0), column
    assert np.all(m.high >= np.maximum(m.open, m.close)) and np.all(m.low <= np.minimum(m.open, m.close))
    r = log_returns(m)
    annual_vol = r.std(ddof=1) * np.sqrt(252)
    assert 0.08 < annual_vol < 0.35
    assert -0.1 < r.mean() * 252 < 0.25  # a realistic yearly drift
    assert pd.Series(r).kurt() > 0.5  # fat tails: pandas reports excess kurtosis
    # Volatility clustering: big moves follow big moves.
    abs_r = pd.Series(np.abs(r))
    assert np.mean([abs_r.autocorr(lag) for lag in range(1, 6)]) > 0.05
    assert pd.Series(r).autocorr(1) == pytest.approx(0.0, abs=0.1)  # but no easy linear pattern
    # Volume goes up with the size of the move.
    assert np.corrcoef(m.volume[1:], np.abs(r))[0, 1] > 0.1


def test_gaps_and_ranges_are_realistic(markets):
    m = markets[7]
    gap = np.log(m.open[1:] / m.close[:-1])
    day_range = np.log(m.high / m.low)
    assert 0 < np.median(np.abs(gap)) < np.median(np.abs(log_returns(m)))
    assert 0.002 < np.median(day_range) < 0.03


def test_spec_round_trips_through_the_name():
    market = synthetic_market(seed=9, bars=400, start="2012-06-01")
    assert market.name == "synthetic:seed=9,bars=400,start=2012-06-01"
    assert load_market(market.name).sha256 == market.sha256


@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:seed=x", "seed must be a whole number"),
        ("synthetic:bars=1", "need at least 2 bars"),
        ("synthetic:start=someday", "is not a date"),
        ("synthetic:sede=3", "did you mean 'seed'"),
        ("synthetic:seed", "unknown option 'seed'"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_market(spec)


def test_matched_synthetic_matches_dates_and_volatility():
    # A "real" market with another volatility and irregular dates (every 17th day left out).
    source = synthetic_market(seed=1, bars=1500)
    keep = np.ones(len(source), bool)
    keep[::17] = False
    close = (50 * np.exp(np.cumsum(np.r_[0.0, 0.4 * log_returns(source)])))[keep]
    real = Market("REAL", source.dates[keep], close, close * 1.01, close * 0.99, close, source.volume[keep], "test", "")
    a = matched_synthetic(real, seed=5)
    assert len(a) == len(real) and np.array_equal(a.dates, real.dates)
    target = log_returns(real)
    got = log_returns(a)
    assert got.std(ddof=1) == pytest.approx(target.std(ddof=1), rel=1e-9)
    assert got.mean() == pytest.approx(target.mean(), rel=1e-6)
    assert np.all(a.high >= np.maximum(a.open, a.close)) and np.all(a.low <= np.minimum(a.open, a.close))
    assert a.source == "synthetic" and "REAL" in a.name
    b = matched_synthetic(real, seed=6)
    assert not np.allclose(a.close, b.close)
    assert np.array_equal(matched_synthetic(real, seed=5).close, a.close)
    # The matched market keeps the clustering and fat tails of the generator.
    assert pd.Series(got).kurt() > 0.5


def test_matched_synthetic_needs_a_few_bars():
    with pytest.raises(DataError, match="too few"):
        matched_synthetic(synthetic_market(bars=200).slice(0, 2), seed=1)


@pytest.mark.parametrize("start, bars", [("2000-01-03", 6750), ("2021-07-03", 10), ("2024-02-29", 400),
                                         ("1999-12-31", 3), ("March 5, 2010", 20)])
def test_business_days_are_pandas_bdate_range(start, bars):
    from autostrat.data.synthetic import business_days

    expected = pd.bdate_range(pd.Timestamp(start), periods=bars).to_numpy().astype("datetime64[D]")
    np.testing.assert_array_equal(business_days(start, bars), expected)


def test_a_bad_start_is_named():
    from autostrat.data.synthetic import business_days

    with pytest.raises(DataError, match="is not a date"):
        business_days("someday", 5)


def test_a_huge_synthetic_market_is_refused_with_the_limit():
    from autostrat.data.load import load_market
    from autostrat.errors import DataError

    with pytest.raises(DataError, match="bars=1,000,000,000; the limit is 1,000,000"):
        load_market("synthetic:bars=1000000000")
