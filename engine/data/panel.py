"""A universe on one calendar: asset x bar arrays, for portfolio (cross-sectional) strategies.

The calendar is the union of the markets' dates. A market without a bar on a date holds NaN in
every column there: it is not in the universe that day, cannot be bought or sold, and is left out
of every cross-sectional ranking. A market enters the universe with its first bar and leaves it
after its last; nothing before a date depends on a later one.

autostrat.data.panel_spec loads one from a data spec.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from autostrat.data.market import COLUMNS, Market
from autostrat.data.universe import Universe
from autostrat.errors import DataError

MAX_CELLS = 50_000_000  # assets x bars: 5 float64 columns of this many cells take 2 GB


@dataclass(frozen=True, eq=False)
class Panel:
    """Assets x bars float64 arrays (read-only) on one calendar; NaN where an asset has no bar."""

    names: tuple[str, ...]
    dates: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    spec: str = ""

    def __post_init__(self) -> None:
        dates = np.asarray(self.dates, dtype="datetime64[D]")
        object.__setattr__(self, "dates", dates)
        shape = (len(self.names), len(dates))
        for column in COLUMNS:
            values = np.ascontiguousarray(getattr(self, column), dtype=np.float64)
            if values.shape != shape:
                raise ValueError(f"Panel: {column} has shape {values.shape}, expected {shape}")
            values.flags.writeable = False
            object.__setattr__(self, column, values)
        if len(dates) > 1 and not (np.diff(dates.astype(np.int64)) > 0).all():
            raise ValueError("Panel: dates must be strictly increasing")

    @property
    def n_assets(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.dates)

    def __repr__(self) -> str:
        return f"Panel({self.n_assets} assets x {len(self)} bars, {self.spec or ','.join(self.names[:3])})"

    # The arrays are read-only, so what is computed from them is computed once per Panel.
    @functools.cached_property
    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update("\0".join(self.names).encode())
        for column in ("dates", *COLUMNS):
            h.update(np.ascontiguousarray(getattr(self, column)).tobytes())
        return h.hexdigest()

    def benchmark(self) -> Market:
        """The equal-weight index of the universe as a Market on the calendar (100 on the first bar).

        Its daily return is the mean close-to-close return of the assets with a close on both this
        bar and their previous one (each asset's own previous bar), rebalanced daily; 0 on a bar
        where no asset has one. Splits are cut on its dates; buy-and-hold metrics read its close.
        Computed once per Panel: treat it as read-only.
        """
        return self._benchmark

    @functools.cached_property
    def _benchmark(self) -> Market:
        index = equal_weight_index(self.close)
        return Market(name=f"equal-weight {self.spec or 'universe'}", dates=self.dates, open=index, high=index,
                      low=index, close=index, volume=np.zeros(len(index)), source="panel", sha256=self.sha256)


def equal_weight_index(close: np.ndarray) -> np.ndarray:
    """100 x the cumulated mean per-asset close-to-close return (module docstring of Panel.benchmark)."""
    n_assets, n = close.shape
    last = np.full(n_assets, np.nan)
    out = np.empty(n)
    level = 100.0
    for t in range(n):
        c = close[:, t]
        ok = np.isfinite(c) & np.isfinite(last)
        if ok.any():
            level *= 1.0 + float(np.mean(c[ok] / last[ok] - 1.0))
        out[t] = level
        last = np.where(np.isfinite(c), c, last)
    return out


def panel_from_universe(universe: Universe) -> Panel:
    """The markets of a universe on the union of their dates, NaN where a market has no bar."""
    if len(universe) == 0:
        raise DataError("a portfolio needs a universe of at least one market")
    dates = np.unique(np.concatenate([m.dates for m in universe]))
    if len(universe) * len(dates) > MAX_CELLS:
        raise DataError(f"universe of {len(universe)} markets x {len(dates):,} dates is over the limit of "
                        f"{MAX_CELLS:,} cells; use fewer markets or a shorter history")
    arrays = {c: np.full((len(universe), len(dates)), np.nan) for c in COLUMNS}
    for i, m in enumerate(universe):
        at = np.searchsorted(dates, m.dates)
        for c in COLUMNS:
            arrays[c][i, at] = getattr(m, c)
    return Panel(tuple(universe.names), dates, spec=universe.name, **arrays)
