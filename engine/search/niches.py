"""Niches (`search.niches`, MAP-Elites style): the best candidate per cell of a small behaviour grid.

A candidate's cell is read from its metrics on the objective's period (validation by default):

- exposure, the share of bars holding a position: bins [0, 0.25), [0.25, 0.5), [0.5, 0.75), [0.75, 1];
- trades per year, num_trades / (bars / 252): bins [0, 2), [2, 6), [6, 15), [15, inf).

Every evaluated candidate that is kept or discarded without breaking a constraint competes for
its cell; the cell's elite is the best by objective (ties: the earlier iteration), the rule of the
population. After a failure the parent is drawn from the top-K plus the elites not in it, so a
strategy that trades rarely, or holds rarely, stays a parent even when the top-K are all of one
kind. The record of each competing candidate carries its `niche` ([exposure bin, trades bin]), so
the elites are rebuilt from the records on resume, like the population.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from autostrat.search.population import Member

EXPOSURE_EDGES = (0.25, 0.5, 0.75)
TRADES_PER_YEAR_EDGES = (2.0, 6.0, 15.0)
BARS_PER_YEAR = 252


def period_years(evaluator: Any, period: str) -> float:
    """The length in years of one market's `period` (a universe's mean over its markets)."""
    dates = evaluator.period_dates()[period]
    markets = len(getattr(evaluator, "evaluators", None) or [None])
    return max(int(dates["bars"]) / markets / BARS_PER_YEAR, 1e-9)


def cell(metrics: dict[str, dict[str, float]], period: str, years: float) -> list[int] | None:
    """[exposure bin, trades-per-year bin] of a candidate's metrics on `period`, or None without them."""
    m = metrics.get(period) or {}
    exposure, trades = m.get("exposure"), m.get("num_trades")
    if exposure is None or trades is None or not math.isfinite(exposure) or not math.isfinite(trades):
        return None
    return [bisect.bisect_right(EXPOSURE_EDGES, exposure), bisect.bisect_right(TRADES_PER_YEAR_EDGES, trades / years)]


class Niches:
    """The elites: for each occupied cell, the best member seen in it."""

    def __init__(self) -> None:
        self.elites: dict[tuple[int, int], Member] = {}

    def add(self, member: Member, niche: list[int]) -> None:
        """Let a judged candidate compete for its cell (records are folded in iteration order)."""
        key = (int(niche[0]), int(niche[1]))
        held = self.elites.get(key)
        if held is None or member.key < held.key:
            self.elites[key] = member

    def pool(self, population: list[Member]) -> list[Member]:
        """The parents after a failure: the population, then the elites not in it, by cell."""
        kept = {m.iteration for m in population}
        return list(population) + [self.elites[k] for k in sorted(self.elites) if self.elites[k].iteration not in kept]

    def table(self) -> dict[str, Any]:
        """niches.json: the grid's edges and each cell's elite."""
        return {"exposure_edges": list(EXPOSURE_EDGES), "trades_per_year_edges": list(TRADES_PER_YEAR_EDGES),
                "cells": [{"cell": list(k), "iteration": m.iteration, "objective": m.objective}
                          for k, m in sorted(self.elites.items())]}
