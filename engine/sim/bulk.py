"""Bulk evaluation and parameter sweeps.

`evaluate_many` compiles a batch of programs into one tape per chunk (identical sub-expressions
computed once for the whole chunk), runs it, and simulates the programs in parallel on all cores.
Chunks bound memory: a chunk's registers are (registers x bars) floats, and a chunk is cut
until its tape's registers fit `REGISTER_BUDGET` (`budget_tapes`). Within that, bigger chunks are
faster: sub-expressions the chunk's programs share (the same average in a thousand rules) are
computed once per chunk. The work is the pure
function `autostrat.sim.evaluate.evaluate_arrays`, so an executor can map it over chunks elsewhere.
These functions return every row at once; `autostrat.sim.stream` writes them chunk by chunk
(what the `bulk` and `sweep` commands do), and `autostrat.sim.grid` builds a sweep's points.
"""

from __future__ import annotations

import collections

import numpy as np

from autostrat.config import Settings
from autostrat.data.load import load_data
from autostrat.data.market import Market
from autostrat.data.universe import Universe
from autostrat.errors import AutostratError
from autostrat.lang.check import TypedProgram
from autostrat.sim.backtest import SEARCH_PERIODS, load_strategy, period_spans, resolve_settings
from autostrat.sim.evaluate import evaluate_arrays, evaluate_tape
from autostrat.sim.grid import points_frame, sweep_points
from autostrat.sim.metrics import METRIC_NAMES
from autostrat.sim.simulate import evaluation_args
from autostrat.tape.compile import compile_many
from autostrat.tape.opcodes import FIRST_FREE_REG
from autostrat.tape.template import compile_batch

DEFAULT_CHUNK = 1024
DEFAULT_ASSETS_PER_CHUNK = 8
REGISTER_BUDGET = 256 * 2**20  # bytes of VM registers one chunk may hold (per asset, at a time)


def evaluate_many(programs, data=None, settings: Settings | None = None, *,
                  periods=SEARCH_PERIODS, chunk_size: int = DEFAULT_CHUNK, executor=None,
                  progress=None, **overrides) -> pd.DataFrame:
    """Metrics of many strategies: one row per program, columns `period.metric` plus `name`.

    `programs` are anything `load_strategy` takes. Results equal one-by-one `backtest` exactly.
    On a Universe (or a universe spec) there is one row per program and asset, with an `asset`
    column; `autostrat.across_assets_frame` sums them up. `executor` (see autostrat.sim.cluster) runs
    the chunks elsewhere, e.g. on a Dask cluster; None runs them here. `data` defaults to "synthetic".

    Portfolio strategies (all of them, not a mix) are evaluated on the universe `data` names
    (default "synthetic-universe"), one row per program with the portfolio metrics, equal to
    one-by-one `backtest_portfolio` (autostrat.sim.portfolio_bulk).
    """
    s = resolve_settings(settings, overrides)
    typed = [load_strategy(p, portfolio=True) for p in programs]
    if any(t.portfolio is not None for t in typed):
        return _portfolios(typed, data, s, periods, chunk_size, executor)
    data = _data("synthetic" if data is None else data, s)
    if isinstance(data, Universe) or executor is not None:
        universe = data if isinstance(data, Universe) else Universe((data,), data.name)
        values, names = universe_array(typed, universe, s, periods, chunk_size, executor=executor,
                                       progress=progress)
        frame = universe_frame(values, names, universe.names, [t.name for t in typed])
        return frame if isinstance(data, Universe) else frame.drop(columns="asset")
    spans = period_spans(data, s, periods)
    values = metrics_array(typed, data, spans, s, chunk_size)
    return metrics_frame(values, spans, [t.name for t in typed])


def _portfolios(typed: list[TypedProgram], data, settings: Settings, periods, chunk_size: int, executor):
    from autostrat.sim.portfolio_backtest import as_panel
    from autostrat.sim.portfolio_bulk import evaluate_portfolios

    single = next((t for t in typed if t.portfolio is None), None)
    if single is not None:
        raise AutostratError(f"{single.program.path}: error: a single-market strategy among portfolio strategies; "
                             "evaluate the two kinds in separate calls")
    if executor is not None:
        raise AutostratError("portfolio strategies are evaluated in this process; leave the executor out")
    panel = as_panel("synthetic-universe" if data is None else data, settings)
    return evaluate_portfolios(typed, panel, settings, periods, chunk_size)


def _data(data, settings: Settings) -> Market | Universe:
    return data if isinstance(data, (Market, Universe)) else load_data(data, settings.data)


def metrics_array(typed: list[TypedProgram], market: Market, spans, settings: Settings,
                  chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """float64 (n_programs, n_periods, n_metrics), evaluated chunk by chunk."""
    out = np.empty((len(typed), len(spans), len(METRIC_NAMES)))
    if not typed:
        return out
    size = programs_per_chunk(typed[0], (market,), chunk_size)
    for start in range(0, len(typed), size):
        for part, tape in budget_tapes(typed[start : start + size], len(market)):
            out[start + part.start : start + part.stop] = evaluate_tape(tape, market, spans, settings.backtest)
    return out


def budget_tapes(typed: list[TypedProgram], bars: int, budget: int | None = None) -> list[tuple[slice, object]]:
    """[(slice of `typed`, its Tape)] covering `typed` in order: one tape when its registers
    (n_regs x `bars` floats) fit `budget` (default REGISTER_BUDGET), else the batch halved until
    each part fits or is one program.

    `programs_per_chunk` sizes a chunk from its first program; this is what holds when later
    programs are bigger. Compiling a part again costs less than a few of its evaluations.
    """
    budget = REGISTER_BUDGET if budget is None else budget
    tape = compile_batch(typed)
    if len(typed) == 1 or tape.n_regs * bars * 8 <= budget:
        return [(slice(0, len(typed)), tape)]
    mid = len(typed) // 2
    right = [(slice(mid + s.start, mid + s.stop), t) for s, t in budget_tapes(typed[mid:], bars, budget)]
    return budget_tapes(typed[:mid], bars, budget) + right


# --- universes and executors ------------------------------------------------------------------


def tape_arrays(tape) -> tuple:
    """The plain arrays of a Tape that evaluation needs (what travels to a worker)."""
    return (tape.run_code, tape.consts, int(tape.n_regs), tape.rules, tape.warmups, tape.exits)


def chunk_metrics(tape: tuple, markets, spans: list[np.ndarray], costs: tuple, parallel: bool = True) -> np.ndarray:
    """The pure work of one chunk: a compiled tape over some markets -> float64 (P, A, S, M).

    `spans[a]` is market a's (S, 2) period ranges; a period the market lacks is (-1, -1) and
    gives NaN metrics. Nothing here depends on where it runs.
    """
    code, consts, n_regs, rules, warmups, exits = tape
    out = np.full((rules.shape[0], len(markets), spans[0].shape[0], len(METRIC_NAMES)), np.nan)
    for a, (m, sp) in enumerate(zip(markets, spans)):
        have = np.flatnonzero(sp[:, 0] >= 0)
        if have.size == 0:
            continue
        out[:, a, have, :] = evaluate_arrays(code, consts, n_regs, rules, warmups, exits, m.open, m.high,
                                              m.low, m.close, m.volume, np.ascontiguousarray(sp[have]), *costs,
                                              parallel=parallel)
    return out


def universe_spans(universe: Universe, settings: Settings, periods) -> tuple[list[str], list[np.ndarray]]:
    """The periods present in any market, and each market's (S, 2) ranges ((-1, -1) where absent)."""
    per = [period_spans(m, settings, periods) for m in universe]
    names = [p for p in periods if any(p in sp for sp in per)]
    arrays = [np.array([sp.get(p, (-1, -1)) for p in names], dtype=np.int64).reshape(-1, 2) for sp in per]
    return names, arrays


def plan_chunks(typed: list[TypedProgram], universe: Universe, chunk_size: int = DEFAULT_CHUNK,
                assets_per_chunk: int = DEFAULT_ASSETS_PER_CHUNK) -> list[tuple[slice, slice]]:
    """(programs, assets) slices covering the batch, sized so one chunk's registers stay in budget."""
    if chunk_size < 1 or assets_per_chunk < 1:
        raise AutostratError(f"chunk sizes must be at least 1, got {chunk_size} programs, {assets_per_chunk} assets")
    if not typed:
        return []
    size = programs_per_chunk(typed[0], universe, chunk_size)
    return [(slice(p, min(p + size, len(typed))), asl)
            for p in range(0, len(typed), size) for asl in asset_slices(universe, assets_per_chunk)]


def programs_per_chunk(first: TypedProgram, markets, chunk_size: int = DEFAULT_CHUNK) -> int:
    """`chunk_size`, lowered so that one chunk's registers stay in budget on the longest of
    `markets` (a Universe, or any markets), estimated from its first program: the input rows once,
    its own registers once per program (shared sub-expressions only make it smaller;
    `budget_tapes` cuts a chunk whose later programs are bigger)."""
    if chunk_size < 1:
        raise AutostratError(f"chunk size must be at least 1, got {chunk_size}")
    row = max(len(m) for m in markets) * 8
    own = max(compile_many([first]).n_regs - FIRST_FREE_REG, 1)
    return max(1, min(chunk_size, (REGISTER_BUDGET // row - FIRST_FREE_REG) // own))


def asset_slices(universe: Universe, assets_per_chunk: int = DEFAULT_ASSETS_PER_CHUNK) -> list[slice]:
    """The universe cut into slices of `assets_per_chunk` markets."""
    n = len(universe)
    return [slice(a, min(a + assets_per_chunk, n)) for a in range(0, n, assets_per_chunk)]


class LocalExecutor:
    """Runs the chunks in this process, one after another (each simulates on all cores)."""

    name = "local"

    def map(self, jobs, universe: Universe, spans: list[np.ndarray], costs: tuple):
        """(tape arrays, asset slice) jobs in, their (P, A, S, M) metrics out, in the same order.

        `jobs` is consumed lazily, one ahead of the results at most: a caller may build the jobs
        (compile the tapes) as they are needed.
        """
        for tape, asl in jobs:
            yield chunk_metrics(tape, universe.markets[asl], spans[asl], costs)


def chunk_jobs(typed: list[TypedProgram], chunks, bars: int):
    """((programs, assets), tape arrays) jobs of `plan_chunks`' chunks: each program slice compiled
    once, when first reached, into the tapes `budget_tapes` cuts it into (one, as a rule)."""
    key, parts = None, []
    for ps, asl in chunks:
        if (ps.start, ps.stop) != key:  # chunks come program slice by program slice: one slice's tapes alive
            key = (ps.start, ps.stop)
            parts = [(slice(ps.start + s.start, ps.start + s.stop), tape_arrays(t))
                     for s, t in budget_tapes(typed[ps], bars)]
        for sub, tape in parts:
            yield (sub, asl), tape


def universe_array(typed: list[TypedProgram], universe: Universe, settings: Settings, periods=SEARCH_PERIODS,
                   chunk_size: int = DEFAULT_CHUNK, executor=None, assets_per_chunk: int = DEFAULT_ASSETS_PER_CHUNK,
                   progress=None) -> tuple[np.ndarray, list[str]]:
    """float64 (n_programs, n_assets, n_periods, n_metrics) and the period names, chunk by chunk."""
    names, spans = universe_spans(universe, settings, periods)
    chunks = plan_chunks(typed, universe, chunk_size, assets_per_chunk)
    out = np.full((len(typed), len(universe), len(names), len(METRIC_NAMES)), np.nan)
    keys: collections.deque = collections.deque()  # the jobs' (programs, assets), taken in order

    def jobs():
        for key, tape in chunk_jobs(typed, chunks, max(len(m) for m in universe)):
            keys.append(key)
            yield tape, key[1]

    runner = executor or LocalExecutor()
    results = runner.map(jobs(), universe, spans, evaluation_args(settings.backtest))
    done = 0
    for values in results:
        ps, asl = keys.popleft()
        out[ps, asl] = values
        if ps.stop == chunks[done][0].stop and asl == chunks[done][1]:  # a planned chunk's last part
            done += 1
            if progress:
                progress(done, len(chunks))
    return out, names


def universe_frame(values: np.ndarray, periods: list[str], assets: list[str], names) -> pd.DataFrame:
    """(P, A, S, M) metrics as a long DataFrame: one row per program and asset, `period.metric` columns."""
    import pandas as pd
    n_prog, n_assets = values.shape[:2]
    cols = {"name": np.repeat(np.asarray(list(names), dtype=object), n_assets),
            "asset": np.tile(np.asarray(assets, dtype=object), n_prog)}
    flat = values.reshape(n_prog * n_assets, len(periods), len(METRIC_NAMES))
    for j, period in enumerate(periods):
        for m, metric in enumerate(METRIC_NAMES):
            cols[f"{period}.{metric}"] = flat[:, j, m]
    return pd.DataFrame(cols)


def across_assets_frame(frame: pd.DataFrame, how: str = "mean", keys=("name",)) -> pd.DataFrame:
    """One row per program (grouped by `keys`, in first-seen order) of a per-asset frame.

    Metric columns become their `how` aggregate over assets (NaN skipped); `PERIOD.beats_buy_hold`
    is the share of assets whose excess return is positive; `assets` counts them.
    """
    import pandas as pd

    from autostrat.data.universe import ACROSS, aggregate, beats_share

    if how not in ACROSS:
        raise AutostratError(f"--across {how!r}: use one of {', '.join(ACROSS)}")
    keys = list(keys)
    metric_cols = [c for c in frame.columns if "." in c]
    periods = list(dict.fromkeys(c.split(".")[0] for c in metric_cols))
    rows = []
    for key, group in frame.groupby(keys, sort=False, dropna=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["assets"] = len(group)
        for c in metric_cols:
            row[c] = aggregate(group[c].to_numpy(), how)
        for p in periods:
            row[f"{p}.beats_buy_hold"] = beats_share(group[f"{p}.excess_return"].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def per_asset_dicts(values: np.ndarray, periods: list[str], assets: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """One program's (A, S, M) array as {asset: {period: {metric: value}}} (absent periods left out)."""
    from autostrat.sim.evaluate import metrics_dicts

    out = {}
    for asset, rows in zip(assets, values):
        have = [j for j in range(len(periods)) if not np.isnan(rows[j]).all()]
        out[asset] = metrics_dicts(rows[have], [periods[j] for j in have])
    return out


def metrics_frame(values: np.ndarray, spans, names=None) -> pd.DataFrame:
    """The metrics array as a flat DataFrame with `period.metric` columns, after a `name` column
    when `names` are given. The metrics are one float block (the array's rows, reshaped): a
    column at a time, pandas took about 0.6 ms a thousand rows."""
    import pandas as pd
    columns = [f"{period}.{metric}" for period in spans for metric in METRIC_NAMES]
    block = pd.DataFrame(values.reshape(values.shape[0], len(columns)), columns=columns)
    if names is None:
        return block
    return pd.concat([pd.DataFrame({"name": list(names)}), block], axis=1)


# --- sweeps (the grid and its variants: autostrat.sim.grid) ----------------------------------


def sweep(strategy, grid: dict[str, list[float]], data="synthetic", settings: Settings | None = None, *,
          periods=SEARCH_PERIODS, chunk_size: int = DEFAULT_CHUNK, executor=None, progress=None,
          **overrides) -> pd.DataFrame:
    """Evaluate every grid point of a strategy's params in bulk; one row per point.

    On a universe, one row per point and asset (an `asset` column after the params).
    """
    import pandas as pd
    s = resolve_settings(settings, overrides)
    typed = sweep_points(strategy, grid)
    if not len(typed):
        raise AutostratError("no valid parameter combination in the grid")
    data = _data(data, s)
    params = points_frame(typed, grid)
    if isinstance(data, Universe) or executor is not None:
        universe = data if isinstance(data, Universe) else Universe((data,), data.name)
        values, names = universe_array(typed, universe, s, periods, chunk_size, executor=executor, progress=progress)
        frame = universe_frame(values, names, universe.names, typed.names).drop(columns="name")
        params = params.loc[params.index.repeat(len(universe))].reset_index(drop=True)
        out = pd.concat([params, frame], axis=1)
        return out if isinstance(data, Universe) else out.drop(columns="asset")
    spans = period_spans(data, s, periods)
    return pd.concat([params, metrics_frame(metrics_array(typed, data, spans, s, chunk_size), spans)], axis=1)
