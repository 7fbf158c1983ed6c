"""The yfinance adapter: frame shapes, and every failure turned into one clear DataError.

No test reaches the network: frames are built here in the shapes yfinance returns, and the
offline tests cut the network at the socket/libcurl boundary before calling the real download.
"""

from __future__ import annotations

import logging
import socket

import numpy as np
import pandas as pd
import pytest

from autostrat.data import yahoo
from autostrat.errors import DataError

FIELDS = ["Open", "High", "Low", "Close", "Volume"]
from offline import block_network


@pytest.fixture
def offline(monkeypatch):
    """No network (see tests/offline.py)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound but never listening: every connection is refused
    block_network(monkeypatch, closed.getsockname()[1])
    yield
    closed.close()


@pytest.fixture(scope="module")
def bars():
    """Five days of plausible bars, and the frame normalise_frame should turn every shape into."""
    index = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=5), name="Date")
    close = np.array([470.0, 468.5, 467.25, 472.125, 473.0])
    values = {
        "Open": close - 1.0, "High": close + 2.0, "Low": close - 3.0, "Close": close,
        "Volume": np.array([1e6, 2e6, 1.5e6, 3e6, 2.5e6]),
    }
    expected = pd.DataFrame({k.lower(): v for k, v in values.items()}, index=index)
    return index, values, expected


def check(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame.index.name == "Date"
    days = expected.index.to_numpy().astype("datetime64[D]")
    assert np.array_equal(frame.index.to_numpy().astype("datetime64[D]"), days)
    for column in expected.columns:
        assert frame[column].dtype == np.float64
        assert frame[column].tolist() == expected[column].tolist(), column


# --------------------------------------------------------------------------------- frame shapes


@pytest.mark.parametrize("adj_close", [True, False])
def test_flat_columns(bars, adj_close):
    index, values, expected = bars
    columns = dict(values)
    if adj_close:
        columns = {**columns, "Adj Close": values["Close"] * 0.9}  # must not replace Close
    check(yahoo.normalise_frame(pd.DataFrame(columns, index=index), "SPY"), expected)


def test_lowercase_and_mixed_case_columns(bars):
    index, values, expected = bars
    frame = pd.DataFrame({k.lower() if i % 2 else k.upper(): v for i, (k, v) in enumerate(values.items())}, index=index)
    check(yahoo.normalise_frame(frame, "SPY"), expected)


@pytest.mark.parametrize("order", ["field_ticker", "ticker_field"])
@pytest.mark.parametrize("adj_close", [True, False])
def test_multiindex_columns_both_orders(bars, order, adj_close):
    index, values, expected = bars
    fields = dict(values) | ({"Adj Close": values["Close"] * 0.9} if adj_close else {})
    data = {}
    for field, column in fields.items():
        data[(field, "SPY") if order == "field_ticker" else ("SPY", field)] = column
        data[(field, "QQQ") if order == "field_ticker" else ("QQQ", field)] = column * 0.5  # another ticker
    frame = pd.DataFrame(data, index=index)
    names = ["Price", "Ticker"] if order == "field_ticker" else ["Ticker", "Price"]
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=names)
    check(yahoo.normalise_frame(frame, "spy"), expected)


def test_multiindex_with_a_single_other_ticker_name_is_taken(bars):
    index, values, expected = bars
    frame = pd.DataFrame({(f, "^GSPC"): v for f, v in values.items()}, index=index)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    check(yahoo.normalise_frame(frame, "GSPC"), expected)


def test_multiindex_without_the_ticker(bars):
    index, values, _ = bars
    frame = pd.DataFrame({(f, t): v for f, v in values.items() for t in ("QQQ", "IWM")}, index=index)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    with pytest.raises(DataError, match="holds QQQ, IWM but not SPY"):
        yahoo.normalise_frame(frame, "SPY")


def test_time_zone_aware_index_becomes_dates(bars):
    index, values, expected = bars
    aware = pd.DatetimeIndex(index.tz_localize("America/New_York"), name="Date")
    check(yahoo.normalise_frame(pd.DataFrame(values, index=aware), "SPY"), expected)


def test_date_as_a_column_named_datetime(bars):
    index, values, expected = bars
    frame = pd.DataFrame({"Datetime": index, **values})
    check(yahoo.normalise_frame(frame, "SPY"), expected)


def test_missing_field(bars):
    index, values, _ = bars
    frame = pd.DataFrame({k: v for k, v in values.items() if k != "Volume"}, index=index)
    with pytest.raises(DataError, match=r"Yahoo Finance data for SPY: missing column Volume \(found: Open"):
        yahoo.normalise_frame(frame, "SPY")


def test_tidy_drops_holes_and_widens_high_low(bars):
    _, _, expected = bars
    frame = expected.copy()
    frame.loc[frame.index[1], "volume"] = np.nan
    frame.loc[frame.index[2], "high"] = frame["close"].iloc[2] - 1e-9
    frame.loc[frame.index[3], "low"] = frame["open"].iloc[3] + 1e-9
    tidied, counts = yahoo.tidy(frame)
    assert counts == {"dropped_rows": 1, "widened_rows": 2} and len(tidied) == 4
    assert tidied["high"].iloc[1] == frame["close"].iloc[2] and tidied["low"].iloc[2] == frame["open"].iloc[3]


# ------------------------------------------------------------------------------------- download


@pytest.fixture
def yf():
    import yfinance

    return yfinance


def test_download_asks_for_adjusted_prices_quietly(yf, monkeypatch, bars):
    index, values, expected = bars
    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        frame = pd.DataFrame({(f, "SPY"): v for f, v in values.items()}, index=index)
        frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["Price", "Ticker"])
        return frame

    monkeypatch.setattr(yf, "download", fake)
    check(yahoo.download("SPY", "2024-01-01", None), expected)
    (args, kwargs), = calls
    assert args == ("SPY",) and kwargs["start"] == "2024-01-01" and kwargs["end"] is None
    assert kwargs["auto_adjust"] is True and kwargs["progress"] is False


def test_empty_frame_is_a_data_error(yf, monkeypatch):
    monkeypatch.setattr(yf, "download", lambda *a, **k: pd.DataFrame())
    with pytest.raises(DataError) as info:
        yahoo.download("SPY", "2000-01-01", "2001-01-01")
    message = str(info.value)
    assert message.startswith("Could not download SPY: Yahoo Finance returned no rows for 2000-01-01..2001-01-01")
    assert "--data synthetic" in message and "autostrat prepare --csv PATH --name NAME" in message
    assert message.count("\n") == 0


def test_exception_is_a_data_error(yf, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyError("chart")

    monkeypatch.setattr(yf, "download", boom)
    with pytest.raises(DataError, match=r"Yahoo Finance returned no data \(KeyError: 'chart'\).*--data synthetic"):
        yahoo.download("SPY", "2000-01-01")


def test_rate_limit_is_named(yf, monkeypatch):
    from yfinance.exceptions import YFRateLimitError

    def limited(*args, **kwargs):
        raise YFRateLimitError()

    monkeypatch.setattr(yf, "download", limited)
    with pytest.raises(DataError, match="Yahoo Finance is rate-limiting requests"):
        yahoo.download("SPY", "2000-01-01")


def test_logged_failures_are_read_and_kept_off_the_terminal(yf, monkeypatch, capfd):
    def logs_and_returns_empty(*args, **kwargs):
        logging.getLogger("yfinance").error("\n1 Failed download:")
        logging.getLogger("yfinance").error("['SPY']: YFRateLimitError('Too Many Requests. Rate limited.')")
        print("noise on stdout")
        return pd.DataFrame()

    monkeypatch.setattr(yf, "download", logs_and_returns_empty)
    logger = logging.getLogger("yfinance")
    before = (list(logger.handlers), logger.propagate, logger.level)
    with pytest.raises(DataError, match="rate-limiting"):
        yahoo.download("SPY", "2000-01-01")
    assert capfd.readouterr() == ("", "")
    assert (list(logger.handlers), logger.propagate, logger.level) == before


def test_offline_download_through_the_real_path(offline, capfd):
    with pytest.raises(DataError) as info:
        yahoo.download("SPY", "2000-01-01")
    message = str(info.value)
    assert message.startswith("Could not download SPY: Yahoo Finance cannot be reached (")
    assert "use --data synthetic" in message and "autostrat prepare --csv PATH --name NAME" in message
    assert "\n" not in message and "Traceback" not in message
    assert capfd.readouterr() == ("", "")


def test_offline_fixture_really_cuts_the_network(offline):
    from curl_cffi import requests as curl_requests

    with pytest.raises(Exception, match="127.0.0.1|connect|resolve"):
        curl_requests.get("https://query2.finance.yahoo.com/", timeout=5)
    with pytest.raises(OSError, match="network disabled"):
        socket.create_connection(("example.com", 443), timeout=5)


def test_failure_message_details():
    curl = ["['SPY']: DNSError('Failed to perform, curl: (6) Could not resolve host: query2.finance.yahoo.com. "
            "See https://curl.se/libcurl/c/libcurl-errors.html first for more details.')"]
    assert "cannot be reached (Could not resolve host: query2.finance.yahoo.com)" in yahoo.failure_message(
        "SPY", "2000-01-01", None, curl)
    long = ["['SPY']: " + "x" * 300]
    assert "..." in yahoo.failure_message("SPY", "2000-01-01", None, long)


def test_missing_timestamp_in_the_index(bars):
    index, values, _ = bars
    holes = pd.DatetimeIndex([index[0], pd.NaT, *index[2:]], name="Date")
    with pytest.raises(DataError, match="Yahoo Finance data for SPY: row 2, column Date: cannot read 'NaT'"):
        yahoo.normalise_frame(pd.DataFrame(values, index=holes), "SPY")
