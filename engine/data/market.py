"""Market data: load, validate, split and prepare daily OHLCV bars.

A data spec names where bars come from:

    SPY                          a ticker: <data_dir>/SPY.csv, downloaded from Yahoo and cached if absent
    prices/my.csv                a CSV file (anything ending .csv, containing a path separator, or existing)
    synthetic[:seed=N,bars=N,start=DATE]   a deterministic synthetic market (see autostrat.data.synthetic)

Every source goes through one validation: sorted unique dates, finite positive prices, no holes,
high >= max(open, close), low <= min(open, close), non-negative volume, enough bars. A failure
names the file, the row (1-based, not counting the header) with its date, and the column.
"""

from __future__ import annotations

import functools

import hashlib
import io
import json
import os
import re
import secrets
import weakref
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from autostrat.config import DataSettings, SplitSettings
from autostrat.errors import ConfigError, DataError

COLUMNS = ("open", "high", "low", "close", "volume")
DATE_NAMES = ("date", "datetime", "timestamp")
_NA_TEXT = {"", "nan", "na", "n/a", "null", "none", "nat"}
_TICKER = re.compile(r"^[A-Za-z0-9^][A-Za-z0-9.^=_-]{0,19}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FILE_FORMAT = "Date, Open, High, Low, Close and Volume"


@dataclass(frozen=True, eq=False)
class Market:
    """Daily bars of one instrument: read-only float64 arrays over strictly increasing dates.

    `name` is the ticker, the CSV's stem or the synthetic spec; `source` the file path, "yfinance"
    or "synthetic"; `sha256` the hash of the CSV file (of the arrays for synthetic markets). A
    `slice` keeps all three: they say where the bars came from.
    """

    name: str
    dates: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str
    sha256: str

    def __post_init__(self) -> None:
        dates = _frozen(self.dates, "datetime64[D]")
        object.__setattr__(self, "dates", dates)
        for column in COLUMNS:
            values = _frozen(getattr(self, column), np.float64)
            if values.shape != dates.shape:
                raise ValueError(f"Market {self.name!r}: {column} has {values.shape} values, dates {dates.shape}")
            object.__setattr__(self, column, values)
        if len(dates) > 1 and not (np.diff(dates.astype(np.int64)) > 0).all():
            raise ValueError(f"Market {self.name!r}: dates must be strictly increasing")

    def __len__(self) -> int:
        return len(self.dates)

    def __repr__(self) -> str:
        span = f"{self.dates[0]}..{self.dates[-1]}" if len(self) else "empty"
        return f"Market({self.name!r}, {len(self)} bars, {span}, source={self.source!r})"

    def __reduce__(self):
        # Rebuild through __init__ so unpickled arrays are read-only again.
        return (Market, tuple(getattr(self, f.name) for f in fields(self)))

    def frame(self) -> pd.DataFrame:
        """The bars as a DataFrame: a `Date` index and columns open high low close volume (copies)."""
        import pandas as pd
        index = pd.DatetimeIndex(self.dates, name="Date")
        return pd.DataFrame({c: np.array(getattr(self, c)) for c in COLUMNS}, index=index)

    def slice(self, start: int, stop: int) -> "Market":
        """Bars [start, stop) as a Market sharing this one's (read-only) memory."""
        part = slice(start, stop)
        arrays = {c: getattr(self, c)[part] for c in ("dates", *COLUMNS)}
        return Market(name=self.name, source=self.source, sha256=self.sha256, **arrays)


def _frozen(values, dtype) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.dtype(dtype) or not array.flags.c_contiguous or array.flags.writeable:
        array = np.array(array, dtype=dtype, order="C")  # a private copy the caller cannot mutate
    array.flags.writeable = False
    return array


# ----------------------------------------------------------------------------------- loading


def load_market(spec: str, settings: DataSettings | None = None) -> Market:
    """Load and validate the market a data spec names (see the module docstring).

    A ticker is read from `<data_dir>/<TICKER>.csv`; when that file is missing it is downloaded
    from Yahoo Finance (split/dividend adjusted) and cached there with a `.meta.json` beside it.
    """
    settings = settings or DataSettings()
    spec = (spec or "").strip()
    if not spec:
        raise DataError("empty data spec: give a ticker (SPY), a CSV path, or synthetic")
    from autostrat.data.universe import is_universe_spec

    if is_universe_spec(spec):
        raise DataError(f"{spec!r} names several markets (a universe), where one market is expected: this "
                        "command works on a single market; backtest, bulk, sweep, evolve and data take universes")
    if spec.lower() == "synthetic" or spec.lower().startswith("synthetic:"):
        from autostrat.data.synthetic import synthetic_from_spec

        market = synthetic_from_spec(spec)
        _check_min_bars(len(market), settings.min_bars, spec)
        return market
    if _looks_like_path(spec):
        return read_csv(spec, min_bars=settings.min_bars)
    if not _TICKER.match(spec):
        raise DataError(
            f"{spec!r} is not a ticker, an existing CSV file or a synthetic spec: "
            "use a ticker such as SPY, a path ending in .csv, or synthetic:seed=7"
        )
    data_dir = Path(settings.data_dir)
    for candidate in (data_dir / f"{spec}.csv", data_dir / f"{spec.upper()}.csv"):
        if candidate.is_file():
            market = read_csv(candidate, name=candidate.stem, min_bars=settings.min_bars)
            return _with_meta_source(market, candidate)
    path = prepare_ticker(spec.upper(), start=settings.start, data_dir=settings.data_dir)
    return _with_meta_source(read_csv(path, name=spec.upper(), min_bars=settings.min_bars), path)


def _looks_like_path(spec: str) -> bool:
    return spec.lower().endswith(".csv") or "/" in spec or os.sep in spec or Path(spec).is_file()


def _with_meta_source(market: Market, csv_path: Path) -> Market:
    """A prepared file's origin comes from its meta.json: downloaded bars report "yfinance"."""
    try:
        meta = json.loads(meta_path(csv_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return market
    return replace(market, source="yfinance") if isinstance(meta, dict) and meta.get("source") == "yfinance" else market


def read_csv(path, name: str | None = None, min_bars: int = 100) -> Market:
    """Read any daily OHLCV CSV, normalise its columns and validate it.

    Column names are matched case-insensitively; the date column may be called Date, Datetime or
    Timestamp; `Adj Close` and any other extra columns are ignored (prices are taken as already
    adjusted). Timestamps with a time zone become their local calendar date.
    """
    import pandas as pd
    path = Path(path)
    where = str(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot read the file ({exc.strerror or exc})") from None
    try:
        raw = pd.read_csv(io.BytesIO(raw_bytes), dtype=str, keep_default_na=False, skipinitialspace=True,
                          encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{where}: not a readable CSV file ({first})") from None
    raw, first_row = _drop_yfinance_header_rows(raw)
    frame = standard_frame(raw, where, first_row=first_row)
    validate_frame(frame, where, min_bars=min_bars, first_row=first_row)
    return market_from_frame(frame, name or path.stem, str(path), hashlib.sha256(raw_bytes).hexdigest())


def _drop_yfinance_header_rows(raw: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """`yf.download(...).to_csv()` writes three header rows (Price / Ticker / Date); keep the first."""
    if len(raw.columns) and str(raw.columns[0]).strip().lower() == "price" and len(raw) >= 2:
        labels = [str(v).strip().lower() for v in raw.iloc[:2, 0]]
        if labels[0] == "ticker" and labels[1] in DATE_NAMES:
            raw = raw.iloc[2:].rename(columns={raw.columns[0]: "Date"})
            return raw.reset_index(drop=True), 3
    return raw, 1


def standard_frame(df: pd.DataFrame, where: str, first_row: int = 1) -> pd.DataFrame:
    """Columns found and typed: a `Date` index (datetime64, no zone) and float64 open..volume.

    Raises DataError for a missing column, an unreadable date or a cell that is not a number. Values
    are not checked here (see `validate_frame`); blank cells become NaN.
    """
    import pandas as pd
    lookup: dict[str, object] = {}
    for column in df.columns:
        key = str(column).strip().lower()
        if key in lookup and key in (*COLUMNS, *DATE_NAMES):
            raise DataError(f"{where}: two columns are named {key!r} (names are case-insensitive); keep one")
        lookup[key] = column
    date_key = next((k for k in DATE_NAMES if k in lookup), None)
    index_name = str(df.index.name or "").strip().lower()
    if date_key is not None:
        raw_dates = df[lookup[date_key]].to_numpy()
    elif isinstance(df.index, pd.DatetimeIndex) or index_name in DATE_NAMES:
        raw_dates = df.index
    else:
        raw_dates = None
    missing = [c.capitalize() for c in COLUMNS if c not in lookup]
    if raw_dates is None:
        missing.insert(0, "Date")
    if missing:
        found = ", ".join(str(c) for c in df.columns) or "none"
        raise DataError(
            f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (found: {found}); "
            f"a price file needs {_FILE_FORMAT} columns (any case; Adj Close and extra columns are ignored)"
        )
    date_name = str(lookup[date_key]) if date_key else str(df.index.name or "Date")
    dates = _parse_dates(raw_dates, date_name, where, first_row)
    data = {c: _parse_numbers(df[lookup[c]], str(lookup[c]), where, first_row, dates) for c in COLUMNS}
    frame = pd.DataFrame(data, index=pd.DatetimeIndex(dates, name="Date"))
    frame.attrs["names"] = {"date": date_name} | {c: str(lookup[c]) for c in COLUMNS}
    return frame


def _parse_dates(raw, name: str, where: str, first_row: int) -> np.ndarray:
    import pandas as pd
    text = pd.Series(raw, dtype=object).map(lambda v: str(v).strip())
    if isinstance(raw, pd.DatetimeIndex) or pd.api.types.is_datetime64_any_dtype(raw):
        index = pd.DatetimeIndex(raw)
    else:
        try:
            index = pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601"))
        except (ValueError, TypeError, OverflowError):  # mixed UTC offsets, other formats, bad cells
            index = pd.DatetimeIndex([_one_date(v) for v in text])
    bad = np.flatnonzero(index.isna())
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: row {first_row + i}, column {name}: cannot read {text.iloc[i]!r} as a date; "
            "write dates as YYYY-MM-DD"
        )
    if index.tz is not None:
        index = index.tz_localize(None)  # keep the exchange's local calendar date
    return index.to_numpy().astype("datetime64[D]")


def _one_date(text: str):
    import pandas as pd
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    return stamp.tz_localize(None) if stamp is not pd.NaT and stamp.tzinfo is not None else stamp


def _parse_numbers(column: pd.Series, name: str, where: str, first_row: int, dates) -> np.ndarray:
    import pandas as pd
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    text = column.map(lambda v: "" if v is None else str(v).strip())
    blank = text.str.lower().isin(_NA_TEXT).to_numpy()
    numbers = pd.to_numeric(text.where(~blank, None), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(np.isnan(numbers) & ~blank)
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{where}: {_row(i, first_row, dates)}, column {name}: {text.iloc[i]!r} is not a number; "
            "write plain numbers (no thousands separators or currency signs)"
        )
    return numbers


def _row(i: int, first_row: int, dates) -> str:
    return f"row {first_row + i} ({dates[i]})"


def validate_frame(frame: pd.DataFrame, where: str, min_bars: int = 100, first_row: int = 1) -> None:
    """Check a `standard_frame`; raise DataError naming the row, its date and the column."""
    names = frame.attrs.get("names") or {c: c.capitalize() for c in ("date", *COLUMNS)}
    dates = frame.index.to_numpy().astype("datetime64[D]")
    values = {c: frame[c].to_numpy(dtype=np.float64) for c in COLUMNS}

    def fail(mask: np.ndarray, column: str, problem: str, fix: str) -> None:
        rows = np.flatnonzero(mask)
        if len(rows):
            i = int(rows[0])
            more = f" ({len(rows)} rows in all; the first is shown)" if len(rows) > 1 else ""
            text = problem.format(v=values[column][i], o=values["open"][i], c=values["close"][i])
            raise DataError(f"{where}: {_row(i, first_row, dates)}, column {names[column]}: {text}{more}; {fix}")

    for c in COLUMNS:
        fail(np.isnan(values[c]), c, "missing value",
             "drop or fill the rows with missing values (pandas: df.dropna() or df.ffill()) and save again")
    for c in COLUMNS[:4]:
        fail(~np.isfinite(values[c]) | (values[c] <= 0), c, "price must be positive and finite, got {v!r}",
             "fix or drop the row")
    fail(~np.isfinite(values["volume"]), "volume", "volume must be finite, got {v!r}", "fix or drop the row")
    fail(values["volume"] < 0, "volume", "volume must not be negative, got {v!r}", "fix or drop the row")
    top = np.maximum(values["open"], values["close"])
    bottom = np.minimum(values["open"], values["close"])
    fail(values["high"] < top, "high", "high {v!r} is below max(open {o!r}, close {c!r})",
         "high must be >= open and close: fix or drop the row")
    fail(values["low"] > bottom, "low", "low {v!r} is above min(open {o!r}, close {c!r})",
         "low must be <= open and close: fix or drop the row")
    steps = np.diff(dates.astype(np.int64))
    backwards = np.flatnonzero(steps < 0)
    if len(backwards):
        i = int(backwards[0]) + 1
        raise DataError(
            f"{where}: {_row(i, first_row, dates)}, column {names['date']}: dates are not in increasing "
            f"order ({dates[i]} comes after {dates[i - 1]}); sort the rows by date"
        )
    repeats = np.flatnonzero(steps == 0)
    if len(repeats):
        i = int(repeats[0]) + 1
        raise DataError(
            f"{where}: {_row(i, first_row, dates)}, column {names['date']}: duplicate date {dates[i]} "
            f"(also on row {first_row + i - 1}); keep one row per date"
        )
    _check_min_bars(len(dates), min_bars, where)


def _check_min_bars(bars: int, min_bars: int, where: str) -> None:
    min_bars = max(int(min_bars), 1)
    if bars < min_bars:
        raise DataError(
            f"{where}: only {bars} bars; at least {min_bars} are needed "
            "(use a longer history, or lower data.min_bars in autostrat.toml)"
        )


def market_from_frame(frame: pd.DataFrame, name: str, source: str, sha256: str) -> Market:
    """A Market from a validated `standard_frame`."""
    arrays = {c: frame[c].to_numpy(dtype=np.float64) for c in COLUMNS}
    return Market(name=name, dates=frame.index.to_numpy().astype("datetime64[D]"), source=source,
                  sha256=sha256, **arrays)


# ------------------------------------------------------------------------------------ splits


def periods(market: Market, split: SplitSettings) -> dict[str, tuple[int, int]]:
    """Half-open bar ranges {"train": (i0, i1), "validation": (i1, i2), "test": (i2, n)} by date.

    train runs from the first bar to `train_end`; validation from `validation_start` to
    `validation_end` (to the last bar when `two_way`); test from `test_start` to the last bar (no
    test when `two_way`). Dates are inclusive. A period without bars is left out, except that an
    empty train or validation period is an error: the search needs both.
    """
    key = _split_key(split)
    known = _PERIODS.get(market)
    if known is not None and key in known:
        return dict(known[key])
    train_end, validation_start, validation_end, test_start = _split_dates_of(*key)
    dates, n = market.dates, len(market)

    def at(day: np.datetime64, side: str) -> int:
        return int(dates.searchsorted(day, side=side))  # the method: half the cost of np.searchsorted

    spans = {"train": (0, at(train_end, "right"))}
    spans["validation"] = (at(validation_start, "left"), n if split.two_way else at(validation_end, "right"))
    if not split.two_way:
        spans["test"] = (at(test_start, "left"), n)
    for name in ("train", "validation"):
        if spans[name][1] <= spans[name][0]:
            raise DataError(_empty_period_message(market, name, split))
    spans = {name: span for name, span in spans.items() if span[1] > span[0]}
    _PERIODS.setdefault(market, {})[key] = spans
    return dict(spans)


# Each market's periods per split, computed once: a search asks for them at every evaluation.
# Markets are immutable (read-only arrays, frozen dataclass); the entry goes with its market.
_PERIODS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _split_key(split: SplitSettings) -> tuple[tuple[str, ...], bool]:
    keys = ("train_end", "validation_start", "validation_end", "test_start")
    return tuple(str(getattr(split, k)).strip() for k in keys), bool(split.two_way)


@functools.lru_cache(maxsize=64)
def _split_dates_of(values: tuple[str, ...], two_way: bool) -> tuple[np.datetime64, ...]:
    # Cached: a search evaluates thousands of candidates against the same split.
    days = []
    for key, value in zip(("train_end", "validation_start", "validation_end", "test_start"), values):
        days.append(_config_date(key, value))
    train_end, validation_start, validation_end, test_start = days
    if validation_start <= train_end:
        raise ConfigError(f"split: validation_start {validation_start} must come after train_end {train_end}")
    if not two_way and validation_end < validation_start:
        raise ConfigError(f"split: validation_end {validation_end} is before validation_start {validation_start}")
    if not two_way and test_start <= validation_end:
        raise ConfigError(f"split: test_start {test_start} must come after validation_end {validation_end}")
    return train_end, validation_start, validation_end, test_start


def _config_date(key: str, value: str) -> np.datetime64:
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # the usual spelling, without importing pandas
        try:
            return np.datetime64(value, "D")
        except ValueError:
            pass
    import pandas as pd

    try:
        return np.datetime64(pd.Timestamp(value).date(), "D")
    except (ValueError, TypeError):
        raise ConfigError(f"split.{key}: {value!r} is not a date; write YYYY-MM-DD") from None


def _empty_period_message(market: Market, name: str, split: SplitSettings) -> str:
    d, n = market.dates, len(market)
    span = (f"..{split.train_end}" if name == "train" else
            f"{split.validation_start}..{'end of data' if split.two_way else split.validation_end}")
    fix = f"--train-end {d[int(n * 0.6) - 1]} --validation-start {d[int(n * 0.6)]}" if n >= 5 else ""
    if fix and not split.two_way:
        fix += f" --validation-end {d[int(n * 0.8) - 1]} --test-start {d[int(n * 0.8)]}"
    hint = f", for example {fix}" if fix else ""
    return (
        f"{market.name}: no bars in the {name} period ({span}): the data covers {d[0]}..{d[-1]} "
        f"({n} bars); move the split dates inside the data with the [split] settings or flags{hint}"
    )


def describe(market: Market, split: SplitSettings) -> str:
    """The `autostrat data` report: `key: value` lines for the market and each period."""
    lines = [
        f"name: {market.name}",
        f"source: {market.source}",
        f"rows: {len(market)}",
        f"dates: {market.dates[0]}..{market.dates[-1]}",
        f"sha256: {market.sha256}",
    ]
    spans = periods(market, split)
    for name in ("train", "validation", "test"):
        if name in spans:
            i0, i1 = spans[name]
            sealed = ", sealed" if name == "test" else ""
            lines.append(f"{name}: {market.dates[i0]}..{market.dates[i1 - 1]} ({i1 - i0} bars{sealed})")
        elif split.two_way and name == "test":
            lines.append("test: none (two-way split)")
        else:
            lines.append(f"test: none (no bars on or after {split.test_start})")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- prepare


def prepare_ticker(ticker: str, start: str = "2000-01-01", end: str | None = None, data_dir="data") -> Path:
    """Download a ticker's adjusted daily bars from Yahoo Finance into `<data_dir>/<TICKER>.csv`.

    Writes `<TICKER>.meta.json` beside it. `end` is exclusive (Yahoo's convention); None means today.
    Raises DataError, with what to do instead, when Yahoo cannot be reached or returns nothing.
    """
    from autostrat.data import yahoo

    ticker = str(ticker).strip().upper()
    if not _TICKER.match(ticker):
        raise DataError(f"{ticker!r} is not a ticker symbol (letters, digits and . ^ = - only)")
    frame = yahoo.download(ticker, start, end)
    frame, fixes = yahoo.tidy(frame)
    validate_frame(frame, f"Yahoo Finance data for {ticker}", min_bars=1)
    meta = {"source": "yfinance", "ticker": ticker, "yfinance_version": yahoo.yfinance_version(),
            "auto_adjust": True, "start": start, "end": end} | fixes
    return _write_prepared(frame, Path(data_dir), ticker, meta)


def prepare_csv(path, name: str, data_dir="data") -> Path:
    """Validate any OHLCV CSV and store it as `<data_dir>/<name>.csv` in the standard format."""
    if not _NAME.match(str(name)) or str(name).lower() == "synthetic":
        raise DataError(f"{name!r} cannot name a data file: use letters, digits, '.', '_' or '-' (not 'synthetic')")
    market = read_csv(path, name=name, min_bars=1)
    meta = {"source": str(Path(path).resolve()), "source_sha256": market.sha256}
    return _write_prepared(market.frame(), Path(data_dir), name, meta)


def meta_path(csv_path) -> Path:
    """Where the metadata of a prepared CSV lives: NAME.csv -> NAME.meta.json."""
    return Path(csv_path).with_suffix(".meta.json")


def _write_prepared(frame: pd.DataFrame, data_dir: Path, name: str, meta: dict) -> Path:
    dates = frame.index.to_numpy().astype("datetime64[D]").astype(str)
    columns = [frame[c].to_numpy(dtype=np.float64).tolist() for c in COLUMNS]
    # repr() of a Python float is the shortest text that reads back to the same float.
    lines = ["Date,Open,High,Low,Close,Volume"]
    for day, o, h, lo, c, v in zip(dates, *columns, strict=True):
        volume = str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)
        lines.append(f"{day},{o!r},{h!r},{lo!r},{c!r},{volume}")
    payload = ("\n".join(lines) + "\n").encode("ascii")
    csv_path = data_dir / f"{name}.csv"
    meta = meta | {
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rows": len(dates),
        "first_date": str(dates[0]),
        "last_date": str(dates[-1]),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    _atomic_write(csv_path, payload)
    _atomic_write(meta_path(csv_path), (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
    return csv_path


def _atomic_write(path: Path, payload: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    # Not tempfile.mkstemp: its files are private (0600); these should get the usual umask mode.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(tmp, "xb")
    except OSError as exc:
        raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
