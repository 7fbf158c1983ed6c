"""Prepared data files: a ticker's bars from Yahoo Finance, or any CSV, stored under data/.

`<data_dir>/<NAME>.csv` in the standard format (Date,Open,High,Low,Close,Volume, floats written
so that they read back bit for bit) and `<NAME>.meta.json` beside it: where the bars came from,
when, and the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from autostrat.data.csv_file import read_csv, validate_frame
from autostrat.data.market import COLUMNS
from autostrat.errors import DataError
from autostrat.files import atomic_write

TICKER = re.compile(r"^[A-Za-z0-9^][A-Za-z0-9.^=_-]{0,19}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def prepare_ticker(ticker: str, start: str = "2000-01-01", end: str | None = None, data_dir="data") -> Path:
    """Download a ticker's adjusted daily bars from Yahoo Finance into `<data_dir>/<TICKER>.csv`.

    Writes `<TICKER>.meta.json` beside it. `end` is exclusive (Yahoo's convention); None means today.
    Raises DataError, with what to do instead, when Yahoo cannot be reached or returns nothing.
    """
    from autostrat.data import yahoo

    ticker = str(ticker).strip().upper()
    if not TICKER.match(ticker):
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
    try:
        atomic_write(csv_path, payload)
        atomic_write(meta_path(csv_path), json.dumps(meta, indent=2) + "\n")
    except OSError as exc:
        raise DataError(f"{exc.filename or csv_path}: cannot write ({exc.strerror or exc})") from None
    return csv_path
