"""Sweep grids: `--param` specs parsed into values, and the grid's points built as checked variants.

A grid is walked lazily, in `itertools.product` order (the last param varies fastest), so a
sweep of a million points never holds a million programs. The points are checked a block at a
time by `autostrat.lang.variants.GridVariants` (each value checked once, the warm-ups of a block
computed together) into PointBlocks, arrays that the template compiler reads without a
TypedProgram per point (`sweep_points`; autostrat.sim.stream batches blocks); a param statement
is built once per distinct value, not once per point. `iter_variants` yields the points' programs
one by one, for a caller that reads each.
"""

from __future__ import annotations

import math

import numpy as np

from autostrat.errors import AutostratError
from autostrat.lang import nodes as N
from autostrat.lang.variants import GridVariants, PointBlock
from autostrat.sim.backtest import load_strategy

# The default cap on a sweep's points. Points are streamed, so memory does not limit a grid; time
# does: 100 million points is hours of work (about 100 us each on two cores). --max-points raises it.
MAX_SWEEP_POINTS = 100_000_000
MAX_PARAM_VALUES = 1_000_000  # values of one param: each is held, as a float and a param statement


def parse_grid(specs: list[str], max_points: int = MAX_SWEEP_POINTS) -> dict[str, list[float]]:
    """`fast=5:50:5` (inclusive start:stop:step), `k=2` or `k=1,2,3` -> {name: values}.

    Values must be finite; a grid of more than `max_points` combinations, or a param of more than
    MAX_PARAM_VALUES values, is refused before any of it is built (`--max-points` raises the first).
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
        if rhs.count(",") >= MAX_PARAM_VALUES:
            raise AutostratError(_too_many_values(spec, rhs.count(",") + 1))
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
                if count > MAX_PARAM_VALUES:
                    raise AutostratError(_too_many_values(spec, count))
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


def _too_many_values(spec: str, count: int) -> str:
    return (f"--param {spec!r}: {count:,} values, more than the limit of {MAX_PARAM_VALUES:,} per param; "
            "use a larger step")


def _num(text: str) -> float:
    text = text.strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def grid_size(grid: dict[str, list[float]]) -> int:
    """The number of points of a grid."""
    return math.prod(len(v) for v in grid.values())


def grid_variants(strategy, grid: dict[str, list[float]]) -> GridVariants:
    """The grid's points of a strategy, checked a block at a time (autostrat.lang.variants).

    A value outside a param's declared range widens the range: the range is the search's
    business, a sweep asks for exactly these values.
    """
    base = load_strategy(strategy)
    params = base.program.params()
    unknown = [n for n in grid if n not in params]
    if unknown:
        have = ", ".join(params) or "none"
        raise AutostratError(f"the strategy has no param {unknown[0]!r} (its params: {have})")
    return GridVariants(base, {n: [set_param(params[n], v) for v in grid[n]] for n in grid})


def iter_variants(strategy, grid: dict[str, list[float]]):
    """(point index, checked program, {param: value}) for every valid point, in grid order.

    Invalid points (e.g. a window of 0) are skipped: not a strategy, not a result.
    """
    variants = grid_variants(strategy, grid)
    names = list(grid)
    for first in range(0, len(variants), GRID_BLOCK):
        index, picks, programs = variants.block(np.arange(first, min(first + GRID_BLOCK, len(variants))))
        for point, row, typed in zip(index.tolist(), picks.tolist(), programs):
            yield point, typed, {n: grid[n][i] for n, i in zip(names, row)}


GRID_BLOCK = 4096  # grid points checked together: bounded memory, and few enough Python calls


def sweep_points(strategy, grid: dict[str, list[float]]) -> PointBlock:
    """Every valid point of the grid, in grid order, as one PointBlock (in memory: small grids).

    A block makes no Python object per point: compiling and scoring it read its arrays."""
    variants = grid_variants(strategy, grid)
    return variants.block(np.arange(len(variants)))[2]


def points_frame(block: PointBlock, grid: dict[str, list[float]]):
    """The block's param values as a DataFrame, one column per param in grid order.

    A param whose grid values are all whole numbers (windows, counts) is an int64 column, so it
    prints as 5, not 5.0; decided by the grid, not the points, so every chunk of a streamed sweep
    prints alike.
    """
    import pandas as pd

    cols = {}
    for j, (name, values) in enumerate(grid.items()):
        column = np.asarray(values, dtype=np.float64)[block.picks[:, j]]
        whole = all(float(v).is_integer() and abs(v) < 2 ** 53 for v in values)
        cols[name] = column.astype(np.int64) if whole else column
    return pd.DataFrame(cols)


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
    # The constructor with every field: dataclasses.replace costs twice as much, once per value.
    return N.Param(p.name, num, lo, hi, p.span, p.comments, p.trailing, p.blank_before)
