"""The train / validation / test split of a market: bar ranges from the [split] dates.

Train runs to `train_end`, validation from `validation_start` to `validation_end`, and test (the
sealed period) from `test_start`; with `two_way` there is no test period and validation runs to
the end of the data.
"""

from __future__ import annotations

import functools
import re
import weakref

import numpy as np

from autostrat.config import SplitSettings
from autostrat.data.market import Market
from autostrat.errors import ConfigError, DataError


def periods(market: Market, split: SplitSettings) -> dict[str, tuple[int, int]]:
    """Half-open bar ranges {"train": (i0, i1), "validation": (i1, i2), "test": (i2, n)} by date.

    train runs from the first bar to `train_end`; validation from `validation_start` to
    `validation_end` (to the last bar when `two_way`); test from `test_start` to the last bar (no
    test when `two_way`). Dates are inclusive. A period without bars is left out, except that an
    empty train or validation period is an error: the search needs both.
    """
    key = _split_key(split)
    known = _PERIODS.get(market)
    if known is not None and key in known:
        return dict(known[key])
    train_end, validation_start, validation_end, test_start = _split_dates_of(*key)
    dates, n = market.dates, len(market)

    def at(day: np.datetime64, side: str) -> int:
        return int(dates.searchsorted(day, side=side))  # the method: half the cost of np.searchsorted

    spans = {"train": (0, at(train_end, "right"))}
    spans["validation"] = (at(validation_start, "left"), n if split.two_way else at(validation_end, "right"))
    if not split.two_way:
        spans["test"] = (at(test_start, "left"), n)
    for name in ("train", "validation"):
        if spans[name][1] <= spans[name][0]:
            raise DataError(_empty_period_message(market, name, split))
    spans = {name: span for name, span in spans.items() if span[1] > span[0]}
    _PERIODS.setdefault(market, {})[key] = spans
    return dict(spans)



def _split_key(split: SplitSettings) -> tuple[tuple[str, ...], bool]:
    keys = ("train_end", "validation_start", "validation_end", "test_start")
    return tuple(str(getattr(split, k)).strip() for k in keys), bool(split.two_way)



@functools.lru_cache(maxsize=64)
def _split_dates_of(values: tuple[str, ...], two_way: bool) -> tuple[np.datetime64, ...]:
    # Cached: a search evaluates thousands of candidates against the same split.
    days = []
    for key, value in zip(("train_end", "validation_start", "validation_end", "test_start"), values):
        days.append(_config_date(key, value))
    train_end, validation_start, validation_end, test_start = days
    if validation_start <= train_end:
        raise ConfigError(f"split: validation_start {validation_start} must come after train_end {train_end}")
    if not two_way and validation_end < validation_start:
        raise ConfigError(f"split: validation_end {validation_end} is before validation_start {validation_start}")
    if not two_way and test_start <= validation_end:
        raise ConfigError(f"split: test_start {test_start} must come after validation_end {validation_end}")
    return train_end, validation_start, validation_end, test_start



def _config_date(key: str, value: str) -> np.datetime64:
    # Digits only: pandas would also read "now", "today" or "March", and a split that moves with
    # the clock (or a guessed year) would silently change which bars are sealed.
    if not re.fullmatch(r"\d{4}([-/]\d{1,2}[-/]\d{1,2}|\d{4})([ T][\d:.]*)?", value.strip()):
        raise ConfigError(f"split.{key}: {value!r} is not a date; write YYYY-MM-DD")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # the usual spelling, without importing pandas
        try:
            return np.datetime64(value, "D")
        except ValueError:
            pass
    import pandas as pd

    try:
        return np.datetime64(pd.Timestamp(value).date(), "D")
    except (ValueError, TypeError):
        raise ConfigError(f"split.{key}: {value!r} is not a date; write YYYY-MM-DD") from None



def _empty_period_message(market: Market, name: str, split: SplitSettings) -> str:
    d, n = market.dates, len(market)
    span = (f"..{split.train_end}" if name == "train" else
            f"{split.validation_start}..{'end of data' if split.two_way else split.validation_end}")
    fix = f"--train-end {d[int(n * 0.6) - 1]} --validation-start {d[int(n * 0.6)]}" if n >= 5 else ""
    if fix and not split.two_way:
        fix += f" --validation-end {d[int(n * 0.8) - 1]} --test-start {d[int(n * 0.8)]}"
    hint = f", for example {fix}" if fix else ""
    return (
        f"{market.name}: no bars in the {name} period ({span}): the data covers {d[0]}..{d[-1]} "
        f"({n} bars); move the split dates inside the data with the [split] settings or flags{hint}"
    )



def describe(market: Market, split: SplitSettings) -> str:
    """The `autostrat data` report: `key: value` lines for the market and each period."""
    lines = [
        f"name: {market.name}",
        f"source: {market.source}",
        f"rows: {len(market)}",
        f"dates: {market.dates[0]}..{market.dates[-1]}",
        f"sha256: {market.sha256}",
    ]
    spans = periods(market, split)
    for name in ("train", "validation", "test"):
        if name in spans:
            i0, i1 = spans[name]
            sealed = ", sealed" if name == "test" else ""
            lines.append(f"{name}: {market.dates[i0]}..{market.dates[i1 - 1]} ({i1 - i0} bars{sealed})")
        elif split.two_way and name == "test":
            lines.append("test: none (two-way split)")
        else:
            lines.append(f"test: none (no bars on or after {split.test_start})")
    return "\n".join(lines)


# Each market's periods per split, computed once: a search asks for them at every evaluation.
# Markets are immutable (read-only arrays, frozen dataclass); the entry goes with its market.
_PERIODS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
