"""The portfolio operators of the `mutate` proposer: what to hold, how often, at what weights.

A portfolio strategy (autostrat.lang.portfolio) is mutated by the value operators it shares with
a single-market one (move: the score expression's windows, params and lags; swap; flip; drop)
and by these, which rewrite its portfolio statements (the description's first word names the
kind, see autostrat.search.mutate.operator_of):

  hold       change a side's fraction (5% .. 50%), or add the opposite side (the same ranking,
             the other edge) or remove the short side of a two-sided portfolio
  rebalance  a literal `rebalance every N bars` to another period (a param is moved by `move`)
  weight     equal <-> by the first side's ranking; add, change or remove the cap

Like the other operators they take a Draft and a seeded random.Random and return the new
statements with a description, or None when there is nothing to change; the caller checks every
result with check(..., portfolio=True).
"""

from __future__ import annotations

import random
from dataclasses import replace

from autostrat.lang import nodes as N
from autostrat.search.mutate_ops import Draft

HOLD_PERCENTS = (5, 10, 15, 20, 25, 30, 40, 50)
REBALANCE_BARS = (1, 5, 10, 21, 42, 63, 126, 252)
CAP_PERCENTS = (5, 10, 15, 20, 30)
KINDS = ("hold", "rebalance", "weight")


def _percent(n: N.Num) -> float:
    return n.value * 100.0


def _text(x: float) -> str:
    return f"{x:g}%"


def hold(d: Draft, rng: random.Random):
    """Change a side's fraction, or add the opposite side, or remove the short side."""
    holds = [i for i, s in enumerate(d.statements) if isinstance(s, N.Hold)]
    if not holds:
        return None
    if rng.random() < 0.75:
        i = rng.choice(holds)
        s = d.statements[i]
        top = 50 if len(holds) == 2 else 100
        cur = _percent(s.fraction)
        options = [p for p in HOLD_PERCENTS if p != cur and p <= top]
        new = rng.choice(options)
        return (d.with_stmt(i, replace(s, fraction=N.Num(float(new), True))),
                f"hold {s.side} {s.edge} {_text(cur)} -> {_text(new)}")
    if len(holds) == 2:
        i = next(i for i in holds if d.statements[i].side == "short")
        s = d.statements[i]
        out = list(d.statements)
        del out[i]
        return out, f"hold short {s.edge} {_text(_percent(s.fraction))} by {s.by.id} removed"
    s = d.statements[holds[0]]
    side = "short" if s.side == "long" else "long"
    edge = "bottom" if s.edge == "top" else "top"
    fraction = N.Num(float(min(_percent(s.fraction), 50)), True)
    new = N.Hold(side, edge, fraction, N.Name(s.by.id))
    out = list(d.statements)
    out.insert(holds[0] + 1, new)
    return out, f"hold {side} {edge} {_text(fraction.literal)} by {s.by.id} added"


def rebalance(d: Draft, rng: random.Random):
    """A literal rebalance period to another one."""
    at = [i for i, s in enumerate(d.statements) if isinstance(s, N.Rebalance) and isinstance(s.every, N.Num)]
    if not at:
        return None
    i = at[0]
    s = d.statements[i]
    cur = int(s.every.literal)
    new = rng.choice([b for b in REBALANCE_BARS if b != cur])
    return d.with_stmt(i, replace(s, every=N.Num(float(new)))), f"rebalance every {cur} -> {new} bars"


def weight(d: Draft, rng: random.Random):
    """Equal weights <-> weights by the first side's ranking, or the cap added, changed or removed."""
    holds = [s for s in d.statements if isinstance(s, N.Hold)]
    if not holds:
        return None
    at = next((i for i, s in enumerate(d.statements) if isinstance(s, N.Weight)), None)
    w = d.statements[at] if at is not None else N.Weight()
    if rng.random() < 0.5:
        by = None if w.by is not None else N.Name(holds[0].by.id)
        new = replace(w, by=by)
        desc = f"weight {'by ' + w.by.id if w.by else 'equal'} -> {'by ' + by.id if by else 'equal'}"
    else:
        cur = _percent(w.cap) if w.cap is not None else None
        options = [p for p in CAP_PERCENTS if p != cur] + ([None] if cur is not None else [])
        cap = rng.choice(options)
        new = replace(w, cap=N.Num(float(cap), True) if cap is not None else None)
        desc = f"weight cap {_text(cur) if cur else 'none'} -> {_text(cap) if cap else 'none'}"
    out = list(d.statements)
    if at is None:
        last = max(i for i, s in enumerate(out) if isinstance(s, N.PORTFOLIO_STATEMENTS))
        out.insert(last + 1, new)
    else:
        out[at] = new
    return out, desc


OPS = {"hold": hold, "rebalance": rebalance, "weight": weight}
