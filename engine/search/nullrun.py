"""Null runs: the same search, with the same budget, on a market with nothing to find.

`autostrat evolve --null` runs the search a second time on `matched_synthetic(market, seed)`: a
synthetic market on the same dates whose daily log returns have the same mean and volatility as
the chosen data, but no pattern by construction. Its run folder is NAME-null beside the real one;
the real run's config.json names it (`null_run`) and the null run's config says what it matches
(`null_of`). The best objective the search reaches on noise is the bar its result on the market
has to clear.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from autostrat.data.market import Market
from autostrat.data.synthetic import matched_synthetic
from autostrat.errors import ConfigError

NULL_SUFFIX = "-null"


def null_run_name(name: str) -> str:
    """The null run's folder name for run `name`."""
    return name + NULL_SUFFIX


def daily_volatility(market: Market) -> float:
    """Standard deviation (ddof=1) of the daily log returns of the close."""
    r = np.diff(np.log(market.close))
    return float(r.std(ddof=1)) if len(r) > 1 else math.nan


def null_market(market: Market, seed: int) -> Market:
    """The null run's market: `market`'s dates, mean and volatility, GARCH noise (seeded)."""
    return matched_synthetic(market, int(seed))


def null_of(run_name: str, market: Market, seed: int, null: Market) -> dict[str, Any]:
    """The `null_of` entry of a null run's config.json."""
    return {"run": run_name, "seed": int(seed), "data_spec_name": market.name, "data_sha256": market.sha256,
            "daily_vol": daily_volatility(market), "null_daily_vol": daily_volatility(null)}


def rebuild_market(config: dict[str, Any], market: Market) -> Market:
    """The market a run searched: `market` itself, or for a null run its matched synthetic market.

    `market` is the data the run's settings name. Raises ConfigError when that data is not the
    data the null run was matched to.
    """
    info = config.get("null_of")
    if not info:
        return market
    if info.get("data_sha256") and market.sha256 != info["data_sha256"]:
        raise ConfigError(f"{market.name}: the data changed since the null run {config.get('run')} was made "
                          f"(sha256 {market.sha256[:16]}..., it matched {str(info['data_sha256'])[:16]}...); "
                          "start a new run")
    return null_market(market, info["seed"])


def null_path(run_path: Path, config: dict[str, Any]) -> Path | None:
    """The folder of the run's null run when it has one (its config names it and it exists)."""
    name = config.get("null_run")
    if not name:
        return None
    path = Path(run_path).parent / name
    return path if (path / "config.json").is_file() else None
