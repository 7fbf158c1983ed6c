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


# --- every text input goes through one reader --------------------------------------------------------

def _inputs(tmp_path):
    """A Latin-1 strategy, a strategy without the .strat extension, and a folder."""
    text = example_path("sma_cross").read_text()
    latin = tmp_path / "latin1.strat"
    latin.write_bytes(("# caf\xe9\n" + text).encode("latin-1"))
    plain = tmp_path / "sma.txt"
    plain.write_text(text)
    return latin, plain, tmp_path


@pytest.mark.parametrize("command", [["backtest"], ["bulk"], ["sweep", "--param", "fast=5:20:5"]],
                         ids=["backtest", "bulk", "sweep"])
def test_backtest_bulk_and_sweep_read_files_alike(tmp_path, capsys, command):
    latin, plain, folder = _inputs(tmp_path)
    name, *flags = command
    assert main([name, str(latin), *flags, *DATA]) == 2
    err = capsys.readouterr().err
    assert f"{latin}:1: error: not UTF-8 text (byte 0xe9 at offset 5" in err and "save the strategy as UTF-8" in err
    assert "Traceback" not in err
    assert main([name, str(plain), *flags, *DATA]) == 0  # an existing path is a file, whatever its extension
    capsys.readouterr()
    assert main([name, str(folder), *flags, *DATA]) == 2
    assert "this is a folder, not a strategy" in capsys.readouterr().err
    assert main([name, str(tmp_path / "missing.txt"), *flags, *DATA]) == 2
    assert f"{tmp_path / 'missing.txt'}: error: no such file" in capsys.readouterr().err


def test_a_latin1_baseline_is_a_clear_error(tmp_path, capsys, monkeypatch):
    latin, _, _ = _inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["evolve", "--from", str(latin), "--proposer", "mutate", *DATA, "--iterations", "2"]) == 2
    err = capsys.readouterr().err
    assert "not UTF-8 text" in err and "save the baseline strategy as UTF-8" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bulk_skip_invalid_lists_every_bad_file_and_ranks_the_rest(tmp_path, capsys):
    (tmp_path / "typo.strat").write_text("buy when close >> open\nsell when close < open\n")
    (tmp_path / "nosell.strat").write_text("buy when close > open\n")
    (tmp_path / "latin1.strat").write_bytes(b"# caf\xe9\nbuy when close > open\nsell when close < open\n")
    files = [SMA, str(tmp_path / "typo.strat"), str(example_path("macd_trend")), str(tmp_path / "nosell.strat"),
             str(tmp_path / "latin1.strat")]
    assert main(["bulk", *files, *DATA]) in (1, 2)  # without the flag: the first bad file stops it
    capsys.readouterr()
    assert main(["bulk", *files, *DATA, "--skip-invalid", "--out", str(tmp_path / "r.csv")]) == 1
    out, err = capsys.readouterr()
    assert err.count("skipped: ") == 3 and "typo.strat:1:" in err and "nosell.strat" in err and "latin1.strat:1:" in err
    assert "skipped 3 of 5 files" in err and "2 strategies on" in out
    assert (tmp_path / "r.csv").read_text().count("\n") == 3
    assert main(["bulk", str(tmp_path / "typo.strat"), *DATA, "--skip-invalid"]) == 2
    assert "no strategy file checks" in capsys.readouterr().err
