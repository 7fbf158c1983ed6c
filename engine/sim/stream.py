"""Streamed bulk evaluation and sweeps: rows go to a CSV file as chunks finish, in bounded memory.

`autostrat sweep` over a million grid points or `autostrat bulk` over 100,000 files never holds
every program, every checked program or every result: the programs come in batches (a chunk's
worth, `programs_per_chunk`), each batch is compiled, evaluated by the executor (here, or on a
Dask cluster, which hands results back in order) and turned into rows, and the rows are written
and dropped. What stays is the best `top` rows for the printed ranking. The rows, their order and
their text are those of the in-memory `evaluate_many` / `sweep` frames written with `to_csv`.
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass

import numpy as np

from autostrat.data.universe import Universe
from autostrat.lang.variants import program_names
from autostrat.sim.backtest import SEARCH_PERIODS
from autostrat.sim.bulk import (DEFAULT_CHUNK, LocalExecutor, across_assets_frame, asset_slices, budget_tapes,
                                programs_per_chunk, tape_arrays, universe_frame, universe_spans)
from autostrat.sim.grid import GRID_BLOCK, grid_variants, points_frame
from autostrat.sim.simulate import evaluation_args
from autostrat.sim.simulation import check_backtest


@dataclass
class Batch:
    """One chunk's programs, the leading columns of their rows, and the work done up to its end."""

    typed: list
    lead: object  # a DataFrame: the file, or the param values, of each program
    done: int  # units of work (files read, grid points walked) up to this batch's last program
    last: bool = False  # no batch comes after this one


def batches(items, universe: Universe, chunk_size: int, lead):
    """(units done, checked program, lead record) items -> Batches of `programs_per_chunk` programs.

    `lead(records)` makes a batch's leading columns. The chunk size is fixed by the first program
    (as `plan_chunks` does), so the items are read one chunk ahead at most.
    """
    size, typed, records = None, [], []
    done, ready = 0, None  # a full batch is held back until the next item shows it is not the last
    for done, program, record in items:
        if size is None:
            size = programs_per_chunk(program, universe, chunk_size)
        if ready is not None:
            yield ready
            ready = None
        typed.append(program)
        records.append(record)
        if len(typed) == size:
            ready = Batch(typed, lead(records), done)
            typed, records = [], []
    if typed:
        yield Batch(typed, lead(records), done, last=True)
    elif ready is not None:
        ready.last = True
        yield ready


def _last_marked(batch_iter):
    """The batches, the last one marked `last`: each is held back until the next shows it is not."""
    ready = None
    for batch in batch_iter:
        if ready is not None:
            yield ready
        ready = batch
    if ready is not None:
        ready.last = True
        yield ready


def sweep_batches(strategy, grid: dict[str, list[float]], universe: Universe, chunk_size: int = DEFAULT_CHUNK):
    """The grid's valid points in Batches of PointBlocks (no Python object per point), in grid
    order; `done` counts grid points walked."""
    variants = grid_variants(strategy, grid)

    def unmarked():
        size, held, held_index = None, None, np.zeros(0, dtype=np.int64)  # valid points not yet in a batch
        for first in range(0, len(variants), GRID_BLOCK):
            index, _, block = variants.block(np.arange(first, min(first + GRID_BLOCK, len(variants))))
            if not len(block):
                continue
            if size is None:
                size = programs_per_chunk(block[0], universe, chunk_size)
            held = block if held is None else held.joined(block)
            held_index = np.concatenate([held_index, index])
            while len(held) >= size:
                part = held[:size]
                yield Batch(part, points_frame(part, grid), int(held_index[size - 1]) + 1)
                held, held_index = held[size:], held_index[size:]
        if held is not None and len(held):
            yield Batch(held, points_frame(held, grid), int(held_index[-1]) + 1)

    return _last_marked(unmarked())


def file_batches(items, universe: Universe, chunk_size: int = DEFAULT_CHUNK):
    """(files read, checked program, file name) items in Batches with a `file` column."""
    import pandas as pd

    return batches(items, universe, chunk_size, lambda files: pd.DataFrame({"file": files}))


def evaluate_batches(batch_iter, universe: Universe, settings, periods=SEARCH_PERIODS, executor=None):
    """(Batch, (P, A, S, M) metrics, period names) per batch, in order.

    A batch is compiled when the executor takes its first job, so a Dask cluster's window of jobs
    in flight, not the whole run, decides how many tapes exist at once.
    """
    check_backtest(settings.backtest)  # costs and capital the simulator would misread
    names, spans = universe_spans(universe, settings, periods)
    slices = asset_slices(universe)
    bars = max(len(m) for m in universe)
    waiting: collections.deque = collections.deque()  # (batch, its number of tapes), compiled and not yet handed out

    def jobs():
        for batch in batch_iter:
            tapes = [tape_arrays(t) for _, t in budget_tapes(batch.typed, bars)]  # one, as a rule
            waiting.append((batch, len(tapes)))
            for tape in tapes:
                for asl in slices:
                    yield tape, asl

    results = iter((executor or LocalExecutor()).map(jobs(), universe, spans, evaluation_args(settings.backtest)))
    for first in results:
        batch, n_tapes = waiting.popleft()
        got = [first, *itertools.islice(results, n_tapes * len(slices) - 1)]
        per_tape = [np.concatenate(got[i : i + len(slices)], axis=1) for i in range(0, len(got), len(slices))]
        yield batch, np.concatenate(per_tape, axis=0), names


def batch_frame(batch: Batch, values: np.ndarray, periods: list[str], universe: Universe, named: bool):
    """A batch's rows: one per program and market (the lead columns, `name` if `named`, `asset`)."""
    import pandas as pd

    frame = universe_frame(values, periods, universe.names, program_names(batch.typed))
    if not named:
        frame = frame.drop(columns="name")
    lead = batch.lead.loc[batch.lead.index.repeat(len(universe))].reset_index(drop=True)
    return pd.concat([lead, frame], axis=1)


class TopRows:
    """The best `n` rows seen, by `objective` (highest first, NaN last, earlier rows first on ties)."""

    def __init__(self, objective: str, n: int):
        self.objective, self.n, self.best = objective, max(n, 0), None

    def add(self, frame) -> None:
        import pandas as pd

        both = frame if self.best is None else pd.concat([self.best, frame], ignore_index=True)
        self.best = rank(both, self.objective).head(self.n)


def rank(frame, objective: str):
    """`frame` sorted by `objective`, highest first, NaN last; a stable sort keeps ties in row order."""
    return frame.sort_values(objective, ascending=False, na_position="last", kind="stable")


@dataclass
class Streamed:
    """What a streamed run wrote and kept."""

    rows: int = 0  # rows written to `out` (or that would have been)
    per_asset_rows: int = 0
    best: object = None  # the best rows (a DataFrame), or None when there were no rows


def stream_rows(batch_iter, data, settings, *, objective: str, top: int, named: bool, keys: list[str],
                out=None, per_asset=None, across: str = "mean", periods=SEARCH_PERIODS, executor=None,
                progress=None) -> Streamed:
    """Evaluate the batches and write their rows, CSV, to the binary files `out` and `per_asset`.

    On one market a row per program (no `asset` column); on a Universe a row per program with
    each metric aggregated over the markets with `across` (`across_assets_frame`), and the rows
    per program and market to `per_asset`. `progress(batch)` is called after each batch is written.
    """
    universe = data if isinstance(data, Universe) else Universe((data,), data.name)
    result = Streamed()
    kept = TopRows(objective, top)
    start = 0
    for batch, values, periods_present in evaluate_batches(batch_iter, universe, settings, periods, executor):
        frame = batch_frame(batch, values, periods_present, universe, named)
        if isinstance(data, Universe):
            if per_asset is not None:
                write_csv(per_asset, frame, result.per_asset_rows == 0)
            result.per_asset_rows += len(frame)
            # one row per program, even when two programs have the same keys (the same file twice)
            frame.insert(0, "_program", np.repeat(np.arange(start, start + len(batch.typed)), len(universe)))
            frame = across_assets_frame(frame, across, keys=["_program", *keys]).drop(columns="_program")
        else:
            frame = frame.drop(columns="asset")
        start += len(batch.typed)
        if out is not None:
            write_csv(out, frame, result.rows == 0)
        result.rows += len(frame)
        kept.add(frame)
        if progress:
            progress(batch)
    result.best = kept.best
    return result


def write_csv(handle, frame, header: bool) -> None:
    """Append a frame to a binary file as CSV (with the header when `header`), flushed."""
    handle.write(frame.to_csv(index=False, header=header).encode("utf-8"))
    handle.flush()  # a chunk's rows reach the file (under its temporary name) as the chunk finishes
