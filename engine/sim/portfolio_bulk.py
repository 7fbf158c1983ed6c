"""Bulk evaluation of portfolio strategies: many programs on one universe, one row per program.

`evaluate_portfolios` is what `autostrat.evaluate_many` and `autostrat bulk` do when the strategies
are portfolio strategies. Programs go in chunks; a chunk's scores are evaluated together
(`autostrat.tape.portfolio_eval.evaluate_scores_many`: a time-series expression that several
programs write is computed once), then each program is traded period by period exactly as
`autostrat.backtest_portfolio` trades it, so every metric equals the one-by-one backtest's bit for
bit. A chunk is sized so that its assets x bars arrays stay within `ARRAY_BUDGET`.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from autostrat.config import Settings
from autostrat.data.panel import Panel
from autostrat.errors import AutostratError
from autostrat.lang.check import TypedProgram
from autostrat.sim.backtest import SEARCH_PERIODS, period_spans
from autostrat.sim.portfolio_backtest import trade_period
from autostrat.sim.portfolio_metrics import PORTFOLIO_METRIC_NAMES
from autostrat.tape.portfolio_eval import arrays_needed, evaluate_scores_many

ARRAY_BUDGET = 512 * 2**20  # bytes of assets x bars arrays one chunk may hold
MAX_CHUNK = 256


@dataclass
class Chunk:
    """A chunk's programs, what the caller attached to each (a file name, ...), and their metrics."""

    typed: list[TypedProgram]
    records: list
    values: np.ndarray  # float64 (programs, periods, PORTFOLIO_METRIC_NAMES)


def program_metrics(typed: TypedProgram, panel: Panel, scores: dict[str, np.ndarray], spans: dict,
                    settings: Settings) -> np.ndarray:
    """float64 (periods, metrics) of one program whose scores are computed: `backtest_portfolio`'s steps."""
    out = np.empty((len(spans), len(PORTFOLIO_METRIC_NAMES)))
    for j, (a, b) in enumerate(spans.values()):
        m = trade_period(typed, panel, scores, a, b, settings)[0]
        out[j] = [m[name] for name in PORTFOLIO_METRIC_NAMES]
    return out


def chunked(items, panel: Panel, chunk_size: int = MAX_CHUNK):
    """(program, record) items -> lists of them, each within `chunk_size` programs and the array budget."""
    if chunk_size < 1:
        raise AutostratError(f"chunk size must be at least 1, got {chunk_size}")
    per_array = max(panel.close.size * 8, 1)
    batch, used = [], 0
    for typed, record in items:
        need = arrays_needed(typed) * per_array  # an upper bound: shared expressions are stored once
        if batch and (len(batch) == chunk_size or used + need > ARRAY_BUDGET):
            yield batch
            batch, used = [], 0
        batch.append((typed, record))
        used += need
    if batch:
        yield batch


def evaluate_chunks(items, panel: Panel, settings: Settings, periods=SEARCH_PERIODS, chunk_size: int = MAX_CHUNK,
                    spans: dict[str, tuple[int, int]] | None = None):
    """(program, record) items -> a `Chunk` per chunk, in order, with the periods' names.

    Yields (Chunk, period names). The items are read one chunk ahead at most. `spans` ({name:
    (start, stop)}, walk-forward folds for instance) replaces the named `periods`.
    """
    spans = spans if spans is not None else period_spans(panel.benchmark(), settings, periods)
    if not spans:
        raise AutostratError(f"{panel.spec or 'the universe'}: none of the periods {', '.join(periods)} "
                             "has a bar; check the split dates")
    for batch in chunked(items, panel, chunk_size):
        typed = [t for t, _ in batch]
        for t in typed:
            if t.portfolio is None:
                raise AutostratError(f"{t.program.path}: error: not a portfolio strategy; a bulk run evaluates "
                                     "portfolio and single-market strategies separately")
        scores = evaluate_scores_many(typed, panel)
        # The simulator and the score metrics release the GIL: the programs are traded on all
        # cores, each alone, so the values do not depend on the threads.
        with ThreadPoolExecutor(max_workers=min(len(typed), os.cpu_count() or 1)) as pool:
            values = np.stack(list(pool.map(lambda ts: program_metrics(ts[0], panel, ts[1], spans, settings),
                                            zip(typed, scores))))
        yield Chunk(typed, [r for _, r in batch], values), list(spans)


def portfolio_frame(values: np.ndarray, periods: list[str], names) -> pd.DataFrame:
    """(P, S, M) portfolio metrics as a DataFrame: `name`, then `period.metric` columns."""
    import pandas as pd
    cols = {"name": list(names)}
    for j, period in enumerate(periods):
        for m, metric in enumerate(PORTFOLIO_METRIC_NAMES):
            cols[f"{period}.{metric}"] = values[:, j, m]
    return pd.DataFrame(cols)


def evaluate_portfolios(typed: list[TypedProgram], panel: Panel, settings: Settings, periods=SEARCH_PERIODS,
                        chunk_size: int = MAX_CHUNK) -> pd.DataFrame:
    """The metrics of many portfolio strategies on one universe: one row per program, in order."""
    parts, names = [], None
    for chunk, names in evaluate_chunks(((t, None) for t in typed), panel, settings, periods, chunk_size):
        parts.append(chunk.values)
    if names is None:
        names = list(period_spans(panel.benchmark(), settings, periods))
    values = np.concatenate(parts) if parts else np.empty((0, len(names), len(PORTFOLIO_METRIC_NAMES)))
    return portfolio_frame(values, names, [t.name for t in typed])


def portfolio_metrics_dicts(typed: list[TypedProgram], panel: Panel, settings: Settings,
                            spans: dict[str, tuple[int, int]]) -> list[dict[str, dict[str, float]]]:
    """{period: {metric: value}} of each program on the given spans, evaluated in bulk."""
    out = []
    for chunk, names in evaluate_chunks(((t, None) for t in typed), panel, settings, spans=spans):
        for values in chunk.values:
            out.append({name: dict(zip(PORTFOLIO_METRIC_NAMES, map(float, row))) for name, row in zip(names, values)})
    return out
