"""The population: the kept strategies, best first (the loop keeps the top `search.population`).

A member is ranked by its objective value (every number beats NaN, autostrat.sim.objective.rank_key),
then by the earlier iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

from autostrat.sim.objective import rank_key


@dataclass
class Member:
    """A kept strategy: where it came from, how it scored, and its text."""

    iteration: int
    objective: float
    metrics: dict[str, dict[str, float]]
    text: str
    hash: str = ""

    @property
    def key(self) -> tuple[tuple[bool, float], int]:
        """Sort key, best first: higher objective, then the earlier iteration."""
        good, value = rank_key(self.objective)
        return ((not good, -value), self.iteration)
