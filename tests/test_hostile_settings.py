"""Settings and inputs that would give wrong results without an error: refused or warned, everywhere.

Costs that make no sense (flags, autostrat.toml, the API, a search), a split date that moves with
the clock, a number too small to hold, and a strategy whose warm-up outlasts the data.
"""

from __future__ import annotations

import pytest

from autostrat import backtest
from autostrat.cli import main
from autostrat.config import Settings
from autostrat.errors import ConfigError, StrategyError
from autostrat.lang.parse import parse
from autostrat.resources import example_path

SMA = str(example_path("sma_cross"))
DATA = ["--data", "synthetic:seed=3"]


@pytest.mark.parametrize("flag, value", [("--commission-bps", "20000"), ("--commission-bps", "inf"),
                                         ("--slippage-bps", "nan"), ("--slippage-bps", "-1"),
                                         ("--capital", "inf"), ("--capital", "0")])
def test_costs_and_capital_that_make_no_sense_are_refused_by_every_command(clean_env, capsys, flag, value):
    for command in (["backtest", SMA], ["bulk", SMA], ["sweep", SMA, "--param", "fast=5:10:5"]):
        assert main([*command, *DATA, flag, value]) == 2
        err = capsys.readouterr().err
        assert "must be" in err and "Traceback" not in err, err
    key = {"--commission-bps": "commission_bps", "--slippage-bps": "slippage_bps", "--capital": "initial_capital"}[flag]
    toml_value = {"inf": "inf", "nan": "nan"}.get(value, value)
    (clean_env / "autostrat.toml").write_text(f"[backtest]\n{key} = {toml_value}\n")
    assert main(["evolve", "--proposer", "mutate", *DATA, "--iterations", "2", "--run", "c"]) == 2
    assert "must be" in capsys.readouterr().err and not (clean_env / "runs" / "c").exists()


def test_costs_are_bounded_in_the_config_file_and_the_api(clean_env, capsys):
    (clean_env / "autostrat.toml").write_text("[backtest]\ncommission_bps = 20000\n")
    assert main(["backtest", SMA, *DATA]) == 2
    assert "backtest.commission_bps must be from 0 to 1000 basis points per side" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="slippage_bps must be from 0 to 1000"):
        backtest(SMA, "synthetic:seed=3", slippage_bps=1e6)
    s = Settings()
    s.backtest.commission_bps = float("inf")  # set past Settings.set: the simulator's check still sees it
    with pytest.raises(ConfigError, match="commission_bps"):
        backtest(SMA, "synthetic:seed=3", s)
    assert backtest(SMA, "synthetic:seed=3", commission_bps=1000).metrics["train"]["num_trades"] > 0


@pytest.mark.parametrize("value", ["now", "today", "yesterday", "March 2019", "tomorrow"])
def test_a_split_date_must_be_a_date(capsys, value):
    assert main(["backtest", SMA, *DATA, "--train-end", value]) == 2
    assert f"split.train_end: error: {value!r} is not a date; write YYYY-MM-DD" in capsys.readouterr().err


def test_a_number_too_small_to_hold_is_an_error_and_zero_is_fine():
    with pytest.raises(StrategyError, match="number 1e-400 is too small to hold"):
        parse("x = 1e-400\nbuy when close > x\nsell when close < x\n")
    for zero in ("0", "0.0", "0e5", "0%"):
        parse(f"x = {zero}\nbuy when close > x\nsell when close < x\n")


def test_a_warm_up_longer_than_the_data_is_said(clean_env, capsys):
    # The default split: train runs to 2018-12-31 (bar 4956 of the default synthetic market).
    text = "buy when close > sma(close, 2500)\nsell when close < sma(close, 2500)\n"
    assert backtest(text, "synthetic").warnings == []  # 2,499 bars of warm-up fit in train
    s = Settings()
    s.set("split.train_end", "2001-06-29")  # train: 390 bars; validation starts in 2019
    result = backtest(text, "synthetic", s)
    assert len(result.warnings) == 1 and result.warnings[0].startswith("train: the strategy's warm-up is 2499 bars")
    assert "no rule can fire there" in result.warnings[0] and result.metrics["train"]["num_trades"] == 0
    (clean_env / "long.strat").write_text(text)
    assert main(["backtest", "long.strat", "--data", "synthetic", "--train-end", "2001-06-29"]) == 0
    assert "warning: train: the strategy's warm-up is 2499 bars" in capsys.readouterr().err


# --- every error reads WHERE: error: WHAT, and says what to do -----------------------------------------

def _csv(path, header: str, rows: list[str]) -> str:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def _days(n: int) -> list[str]:
    import datetime

    start = datetime.date(2020, 1, 1)
    return [str(start + datetime.timedelta(days=i)) for i in range(n)]


def test_data_errors_name_the_file_and_hint_at_the_fix(tmp_path, capsys):
    semi = _csv(tmp_path / "semi.csv", "Date;Open;High;Low;Close;Volume", [f"{d};1;2;0.5;1.5;100" for d in _days(150)])
    assert main(["data", semi]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{semi}: error: missing columns") and "looks ';'-separated" in err

    dmy = _csv(tmp_path / "dmy.csv", "Date,Open,High,Low,Close,Volume",
               ["02/01/2020,1,2,0.5,1.5,100", "03/01/2020,1,2,0.5,1.5,100"])
    assert main(["data", dmy]) == 2
    err = capsys.readouterr().err
    assert "'02/01/2020' can be read day first or month first; write dates as YYYY-MM-DD" in err

    rows = [f"{d},1,2,0.5,{-5.0 if i == 70 else 1.5},100" for i, d in enumerate(_days(150))]
    neg = _csv(tmp_path / "neg.csv", "Date,Open,High,Low,Close,Volume", rows)
    assert main(["data", neg]) == 2
    err = capsys.readouterr().err
    assert "price must be positive and finite, got -5.0;" in err and "np.float64" not in err


@pytest.mark.parametrize("char, shown, hint", [
    ("\u2014", "U+2014 EM DASH", "looks like '-'"),
    ("\u043e", "U+043E CYRILLIC SMALL LETTER O", "looks like 'o'"),
    ("\u2265", "U+2265 GREATER-THAN OR EQUAL TO", "looks like '>='"),
    ("\u201c", "U+201C LEFT DOUBLE QUOTATION MARK", "looks like '\"'"),
    ("\u2603", "U+2603 SNOWMAN", "a strategy is written in ASCII"),
])
def test_a_look_alike_character_shows_its_code_point(char, shown, hint):
    with pytest.raises(StrategyError) as info:
        parse(f"buy when close {char} open\nsell when close < open\n", "s.strat")
    text = info.value.format()
    assert text.startswith(f"s.strat:1:16: error: unexpected character {char!r} ({shown})") and hint in text


def test_a_non_utf8_strategy_reads_file_line_error(tmp_path, capsys):
    bad = tmp_path / "latin.strat"
    bad.write_bytes(b"buy when close > open\n# caf\xe9\nsell when close < open\n")
    for command in (["check"], ["backtest"], ["fmt", "--check"]):
        assert main([*command, str(bad), *(DATA if command == ["backtest"] else [])]) == 2
        assert capsys.readouterr().err.startswith(f"{bad}:2: error: not UTF-8 text (byte 0xe9")


def test_errors_without_a_place_still_say_error(clean_env, capsys):
    assert main(["evolve", "--proposer", "llm", *DATA, "--run", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: the llm proposer needs a model endpoint")
