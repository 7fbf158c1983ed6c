"""Walk-forward folds: the objective measured on N consecutive windows of train and validation.

With `search.folds = N` (`--folds N`) the bars from the first train bar to the last validation
bar are cut at N + 1 edges, edge_k = start + floor(k * length / N), k = 0..N:

- rolling (the default): fold k is [edge_(k-1), edge_k): N equal consecutive windows (their
  lengths differ by at most one bar) that together cover train and validation once;
- anchored: fold k is [start, edge_k): every fold starts at the first bar and they grow by one
  window each, so the last fold is the whole of train and validation.

Each fold is traded on its own, like a period: from flat, with the initial capital, on indicator
values computed over the whole history. The objective is the mean (or, with `fold_agg = min`,
the worst) of the objective's metric over the folds; a NaN in any fold makes it NaN. The test
period is never part of a fold.
"""

from __future__ import annotations

import math

from autostrat.errors import ConfigError

FOLD_MODES = ("rolling", "anchored")
FOLD_AGGS = ("mean", "min")
MIN_FOLD_BARS = 20  # fewer bars leave a Sharpe ratio or a drawdown with next to no meaning


def fold_name(k: int) -> str:
    """The metrics key of fold k (1-based): fold_1, fold_2, ..."""
    return f"fold_{k}"


def fold_names(n: int) -> list[str]:
    """fold_1 .. fold_n."""
    return [fold_name(k) for k in range(1, n + 1)]


def check_fold_settings(n: int, mode: str, agg: str) -> None:
    """A ConfigError naming the setting when folds, fold_mode or fold_agg is not usable."""
    if n < 0:
        raise ConfigError(f"search.folds must be 0 (no folds) or more, got {n}")
    if mode not in FOLD_MODES:
        raise ConfigError(f"search.fold_mode {mode!r}: use {' or '.join(FOLD_MODES)}")
    if agg not in FOLD_AGGS:
        raise ConfigError(f"search.fold_agg {agg!r}: use {' or '.join(FOLD_AGGS)}")


def fold_spans(start: int, stop: int, n: int, mode: str = "rolling") -> dict[str, tuple[int, int]]:
    """{fold_k: (first bar, stop bar)} for N folds of the bars [start, stop) (see the module docstring).

    Raises ConfigError when a fold would have fewer than MIN_FOLD_BARS bars.
    """
    check_fold_settings(n, mode, "mean")
    if n == 0:
        return {}
    length = stop - start
    edges = [start + (k * length) // n for k in range(n + 1)]
    spans = {}
    for k in range(1, n + 1):
        a = edges[k - 1] if mode == "rolling" else start
        spans[fold_name(k)] = (a, edges[k])
    shortest = min(b - a for a, b in spans.values())
    if shortest < MIN_FOLD_BARS:
        raise ConfigError(f"--folds {n}: train and validation have {length} bars, so a fold would have "
                          f"{shortest}; each fold needs at least {MIN_FOLD_BARS}. Use fewer folds")
    return spans


def aggregate(values, agg: str = "mean") -> float:
    """The mean or the minimum of the per-fold values; NaN when there are none or any is NaN."""
    xs = [float(v) if v is not None else math.nan for v in values]
    if not xs or any(math.isnan(x) for x in xs):
        return math.nan
    return min(xs) if agg == "min" else sum(xs) / len(xs)


def describe(n: int, mode: str, agg: str, metric: str) -> str:
    """The objective in words, e.g. "mean sharpe over 4 rolling folds"."""
    return f"{agg} {metric} over {n} {mode} fold{'s' if n != 1 else ''}"
