"""The one loader that knows every source: a data spec in, a Market or a Universe out.

A data spec names where bars come from:

    SPY                          a ticker: <data_dir>/SPY.csv, downloaded from Yahoo and cached if absent
    prices/my.csv                a CSV file (anything ending .csv, containing a path separator, or existing)
    synthetic[:seed=N,bars=N,start=DATE]   a deterministic synthetic market (see autostrat.data.synthetic)
    SPY,QQQ or universe:FILE     a universe: several markets (see autostrat.data.universe)

Adding a source means a branch in `load_market` and a module of its own beside this one.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from autostrat.config import DataSettings
from autostrat.data.csv_file import check_min_bars, read_csv
from autostrat.data.market import Market
from autostrat.data.prepare import TICKER, meta_path, prepare_ticker
from autostrat.data.synthetic import synthetic_from_spec
from autostrat.data.universe import Universe, is_universe_spec, universe_specs
from autostrat.errors import DataError


def load_market(spec: str, settings: DataSettings | None = None) -> Market:
    """Load and validate the market a data spec names (see the module docstring).

    A ticker is read from `<data_dir>/<TICKER>.csv`; when that file is missing it is downloaded
    from Yahoo Finance (split/dividend adjusted) and cached there with a `.meta.json` beside it.
    """
    settings = settings or DataSettings()
    spec = (spec or "").strip()
    if not spec:
        raise DataError("empty data spec: give a ticker (SPY), a CSV path, or synthetic")
    if is_universe_spec(spec):
        raise DataError(f"{spec!r} names several markets (a universe), where one market is expected: this "
                        "command works on a single market; backtest, bulk, sweep, evolve and data take universes")
    if spec.lower() == "synthetic" or spec.lower().startswith("synthetic:"):
        market = synthetic_from_spec(spec)
        check_min_bars(len(market), settings.min_bars, spec)
        return market
    if _looks_like_path(spec):
        return read_csv(spec, min_bars=settings.min_bars)
    if not TICKER.match(spec):
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


def load_universe(spec: str, settings: DataSettings | None = None) -> Universe:
    """Load and validate every market of a universe spec; a bad one is named with its position."""
    settings = settings or DataSettings()
    specs = universe_specs(spec)
    markets: list[Market] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(specs, 1):
        try:
            market = load_market(item, settings)
        except DataError as exc:
            raise DataError(f"universe market {i} of {len(specs)} ({item}): {exc}") from None
        if market.name in seen:
            raise DataError(f"universe {spec!r}: {market.name!r} is listed twice (markets {seen[market.name]} "
                            f"and {i}); each market may appear once")
        seen[market.name] = i
        markets.append(market)
    return Universe(tuple(markets), spec)



def load_data(spec: str, settings: DataSettings | None = None) -> Market | Universe:
    """A Market for a single-market spec, a Universe for a list or a universe file."""
    return load_universe(spec, settings) if is_universe_spec(spec) else load_market(spec, settings)
