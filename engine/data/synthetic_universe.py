"""A synthetic universe with a planted cross-sectional momentum premium of known size, and its null.

Each asset's daily log return is its drift plus a common market return plus its own noise:

    r[a, t] = mu[a, t-1] + m[t] + e[a, t]
    m[t] ~ N(7% / 252, 15% / sqrt(252)),   e[a, t] ~ N(0, 25% / sqrt(252))
    mu[a, t] = phi mu[a, t-1] + sqrt(1 - phi^2) (premium / 252) z[a, t],   phi = exp(-1 / 252)

The drift wanders with a one-year memory and a cross-sectional deviation of `premium` a year, so
an asset that rose over the past year tends to keep rising relative to the others: past returns
rank next period's returns (momentum). With `premium=0` (the null) no ranking can: every asset
is the same random walk around the market. The drift that moves bar t's return is fixed at
bar t-1, so nothing in the past depends on the future.

With `churn`, that share of the assets enter the universe late (their first bar in the first
quarter of the calendar) or leave it early (their last in the second half), and every asset
misses about one bar in a thousand (a halt): NaN in the panel there. Bars are built like the
single synthetic market's (autostrat.data.synthetic): an overnight gap, highs and lows beyond the
open and close, a log-normal volume. The same seed gives the same panel (PCG64).

Spec: `synthetic-universe[:seed=N,assets=N,bars=N,premium=P,churn=P,start=DATE]`; premium and
churn are fractions (0.2) or percentages (20%).
"""

from __future__ import annotations

import difflib

import numpy as np

from autostrat.data.panel import MAX_CELLS, Panel
from autostrat.data.synthetic import business_days
from autostrat.errors import DataError

MARKET_DRIFT, MARKET_VOL, IDIO_VOL = 0.07, 0.15, 0.25
HALT_RATE = 0.001
_DEFAULTS = {"seed": 1, "assets": 100, "bars": 6750, "premium": 0.2, "churn": 0.2, "start": "2000-01-03"}


def momentum_universe(seed: int = 1, assets: int = 100, bars: int = 6750, premium: float = 0.2,
                      churn: float = 0.2, start: str = "2000-01-03") -> Panel:
    """A Panel of `assets` synthetic assets whose drifts carry a momentum premium (module docstring)."""
    seed, assets, bars = int(seed), int(assets), int(bars)
    if assets < 2 or bars < 2:
        raise DataError(f"synthetic universe: assets={assets}, bars={bars}; need at least 2 of each")
    if assets * bars > MAX_CELLS:
        raise DataError(f"synthetic universe: {assets} assets x {bars} bars is over the limit of {MAX_CELLS:,} cells")
    if not (0 <= premium <= 1 and 0 <= churn <= 1) or seed < 0:
        raise DataError("synthetic universe: premium and churn are fractions from 0 to 1, seed >= 0")
    rng = np.random.Generator(np.random.PCG64(seed))
    day = 1.0 / 252.0
    phi = np.exp(-day)
    shocks = rng.standard_normal((assets, bars)) * np.sqrt(1.0 - phi**2) * premium * day
    mu = np.empty((assets, bars))
    mu[:, 0] = rng.standard_normal(assets) * premium * day
    for t in range(1, bars):
        mu[:, t] = phi * mu[:, t - 1] + shocks[:, t]
    market = MARKET_DRIFT * day + MARKET_VOL * np.sqrt(day) * rng.standard_normal(bars)
    noise = IDIO_VOL * np.sqrt(day) * rng.standard_normal((assets, bars))
    returns = np.zeros((assets, bars))
    returns[:, 1:] = mu[:, :-1] + market[None, 1:] + noise[:, 1:]
    close = 100.0 * np.exp(np.cumsum(returns, axis=1))
    previous = np.concatenate([close[:, :1], close[:, :-1]], axis=1)
    sigma = np.sqrt(MARKET_VOL**2 + IDIO_VOL**2) * np.sqrt(day)
    gap = returns * rng.uniform(0.0, 0.4, (assets, bars)) + 0.1 * sigma * rng.standard_normal((assets, bars))
    open_ = previous * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(rng.standard_normal((assets, bars))))
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(rng.standard_normal((assets, bars))))
    volume = np.round(1e6 * np.exp(0.3 * rng.standard_normal((assets, bars))))
    absent = _absent(rng, assets, bars, churn)
    columns = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    for values in columns.values():
        values[absent] = np.nan
    names = tuple(f"asset{i:0{len(str(assets - 1))}d}" for i in range(assets))
    spec = f"synthetic-universe:seed={seed},assets={assets},bars={bars},premium={premium:g},churn={churn:g}"
    return Panel(names, business_days(start, bars), spec=spec, **columns)


def _absent(rng: np.random.Generator, assets: int, bars: int, churn: float) -> np.ndarray:
    """Where assets have no bar: late entries, early exits and halts (all False without churn)."""
    absent = np.zeros((assets, bars), dtype=bool)
    if churn <= 0:
        return absent
    moving = rng.uniform(size=assets) < churn
    late = rng.uniform(size=assets) < 0.5
    for a in np.flatnonzero(moving):
        if late[a]:
            absent[a, : int(rng.integers(1, max(2, bars // 4)))] = True
        else:
            absent[a, int(rng.integers(bars // 2, bars)):] = True
    absent |= rng.uniform(size=(assets, bars)) < HALT_RATE
    return absent


def universe_from_spec(spec: str) -> Panel:
    """Build the panel a `synthetic-universe[:key=value,...]` spec names."""
    _, _, options = spec.partition(":")
    values: dict[str, object] = dict(_DEFAULTS)
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _DEFAULTS:
            near = difflib.get_close_matches(key, list(_DEFAULTS), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise DataError(f"data spec {spec!r}: unknown option {item!r}{hint}; write synthetic-universe:"
                            "seed=N,assets=N,bars=N,premium=P,churn=P,start=YYYY-MM-DD")
        values[key] = value.strip()
    try:
        for key in ("seed", "assets", "bars"):
            values[key] = int(values[key])
        for key in ("premium", "churn"):
            text = str(values[key])
            values[key] = float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        raise DataError(f"data spec {spec!r}: seed, assets and bars are whole numbers, premium and churn "
                        "fractions (0.2) or percentages (20%)") from None
    return momentum_universe(**values)
