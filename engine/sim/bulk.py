"""Bulk evaluation and parameter sweeps.

`evaluate_many` compiles a batch of programs into one tape per chunk (identical sub-expressions
computed once for the whole chunk), runs it, and simulates the programs in parallel on all cores.
Chunks bound memory: a chunk's registers are (registers x bars) floats. The work is the pure
function `autostrat.sim.evaluate.evaluate_arrays`, so an executor can map it over chunks elsewhere.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re

import numpy as np

from autostrat.config import Settings
from autostrat.data.load import load_data
from autostrat.data.market import Market
from autostrat.data.universe import Universe
from autostrat.errors import AutostratError, StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, check
from autostrat.sim.backtest import SEARCH_PERIODS, load_strategy, period_spans, resolve_settings
from autostrat.sim.evaluate import evaluate_arrays, evaluate_tape
from autostrat.sim.metrics import METRIC_NAMES
from autostrat.sim.simulate import evaluation_args
from autostrat.tape.compile import compile_many
from autostrat.tape.template import compile_batch

DEFAULT_CHUNK = 256
DEFAULT_ASSETS_PER_CHUNK = 8
REGISTER_BUDGET = 256 * 2**20  # bytes of VM registers one chunk may hold (per asset, at a time)


def evaluate_many(programs, data="synthetic", settings: Settings | None = None, *,
                  periods=SEARCH_PERIODS, chunk_size: int = DEFAULT_CHUNK, executor=None,
                  progress=None, **overrides) -> pd.DataFrame:
    """Metrics of many strategies: one row per program, columns `period.metric` plus `name`.

    `programs` are anything `load_strategy` takes. Results equal one-by-one `backtest` exactly.
    On a Universe (or a universe spec) there is one row per program and asset, with an `asset`
    column; `autostrat.across_assets_frame` sums them up. `executor` (see autostrat.sim.cluster) runs
    the chunks elsewhere, e.g. on a Dask cluster; None runs them here.
    """
    s = resolve_settings(settings, overrides)
    typed = [load_strategy(p) for p in programs]
    data = _data(data, s)
    if isinstance(data, Universe) or executor is not None:
        universe = data if isinstance(data, Universe) else Universe((data,), data.name)
        values, names = universe_array(typed, universe, s, periods, chunk_size, executor=executor,
                                       progress=progress)
        frame = universe_frame(values, names, universe.names, [t.name for t in typed])
        return frame if isinstance(data, Universe) else frame.drop(columns="asset")
    spans = period_spans(data, s, periods)
    values = metrics_array(typed, data, spans, s, chunk_size)
    return metrics_frame(values, spans, [t.name for t in typed])


def _data(data, settings: Settings) -> Market | Universe:
    return data if isinstance(data, (Market, Universe)) else load_data(data, settings.data)


def metrics_array(typed: list[TypedProgram], market: Market, spans, settings: Settings,
                  chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """float64 (n_programs, n_periods, n_metrics), evaluated chunk by chunk."""
    if chunk_size < 1:
        raise AutostratError(f"chunk size must be at least 1, got {chunk_size}")
    out = np.empty((len(typed), len(spans), len(METRIC_NAMES)))
    for start in range(0, len(typed), chunk_size):
        batch = typed[start : start + chunk_size]
        out[start : start + len(batch)] = evaluate_tape(compile_batch(batch), market, spans, settings.backtest)
    return out


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
    bars = max(len(m) for m in universe)
    per_program = max(compile_many(typed[:1]).n_regs, 1) * bars * 8
    size = max(1, min(chunk_size, REGISTER_BUDGET // per_program))
    return [(slice(p, min(p + size, len(typed))), slice(a, min(a + assets_per_chunk, len(universe))))
            for p in range(0, len(typed), size) for a in range(0, len(universe), assets_per_chunk)]


class LocalExecutor:
    """Runs the chunks in this process, one after another (each simulates on all cores)."""

    name = "local"

    def map(self, typed, universe: Universe, spans: list[np.ndarray], costs: tuple, chunks, progress=None):
        tapes: dict[tuple[int, int], tuple] = {}
        for done, (ps, asl) in enumerate(chunks, 1):
            key = (ps.start, ps.stop)
            if key not in tapes:
                tapes.clear()  # chunks come program-slice by program-slice: keep one tape alive
                tapes[key] = tape_arrays(compile_batch(typed[ps]))
            yield (ps, asl), chunk_metrics(tapes[key], universe.markets[asl], spans[asl], costs)
            if progress:
                progress(done, len(chunks))


def universe_array(typed: list[TypedProgram], universe: Universe, settings: Settings, periods=SEARCH_PERIODS,
                   chunk_size: int = DEFAULT_CHUNK, executor=None, assets_per_chunk: int = DEFAULT_ASSETS_PER_CHUNK,
                   progress=None) -> tuple[np.ndarray, list[str]]:
    """float64 (n_programs, n_assets, n_periods, n_metrics) and the period names, chunk by chunk."""
    names, spans = universe_spans(universe, settings, periods)
    chunks = plan_chunks(typed, universe, chunk_size, assets_per_chunk)
    out = np.full((len(typed), len(universe), len(names), len(METRIC_NAMES)), np.nan)
    runner = executor or LocalExecutor()
    for (ps, asl), values in runner.map(typed, universe, spans, evaluation_args(settings.backtest), chunks, progress):
        out[ps, asl] = values
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


def metrics_frame(values: np.ndarray, spans, names) -> pd.DataFrame:
    """The metrics array as a flat DataFrame with `period.metric` columns."""
    import pandas as pd
    cols = {"name": list(names)}
    for j, period in enumerate(spans):
        for m, metric in enumerate(METRIC_NAMES):
            cols[f"{period}.{metric}"] = values[:, j, m]
    return pd.DataFrame(cols)


# --- sweeps -----------------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([-+0-9.eE%]+)\s*(?::\s*([-+0-9.eE%]+)\s*(?::\s*([-+0-9.eE%]+))?)?\s*$")


MAX_SWEEP_POINTS = 1_000_000  # the default cap on a sweep's grid: each point is a program held in memory


def parse_grid(specs: list[str], max_points: int = MAX_SWEEP_POINTS) -> dict[str, list[float]]:
    """`fast=5:50:5` (inclusive start:stop:step), `k=2` or `k=1,2,3` -> {name: values}.

    Values must be finite; a grid of more than `max_points` combinations is refused before any of
    it is built (`--max-points` raises the cap).
    """
    grid: dict[str, list[float]] = {}
    total = 1
    for spec in specs:
        name, _, rhs = spec.partition("=")
        name = name.strip()
        if not name or not rhs:
            raise AutostratError(f"--param {spec!r}: write NAME=START:STOP:STEP or NAME=V1,V2,...")
        if name in grid:
            raise AutostratError(f"--param {spec!r}: {name} is given twice; give each param once")
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
                count = math.floor((hi - lo) / step + 1e-9) + 1
                if count * total > max_points:
                    raise AutostratError(_too_many(spec, count * total, max_points))
                values = [round(lo + i * step, 10) for i in range(count)]
            else:
                values = [_num(rhs)]
        except ValueError:
            raise AutostratError(f"--param {spec!r}: write NAME=START:STOP:STEP (finite numbers, step > 0, "
                                 "stop >= start) or NAME=V1,V2,...") from None
        total *= len(values)
        if total > max_points:
            raise AutostratError(_too_many(spec, total, max_points))
        grid[name] = values
    return grid


def _too_many(spec: str, points: int, cap: int) -> str:
    return (f"--param {spec!r}: the grid has {points:,} points, more than the limit of {cap:,}; use a larger "
            "step or fewer values, or raise the limit with --max-points N")


def _num(text: str) -> float:
    text = text.strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


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
        stmts = tuple(set_param(s, combo[s.name]) if isinstance(s, N.Param) and s.name in combo else s
                      for s in base.statements)
        try:
            programs.append(check(dataclasses.replace(base, statements=stmts)))
        except StrategyError:
            continue  # e.g. a window of 0: not a strategy, not a result
        combos.append(combo)
    return programs, combos


def outside_ranges(strategy, grid: dict[str, list[float]]) -> list[str]:
    """One line per param whose grid values leave the range it declares (a sweep runs them anyway)."""
    lines = []
    for p in load_strategy(strategy).program.statements:
        if not isinstance(p, N.Param) or p.name not in grid or p.lo is None or p.hi is None:
            continue
        bad = [v for v in grid[p.name] if not p.lo.value <= v <= p.hi.value]
        if bad:
            lines.append(f"{p.name}: {len(bad)} of {len(grid[p.name])} values lie outside its declared range "
                         f"{p.lo.value:g}..{p.hi.value:g} (for example {bad[0]:g}); they are run as asked")
    return lines


def set_param(p: N.Param, value: float) -> N.Param:
    """The param statement with `value` (a range that does not hold it is widened to it)."""
    literal = value * 100 if p.value.percent else value
    num = N.Num(float(literal), p.value.percent)
    lo, hi = p.lo, p.hi
    if lo is not None and value < lo.value:
        lo = num
    if hi is not None and value > hi.value:
        hi = num
    return dataclasses.replace(p, value=num, lo=lo, hi=hi)


def sweep(strategy, grid: dict[str, list[float]], data="synthetic", settings: Settings | None = None, *,
          periods=SEARCH_PERIODS, chunk_size: int = DEFAULT_CHUNK, executor=None, progress=None,
          **overrides) -> pd.DataFrame:
    """Evaluate every grid point of a strategy's params in bulk; one row per point.

    On a universe, one row per point and asset (an `asset` column after the params).
    """
    import pandas as pd
    s = resolve_settings(settings, overrides)
    typed, combos = sweep_programs(strategy, grid)
    if not typed:
        raise AutostratError("no valid parameter combination in the grid")
    data = _data(data, s)
    params = pd.DataFrame(combos)
    for column in params.columns:  # whole-number values (windows, counts) print as 5, not 5.0
        values = params[column].to_numpy()
        if np.all(values == np.round(values)) and np.all(np.abs(values) < 2 ** 53):
            params[column] = values.astype(np.int64)
    if isinstance(data, Universe) or executor is not None:
        universe = data if isinstance(data, Universe) else Universe((data,), data.name)
        values, names = universe_array(typed, universe, s, periods, chunk_size, executor=executor, progress=progress)
        frame = universe_frame(values, names, universe.names, [t.name for t in typed]).drop(columns="name")
        params = params.loc[params.index.repeat(len(universe))].reset_index(drop=True)
        out = pd.concat([params, frame], axis=1)
        return out if isinstance(data, Universe) else out.drop(columns="asset")
    spans = period_spans(data, s, periods)
    frame = metrics_frame(metrics_array(typed, data, spans, s, chunk_size), spans, [t.name for t in typed])
    return pd.concat([params, frame.drop(columns="name")], axis=1)
