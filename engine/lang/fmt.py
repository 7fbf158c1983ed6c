"""The canonical text of a program, and its canonical hash.

`fmt` is a pure function in the manner of black: the output parses to an equal AST, formatting
twice changes nothing, comments are kept. Layout: one statement per line, single spaces around
binary operators, minimal parentheses (plus parentheses around a compound operand of `not`, for
the reader), numbers in their shortest exact form, a blank line kept where the source had one.

`canonical_hash` identifies what a program evaluates: names are inlined, params replaced by
their values, and comments, whitespace, parentheses, the strategy's name and param ranges ignored.
The search loop uses it to reject duplicates without spending a backtest.
"""

from __future__ import annotations

import hashlib

from autostrat.lang import nodes as N

# Binding strength, loosest first; matches grammar/strategy.lark.
_PREC = {"or": 1, "and": 2, "not": 3, "<": 4, "<=": 4, ">": 4, ">=": 4, "==": 4, "!=": 4,
         "+": 5, "-": 5, "*": 6, "/": 6}
_NEG, _LAG, _ATOM = 7, 8, 9


def _prec(e: N.Expr) -> int:
    if isinstance(e, N.Binary):
        return _PREC[e.op]
    if isinstance(e, N.Unary):
        return _PREC["not"] if e.op == "not" else _NEG
    if isinstance(e, N.Lag):
        return _LAG
    if isinstance(e, N.Num) and e.literal < 0:
        return _NEG
    return _ATOM


def number(n: N.Num) -> str:
    """A number literal in its shortest form that reads back to the same value."""
    lit = n.literal
    if float(lit).is_integer() and abs(lit) < 1e16:  # parsed literals are at most 1e15
        text = str(int(lit))
    else:
        text = repr(float(lit))
        if "e" in text:
            mantissa, exp = text.split("e")
            text = f"{mantissa}e{int(exp)}"
    return text + ("%" if n.percent else "")


def expr(e: N.Expr) -> str:
    """The canonical text of an expression."""
    if isinstance(e, N.Num):
        return number(e)
    if isinstance(e, N.Bool):
        return "true" if e.value else "false"
    if isinstance(e, N.Name):
        return e.id
    if isinstance(e, N.Call):
        return f"{e.func}({', '.join(expr(a) for a in e.args)})"
    if isinstance(e, N.Lag):
        inner = expr(e.expr)
        return f"({inner})[{e.n}]" if _prec(e.expr) < _LAG else f"{inner}[{e.n}]"
    if isinstance(e, N.Unary):
        inner = expr(e.operand)
        if e.op == "not":
            compound = isinstance(e.operand, N.Binary)
            return f"not ({inner})" if compound else f"not {inner}"
        wrap = _prec(e.operand) < _NEG or isinstance(e.operand, N.Unary) or (
            isinstance(e.operand, N.Num) and e.operand.literal < 0)
        return f"-({inner})" if wrap else f"-{inner}"
    if isinstance(e, N.Binary):
        p = _PREC[e.op]
        left, right = expr(e.left), expr(e.right)
        # Left-associative: a looser left operand needs parentheses, a right operand as loose as
        # the operator does too; comparisons do not chain, so both sides of one need them.
        if _prec(e.left) < p or (p == 4 and _prec(e.left) == 4):
            left = f"({left})"
        if _prec(e.right) <= p:
            right = f"({right})"
        return f"{left} {e.op} {right}"
    raise TypeError(f"not an expression node: {e!r}")


def statement(s: N.Statement) -> str:
    """The canonical text of one statement, without its comments."""
    if isinstance(s, N.StrategyName):
        return f'strategy "{s.name}"'
    if isinstance(s, N.Param):
        text = f"param {s.name} = {number(s.value)}"
        if s.lo is not None and s.hi is not None:
            text += f" in {number(s.lo)}..{number(s.hi)}"
        return text
    if isinstance(s, N.Assign):
        return f"{s.name} = {expr(s.expr)}"
    if isinstance(s, N.Rule):
        return f"{s.kind} when {expr(s.expr)}"
    if isinstance(s, N.Exit):
        return f"{s.kind} {expr(s.value)}"
    if isinstance(s, N.Hold):
        return f"hold {s.side} {s.edge} {number(s.fraction)} by {s.by.id}"
    if isinstance(s, N.Rebalance):
        return f"rebalance every {expr(s.every)} bars"
    if isinstance(s, N.Weight):
        text = f"weight by {s.by.id}" if s.by is not None else "weight equal"
        return text + (f" capped at {number(s.cap)}" if s.cap is not None else "")
    raise TypeError(f"not a statement: {s!r}")


def fmt(program: N.Program) -> str:
    """The canonical text of a program, comments and single blank lines kept."""
    out: list[str] = []
    for s in program.statements:
        for c in s.comments:
            if c == "" and (not out or out[-1] == ""):
                continue
            out.append(c.strip())
        line = statement(s)
        if s.trailing:
            line += "  " + s.trailing.strip()
        out.append(line)
    for c in program.end_comments:
        if c == "" and (not out or out[-1] == ""):
            continue
        out.append(c.strip())
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


# --- canonical hash ---------------------------------------------------------------------------


def _value(v: float) -> str:
    # -0 and 0 evaluate alike (x/0 and x/-0 are both NaN), so they hash alike.
    return repr(float(v) + 0.0)


def canonical_hash(program: N.Program) -> str:
    """A hex digest that is equal exactly when two programs evaluate the same rules and exits."""
    params = {s.name: s.value.value for s in program.statements if isinstance(s, N.Param)}
    bound: dict[str, str] = {}
    memo: dict[int, str] = {}

    def h(e: N.Expr) -> str:
        key = id(e)
        if key in memo:
            return memo[key]
        if isinstance(e, N.Num):
            text = f"n{_value(e.value)}"
        elif isinstance(e, N.Bool):
            text = f"b{int(e.value)}"
        elif isinstance(e, N.Name):
            if e.id in params:
                text = f"n{_value(params[e.id])}"
            elif e.id in bound:
                return bound[e.id]
            else:
                text = f"s{e.id}"
        elif isinstance(e, N.Unary) and e.op == "-" and isinstance(e.operand, N.Num):
            text = f"n{_value(-e.operand.value)}"
        elif isinstance(e, N.Unary):
            text = f"u{e.op}({h(e.operand)})"
        elif isinstance(e, N.Binary):
            text = f"{e.op}({h(e.left)},{h(e.right)})"
        elif isinstance(e, N.Lag) and e.n == 0:  # x[0] is x
            return h(e.expr)
        elif isinstance(e, N.Lag):
            text = f"lag{e.n}({h(e.expr)})"
        else:
            text = f"{e.func}({','.join(h(a) for a in e.args)})"
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        memo[key] = digest
        return digest

    parts = []
    for s in program.statements:
        if isinstance(s, N.Assign):
            bound[s.name] = h(s.expr)
        elif isinstance(s, N.Rule):
            parts.append(f"{s.kind}:{h(s.expr)}")
        elif isinstance(s, N.Exit):
            value = params.get(s.value.id, s.value.id) if isinstance(s.value, N.Name) else s.value.value
            parts.append(f"{s.kind}:{_value(value) if isinstance(value, float) else value}")
        elif isinstance(s, N.Hold):
            parts.append(f"hold:{s.side}:{s.edge}:{_value(s.fraction.value)}:{h(s.by)}")
        elif isinstance(s, N.Rebalance):
            every = params.get(s.every.id, s.every.id) if isinstance(s.every, N.Name) else s.every.value
            parts.append(f"rebalance:{_value(every) if isinstance(every, float) else every}")
        elif isinstance(s, N.Weight) and (s.by is not None or s.cap is not None):  # `weight equal` is the default
            by = h(s.by) if s.by is not None else "equal"
            parts.append(f"weight:{by}:{_value(s.cap.value) if s.cap is not None else 'none'}")
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:20]
