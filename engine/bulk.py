"""Bulk evaluation and parameter sweeps.

`evaluate_many` compiles a batch of programs into one tape per chunk (identical sub-expressions
computed once for the whole chunk), runs it, and simulates the programs in parallel on all cores.
Chunks bound memory: a chunk's registers are (registers x bars) floats. The work is the pure
function `autostrat.evaluate.evaluate_tape_nb`, so an executor can map it over chunks elsewhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import numpy as np
import pandas as pd

from autostrat import nodes as N
from autostrat.backtest import SEARCH_PERIODS, load_strategy, period_spans, resolve_settings
from autostrat.check import TypedProgram, check
from autostrat.compile import compile_many
from autostrat.config import Settings
from autostrat.data import Market, load_market
from autostrat.errors import AutostratError, StrategyError
from autostrat.evaluate import evaluate_tape
from autostrat.stats import METRIC_NAMES

DEFAULT_CHUNK = 256


def evaluate_many(programs, data="synthetic", settings: Settings | None = None, *,
                  periods=SEARCH_PERIODS, chunk_size: int = DEFAULT_CHUNK, **overrides) -> pd.DataFrame:
    """Metrics of many strategies: one row per program, columns `period.metric` plus `name`.

    `programs` are anything `load_strategy` takes. Results equal one-by-one `backtest` exactly.
    """
    s = resolve_settings(settings, overrides)
    typed = [load_strategy(p) for p in programs]
    market = data if isinstance(data, Market) else load_market(data, s.data)
    spans = period_spans(market, s, periods)
    values = metrics_array(typed, market, spans, s, chunk_size)
    return metrics_frame(values, spans, [t.name for t in typed])


def metrics_array(typed: list[TypedProgram], market: Market, spans, settings: Settings,
                  chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """float64 (n_programs, n_periods, n_metrics), evaluated chunk by chunk."""
    if chunk_size < 1:
        raise AutostratError(f"chunk size must be at least 1, got {chunk_size}")
    out = np.empty((len(typed), len(spans), len(METRIC_NAMES)))
    for start in range(0, len(typed), chunk_size):
        batch = typed[start : start + chunk_size]
        out[start : start + len(batch)] = evaluate_tape(compile_many(batch), market, spans, settings.backtest)
    return out


def metrics_frame(values: np.ndarray, spans, names) -> pd.DataFrame:
    """The metrics array as a flat DataFrame with `period.metric` columns."""
    cols = {"name": list(names)}
    for j, period in enumerate(spans):
        for m, metric in enumerate(METRIC_NAMES):
            cols[f"{period}.{metric}"] = values[:, j, m]
    return pd.DataFrame(cols)


# --- sweeps -----------------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([-+0-9.eE%]+)\s*(?::\s*([-+0-9.eE%]+)\s*(?::\s*([-+0-9.eE%]+))?)?\s*$")


def parse_grid(specs: list[str]) -> dict[str, list[float]]:
    """`fast=5:50:5` (inclusive start:stop:step), `k=2` or `k=1,2,3` -> {name: values}."""
    grid: dict[str, list[float]] = {}
    for spec in specs:
        name, _, rhs = spec.partition("=")
        name = name.strip()
        if not name or not rhs:
            raise AutostratError(f"--param {spec!r}: write NAME=START:STOP:STEP or NAME=V1,V2,...")
        try:
            if "," in rhs:
                values = [_num(v) for v in rhs.split(",")]
            elif ":" in rhs:
                parts = [_num(v) for v in rhs.split(":")]
                if len(parts) == 2:
                    parts.append(1.0)
                lo, hi, step = parts
                if step <= 0 or hi < lo:
                    raise ValueError
                count = int(np.floor((hi - lo) / step + 1e-9)) + 1
                values = [round(lo + i * step, 10) for i in range(count)]
            else:
                values = [_num(rhs)]
        except ValueError:
            raise AutostratError(f"--param {spec!r}: write NAME=START:STOP:STEP (step > 0, stop >= start) "
                                 "or NAME=V1,V2,...") from None
        grid[name] = values
    return grid


def _num(text: str) -> float:
    text = text.strip()
    return float(text[:-1]) / 100 if text.endswith("%") else float(text)


def sweep_programs(strategy, grid: dict[str, list[float]]) -> tuple[list[TypedProgram], list[dict]]:
    """Every combination of the grid's param values as a checked program (invalid ones skipped).

    A value outside a param's declared range widens the range: the range is the search's
    business, a sweep asks for exactly these values.
    """
    base = load_strategy(strategy).program
    params = base.params()
    unknown = [n for n in grid if n not in params]
    if unknown:
        have = ", ".join(params) or "none"
        raise AutostratError(f"the strategy has no param {unknown[0]!r} (its params: {have})")
    names = list(grid)
    programs, combos = [], []
    for values in itertools.product(*(grid[n] for n in names)):
        combo = dict(zip(names, values))
        stmts = tuple(_set_param(s, combo[s.name]) if isinstance(s, N.Param) and s.name in combo else s
                      for s in base.statements)
        try:
            programs.append(check(dataclasses.replace(base, statements=stmts)))
        except StrategyError:
            continue  # e.g. a window of 0: not a strategy, not a result
        combos.append(combo)
    return programs, combos


def _set_param(p: N.Param, value: float) -> N.Param:
    literal = value * 100 if p.value.percent else value
    num = N.Num(float(literal), p.value.percent)
    lo, hi = p.lo, p.hi
    if lo is not None and value < lo.value:
        lo = num
    if hi is not None and value > hi.value:
        hi = num
    return dataclasses.replace(p, value=num, lo=lo, hi=hi)


def sweep(strategy, grid: dict[str, list[float]], data="synthetic", settings: Settings | None = None, *,
          periods=SEARCH_PERIODS, chunk_size: int = DEFAULT_CHUNK, **overrides) -> pd.DataFrame:
    """Evaluate every grid point of a strategy's params in bulk; one row per point."""
    s = resolve_settings(settings, overrides)
    typed, combos = sweep_programs(strategy, grid)
    if not typed:
        raise AutostratError("no valid parameter combination in the grid")
    market = data if isinstance(data, Market) else load_market(data, s.data)
    spans = period_spans(market, s, periods)
    frame = metrics_frame(metrics_array(typed, market, spans, s, chunk_size), spans, [t.name for t in typed])
    params = pd.DataFrame(combos)
    return pd.concat([params, frame.drop(columns="name")], axis=1)
