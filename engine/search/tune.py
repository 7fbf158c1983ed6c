"""Tuned params: a candidate's declared `param x = v in LO..HI` ranges searched with the bulk engine.

A candidate with `search.tune` N > 0 is evaluated as up to N variants that differ only in their
params' values, and scored as the variant `search.tune_pick` chooses:

- the axes: a whole-number param (value and range whole numbers) takes every whole number of
  its range when there are at most AXIS_POINTS of them, else AXIS_POINTS evenly spaced ones
  rounded; any other param takes AXIS_POINTS evenly spaced values. The proposer's own value is
  always on its axis. A param without a range stays as written;
- the variants: the full grid when it has at most N points, else the proposer's own values and
  N - 1 other grid points drawn with the iteration's seeded random.Random (distinct points);
- `best` picks the variant with the best objective; `robust` the one whose neighbourhood (the
  variants at most one axis step away in every param, itself included) has the best median
  objective, so one lucky corner does not win. NaN ranks last; a tie goes to the earlier
  variant, the proposer's own values first.

The variants' metrics come from one bulk evaluation (autostrat.sim.bulk, or
autostrat.sim.portfolio_bulk for a portfolio strategy); the chosen variant is
then evaluated like any candidate, so its record's metrics equal a plain backtest of its text.
Every variant is a trial: the record's `trials` is their count, and the run's statistics count
them (DSR's number of trials, and V through each variant's Sharpe ratio, `tuning.sharpes`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import statistics
from dataclasses import dataclass
from typing import Any

from autostrat.errors import StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram, check
from autostrat.lang.fmt import fmt
from autostrat.sim.grid import set_param
from autostrat.sim.evaluator import Evaluation
from autostrat.sim.objective import Objective, rank_key

AXIS_POINTS = 11  # values per param axis (its own value added)
MAX_TUNE = 10_000  # variants per candidate
PICKS = ("best", "robust")


@dataclass
class Tuned:
    """A tuned candidate: the chosen variant's evaluation and text, and what the tuning did."""

    evaluation: Evaluation
    text: str
    info: dict[str, Any]


def axes(program: N.Program) -> dict[str, list[float]]:
    """Each ranged param's values to try, sorted, its own value included."""
    out = {}
    for p in program.params().values():
        if p.lo is None or p.hi is None or p.hi.value <= p.lo.value:
            continue
        lo, hi, own = p.lo.value, p.hi.value, p.value.value
        whole = not p.value.percent and all(float(x).is_integer() for x in (lo, hi, own))
        if whole and hi - lo + 1 <= AXIS_POINTS:
            values = [float(v) for v in range(int(lo), int(hi) + 1)]
        elif whole:
            values = [float(round(lo + (hi - lo) * k / (AXIS_POINTS - 1))) for k in range(AXIS_POINTS)]
        else:
            values = [lo + (hi - lo) * k / (AXIS_POINTS - 1) for k in range(AXIS_POINTS)]
        out[p.name] = sorted(set(values) | {own})
    return out


def grid_points(program: N.Program, n: int, rng: random.Random) -> tuple[list[str], list[tuple[int, ...]], list[list[float]]]:
    """The params, the variants as axis indices (the proposer's own first) and the axes."""
    ax = axes(program)
    names = list(ax)
    values = [ax[name] for name in names]
    own = tuple(values[k].index(program.params()[name].value.value) for k, name in enumerate(names))
    size = math.prod(len(v) for v in values)
    if size <= n:
        points = [own] + [p for p in itertools.product(*(range(len(v)) for v in values)) if p != own]
        return names, points, values
    chosen, seen = [own], {own}
    while len(chosen) < n:  # size > n, so distinct points remain to be drawn
        point = tuple(rng.randrange(len(v)) for v in values)
        if point not in seen:
            seen.add(point)
            chosen.append(point)
    return names, chosen, values


def with_params(program: N.Program, combo: dict[str, float]) -> N.Program:
    """`program` with the params of `combo` set to its values."""
    stmts = tuple(set_param(s, combo[s.name]) if isinstance(s, N.Param) and s.name in combo else s
                  for s in program.statements)
    return dataclasses.replace(program, statements=stmts)


def pick_index(values: list[float], points: list[tuple[int, ...]], how: str) -> tuple[int, list[float]]:
    """The chosen variant's index, and each variant's score (its objective, or its neighbourhood median)."""
    if how == "robust":
        scores = []
        for p in points:
            near = [v for q, v in zip(points, values) if max((abs(a - b) for a, b in zip(p, q)), default=0) <= 1]
            middle = statistics.median([-math.inf if math.isnan(v) else v for v in near])  # NaN: worst
            scores.append(math.nan if middle == -math.inf else middle)
    else:
        scores = list(values)
    best = min(range(len(points)), key=lambda k: (*_worse_first(scores[k]), k))
    return best, scores


def _worse_first(value: float) -> tuple[bool, float]:
    good, v = rank_key(value)
    return (not good, -v)


def tune(typed: TypedProgram, evaluator, objective: Objective, n: int, how: str, rng: random.Random) -> Tuned | Evaluation:
    """Evaluate up to `n` variants of `typed` in bulk and the chosen one in full (see the module docstring).

    A program without a ranged param is evaluated as it is (an Evaluation, not a Tuned).
    """
    program = typed.program
    names, points, values = grid_points(program, min(n, MAX_TUNE), rng)
    if not names:
        return evaluator(typed)
    combos = [{name: values[k][i] for k, (name, i) in enumerate(zip(names, p))} for p in points]
    programs, kept, combos_kept = [], [], []
    for p, combo in zip(points, combos):
        try:
            programs.append(check(with_params(program, combo), portfolio=typed.portfolio is not None))
        except StrategyError:
            continue  # e.g. a window of 0: not a strategy
        kept.append(p)
        combos_kept.append(combo)
    metrics = evaluator.metrics_many(programs)
    objectives = [objective.value(m) for m in metrics]
    k, scores = pick_index(objectives, kept, how)
    chosen = programs[k]
    evaluation = evaluator(chosen)
    info = {"variants": len(programs), "pick": how, "params": names,
            "proposed": {name: program.params()[name].value.value for name in names},
            "chosen": combos_kept[k], "objective_proposed": objectives[0], "objective_chosen": objectives[k],
            "score_chosen": scores[k],
            # every variant's annualised Sharpe per period: the run's statistics count them in V
            "sharpes": {p: [m.get(p, {}).get("sharpe") for m in metrics] for p in ("train", "validation")}}
    return Tuned(evaluation, fmt(chosen.program), info)
