"""Loading, validation, splits and prepared files (autostrat.data.market)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autostrat.data import market as data_mod
from autostrat.data import yahoo
from autostrat.config import DataSettings, SplitSettings
from autostrat.data.csv_file import read_csv
from autostrat.data.load import load_market
from autostrat.data.market import Market
from autostrat.data.prepare import prepare_csv, prepare_ticker
from autostrat.data.splits import describe, periods
from autostrat.errors import ConfigError, DataError
from autostrat.data.synthetic import synthetic_market

HEADER = ["Date", "Open", "High", "Low", "Close", "Volume"]


def rows_of(market: Market) -> list[list[str]]:
    """Cells of a standard CSV as text, so a test can spoil exactly one of them."""
    return [
        [str(d), repr(o), repr(h), repr(lo), repr(c), repr(v)]
        for d, o, h, lo, c, v in zip(
            market.dates.astype(str),
            *(getattr(market, k).tolist() for k in ("open", "high", "low", "close", "volume")),
            strict=True,
        )
    ]


def write(path, header, rows) -> str:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def rows():
    return rows_of(synthetic_market(seed=11, bars=150))


def bad_file(tmp_path, rows, row: int, column: str, value: str) -> str:
    """The 150-row file with data row `row` (1-based), column `column` set to `value`."""
    rows = [list(r) for r in rows]
    rows[row - 1][HEADER.index(column)] = value
    return write(tmp_path / "bad.csv", HEADER, rows)


def error_of(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_csv(path, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------- validation, one per case


def test_missing_columns_are_named_with_the_columns_found(tmp_path, rows):
    path = write(tmp_path / "p.csv", ["Date", "Open", "Close", "Volume"], [[r[0], r[1], r[4], r[5]] for r in rows])
    message = error_of(path)
    assert path in message and "missing columns High, Low" in message
    assert "found: Date, Open, Close, Volume" in message


def test_missing_date_column(tmp_path, rows):
    path = write(tmp_path / "p.csv", ["Day", *HEADER[1:]], rows)
    assert "missing column Date (found: Day, Open" in error_of(path)


def test_unparsable_date(tmp_path, rows):
    message = error_of(bad_file(tmp_path, rows, 7, "Date", "2001-13-45"))
    assert "row 7, column Date" in message and "'2001-13-45'" in message and "YYYY-MM-DD" in message


def test_unsorted_dates(tmp_path, rows):
    rows[4], rows[5] = rows[5], rows[4]
    message = error_of(write(tmp_path / "p.csv", HEADER, rows))
    assert f"row 6 ({rows[5][0]}), column Date" in message
    assert "not in increasing order" in message and "sort the rows by date" in message


def test_duplicate_dates(tmp_path, rows):
    rows[9][0] = rows[8][0]
    message = error_of(write(tmp_path / "p.csv", HEADER, rows))
    assert f"row 10 ({rows[8][0]}), column Date: duplicate date" in message and "also on row 9" in message


@pytest.mark.parametrize("value", ["0", "-3.5"])
def test_non_positive_price(tmp_path, rows, value):
    message = error_of(bad_file(tmp_path, rows, 12, "Low", value))
    assert f"row 12 ({rows[11][0]}), column Low: price must be positive" in message and value in message


def test_non_finite_price(tmp_path, rows):
    message = error_of(bad_file(tmp_path, rows, 3, "Open", "inf"))
    assert "row 3" in message and "column Open" in message and "inf" in message


@pytest.mark.parametrize("column", ["Close", "Volume"])
def test_nan_hole(tmp_path, rows, column):
    message = error_of(bad_file(tmp_path, rows, 20, column, ""))
    assert f"row 20 ({rows[19][0]}), column {column}: missing value" in message
    assert "drop or fill the rows" in message


def test_nan_hole_counts_rows(tmp_path, rows):
    rows[30][4] = "NaN"
    message = error_of(bad_file(tmp_path, rows, 40, "Close", "NaN"))
    assert "row 31" in message and "2 rows in all" in message


def test_text_in_a_number_column(tmp_path, rows):
    message = error_of(bad_file(tmp_path, rows, 5, "High", '"1,234.5"'))
    assert f"row 5 ({rows[4][0]}), column High: '1,234.5' is not a number" in message


def test_high_below_open_or_close(tmp_path, rows):
    top = max(float(rows[14][1]), float(rows[14][4]))
    message = error_of(bad_file(tmp_path, rows, 15, "High", repr(top * 0.999)))
    assert f"row 15 ({rows[14][0]}), column High" in message and "below max(open" in message


def test_low_above_open_or_close(tmp_path, rows):
    bottom = min(float(rows[14][1]), float(rows[14][4]))
    message = error_of(bad_file(tmp_path, rows, 15, "Low", repr(bottom * 1.001)))
    assert "row 15" in message and "column Low" in message and "above min(open" in message


def test_negative_volume(tmp_path, rows):
    message = error_of(bad_file(tmp_path, rows, 8, "Volume", "-100"))
    assert "row 8" in message and "column Volume: volume must not be negative" in message


def test_too_few_bars(tmp_path, rows):
    path = write(tmp_path / "p.csv", HEADER, rows[:50])
    message = error_of(path)
    assert "only 50 bars" in message and "at least 100" in message and "min_bars" in message
    assert len(read_csv(path, min_bars=50)) == 50


def test_missing_and_empty_files(tmp_path):
    assert "file not found" in error_of(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    assert "not a readable CSV" in error_of(tmp_path / "empty.csv")


def test_messages_name_the_columns_as_the_file_spells_them(tmp_path, rows):
    rows[3][5] = "-1"
    path = write(tmp_path / "p.csv", ["date", "open", "high", "low", "close", "vol ume".replace(" ", "")], rows)
    assert "column volume:" in error_of(path)


# ------------------------------------------------------------------------------ accepted formats


def test_case_insensitive_columns_adj_close_and_extras_ignored(tmp_path, rows):
    header = ["DATE", "open", "HIGH", "Low", "close", "Adj Close", "VOLUME", "Dividends"]
    body = [[r[0], r[1], r[2], r[3], r[4], "1.0", r[5], "0"] for r in rows]
    market = read_csv(write(tmp_path / "p.csv", header, body))
    assert market.close.tolist() == [float(r[4]) for r in rows]  # Close, not Adj Close
    assert market.name == "p" and market.source.endswith("p.csv")


@pytest.mark.parametrize("date_name", ["Datetime", "timestamp"])
def test_other_date_column_names(tmp_path, rows, date_name):
    market = read_csv(write(tmp_path / "p.csv", [date_name, *HEADER[1:]], rows))
    assert str(market.dates[0]) == rows[0][0]


def test_time_zone_aware_timestamps_become_local_dates(tmp_path, rows):
    # US Eastern midnight bars across a daylight-saving change: two different UTC offsets.
    stamps = pd.date_range("2021-03-01", periods=len(rows), freq="B", tz="America/New_York")
    body = [[str(s), *r[1:]] for s, r in zip(stamps, rows, strict=True)]
    assert body[0][0].endswith("-05:00") and body[-1][0].endswith("-04:00")
    market = read_csv(write(tmp_path / "p.csv", HEADER, body))
    assert market.dates.tolist() == stamps.tz_localize(None).to_numpy().astype("datetime64[D]").tolist()


def test_csv_written_by_yfinance_with_three_header_rows(tmp_path, rows):
    lines = ["Price,Close,High,Low,Open,Volume", "Ticker,SPY,SPY,SPY,SPY,SPY", "Date,,,,,"]
    lines += [",".join([r[0], r[4], r[2], r[3], r[1], r[5]]) for r in rows]
    (tmp_path / "yf.csv").write_text("\n".join(lines) + "\n")
    market = read_csv(tmp_path / "yf.csv")
    assert len(market) == len(rows) and market.open.tolist() == [float(r[1]) for r in rows]


def test_round_trip_is_exact(tmp_path):
    original = synthetic_market(seed=3, bars=400)
    path = prepare_csv(write(tmp_path / "in.csv", HEADER, rows_of(original)), "gold", data_dir=tmp_path / "d")
    assert path == tmp_path / "d" / "gold.csv"
    assert path.read_text().splitlines()[0] == "Date,Open,High,Low,Close,Volume"
    again = read_csv(path)
    for column in ("dates", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(again, column), getattr(original, column)), column
    meta = json.loads((tmp_path / "d" / "gold.meta.json").read_text())
    assert meta["rows"] == 400 and meta["first_date"] == str(original.dates[0])
    assert meta["last_date"] == str(original.dates[-1]) and meta["sha256"] == again.sha256
    assert meta["source"].endswith("in.csv") and meta["fetched_at"].endswith("+00:00")
    assert not [p for p in (tmp_path / "d").iterdir() if p.name.startswith(".")]  # no temp files left
    (tmp_path / "plain").write_text("x")  # prepared files get the same mode as any new file
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode
    # Preparing the prepared file again gives byte-identical data.
    assert prepare_csv(path, "gold2", data_dir=tmp_path / "d").read_bytes() == path.read_bytes()


def test_prepare_csv_rejects_bad_names(tmp_path, rows):
    path = write(tmp_path / "p.csv", HEADER, rows)
    for name in ("../x", "a/b", "", "synthetic"):
        with pytest.raises(DataError, match="cannot name a data file"):
            prepare_csv(path, name, data_dir=tmp_path)


def test_sha256_is_of_the_file_bytes(tmp_path, rows):
    import hashlib

    path = write(tmp_path / "p.csv", HEADER, rows)
    assert read_csv(path).sha256 == hashlib.sha256((tmp_path / "p.csv").read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------- Market


def test_market_arrays_are_read_only_contiguous_float64():
    market = synthetic_market(seed=1, bars=200)
    for column in ("open", "high", "low", "close", "volume"):
        array = getattr(market, column)
        assert array.dtype == np.float64 and array.flags.c_contiguous and not array.flags.writeable
    assert market.dates.dtype == np.dtype("datetime64[D]") and not market.dates.flags.writeable
    with pytest.raises(ValueError):
        market.close[0] = 1.0
    source = np.linspace(1.0, 2.0, 5)
    Market("m", np.arange(5).astype("datetime64[D]"), source, source, source, source, source, "x", "")
    assert source.flags.writeable  # the caller's array is copied, never frozen behind its back


def test_slice_frame_len_and_pickle():
    market = synthetic_market(seed=1, bars=200)
    part = market.slice(10, 20)
    assert len(part) == 10 and part.dates[0] == market.dates[10] and part.close[-1] == market.close[19]
    assert np.shares_memory(part.close, market.close) and part.sha256 == market.sha256
    frame = market.frame()
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"] and frame.index.name == "Date"
    assert frame["close"].tolist() == market.close.tolist()
    frame.iloc[0, 0] = -1.0  # a copy: the market is untouched
    assert market.open[0] > 0
    clone = pickle.loads(pickle.dumps(market))
    assert np.array_equal(clone.close, market.close) and not clone.close.flags.writeable


# -------------------------------------------------------------------------------- load_market


def test_load_market_specs(tmp_path, rows, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_market("synthetic").name == "synthetic:seed=7"
    small = load_market("synthetic:seed=3,bars=300,start=2010-01-04")
    assert len(small) == 300 and str(small.dates[0]) == "2010-01-04" and small.source == "synthetic"
    write(tmp_path / "mine.csv", HEADER, rows)
    assert load_market("mine.csv").name == "mine"
    assert load_market(str(tmp_path / "mine.csv")).source == str(tmp_path / "mine.csv")
    prepare_csv("mine.csv", "SPY", data_dir="store")
    spy = load_market("spy", DataSettings(data_dir="store"))  # ticker: read from the data folder
    assert len(spy) == len(rows) and spy.name == "SPY" and spy.source == str(Path("store") / "SPY.csv")
    with pytest.raises(DataError, match="only 150 bars"):
        load_market("SPY", DataSettings(data_dir="store", min_bars=200))
    with pytest.raises(DataError, match="not a ticker"):
        load_market("no such thing!")
    with pytest.raises(DataError, match="did you mean 'bars'"):
        load_market("synthetic:bar=10")


def test_ticker_not_in_the_data_folder_is_downloaded_and_cached(tmp_path, monkeypatch):
    source = synthetic_market(seed=5, bars=300).frame()
    calls = []

    def fake_download(ticker, start, end=None):
        calls.append((ticker, start, end))
        return source.copy()

    monkeypatch.setattr(yahoo, "download", fake_download)
    settings = DataSettings(data_dir=str(tmp_path / "d"), start="2001-01-01")
    market = load_market("qqq", settings)
    assert calls == [("QQQ", "2001-01-01", None)]
    assert market.name == "QQQ" and market.source == "yfinance" and len(market) == 300
    meta = json.loads((tmp_path / "d" / "QQQ.meta.json").read_text())
    assert meta["source"] == "yfinance" and meta["auto_adjust"] is True and meta["yfinance_version"]
    assert load_market("QQQ", settings).sha256 == market.sha256 and len(calls) == 1  # read from the cache


def test_prepare_ticker_drops_holes_and_widens_rounding(tmp_path, monkeypatch):
    frame = synthetic_market(seed=5, bars=120).frame()
    frame.iloc[10, frame.columns.get_loc("close")] = np.nan
    frame.iloc[20, frame.columns.get_loc("high")] = max(frame.iloc[20]["open"], frame.iloc[20]["close"]) - 1e-12
    monkeypatch.setattr(yahoo, "download", lambda ticker, start, end=None: frame.copy())
    path = prepare_ticker("SPY", data_dir=tmp_path)
    meta = json.loads(path.with_suffix(".meta.json").read_text())
    assert meta["dropped_rows"] == 1 and meta["widened_rows"] == 1 and meta["rows"] == 119
    assert len(read_csv(path)) == 119


# ------------------------------------------------------------------------------------ periods


def reference_periods(dates, split: SplitSettings) -> dict[str, tuple[int, int]]:
    """Boolean masks over the dates, the plain way."""
    d = pd.DatetimeIndex(dates)
    masks = {"train": d <= split.train_end}
    if split.two_way:
        masks["validation"] = d >= split.validation_start
    else:
        masks["validation"] = (d >= split.validation_start) & (d <= split.validation_end)
        masks["test"] = d >= split.test_start
    out = {}
    for name, mask in masks.items():
        where = np.flatnonzero(mask)
        if len(where):
            assert np.all(np.diff(where) == 1)
            out[name] = (int(where[0]), int(where[-1]) + 1)
    return out


@pytest.mark.parametrize(
    "split",
    [
        SplitSettings(),
        SplitSettings(two_way=True),
        SplitSettings(train_end="2009-06-30", validation_start="2009-07-01", validation_end="2014-12-31",
                      test_start="2015-01-01"),
        SplitSettings(train_end="2005-12-30", validation_start="2008-01-01", validation_end="2009-12-31",
                      test_start="2012-01-02"),  # gaps between periods are allowed
    ],
)
def test_periods_match_date_masks(split):
    market = synthetic_market()
    got = periods(market, split)
    assert got == reference_periods(market.dates, split)
    assert list(got) == (["train", "validation"] if split.two_way else ["train", "validation", "test"])
    assert got["train"][0] == 0 and max(stop for _, stop in got.values()) == len(market)


def test_periods_are_remembered_per_market_and_split_and_handed_out_as_copies():
    market = synthetic_market()
    first = periods(market, SplitSettings())
    first["train"] = (0, 1)  # a caller's own dict
    assert periods(market, SplitSettings()) == reference_periods(market.dates, SplitSettings())
    other = SplitSettings(train_end="2010-12-31", validation_start="2011-01-03",
                          validation_end="2015-12-31", test_start="2016-01-04")
    assert periods(market, other) == reference_periods(market.dates, other)
    shorter = market.slice(0, 5000)
    assert periods(shorter, SplitSettings()) == reference_periods(shorter.dates, SplitSettings())


def test_default_split_boundaries():
    market = synthetic_market()
    spans = periods(market, SplitSettings())
    assert spans["train"][1] == spans["validation"][0] and spans["validation"][1] == spans["test"][0]
    assert str(market.dates[spans["train"][1] - 1]) <= "2018-12-31" < str(market.dates[spans["train"][1]])
    assert str(market.dates[spans["test"][0]]) >= "2023-01-01" > str(market.dates[spans["test"][0] - 1])


def test_empty_test_period_is_left_out():
    market = synthetic_market(bars=5500)  # ends in 2021
    assert list(periods(market, SplitSettings(validation_end="2021-12-31", test_start="2022-01-03"))) == [
        "train", "validation"]


def test_empty_train_or_validation_is_an_error_with_a_fix():
    late = synthetic_market(bars=500, start="2020-01-01")
    with pytest.raises(DataError) as info:
        periods(late, SplitSettings())
    message = str(info.value)
    assert "no bars in the train period (..2018-12-31)" in message
    assert f"the data covers {late.dates[0]}..{late.dates[-1]} (500 bars)" in message
    assert "--train-end" in message and "--validation-start" in message
    early = synthetic_market(bars=500)
    with pytest.raises(DataError, match="no bars in the validation period"):
        periods(early, SplitSettings())


def test_bad_split_settings_are_config_errors():
    market = synthetic_market(bars=300)
    with pytest.raises(ConfigError, match="split.train_end: '2018-13-01' is not a date"):
        periods(market, SplitSettings(train_end="2018-13-01"))
    with pytest.raises(ConfigError, match="validation_start 2018-01-01 must come after train_end"):
        periods(market, SplitSettings(validation_start="2018-01-01"))
    with pytest.raises(ConfigError, match="test_start 2022-06-01 must come after validation_end"):
        periods(market, SplitSettings(test_start="2022-06-01"))


def test_describe_lists_market_and_periods():
    market = synthetic_market()
    text = describe(market, SplitSettings()).splitlines()
    spans = periods(market, SplitSettings())
    i0, i1 = spans["validation"]
    assert text[:3] == ["name: synthetic:seed=7", "source: synthetic", "rows: 6750"]
    assert f"validation: {market.dates[i0]}..{market.dates[i1 - 1]} ({i1 - i0} bars)" in text
    assert f"sha256: {market.sha256}" in text
    assert "test: none (two-way split)" in describe(market, SplitSettings(two_way=True))


def test_module_constants():
    assert data_mod.COLUMNS == ("open", "high", "low", "close", "volume")


def test_byte_order_mark_and_spaces_are_tolerated(tmp_path, rows):
    text = "\n".join(", ".join(r) for r in [HEADER, *rows]) + "\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_csv(tmp_path / "bom.csv").close.tolist() == [float(r[4]) for r in rows]


def test_market_rejects_unsorted_dates_and_short_arrays():
    days = np.array(["2020-01-03", "2020-01-02"], dtype="datetime64[D]")
    ones = np.ones(2)
    with pytest.raises(ValueError, match="strictly increasing"):
        Market("m", days, ones, ones, ones, ones, ones, "x", "")
    with pytest.raises(ValueError, match="close has"):
        Market("m", days[::-1], ones, ones, ones, np.ones(3), ones, "x", "")


def test_min_bars_below_one_still_needs_a_bar(tmp_path):
    (tmp_path / "empty.csv").write_text(",".join(HEADER) + "\n")
    with pytest.raises(DataError, match="only 0 bars; at least 1"):
        read_csv(tmp_path / "empty.csv", min_bars=0)
