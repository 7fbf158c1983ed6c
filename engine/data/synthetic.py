"""Deterministic synthetic markets: offline demos, tests, and null runs of the search.

Returns follow a GARCH(1,1) variance process (volatility clusters) driven by Student-t
innovations (fat tails), with a small positive drift, about 17% annualised volatility and daily
bars on business days. Bars are built from the close-to-close log returns: part of each return is
an overnight gap (open against the previous close), the rest happens during the day, and the high
and low reach beyond the open and close by a random fraction of the day's volatility, so that
high >= max(open, close) and low <= min(open, close) always hold. Volume is log-normal and rises
with the size of the day's move.

The same seed gives the same bars with the same numpy version (PCG64; numpy's policy, NEP 19,
allows a distribution's stream to change between numpy versions).
"""

from __future__ import annotations

import difflib
import hashlib

import numpy as np

from autostrat.data.market import Market
from autostrat.errors import DataError

ANNUAL_VOL = 0.17  # S&P 500-like long-run volatility
ANNUAL_DRIFT = 0.07  # log-return drift per year
_GARCH_ALPHA, _GARCH_BETA = 0.08, 0.90  # persistence 0.98: clusters lasting weeks to months
_T_DOF = 5.0  # Student-t degrees of freedom: excess kurtosis 6 before GARCH mixing
_START_PRICE = 100.0
_DEFAULTS = {"seed": 7, "bars": 6750, "start": "2000-01-03"}
MAX_BARS = 1_000_000  # a typo such as bars=1000000000 would ask for tens of gigabytes


def synthetic_market(seed: int = 7, bars: int = 6750, start: str = "2000-01-03", name: str | None = None) -> Market:
    """A deterministic synthetic daily market on business days from `start`.

    6750 bars from 2000-01-03 run into late 2025, so the default train/validation/test split has
    all three periods. `name` defaults to the spec that rebuilds it, e.g. "synthetic:seed=7".
    """
    seed, bars = int(seed), int(bars)
    if bars < 2:
        raise DataError(f"synthetic market: bars={bars}; need at least 2 bars")
    if bars > MAX_BARS:
        raise DataError(f"synthetic market: bars={bars:,}; the limit is {MAX_BARS:,} (about 4,000 years of "
                        "business days)")
    if seed < 0:
        raise DataError(f"synthetic market: seed={seed}; use a seed >= 0")
    dates = business_days(start, bars)
    rng = np.random.Generator(np.random.PCG64(seed))
    daily_vol = ANNUAL_VOL / np.sqrt(252.0)
    returns, sigma = _garch_returns(rng, bars - 1, daily_vol)
    returns = returns + ANNUAL_DRIFT / 252.0
    if name is None:
        given = {"seed": seed, "bars": bars, "start": str(dates[0])}
        name = "synthetic:" + ",".join(f"{k}={v}" for k, v in given.items() if k == "seed" or v != _DEFAULTS[k])
    return _build(rng, dates, returns, sigma, name)


def business_days(start, bars: int) -> np.ndarray:
    """`bars` weekdays from the first one on or after `start` (pandas' bdate_range, without pandas:
    importing it costs a short command a third of a second)."""
    try:
        first = np.datetime64(str(start).strip(), "D")
    except ValueError:
        import pandas as pd  # other spellings of a date

        try:
            first = np.datetime64(pd.Timestamp(start).date(), "D")
        except (ValueError, TypeError, OverflowError):
            raise DataError(f"synthetic market: start={start!r} is not a date; write YYYY-MM-DD") from None
    try:
        return np.busday_offset(first, np.arange(bars), roll="forward").astype("datetime64[D]")
    except (ValueError, OverflowError):
        raise DataError(f"synthetic market: start={start!r} with {bars} bars runs past the dates numpy "
                        "can hold") from None


def matched_synthetic(market: Market, seed: int) -> Market:
    """A synthetic market with `market`'s dates and the same mean and std (ddof=1) of daily log returns.

    The null run of a search uses it: a market with the same volatility but, by construction, no
    pattern for a strategy to find.
    """
    n = len(market)
    if n < 3:
        raise DataError(f"{market.name}: {n} bars are too few to match a synthetic market to")
    log_returns = np.diff(np.log(market.close))
    target_mean, target_std = float(log_returns.mean()), float(log_returns.std(ddof=1))
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    raw, sigma = _garch_returns(rng, n - 1, max(target_std, 1e-12))
    scale = target_std / raw.std(ddof=1)
    returns = (raw - raw.mean()) * scale + target_mean
    return _build(rng, market.dates, returns, sigma * scale, f"synthetic matched to {market.name} (seed={int(seed)})")


def synthetic_from_spec(spec: str) -> Market:
    """Build the market a `synthetic[:seed=N,bars=N,start=DATE]` data spec names."""
    _, _, options = spec.partition(":")
    values = dict(_DEFAULTS)
    for item in filter(None, (part.strip() for part in options.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in _DEFAULTS:
            close = difflib.get_close_matches(key, list(_DEFAULTS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(
                f"data spec {spec!r}: unknown option {item!r}{hint}; write synthetic:seed=N,bars=N,start=YYYY-MM-DD"
            )
        values[key] = value.strip()
    for key in ("seed", "bars"):
        try:
            values[key] = int(values[key])
        except ValueError:
            raise DataError(f"data spec {spec!r}: {key} must be a whole number, got {values[key]!r}") from None
    return synthetic_market(values["seed"], values["bars"], values["start"])


def _garch_returns(rng: np.random.Generator, n: int, daily_vol: float) -> tuple[np.ndarray, np.ndarray]:
    """n zero-mean returns with GARCH(1,1) variance around daily_vol**2, and their conditional sigmas."""
    shocks = rng.standard_t(_T_DOF, size=n) / np.sqrt(_T_DOF / (_T_DOF - 2.0))  # unit variance
    variance = daily_vol**2
    omega = variance * (1.0 - _GARCH_ALPHA - _GARCH_BETA)
    sigma = np.empty(n)
    returns = np.empty(n)
    var_t = variance
    for t in range(n):  # a sequential recursion; n is a few thousand, so plain Python is fast enough
        sigma[t] = np.sqrt(var_t)
        returns[t] = sigma[t] * shocks[t]
        var_t = omega + _GARCH_ALPHA * returns[t] ** 2 + _GARCH_BETA * var_t
    return returns, sigma


def _build(rng: np.random.Generator, dates: np.ndarray, returns: np.ndarray, sigma: np.ndarray, name: str) -> Market:
    """OHLCV bars whose closes follow `returns` (log, close to close) from a start price of 100."""
    n = len(dates)
    close = _START_PRICE * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    sigma = np.concatenate([[sigma[0]], sigma])
    # Overnight gap: a random share of the day's return plus a little noise of its own.
    gap = np.concatenate([[0.0], returns]) * rng.uniform(0.0, 0.4, n) + 0.1 * sigma * rng.standard_normal(n)
    previous = np.concatenate([[close[0]], close[:-1]])
    open_ = previous * np.exp(gap)
    high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(rng.standard_normal(n)))
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(rng.standard_normal(n)))
    move = np.abs(np.log(close / previous)) / np.mean(sigma)
    volume = np.round(5e7 * np.exp(0.3 * rng.standard_normal(n)) * (1.0 + 0.5 * move))
    digest = hashlib.sha256()
    for array in (dates.astype("datetime64[D]").astype(np.int64), open_, high, low, close, volume):
        digest.update(np.ascontiguousarray(array).tobytes())
    return Market(name=name, dates=dates, open=open_, high=high, low=low, close=close, volume=volume,
                  source="synthetic", sha256=digest.hexdigest())
