"""`autostrat prepare` and `autostrat data`: output, exit codes, and the offline download path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autostrat.cli import main
from autostrat.data.synthetic import synthetic_market

from offline import PROXY_VARS, block_network


@pytest.fixture
def refused_port():
    """A local port that refuses connections: bound, never listening."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    yield closed.getsockname()[1]
    closed.close()


@pytest.fixture
def offline(monkeypatch, refused_port):
    """No network in this process (see tests/offline.py)."""
    block_network(monkeypatch, refused_port)


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """Each test runs in an empty folder, so no autostrat.toml or data/ of the checkout is read."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """main() in-process; argparse's own usage errors exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def keyed(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def write_prices(path: Path, bars: int = 300, seed: int = 4) -> Path:
    market = synthetic_market(seed=seed, bars=bars, start="2017-01-02")
    frame = market.frame()
    frame.index.name = "date"
    frame.columns = ["open", "HIGH", "Low", "Close", "volume"]
    frame["Adj Close"] = frame["Close"] * 0.5
    frame.to_csv(path)
    return path


def test_prepare_csv_then_data(workdir, capsys):
    write_prices(workdir / "prices.csv")
    code, out, err = run(["prepare", "--csv", "prices.csv", "--name", "gold"], capsys)
    assert code == 0 and err == ""
    info = keyed(out)
    assert info["wrote"] == str(Path("data") / "gold.csv") and info["meta"] == str(Path("data") / "gold.meta.json")
    assert info["rows"] == "300" and info["first_date"] == "2017-01-02"
    meta = json.loads((workdir / "data" / "gold.meta.json").read_text())
    assert info["sha256"] == meta["sha256"]

    code, out, err = run(["data", "gold", "--train-end", "2017-12-29", "--validation-start", "2018-01-01"], capsys)
    assert code == 0 and err == ""
    info = keyed(out)
    assert info["name"] == "gold" and info["rows"] == "300" and info["sha256"] == meta["sha256"]
    assert info["dates"] == f"2017-01-02..{meta['last_date']}"
    assert info["train"] == "2017-01-02..2017-12-29 (260 bars)"
    assert info["validation"] == f"2018-01-01..{meta['last_date']} (40 bars)"
    assert info["test"] == "none (no bars on or after 2023-01-01)"


def test_data_synthetic(capsys):
    code, out, err = run(["data", "synthetic"], capsys)
    market = synthetic_market()
    info = keyed(out)
    assert code == 0 and err == ""
    assert info["name"] == "synthetic:seed=7" and info["source"] == "synthetic" and info["rows"] == "6750"
    assert info["sha256"] == market.sha256
    assert info["train"].startswith("2000-01-03..2018-12-31 (")
    assert info["validation"].startswith("2019-01-01..2022-12-30 (") and info["test"].endswith("bars, sealed)")


def test_data_defaults_to_the_settings(workdir, capsys):
    (workdir / "autostrat.toml").write_text("[data]\nspec = 'synthetic:seed=2'\n[split]\ntwo_way = true\n")
    code, out, _ = run(["data"], capsys)
    info = keyed(out)
    assert code == 0 and info["name"] == "synthetic:seed=2" and info["test"] == "none (two-way split)"
    code, out, _ = run(["data", "synthetic:seed=5", "--config", "autostrat.toml"], capsys)
    assert keyed(out)["name"] == "synthetic:seed=5"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "nope.csv"], "nope.csv: error: file not found"),
        (["data", "synthetic:bars=300"], "no bars in the validation period"),
        (["data", "synthetic", "--train-end", "2018-02-30"], "split.train_end: error: '2018-02-30' is not a date"),
        (["prepare", "--csv", "prices.csv"], "prepare --csv needs --name NAME"),
        (["prepare", "--csv", "prices.csv", "--name", "x", "--start", "2001-01-01"], "apply to --ticker only"),
        (["prepare", "--ticker", "SPY", "--name", "x"], "--name applies to --csv only"),
        (["prepare", "--ticker", "SPY", "--start", "yesterday-ish"], "--start: error: 'yesterday-ish' is not a date"),
        (["data", "--config", "missing.toml"], "config file not found"),
    ],
)
def test_input_errors_exit_2_with_one_message(workdir, capsys, argv, message):
    write_prices(workdir / "prices.csv")
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_bad_csv_names_row_and_column(workdir, capsys):
    lines = write_prices(workdir / "prices.csv").read_text().splitlines()
    cells = lines[5].split(",")
    cells[4] = "-1"  # Close of data row 5
    lines[5] = ",".join(cells)
    (workdir / "prices.csv").write_text("\n".join(lines) + "\n")
    code, _, err = run(["prepare", "--csv", "prices.csv", "--name", "p"], capsys)
    assert code == 2 and "prices.csv: error: row 5 (" in err and "column Close: price must be positive" in err
    assert not (workdir / "data" / "p.csv").exists()


@pytest.mark.parametrize("argv", [["prepare"], ["prepare", "--ticker", "SPY", "--csv", "x.csv"], ["data", "--bogus"]])
def test_usage_errors_exit_2(capsys, argv):
    code, _, err = run(argv, capsys)
    assert code == 2 and "usage:" in err


def test_help_texts(capsys):
    for argv in (["prepare", "--help"], ["data", "--help"]):
        code, out, _ = run(argv, capsys)
        assert code == 0 and "--data-dir" in out and "--config" in out
    _, out, _ = run(["data", "--help"], capsys)
    assert "--train-end" in out and "--two-way" in out and "synthetic[:seed=N" in out


def test_offline_prepare_ticker_in_process(workdir, offline, capsys):
    code, out, err = run(["prepare", "--ticker", "SPY"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("error: Could not download SPY: Yahoo Finance cannot be reached")
    assert "--data synthetic" in lines[0] and "autostrat prepare --csv PATH --name NAME" in lines[0]
    assert not (workdir / "data" / "SPY.csv").exists()


def test_offline_prepare_ticker_as_a_subprocess(workdir, refused_port):
    # Every HTTP client yfinance may use (curl_cffi or requests) honours the proxy variables, so the
    # process can only reach a local port that refuses; its caches go to the test folder.
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy",)}
    env.update({var: f"http://127.0.0.1:{refused_port}" for var in PROXY_VARS})
    env["XDG_CACHE_HOME"] = str(workdir / "cache")
    result = subprocess.run(
        [sys.executable, "-m", "autostrat", "prepare", "--ticker", "SPY"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Could not download SPY: Yahoo Finance cannot be reached")
