"""CSV reading and validation: any daily OHLCV file in, a validated Market out.

Every source goes through one validation (`validate_frame`): sorted unique dates, finite positive
prices, no holes, high >= max(open, close), low <= min(open, close), non-negative volume, enough
bars. A failure names the file, the row (1-based, not counting the header) with its date, and the
column.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from autostrat.data.market import COLUMNS, Market
from autostrat.errors import DataError

DATE_NAMES = ("date", "datetime", "timestamp")
_NA_TEXT = {"", "nan", "na", "n/a", "null", "none", "nat"}
_FILE_FORMAT = "Date, Open, High, Low, Close and Volume"


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
        header = " ".join(str(c) for c in df.columns)
        separator = next((sep for sep in (";", "\t", "|") if sep in header), None)
        hint = (f"; the header holds {separator!r}: the file looks {'tab' if separator == chr(9) else repr(separator)}-"
                "separated, and autostrat reads comma-separated files: save it with commas "
                f"(pandas: pd.read_csv(path, sep={separator!r}).to_csv(path, index=False))") if separator else ""
        raise DataError(
            f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (found: {found}); "
            f"a price file needs {_FILE_FORMAT} columns (any case; Adj Close and extra columns are ignored){hint}"
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
        ambiguous = np.flatnonzero(text.str.fullmatch(r"\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}").to_numpy(dtype=bool))
        if len(ambiguous):  # 02/01/2020: 2 January or 1 February? Guessing would move bars silently.
            i = int(ambiguous[0])
            raise DataError(
                f"{where}: row {first_row + i}, column {name}: {text.iloc[i]!r} can be read day first or month "
                "first; write dates as YYYY-MM-DD (pandas: pd.to_datetime(dates, dayfirst=True) for dd/mm/yyyy, "
                "then save again)")
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
            # Python floats: numpy's repr would print np.float64(-5.0)
            text = problem.format(v=float(values[column][i]), o=float(values["open"][i]), c=float(values["close"][i]))
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
    check_min_bars(len(dates), min_bars, where)



def check_min_bars(bars: int, min_bars: int, where: str) -> None:
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
