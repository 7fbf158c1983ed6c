"""Universes: one strategy over many markets, and the numbers that sum a universe up.

A universe data spec lists markets, each any single data spec (ticker, CSV path, synthetic):

    SPY,QQQ,IWM                      comma-separated (a synthetic spec keeps its own options:
                                     synthetic:seed=1,bars=3000,SPY is two markets)
    synthetic:seed=1..20             twenty synthetic markets, seeds 1 to 20
    universe:FILE                    one spec per line; blank lines and `#` comments skipped;
                                     a relative CSV path is read relative to FILE's folder

Each market is loaded and validated on its own and keeps its own dates: periods are cut by date in
each market, so assets with different histories or holidays are never forced onto one calendar.
Aggregates are taken over assets per period and metric (mean, median, min, ignoring NaN), plus
the share of assets whose strategy return beats buying and holding that asset.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autostrat.data.market import Market
from autostrat.errors import AutostratError, DataError
from autostrat.resources import read_text

ACROSS = ("mean", "median", "min")
_SYNTH_KEYS = ("seed", "bars", "start")
_SEED_RANGE = re.compile(r"(?i)^(synthetic:(?:.*,)?\s*seed\s*=\s*)(\d+)\s*\.\.\s*(\d+)(.*)$")
_MAX_RANGE = 10_000


@dataclass(frozen=True, eq=False)
class Universe:
    """Markets evaluated side by side, in the order the spec lists them; names are unique."""

    markets: tuple[Market, ...]
    spec: str = ""

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.markets]

    @property
    def name(self) -> str:
        """The spec, or the market names joined with commas."""
        return self.spec or ",".join(self.names)

    @property
    def sha256(self) -> str:
        """A hash of the markets' names and hashes, in order: changes when any market's data does."""
        h = hashlib.sha256()
        for m in self.markets:
            h.update(f"{m.name}\0{m.sha256}\n".encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.markets)

    def __iter__(self):
        return iter(self.markets)

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:5]) + (", ..." if len(self) > 5 else "")
        return f"Universe({len(self)} markets: {shown})"


def is_universe_spec(spec: str) -> bool:
    """True when a data spec names several markets (or a universe file)."""
    spec = (spec or "").strip()
    return spec.lower().startswith("universe:") or len(split_specs(spec)) > 1


def split_specs(text: str) -> list[str]:
    """A comma-separated list of data specs; `seed=`, `bars=`, `start=` continue a synthetic spec.

    `synthetic:seed=A..B,...` expands to one spec per seed.
    """
    out: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        key = piece.partition("=")[0].strip().lower()
        if "=" in piece and key in _SYNTH_KEYS and out and out[-1].lower().startswith("synthetic"):
            sep = "," if ":" in out[-1] else ":"
            out[-1] = f"{out[-1]}{sep}{piece}"
        else:
            out.append(piece)
    expanded: list[str] = []
    for spec in out:
        m = _SEED_RANGE.match(spec)
        if not m:
            expanded.append(spec)
            continue
        lo, hi = int(m.group(2)), int(m.group(3))
        if hi < lo or hi - lo >= _MAX_RANGE:
            raise DataError(f"data spec {spec!r}: a seed range A..B needs A <= B and at most {_MAX_RANGE:,} seeds")
        expanded += [f"{m.group(1)}{seed}{m.group(4)}" for seed in range(lo, hi + 1)]
    return expanded


def universe_specs(spec: str) -> list[str]:
    """The single-market specs a universe spec lists (reads `universe:FILE`)."""
    spec = (spec or "").strip()
    if not spec.lower().startswith("universe:"):
        return split_specs(spec)
    path = Path(spec.partition(":")[2].strip())
    try:
        lines = read_text(path, "universe file").splitlines()
    except AutostratError as exc:
        raise DataError(f"{exc}; a universe file lists one data spec per line (a ticker, a CSV path or "
                        "synthetic:seed=N)") from None
    specs: list[str] = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        for item in split_specs(text):
            beside = path.parent / item
            if item.lower().endswith(".csv") and not Path(item).is_absolute() and beside.is_file():
                item = str(beside)
            specs.append(item)
    if not specs:
        raise DataError(f"universe file {path} lists no markets: write one data spec per line")
    return specs


# --- aggregates -------------------------------------------------------------------------------


def aggregate(values, how: str) -> float:
    """mean, median or min of the finite-or-inf values; NaN entries are skipped; NaN when none is left."""
    if how not in ACROSS:
        raise ValueError(f"unknown aggregate {how!r}; use one of {', '.join(ACROSS)}")
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return math.nan
    if how == "mean":
        return float(np.mean(x))
    if how == "median":
        return float(np.median(x))
    return float(np.min(x))


def beats_share(excess_returns) -> float:
    """The share of assets whose strategy return beat buy and hold (excess return > 0); NaN counts as not."""
    x = np.asarray(excess_returns, dtype=np.float64)
    return float(np.mean(x > 0)) if x.size else math.nan


def across_assets(per_asset: dict[str, dict[str, dict[str, float]]], how: str) -> dict[str, dict[str, float]]:
    """{asset: {period: {metric: v}}} -> {period: {metric: how-aggregate over the assets having it}}."""
    out: dict[str, dict[str, float]] = {}
    periods = dict.fromkeys(p for m in per_asset.values() for p in m)
    for period in periods:
        rows = [m[period] for m in per_asset.values() if period in m]
        metrics = dict.fromkeys(k for r in rows for k in r)
        out[period] = {k: aggregate([r.get(k, math.nan) for r in rows], how) for k in metrics}
    return out


def summary(per_asset: dict[str, dict[str, dict[str, float]]]) -> dict[str, object]:
    """Every aggregate at once: {"mean"|"median"|"min": {period: {metric}}, "beats_buy_hold": {period: share},
    "assets": n}."""
    out: dict[str, object] = {how: across_assets(per_asset, how) for how in ACROSS}
    periods = dict.fromkeys(p for m in per_asset.values() for p in m)
    out["beats_buy_hold"] = {p: beats_share([m[p].get("excess_return", math.nan) for m in per_asset.values()
                                             if p in m]) for p in periods}
    out["assets"] = len(per_asset)
    return out
