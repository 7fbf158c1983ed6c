"""The strategy language's AST: frozen dataclasses, one per grammar alias.

Every node carries a source `span` (excluded from equality, so that `parse(fmt(p)) == p`).
Expression nodes also carry their nesting `depth` and node count `size`, computed from their
children when built; the parser enforces the limits on those without recursion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Span:
    """1-based start line/column and end line/column of a node in its source text."""

    line: int = 0
    column: int = 0
    end_line: int = 0
    end_column: int = 0


NO_SPAN = Span()


def _meta(expr: "Expr") -> tuple[int, int]:
    return expr.depth, expr.size


class _Node:
    def _children(self) -> tuple["Expr", ...]:
        return ()

    def __post_init__(self):
        kids = self._children()
        depth = 1 + max((k.depth for k in kids), default=0)
        size = 1 + sum(k.size for k in kids)
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "size", size)


@dataclass(frozen=True)
class Num(_Node):
    """A number literal as written: `literal` is the figure, `percent` whether it had a % sign."""

    literal: float
    percent: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)

    @property
    def value(self) -> float:
        """The number's value (`5%` is 0.05)."""
        return self.literal / 100.0 if self.percent else self.literal


@dataclass(frozen=True)
class Bool(_Node):
    """`true` or `false`: a constant boolean series."""

    value: bool
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)


@dataclass(frozen=True)
class Name(_Node):
    """A reference: a price series (open high low close volume), a param or a bound name."""

    id: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)


@dataclass(frozen=True)
class Call(_Node):
    """A built-in function call."""

    func: str
    args: tuple["Expr", ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)

    def _children(self):
        return self.args


@dataclass(frozen=True)
class Lag(_Node):
    """`expr[n]`: the value n bars earlier (n a non-negative integer literal)."""

    expr: "Expr"
    n: int
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)

    def _children(self):
        return (self.expr,)


@dataclass(frozen=True)
class Unary(_Node):
    """`-x` (op "-") or `not c` (op "not")."""

    op: str
    operand: "Expr"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)

    def _children(self):
        return (self.operand,)


@dataclass(frozen=True)
class Binary(_Node):
    """Arithmetic (+ - * /), comparison (< <= > >= == !=) or logic (and, or)."""

    op: str
    left: "Expr"
    right: "Expr"
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    depth: int = field(default=1, compare=False, repr=False)
    size: int = field(default=1, compare=False, repr=False)

    def _children(self):
        return (self.left, self.right)


Expr = Union[Num, Bool, Name, Call, Lag, Unary, Binary]

ARITHMETIC = ("+", "-", "*", "/")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
LOGIC = ("and", "or")


# --- statements -----------------------------------------------------------------------------
# `comments` are the own-line comments just above a statement, `trailing` the comment at the end
# of its line, `blank_before` whether a blank line separates it from the previous one. They are
# layout, not meaning: excluded from equality and from the canonical hash.


@dataclass(frozen=True)
class _Stmt:
    pass


def _layout():
    return field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class StrategyName(_Stmt):
    """`strategy "name"`."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True)
class Param(_Stmt):
    """`param NAME = VALUE [in LO..HI]`: a tunable constant with its search range."""

    name: str
    value: Num
    lo: Num | None = None
    hi: Num | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)

    @property
    def is_int(self) -> bool:
        """Integer params (whole value and bounds, no %) may be used as windows."""
        nums = [n for n in (self.value, self.lo, self.hi) if n is not None]
        return all(not n.percent and float(n.literal).is_integer() for n in nums)


@dataclass(frozen=True)
class Assign(_Stmt):
    """`NAME = expr`: binds a name once."""

    name: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True)
class Rule(_Stmt):
    """`buy|sell|short|cover when expr`."""

    kind: str
    expr: Expr
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True)
class Exit(_Stmt):
    """`stop_loss P%`, `take_profit P%`, `trailing_stop P%` or `max_hold N`; the value may be a param."""

    kind: str
    value: Num | Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True)
class Hold(_Stmt):
    """`hold long|short top|bottom P% by NAME`: a portfolio side, the assets ranked by NAME."""

    side: str  # long | short
    edge: str  # top | bottom
    fraction: Num
    by: Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True)
class Rebalance(_Stmt):
    """`rebalance every N bars`; N may be a param."""

    every: Num | Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


@dataclass(frozen=True)
class Weight(_Stmt):
    """`weight equal` or `weight by NAME`, optionally `capped at P%`."""

    by: Name | None = None  # None: equal weights
    cap: Num | None = None
    span: Span = field(default=NO_SPAN, compare=False, repr=False)
    comments: tuple[str, ...] = _layout()
    trailing: str = field(default="", compare=False, repr=False)
    blank_before: bool = field(default=False, compare=False, repr=False)


Statement = Union[StrategyName, Param, Assign, Rule, Exit, Hold, Rebalance, Weight]
PORTFOLIO_STATEMENTS = (Hold, Rebalance, Weight)

RULE_KINDS = ("buy", "sell", "short", "cover")
EXIT_KINDS = ("stop_loss", "take_profit", "trailing_stop", "max_hold")


@dataclass(frozen=True)
class Program:
    """A parsed strategy: its statements in source order, and the comments after the last one."""

    statements: tuple[Statement, ...]
    path: str = field(default="<strategy>", compare=False, repr=False)
    end_comments: tuple[str, ...] = field(default=(), compare=False, repr=False)
    source: str = field(default="", compare=False, repr=False)

    @property
    def name(self) -> str:
        """The `strategy "..."` name, or empty."""
        for s in self.statements:
            if isinstance(s, StrategyName):
                return s.name
        return ""

    @property
    def header_comments(self) -> tuple[str, ...]:
        """The comment lines at the top of the file (the hypothesis, by convention)."""
        if self.statements:
            return self.statements[0].comments
        return self.end_comments

    def rules(self) -> dict[str, Rule]:
        """The rule statements by kind (buy, sell, short, cover)."""
        return {s.kind: s for s in self.statements if isinstance(s, Rule)}

    def params(self) -> dict[str, Param]:
        """The param statements by name."""
        return {s.name: s for s in self.statements if isinstance(s, Param)}

    def exits(self) -> dict[str, Exit]:
        """The exit statements by kind."""
        return {s.kind: s for s in self.statements if isinstance(s, Exit)}

    @property
    def is_portfolio(self) -> bool:
        """Whether the program is a portfolio strategy (it has a hold, rebalance or weight statement)."""
        return any(isinstance(s, PORTFOLIO_STATEMENTS) for s in self.statements)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of an expression node."""
    return expr._children()


def walk(expr: Expr):
    """Every node of an expression, parents before children (iterative: no recursion limit)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node._children()))
