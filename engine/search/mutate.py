"""The `mutate` proposer: grammar-aware mutation and crossover of strategy programs, offline.

It is the search loop's default proposer when no language model is configured, and the baseline a
model must beat. One call picks an operator at random (weights in OPERATORS), applies it to the
main parent, and keeps the result only if it checks and evaluates differently from the parent
(canonical hash); otherwise it tries again. Nodes are built the way the parser builds them, so the
fmt() text of a result parses back to an equal program (the tests hold it to that). A result
carries no source positions: parse its fmt() text where positions are wanted.

Operators (the first word of the description names the kind; see `operator_of`):
  move       a param inside its range, a literal window (x0.5..x2 or a small step), a threshold
             (x0.75..x1.33; 1..99 against a 0..100 oscillator) or a lag
  swap       a built-in for one of its family (same signature and scale: sma/ema/wma/rma,
             highest/lowest, cross_above/cross_below, ...), or one price series for another
  flip       a comparison (< and >, <= and >=, == and !=), sometimes `and` and `or`
  add        a condition from a small library (`and` for an entry, `and`/`or` for an exit rule)
  drop       one operand of a top-level and/or chain
  exit       add, change or remove stop_loss, take_profit, trailing_stop or max_hold
  crossover  the buy, sell, short/cover rule or the exits of another parent, with the params and
             bindings they need (renamed when a name is taken by a different definition)

A portfolio strategy (one with `hold` statements) is mutated with PORTFOLIO_OPERATORS instead: the
value operators above on its score expressions, hold, rebalance and weight on its portfolio
statements (autostrat.search.mutate_portfolio), and crossover, which takes another portfolio's
ranking (with the bindings it needs), rebalance period or weighting; every result is checked with
check(..., portfolio=True).

Bindings and params that a change leaves unused are removed. The header comments are kept, with
the first line replaced (or preceded) by `# hypothesis: <description>`.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from autostrat.errors import AutostratError, StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.check import check
from autostrat.lang.fmt import canonical_hash
from autostrat.lang.registry import is_reserved
from autostrat.search import mutate_portfolio
from autostrat.search.mutate_ops import (Draft, chain, conditions, exit_, flatten, flip, move, reachable, rename, short,
                                         swap)

MAX_CONDITIONS = 12  # `add` leaves a rule with this many top-level conditions alone

# Relative weights of the operator kinds; crossover needs a second parent.
OPERATORS: dict[str, float] = {
    "move": 30, "swap": 10, "flip": 8, "add": 12, "drop": 8, "exit": 12, "crossover": 20,
}
# A portfolio strategy has no rules or exits to add or drop: its own statements instead, and
# crossover takes another portfolio's ranking, rebalance period or weighting.
PORTFOLIO_OPERATORS: dict[str, float] = {
    "move": 30, "swap": 10, "flip": 4, "drop": 4, "hold": 16, "rebalance": 12, "weight": 10, "crossover": 14,
}


def mutate(parents: list[N.Program], rng: random.Random, *, max_tries: int = 50,
           weights: dict[str, float] | None = None, donor_labels: list[str] | None = None) -> tuple[N.Program, str]:
    """A checked program that differs from parents[0], and a one-line description of the change.

    parents[0] is the program to change; any others are crossover donors, named in descriptions
    by `donor_labels` (the search passes "iteration N"), else "parent 2" for parents[1] and so on.
    Deterministic for a given rng state. `weights` overrides OPERATORS (a kind left out or weighted
    0 is never used). Raises AutostratError when max_tries attempts give nothing valid and new.
    Comments on a statement the change rewrote are dropped (they described the old statement),
    and so are the parent's `# learned:` lines.
    """
    if not parents:
        raise AutostratError("mutate needs at least one parent program")
    parent = parents[0]
    if not parent.statements:
        raise AutostratError("mutate: the parent program has no statements; start from a strategy "
                             "with buy and sell rules, e.g. grammar/examples/sma_cross.strat")
    portfolio = parent.is_portfolio
    default = PORTFOLIO_OPERATORS if portfolio else OPERATORS
    table = {k: w for k, w in (default if weights is None else weights).items() if w > 0}
    unknown = sorted(set(table) - set(_OPS))
    if unknown:
        raise AutostratError(f"mutate: unknown operator {unknown[0]!r}; the operators are {', '.join(_OPS)}")
    header = parent.statements[0].comments
    body = [replace(parent.statements[0], comments=()), *parent.statements[1:]]
    labels = donor_labels or [f"parent {j}" for j in range(2, len(parents) + 1)]
    draft = Draft(body, [(label + (f" '{p.name}'" if p.name else ""), p) for label, p in zip(labels, parents[1:])])
    if not draft.donors:
        table.pop("crossover", None)
    base = canonical_hash(parent)
    rejected: list[str] = []
    for _ in range(max_tries):
        result = _apply_one(draft, rng, table)
        if result is None:
            break
        statements, desc = result
        statements = _uncomment_changed(body, prune(body, statements))
        program = N.Program(tuple(_with_header(statements, header, desc)), end_comments=parent.end_comments)
        try:
            check(program, portfolio=portfolio)
        except StrategyError as exc:
            rejected.append(f"{desc}: {exc.first.message}")
            continue
        if canonical_hash(program) == base:
            rejected.append(f"{desc}: evaluates the same as the parent")
            continue
        return program, desc
    name = parent.name or parent.path
    why = f"; last rejection: {rejected[-1]}" if rejected else "; no operator applies to it"
    raise AutostratError(
        f"mutate: no valid new variant of {name!r} in {max_tries} tries{why}. "
        "Pass more parents for crossover, allow more operators, or raise max_tries.")


def _apply_one(draft: Draft, rng: random.Random, table: dict[str, float]):
    """Apply one operator chosen by weight; one that finds nothing to change is set aside."""
    available = dict(table)
    while available:
        names = list(available)
        op = rng.choices(names, weights=[available[k] for k in names])[0]
        result = _OPS[op](draft, rng)
        if result is not None:
            return result
        del available[op]
    return None


def operator_of(description: str) -> str:
    """The operator kind (a key of OPERATORS) that a mutate description came from."""
    if description.startswith("crossover:"):
        return "crossover"
    first, _, rest = description.partition(" ")
    if first in ("swap", "flip", *mutate_portfolio.KINDS):
        return first
    if description.startswith("add condition"):
        return "add"
    if description.startswith("drop condition"):
        return "drop"
    if first in ("add", "change", "remove") and rest.split(" ")[0] in N.EXIT_KINDS:
        return "exit"
    if " -> " in description:
        return "move"
    raise ValueError(f"not a mutate description: {description!r}")


# --- header and clean-up -----------------------------------------------------------------------------

_HYPOTHESIS = re.compile(r"#\s*hypothesis\b", re.IGNORECASE)
_LEARNED = re.compile(r"#\s*learned\b", re.IGNORECASE)


def _with_header(statements: list, header: tuple[str, ...], desc: str) -> list:
    """Put the header comments back on the first statement, the hypothesis line first.

    The parent's `# learned:` lines were lessons from its own result, not this variant's.
    """
    rest = header[1:] if header and _HYPOTHESIS.match(header[0]) else header
    rest = tuple(c for c in rest if not _LEARNED.match(c))
    first = statements[0]
    return [replace(first, comments=(f"# hypothesis: {desc}", *rest, *first.comments)), *statements[1:]]


def _uncomment_changed(before: list, after: list) -> list:
    """`after` with no comments on the statements that are not in `before` (they described the old ones).

    Statements compare without their comments, so an unchanged statement keeps its own.
    """
    return [s if any(s == b for b in before) else replace(s, comments=tuple(c for c in s.comments if c == ""),
                                                         trailing="")
            for s in after]


def prune(before: list, after: list) -> list:
    """`after` without the params and bindings the change left unused (they were used before)."""
    gone = reachable(before) - reachable(after)
    if not gone:
        return after
    out, blank = [], False
    for s in after:
        if isinstance(s, (N.Assign, N.Param)) and s.name in gone:
            blank = blank or "" in s.comments  # keep the blank line that separated a group
            continue
        if blank and not s.comments:
            s = replace(s, comments=("",))
        blank = False
        out.append(s)
    return out


# --- add, drop ---------------------------------------------------------------------------------------


def add(d: Draft, rng: random.Random):
    """Add a condition to a rule: `and` for an entry, `and` or `or` for an exit rule."""
    rules = [i for i, s in enumerate(d.statements)
             if isinstance(s, N.Rule) and conditions(s.expr) < MAX_CONDITIONS]
    if not rules:
        return None
    i = rng.choice(rules)
    rule = d.statements[i]
    existing = flatten(rule.expr, "and") + flatten(rule.expr, "or")
    for _ in range(5):
        cond = condition(rng)
        if cond not in existing:
            break
    else:
        return None
    op = "or" if rule.kind in ("sell", "cover") and rng.random() < 0.5 else "and"
    desc = f"add condition {short(cond)} to {rule.kind}" + (" with or" if op == "or" else "")
    return d.with_stmt(i, replace(rule, expr=N.Binary(op, rule.expr, cond))), desc


def condition(rng: random.Random) -> N.Expr:
    """A new condition from a small library of common filters, with random windows and levels."""
    c, r = _series, rng.choice
    cmp = r((">", "<"))
    kind = rng.randrange(14)
    if kind == 0:
        return N.Binary(cmp, c("close"), _call(r(("sma", "ema")), c("close"), r((20, 50, 100, 200))))
    if kind == 1:
        return N.Binary(cmp, _call("rsi", c("close"), r((2, 5, 14))), _num(r((20, 30, 40, 50, 60, 70, 80))))
    if kind == 2:
        return N.Binary(r((">", ">", "<")), _call("adx", r((10, 14, 20))), _num(r((15, 20, 25, 30))))
    if kind == 3:
        return N.Binary(cmp, _call("roc", c("close"), r((5, 10, 20, 60, 126, 252))), _num(0))
    if kind == 4:
        return N.Binary(">", c("volume"), _call("sma", c("volume"), r((10, 20, 50))))
    if kind == 5:
        n = r((10, 20, 55))
        hi = cmp == ">"
        return N.Binary(cmp, c("close"), N.Lag(_call("highest" if hi else "lowest", c("high" if hi else "low"), n), 1))
    if kind == 6:
        return _call(r(("cross_above", "cross_below")), c("close"), _call("sma", c("close"), r((10, 20, 50))))
    if kind == 7:
        return N.Binary(cmp, _call("stoch_k", r((5, 14))), _num(20 if cmp == "<" else 80))
    if kind == 8:
        level = _num(r((1, 1.5, 2)))
        return N.Binary(cmp, _call("zscore", c("close"), r((20, 50))), N.Unary("-", level) if cmp == "<" else level)
    if kind == 9:
        return N.Binary(cmp, c("close"), c("open"))
    if kind == 10:
        return N.Binary(cmp, _call("percent_rank", c("close"), r((50, 100, 252))), _num(r((20, 50, 80))))
    if kind == 11:
        return N.Binary(cmp, _call("macd_hist", c("close"), 12, 26, 9), _num(0))
    if kind == 12:
        n = r((10, 14, 20))
        return N.Binary(cmp, _call("plus_di", n), _call("minus_di", n))
    return N.Binary(cmp, N.Binary("/", _call("atr", r((10, 14, 20))), c("close")), _num(r((1, 2, 3)), True))


def _series(name: str) -> N.Name:
    return N.Name(name)


def _num(x: float, percent: bool = False) -> N.Num:
    return N.Num(float(x), percent)


def _call(func: str, *args) -> N.Call:
    return N.Call(func, tuple(_num(a) if isinstance(a, (int, float)) else a for a in args))


def drop(d: Draft, rng: random.Random):
    """Drop one operand of the top-level and/or chain of a rule or a binding."""
    cands = []
    for i, s in enumerate(d.statements):
        if isinstance(s, (N.Rule, N.Assign)) and (isinstance(s, N.Rule) or s.name in d.reach):
            if isinstance(s.expr, N.Binary) and s.expr.op in N.LOGIC:
                cands.append(i)
    if not cands:
        return None
    i = rng.choice(cands)
    stmt = d.statements[i]
    op = stmt.expr.op
    parts = flatten(stmt.expr, op)
    k = rng.randrange(len(parts))
    gone = parts.pop(k)
    where = stmt.kind if isinstance(stmt, N.Rule) else stmt.name
    return d.with_stmt(i, replace(stmt, expr=chain(op, parts))), f"drop condition {short(gone)} from {where}"


# --- crossover ------------------------------------------------------------------------------------------


def crossover(d: Draft, rng: random.Random):
    """Take a rule (or the exits) from another parent, with the params and bindings it needs."""
    if not d.donors:
        return None
    label, donor = rng.choice(d.donors)
    if any(isinstance(s, N.Hold) for s in d.statements):
        return _portfolio_crossover(d, rng, label, donor)
    mine, theirs = _rules(d.statements), _rules(donor.statements)
    parts = [k for k in ("buy", "sell") if k in theirs]
    if "short" in theirs and "cover" in theirs:
        parts += [k for k in ("short", "cover") if k in mine] or ["short and cover"]
    if any(isinstance(s, N.Exit) for s in [*d.statements, *donor.statements]):
        parts.append("exits")
    if not parts:
        return None
    part = rng.choice(parts)
    kinds = part.split(" and ") if part != "exits" else []
    taken = [s for s in donor.statements if isinstance(s, N.Rule) and s.kind in kinds]
    exits = [s for s in donor.statements if isinstance(s, N.Exit)] if part == "exits" else []
    roots = [s.expr for s in taken] + [e.value for e in exits if isinstance(e.value, N.Name)]
    out = list(d.statements)
    params, assigns, mapping, param_at, assign_at = _imports(out, donor, roots)
    # Edits from the back of the program to the front, so earlier indices stay valid.
    new_rules = [N.Rule(r.kind, rename(r.expr, mapping)) for r in taken]
    if part == "short and cover":
        last = max(i for i, s in enumerate(out) if isinstance(s, N.Rule))
        out[last + 1:last + 1] = new_rules
    else:
        for rule in new_rules:
            i = mine[rule.kind]
            out[i] = replace(rule, comments=out[i].comments)
    out[assign_at:assign_at] = assigns
    out[param_at:param_at] = params
    if part == "exits":
        out = [s for s in out if not isinstance(s, N.Exit)]
        out += [N.Exit(e.kind, rename(e.value, mapping)) for e in exits]
    renamed = [f"{a} to {b}" for a, b in mapping.items() if a != b]
    desc = f"crossover: {part} from {label}" + (f" (renamed {', '.join(renamed)})" if renamed else "")
    return out, desc


def _portfolio_crossover(d: Draft, rng: random.Random, label: str, donor: N.Program):
    """Take another portfolio's ranking (every side of this one then ranks by it), its rebalance
    period or its weighting, with the params and bindings they need."""
    kinds = {"score": N.Hold, "rebalance": N.Rebalance, "weight": N.Weight}
    parts = [k for k, kind in kinds.items() if any(isinstance(s, kind) for s in donor.statements)]
    if not parts:
        return None  # a single-market donor has nothing a portfolio can take
    part = rng.choice(parts)
    theirs = rng.choice([s for s in donor.statements if isinstance(s, kinds[part])])
    root = theirs.every if part == "rebalance" else theirs.by  # a Weight's `by` is None for equal weights
    out = list(d.statements)
    params, assigns, mapping, param_at, assign_at = _imports(out, donor, [root] if root is not None else [])
    if part == "score":
        by = rename(theirs.by, mapping)
        out = [replace(s, by=by) if isinstance(s, N.Hold) else s for s in out]
    else:
        new = replace(theirs, every=rename(theirs.every, mapping)) if part == "rebalance" else \
            replace(theirs, by=rename(theirs.by, mapping) if theirs.by is not None else None)
        new = replace(new, comments=(), trailing="", blank_before=False)
        at = next((i for i, s in enumerate(out) if isinstance(s, kinds[part])), None)
        if at is None:
            out.append(new)
        else:
            out[at] = replace(new, comments=out[at].comments)
    out[assign_at:assign_at] = assigns
    out[param_at:param_at] = params
    renamed = [f"{a} to {b}" for a, b in mapping.items() if a != b]
    what = f"ranking by {theirs.by.id}" if part == "score" else part
    return out, f"crossover: {what} from {label}" + (f" (renamed {', '.join(renamed)})" if renamed else "")


def _rules(statements) -> dict[str, int]:
    out = {}
    for i, s in enumerate(statements):
        if isinstance(s, N.Rule):
            out.setdefault(s.kind, i)
    return out


def _imports(recipient: list, donor: N.Program, roots: list[N.Expr]):
    """The donor's params and bindings that `roots` need, renamed to fit into the recipient.

    A name the recipient already binds the same way before the insertion point is reused; a name
    it binds differently gets a fresh one (`f` -> `f_2`). Returns the new params, the new
    bindings, the renaming, and where each group goes in the recipient (params first).
    """
    defs = {}
    for s in donor.statements:
        if isinstance(s, (N.Param, N.Assign)):
            defs.setdefault(s.name, s)
    need, stack = set(), [n for r in roots for n in _names(r)]
    while stack:
        name = stack.pop()
        if name in need or name not in defs:
            continue
        need.add(name)
        if isinstance(defs[name], N.Assign):
            stack += _names(defs[name].expr)
    first_rule = next((i for i, s in enumerate(recipient) if isinstance(s, N.Rule)), len(recipient))
    head = recipient[:first_rule]
    p_idx = [i for i, s in enumerate(head) if isinstance(s, N.Param)]
    a_idx = [i for i, s in enumerate(head) if isinstance(s, N.Assign)]
    lead = next((i for i, s in enumerate(head) if not isinstance(s, N.StrategyName)), first_rule)
    param_at = p_idx[-1] + 1 if p_idx else lead
    assign_at = max(a_idx[-1] + 1 if a_idx else first_rule, param_at)
    mine = {}
    for i, s in enumerate(recipient):
        if isinstance(s, (N.Param, N.Assign)):
            mine.setdefault(s.name, (i, s))
    taken = set(mine) | set(defs)
    mapping: dict[str, str] = {}
    params, assigns = [], []
    for name, s in defs.items():
        if name not in need:
            continue
        s = N.Param(s.name, s.value, s.lo, s.hi, trailing=s.trailing) if isinstance(s, N.Param) else \
            N.Assign(s.name, rename(s.expr, mapping), trailing=s.trailing)
        limit = param_at if isinstance(s, N.Param) else assign_at
        if name in mine:
            at, theirs = mine[name]
            if theirs == s and at < limit:
                mapping[name] = name
                continue
            fresh = _fresh(name, taken)
            taken.add(fresh)
            mapping[name] = fresh
            s = replace(s, name=fresh)
        else:
            mapping[name] = name
        (params if isinstance(s, N.Param) else assigns).append(s)
    # A blank line above a new group, as in the examples.
    if params and param_at > 0 and not isinstance(recipient[param_at - 1], N.Param):
        params[0] = replace(params[0], comments=("",))
    before = params[-1] if params and param_at == assign_at else recipient[assign_at - 1] if assign_at else None
    if assigns and before is not None and not isinstance(before, N.Assign):
        assigns[0] = replace(assigns[0], comments=("",))
    return params, assigns, mapping, param_at, assign_at


def _names(e: N.Expr) -> list[str]:
    return [n.id for n in N.walk(e) if isinstance(n, N.Name)]


def _fresh(name: str, taken: set[str]) -> str:
    i = 2
    while f"{name}_{i}" in taken or is_reserved(f"{name}_{i}"):
        i += 1
    return f"{name}_{i}"


_OPS = {"move": move, "swap": swap, "flip": flip, "add": add, "drop": drop, "exit": exit_,
        "crossover": crossover, **mutate_portfolio.OPS}
