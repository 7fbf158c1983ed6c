"""Yahoo Finance through yfinance: download adjusted daily bars and normalise yfinance's frames.

yfinance is imported only when a download happens (it is slow to import). Its `download` swallows
network errors, logs them and returns an empty frame; `download` here captures those log lines
and turns every failure (no network, rate limit, exception, empty answer) into one DataError
sentence that says what happened and what to use instead. Nothing of yfinance's own output or
tracebacks reaches the user.

Frame shapes yfinance has returned across versions, all handled by `normalise_frame`: flat
columns (Open High Low Close [Adj Close] Volume); MultiIndex columns (field, ticker), the default
`group_by="column"`; and (ticker, field) with `group_by="ticker"`. Prices are requested with
`auto_adjust=True` (split and dividend adjusted), so an `Adj Close` column, when present, is ignored.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from importlib import metadata

import numpy as np

from autostrat.data.csv_file import standard_frame
from autostrat.data.market import COLUMNS
from autostrat.errors import DataError

_ALTERNATIVES = (
    "use --data synthetic for an offline market, or load your own file with "
    "autostrat prepare --csv PATH --name NAME"
)
_RATE_LIMIT = ("rate limit", "ratelimit", "too many requests", "429")
_NETWORK = (
    "resolve", "connect", "connection", "timed out", "timeout", "unreachable", "dns", "ssl", "proxy",
    "network", "name or service", "temporary failure", "max retries", "socket", "oserror",
)


def download(ticker: str, start: str, end: str | None = None) -> pd.DataFrame:
    """Daily bars of `ticker` from Yahoo Finance, split/dividend adjusted, as a normalised frame.

    `end` is exclusive (Yahoo's convention); None means up to today. The frame has a `Date` index
    and float64 columns open high low close volume (see `normalise_frame`). Raises DataError when
    Yahoo cannot be reached, rate-limits, fails, or returns no rows.
    """
    try:
        import yfinance
    except ImportError:
        raise DataError(
            f"Could not download {ticker}: the yfinance package is not installed; {_ALTERNATIVES}."
        ) from None
    messages: list[str] = []
    with _quiet_yfinance(messages):
        try:
            raw = yfinance.download(
                ticker, start=start, end=end, auto_adjust=True, progress=False, threads=False
            )
        except Exception as exc:  # yfinance raises many types; each means "no data"
            messages.append(f"{type(exc).__name__}: {exc}")
            raw = None
    if raw is None or len(raw) == 0:
        raise DataError(failure_message(ticker, start, end, messages))
    return normalise_frame(raw, ticker)


def failure_message(ticker: str, start: str, end: str | None, messages: list[str]) -> str:
    """One sentence: why the download of `ticker` gave nothing, and what to do instead."""
    text = " ".join(messages).lower()
    detail = _detail(ticker, messages)
    if any(key in text for key in _RATE_LIMIT):
        what = "Yahoo Finance is rate-limiting requests (wait a few minutes before trying again)"
    elif any(key in text for key in _NETWORK):
        what = f"Yahoo Finance cannot be reached ({detail})"
    elif detail:
        what = f"Yahoo Finance returned no data ({detail})"
    else:
        what = f"Yahoo Finance returned no rows for {start}..{end or 'today'}; check the ticker and the dates"
    return f"Could not download {ticker}: {what}; {_ALTERNATIVES}."


def _detail(ticker: str, messages: list[str]) -> str:
    """The most telling part of yfinance's error lines, short enough for one sentence."""
    lines = [line.strip() for m in messages for line in m.splitlines() if line.strip()]
    if not lines:
        return ""
    about = [line for line in lines if ticker.upper() in line.upper()] or lines
    line = about[-1]
    curl = re.search(r"curl: \(\d+\) (.+?)(?:\. See |'\)|\"\)|$)", line)
    if curl:
        return curl.group(1).rstrip(".")
    line = re.sub(r"^\[.*?\]:\s*", "", line).rstrip(".")
    return line if len(line) <= 120 else line[:117] + "..."


@contextlib.contextmanager
def _quiet_yfinance(messages: list[str]):
    """Collect yfinance's log lines and printed output into `messages` instead of the terminal."""

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("yfinance")
    saved = logger.handlers[:], logger.propagate, logger.level
    handler = _Collect(level=logging.WARNING)
    logger.handlers, logger.propagate = [handler], False
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)
    out, err = io.StringIO(), io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
        messages.extend(text for text in (out.getvalue(), err.getvalue()) if text.strip())


def normalise_frame(df: pd.DataFrame, ticker: str) -> pd.DataFrame:
    """A yfinance frame in any of its shapes -> `Date` index, float64 open high low close volume.

    Column names are matched case-insensitively; `Adj Close` and other columns are dropped; a
    time-zone-aware index becomes local calendar dates. Values are not validated here.
    """
    import pandas as pd
    where = f"Yahoo Finance data for {ticker}"
    if isinstance(df.columns, pd.MultiIndex):
        df = _one_ticker(df, ticker, where)
    return standard_frame(df, where)


def _one_ticker(df: pd.DataFrame, ticker: str, where: str) -> pd.DataFrame:
    """Flatten (field, ticker) or (ticker, field) columns to the fields of `ticker`."""
    if df.columns.nlevels != 2:
        raise DataError(f"{where}: expected two column levels (field, ticker), got {df.columns.nlevels}")
    fields = set(COLUMNS) | {"adj close"}
    hits = [sum(str(v).strip().lower() in fields for v in df.columns.get_level_values(lvl)) for lvl in (0, 1)]
    field_level = int(np.argmax(hits))
    symbols = list(dict.fromkeys(df.columns.get_level_values(1 - field_level)))
    chosen = [s for s in symbols if str(s).strip().upper() == ticker.strip().upper()]
    if not chosen and len(symbols) == 1:
        chosen = symbols
    if not chosen:
        raise DataError(f"{where}: the frame holds {', '.join(map(str, symbols))} but not {ticker}")
    flat = df.xs(chosen[0], axis=1, level=1 - field_level)
    flat.columns = [str(c) for c in flat.columns]
    return flat


def tidy(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Fix Yahoo's known quirks before validation and count what was changed.

    Rows with a missing value are dropped (Yahoo pads some days with empty rows). High and low are
    widened to cover open and close: adjusting multiplies each price by a factor, which can leave
    the high a rounding error below the close.
    """
    holes = frame[list(COLUMNS)].isna().any(axis=1).to_numpy()
    frame = frame.loc[~holes].copy()
    top = frame[["open", "close"]].max(axis=1)
    bottom = frame[["open", "close"]].min(axis=1)
    widened = int(((frame["high"] < top) | (frame["low"] > bottom)).sum())
    frame["high"] = np.maximum(frame["high"], top)
    frame["low"] = np.minimum(frame["low"], bottom)
    return frame, {"dropped_rows": int(holes.sum()), "widened_rows": widened}


def yfinance_version() -> str:
    """The installed yfinance version, without importing it."""
    try:
        return metadata.version("yfinance")
    except metadata.PackageNotFoundError:
        return "not installed"
