"""Universes: parsing specs, loading and aligning markets, aggregates, and evaluation across markets."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import autostrat
from autostrat.data import yahoo
from autostrat.sim.backtest import period_spans
from autostrat.sim.bulk import across_assets_frame, evaluate_many, sweep, universe_spans
from autostrat.cli import main
from autostrat.config import DataSettings, Settings
from autostrat.data.load import load_market
from autostrat.errors import DataError
from autostrat.resources import example_path
from autostrat.data.synthetic import synthetic_market
from autostrat.data.load import load_data, load_universe
from autostrat.data.universe import across_assets, aggregate, beats_share, is_universe_spec, split_specs, summary, Universe, universe_specs

SMA = str(example_path("sma_cross"))
RSI = str(example_path("rsi_reversion"))
THREE = "synthetic:seed=1..3,bars=3000,start=2013-01-01"


def write_csv(path, seed: int, bars: int, start: str, drop=()) -> None:
    """A synthetic market's bars as a CSV, with the rows at `drop` left out (holidays of its own)."""
    frame = synthetic_market(seed=seed, bars=bars, start=start).frame()
    frame = frame.drop(frame.index[list(drop)])
    frame.to_csv(path, index_label="Date")


# --- specs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("SPY", ["SPY"]),
    ("SPY,QQQ, IWM", ["SPY", "QQQ", "IWM"]),
    ("synthetic:seed=1,bars=3000,SPY", ["synthetic:seed=1,bars=3000", "SPY"]),
    ("synthetic,seed=4", ["synthetic:seed=4"]),
    ("GC=F,SPY", ["GC=F", "SPY"]),  # a ticker with '=' is not a synthetic option
    ("a.csv,synthetic:seed=2,start=2010-01-01", ["a.csv", "synthetic:seed=2,start=2010-01-01"]),
    ("synthetic:seed=1..3,bars=900", ["synthetic:seed=1,bars=900", "synthetic:seed=2,bars=900",
                                      "synthetic:seed=3,bars=900"]),
    ("synthetic:bars=900,seed=7..8", ["synthetic:bars=900,seed=7", "synthetic:bars=900,seed=8"]),
])
def test_split_specs(text, expected):
    assert split_specs(text) == expected


def test_is_universe_spec():
    assert not is_universe_spec("SPY") and not is_universe_spec("synthetic:seed=1,bars=900")
    assert is_universe_spec("SPY,QQQ") and is_universe_spec("synthetic:seed=1..2") and is_universe_spec("universe:x")


def test_bad_seed_range_is_named():
    with pytest.raises(DataError, match="seed range"):
        split_specs("synthetic:seed=5..2")


def test_universe_file_skips_comments_and_reads_paths_beside_it(tmp_path):
    (tmp_path / "sub").mkdir()
    write_csv(tmp_path / "sub" / "alpha.csv", 11, 400, "2015-01-01")
    listing = tmp_path / "sub" / "u.txt"
    listing.write_text("# my universe\n\nalpha.csv   # a file next to this one\nsynthetic:seed=2,bars=400\n")
    specs = universe_specs(f"universe:{listing}")
    assert specs == [str(tmp_path / "sub" / "alpha.csv"), "synthetic:seed=2,bars=400"]
    u = load_universe(f"universe:{listing}")
    assert u.names == ["alpha", "synthetic:seed=2,bars=400"] and len(u) == 2


def test_universe_file_errors(tmp_path):
    with pytest.raises(DataError, match="missing.txt: error: no such file; a universe file lists one data spec"):
        universe_specs(f"universe:{tmp_path / 'missing.txt'}")
    (tmp_path / "latin1.txt").write_bytes(b"synthetic:seed=1 # caf\xe9\n")
    with pytest.raises(DataError, match=r"latin1.txt:1: error: not UTF-8 text .*save the universe file as UTF-8"):
        universe_specs(f"universe:{tmp_path / 'latin1.txt'}")
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(DataError, match="lists no markets"):
        universe_specs(f"universe:{tmp_path / 'empty.txt'}")


def test_a_bad_market_is_named_with_its_position(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,1,2,0.5,1.5,100\n")
    with pytest.raises(DataError, match=r"universe market 2 of 2 \(.*bad.csv\): .*bad.csv"):
        load_universe(f"synthetic:seed=1,{bad}")


def test_a_market_listed_twice_is_refused():
    with pytest.raises(DataError, match="listed twice"):
        load_universe("synthetic:seed=1,synthetic:seed=1")


def test_single_market_loaders_refuse_a_universe_clearly():
    with pytest.raises(DataError, match="names several markets"):
        load_market("synthetic:seed=1..2")
    assert isinstance(load_data("synthetic:seed=1..2,bars=500"), Universe)
    assert not isinstance(load_data("synthetic:seed=1,bars=500"), Universe)


def test_each_market_keeps_its_own_dates(tmp_path):
    # Two markets with different histories and different missing days: no common calendar is forced.
    write_csv(tmp_path / "a.csv", 1, 3000, "2013-01-01", drop=range(100, 140))
    write_csv(tmp_path / "b.csv", 2, 2600, "2014-06-02", drop=(5, 900, 1700))
    u = load_universe(f"{tmp_path / 'a.csv'},{tmp_path / 'b.csv'}")
    a, b = u.markets
    assert len(a) == 2960 and len(b) == 2597 and a.dates[0] != b.dates[0]
    assert a.sha256 != b.sha256 and u.sha256 != load_universe(f"{tmp_path / 'b.csv'},{tmp_path / 'a.csv'}").sha256
    s = Settings()
    names, spans = universe_spans(u, s, ("train", "validation", "test"))
    assert names == ["train", "validation", "test"]
    for market, arr in zip(u, spans):
        own = period_spans(market, s, ("train", "validation", "test"))
        assert arr.tolist() == [list(own[p]) for p in names]
        # the cut is by date in each market: the validation period starts on its first 2019 bar
        assert str(market.dates[own["validation"][0]]) >= "2019-01-01" > str(market.dates[own["validation"][0] - 1])


# --- aggregates --------------------------------------------------------------------------------------


def test_aggregates_by_hand():
    assert aggregate([1.0, 2.0, 6.0], "mean") == 3.0
    assert aggregate([1.0, 2.0, 6.0, 10.0], "median") == 4.0
    assert aggregate([1.0, -2.0, 6.0], "min") == -2.0
    assert aggregate([1.0, math.nan, 3.0], "mean") == 2.0  # NaN skipped
    assert math.isnan(aggregate([math.nan], "min"))
    assert beats_share([0.1, -0.2, 0.0, math.nan, 0.3]) == 0.4  # strictly positive excess only
    with pytest.raises(ValueError):
        aggregate([1.0], "max")


def test_across_assets_and_summary_by_hand():
    per = {
        "A": {"train": {"sharpe": 1.0, "excess_return": 0.1}, "test": {"sharpe": 0.5, "excess_return": -0.1}},
        "B": {"train": {"sharpe": 3.0, "excess_return": -0.2}},
        "C": {"train": {"sharpe": math.nan, "excess_return": 0.3}, "test": {"sharpe": 1.5, "excess_return": 0.2}},
    }
    assert across_assets(per, "mean") == {"train": {"sharpe": 2.0, "excess_return": pytest.approx(0.2 / 3)},
                                          "test": {"sharpe": 1.0, "excess_return": pytest.approx(0.05)}}
    assert across_assets(per, "min")["train"] == {"sharpe": 1.0, "excess_return": -0.2}
    assert across_assets(per, "median")["train"]["excess_return"] == 0.1
    s = summary(per)
    assert s["assets"] == 3
    assert s["beats_buy_hold"] == {"train": pytest.approx(2 / 3), "test": 0.5}  # test: only A and C have it


def test_across_assets_frame_by_hand():
    frame = pd.DataFrame({
        "name": ["x", "x", "x", "y", "y", "y"], "asset": list("ABC") * 2,
        "validation.total_return": [0.1, 0.3, -0.1, 0.0, 0.2, 0.4],
        "validation.excess_return": [0.05, -0.01, 0.02, -0.1, -0.2, 0.0],
    })
    out = across_assets_frame(frame, "median")
    assert out["name"].tolist() == ["x", "y"] and out["assets"].tolist() == [3, 3]
    assert out["validation.total_return"].tolist() == [0.1, 0.2]
    assert out["validation.excess_return"].tolist() == [0.02, -0.1]
    assert out["validation.beats_buy_hold"].tolist() == [pytest.approx(2 / 3), 0.0]
    assert across_assets_frame(frame, "min")["validation.total_return"].tolist() == [-0.1, 0.0]


# --- evaluation across a universe ------------------------------------------------------------------


@pytest.fixture(scope="module")
def universe():
    return load_universe(THREE)


def test_evaluate_many_on_a_universe_equals_each_market_alone(universe):
    frame = evaluate_many([SMA, RSI], universe, periods=("train", "validation", "test"), chunk_size=1)
    assert frame["asset"].tolist() == universe.names * 2
    for market in universe:
        alone = evaluate_many([SMA, RSI], market, periods=("train", "validation", "test"))
        mine = frame[frame["asset"] == market.name].drop(columns="asset").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone, check_exact=True)


def test_sweep_on_a_universe_equals_each_market_alone(universe):
    grid = {"fast": [10.0, 20.0], "slow": [50.0, 100.0]}
    frame = sweep(SMA, grid, universe)
    assert len(frame) == 4 * 3 and list(frame.columns[:3]) == ["fast", "slow", "asset"]
    for market in universe:
        alone = sweep(SMA, grid, market)
        mine = frame[frame["asset"] == market.name].drop(columns="asset").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone, check_exact=True)


def test_backtest_on_a_universe(universe):
    result = autostrat.backtest(SMA, universe)
    assert list(result.results) == universe.names
    for market in universe:
        assert result.metrics[market.name] == autostrat.backtest(SMA, market).metrics
    for how in ("mean", "median", "min"):
        assert result.aggregate(how) == across_assets(result.metrics, how)
    assert result.summary["assets"] == 3
    assert list(result.table("validation").index) == universe.names


def test_missing_periods_are_nan_for_that_market_only(tmp_path):
    write_csv(tmp_path / "short.csv", 4, 2500, "2013-01-01")  # ends before 2023: no test period
    u = load_universe(f"synthetic:seed=1,bars=3000,start=2013-01-01,{tmp_path / 'short.csv'}")
    frame = evaluate_many([SMA], u, periods=("train", "validation", "test"))
    assert not math.isnan(frame["test.total_return"].iloc[0]) and math.isnan(frame["test.total_return"].iloc[1])
    assert frame["test.num_trades"].isna().tolist() == [False, True]
    agg = across_assets_frame(frame)
    assert agg["test.total_return"].iloc[0] == frame["test.total_return"].iloc[0]


# --- the command line --------------------------------------------------------------------------------


def test_backtest_command_on_a_universe(capsys):
    assert main(["backtest", SMA, "--data", THREE]) == 0
    out = capsys.readouterr().out
    for name in ("synthetic:seed=1,bars=3000,start=2013-01-01", "mean", "median", "min", "beats buy&hold"):
        assert name in out
    assert "markets (" in out and "3 markets" in out


def test_backtest_command_json_on_a_universe(capsys, universe):
    assert main(["backtest", SMA, "--data", THREE, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data["assets"]) == universe.names
    assert set(data["aggregate"]) == {"mean", "median", "min", "beats_buy_hold", "assets"}
    expected = autostrat.backtest(SMA, universe).summary["median"]["validation"]["sharpe"]
    assert data["aggregate"]["median"]["validation"]["sharpe"] == pytest.approx(expected, rel=0, abs=0)


def test_sweep_command_on_a_universe_ranks_by_the_aggregate(tmp_path, capsys, universe):
    per, out_csv = tmp_path / "per.csv", tmp_path / "agg.csv"
    assert main(["sweep", SMA, "--param", "fast=10,20", "--param", "slow=50,100", "--data", THREE,
                 "--across", "min", "--per-asset", str(per), "--out", str(out_csv), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "on 3 markets, min across them" in out and "validation.beats_buy_hold" in out
    rows = pd.read_csv(per)
    assert len(rows) == 12 and set(rows["asset"]) == set(universe.names)
    agg = pd.read_csv(out_csv)
    assert len(agg) == 4
    expected = rows.groupby(["fast", "slow"])["validation.total_return"].min()
    for _, r in agg.iterrows():
        assert r["validation.total_return"] == pytest.approx(expected[(r["fast"], r["slow"])], rel=1e-12)


def test_bulk_command_on_a_universe(capsys):
    assert main(["bulk", SMA, RSI, "--data", THREE]) == 0
    out = capsys.readouterr().out
    assert "2 strategies on 3 markets, mean across them" in out


def test_universe_only_flags_on_one_market_are_refused(tmp_path, capsys):
    assert main(["sweep", SMA, "--param", "fast=10,20", "--data", "synthetic:seed=1",
                 "--per-asset", str(tmp_path / "x.csv")]) == 2
    assert "--per-asset writes one row per market" in capsys.readouterr().err
    assert main(["backtest", SMA, "--data", THREE, "--plot", str(tmp_path / "p.png")]) == 2
    assert "--plot draws one market" in capsys.readouterr().err


def test_data_command_describes_every_market(capsys):
    assert main(["data", "synthetic:seed=1..2,bars=3000,start=2013-01-01"]) == 0
    out = capsys.readouterr().out
    assert "universe: 2 markets" in out and out.count("sha256:") == 2


def test_prepare_tickers_keeps_the_good_ones_and_lists_the_failures(tmp_path, monkeypatch, capsys):
    source = synthetic_market(seed=5, bars=300).frame()

    def fake_download(ticker, start, end=None):  # Yahoo cannot be reached from the tests
        if ticker == "BAD":
            raise DataError("Could not download BAD: no data")
        return source.copy()

    monkeypatch.setattr(yahoo, "download", fake_download)
    code = main(["prepare", "--tickers", "spy,BAD,QQQ", "--data-dir", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2
    assert "prepared 2 of 3" in captured.out and "failed BAD: Could not download BAD" in captured.out
    assert "use them as: --data SPY,QQQ" in captured.out
    assert "3/3 QQQ: ok" in captured.err and "2/3 BAD: FAILED" in captured.err
    assert (tmp_path / "SPY.csv").is_file() and (tmp_path / "QQQ.csv").is_file()
    u = load_universe("SPY,QQQ", DataSettings(data_dir=str(tmp_path)))
    assert u.names == ["SPY", "QQQ"]
