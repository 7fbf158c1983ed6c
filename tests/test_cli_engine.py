"""The backtest, bulk and sweep commands, run in-process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autostrat.cli import main
from autostrat.resources import example_path
from autostrat.sim.metrics import METRIC_NAMES

SMA = str(example_path("sma_cross"))
DATA = ["--data", "synthetic:seed=3"]


def test_backtest_table(capsys):
    assert main(["backtest", SMA, *DATA]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "validation" in out and "buy&hold" in out
    assert "sealed" in out and "total_return" in out
    assert "test (sealed)" not in out


def test_backtest_test_period_only_on_request(capsys):
    assert main(["backtest", SMA, *DATA, "--test"]) == 0
    assert "test (sealed)" in capsys.readouterr().out


def test_backtest_json_has_the_design_keys(capsys):
    assert main(["backtest", SMA, *DATA, "--json", "--fill", "close", "--commission-bps", "0"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["train", "validation"]
    assert list(data["train"]) == list(METRIC_NAMES)


def test_backtest_bad_strategy_exits_1(tmp_path, capsys):
    bad = tmp_path / "bad.strat"
    bad.write_text("buy when close > \nsell when close < open\n")
    assert main(["backtest", str(bad), *DATA]) == 1
    err = capsys.readouterr().err
    assert "bad.strat:1:" in err and "^" in err


def test_backtest_usage_errors_exit_2(capsys):
    assert main(["backtest", "missing.strat", *DATA]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["backtest", SMA, "--fill", "later"])
    assert exc.value.code == 2


def test_bulk_ranks_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "r.csv"
    files = [SMA, str(example_path("macd_trend")), str(example_path("rsi_reversion"))]
    assert main(["bulk", *files, *DATA, "--out", str(out), "--objective", "validation.sharpe"]) == 0
    text = capsys.readouterr().out
    assert "rank" in text and "macd_trend.strat" in text
    assert out.read_text().count("\n") == 4


def test_sweep_prints_best_rows(capsys):
    assert main(["sweep", SMA, "--param", "fast=10:30:10", "--param", "slow=50,100", *DATA, "--top", "3"]) == 0
    text = capsys.readouterr().out
    assert "6 combinations" in text
    assert text.count("\n") >= 5


def test_sweep_bad_objective_exits_2(capsys):
    assert main(["sweep", SMA, "--param", "fast=10", *DATA, "--objective", "test.sharpe"]) == 2
    assert "train or validation" in capsys.readouterr().err


def test_backtest_on_a_synthetic_market_does_not_import_pandas():
    # Importing pandas costs a third of a second; a short command on synthetic data needs none.
    code = ("import sys; from autostrat.cli import main; "
            f"code = main(['backtest', {SMA!r}, '--data', 'synthetic:seed=3']); "
            "assert code == 0; print('pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
