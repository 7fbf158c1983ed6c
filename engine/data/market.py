"""Market: the daily bars of one instrument, as read-only float64 arrays over strictly increasing dates.

Where bars come from is autostrat.data.load; how a file is read and validated,
autostrat.data.csv_file; how a market is split into train, validation and test, autostrat.data.splits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

COLUMNS = ("open", "high", "low", "close", "volume")


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
