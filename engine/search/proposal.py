"""What a proposer is given (Context) and gives back (Proposal), and the offline mutate proposer.

The loop (autostrat.search.loop) builds a Context per iteration and judges the Proposal; the llm
proposer (autostrat.search.llm) and MutateProposer fill it in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from autostrat.errors import AutostratError
from autostrat.lang import nodes as N
from autostrat.lang.fmt import fmt
from autostrat.search.population import Member


@dataclass
class Proposal:
    """A proposer's candidate: a program (None when the answer was unusable) and what it said."""

    program: N.Program | None
    text: str
    status: str = "ok"  # ok | invalid | error
    error: str = ""
    hypothesis: str = ""
    learned: str = ""
    description: str = ""
    tokens: dict[str, int] = field(default_factory=dict)
    repairs: int = 0
    prompt: str | None = None
    response: str | None = None
    model_seconds: float = 0.0
    retries: list[str] = field(default_factory=list)  # why calls to the model were retried
    finish: list[str] = field(default_factory=list)  # each model answer's finish reason ("length": cut off)


@dataclass
class Context:
    """What a proposer sees: the parent first, the population, the learnings and the last result."""

    iteration: int
    parent: Member
    population: list[Member]
    parents: list[N.Program]  # the parent's program, then the other members' (crossover donors)
    last: dict[str, Any] | None
    fails: int
    learnings: str
    rng: random.Random


class Proposer(Protocol):
    name: str
    uses_prompt: bool

    def propose(self, ctx: Context) -> Proposal: ...


class MutateProposer:
    """The offline proposer: autostrat.mutate's mutation and crossover, seeded per iteration."""

    name = "mutate"
    uses_prompt = False

    def propose(self, ctx: Context) -> Proposal:
        """One mutation of the parent (the other members are crossover donors)."""
        from autostrat.search.mutate import mutate

        donors = [f"iteration {m.iteration}" for m in ctx.population if m is not ctx.parent]
        try:
            program, description = mutate(ctx.parents, ctx.rng, donor_labels=donors)
        except AutostratError as exc:
            return Proposal(None, "", status="error", error=str(exc), description="no mutation found")
        return Proposal(program, fmt(program), hypothesis=description, description=description)
