"""Check a parsed program: names, types, arity, windows, rules and exits; compute its warm-up.

Every expression is a number series or a boolean series. Rules need booleans, arithmetic needs
numbers, window arguments are integer literals or integer params within 1..max_lookback. Names
are bound once, before use, and may not shadow built-ins. All problems are reported together, in
the one error format, so a model repairing a strategy sees every one at once.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field

from autostrat.errors import Diagnostic, StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.parse import MAX_DEPTH, MAX_NODES, MAX_STATEMENTS
from autostrat.lang.portfolio import PortfolioSpec, check_portfolio, cross_sectional_misuse, not_here
from autostrat.lang.registry import BOOL, BUILTINS, KEYWORDS, MAX_LOOKBACK, NUM, SERIES, lookback

_UNKNOWN = "unknown"  # the type of an expression already reported, to avoid cascades


@dataclass(frozen=True)
class TypedProgram:
    """A program that passed the checker, with what later stages need resolved."""

    program: N.Program
    params: dict[str, N.Param]
    bindings: dict[str, N.Expr]  # bound name -> expression
    types: dict[str, str]  # bound name or param -> NUM / BOOL
    rules: dict[str, N.Expr]  # buy sell [short cover] -> condition
    exits: dict[str, float]  # stop_loss/take_profit/trailing_stop as fractions, max_hold as bars
    warmup: int  # bars before every rule can be valid; rules are ignored before it
    max_lookback: int = MAX_LOOKBACK
    param_values: dict[str, float] = field(default_factory=dict)
    portfolio: PortfolioSpec | None = None  # a portfolio strategy's holds (then `rules` is empty)

    @property
    def name(self) -> str:
        """The strategy's name, or empty."""
        return self.program.name


class _Checker:
    def __init__(self, program: N.Program, max_lookback: int, portfolio: bool = False):
        self.program = program
        self.portfolio = portfolio
        self.max_lookback = max_lookback
        self.diags: list[Diagnostic] = []
        self.params: dict[str, N.Param] = {}
        self.bindings: dict[str, N.Expr] = {}
        self.types: dict[str, str] = {}
        self.bound_at: dict[str, int] = {}
        self.lookbacks: dict[str, int] = {}
        self.binding: str | None = None  # the name whose definition is being checked

    @functools.cached_property
    def lines(self) -> list[str]:  # split only when needed: variants that pass never need it
        return self.program.source.split("\n") if self.program.source else []

    # --- reporting ---------------------------------------------------------------------------
    def error(self, span: N.Span, message: str, hint: str = "") -> None:
        line = span.line
        src = self.lines[line - 1].rstrip("\r") if 0 < line <= len(self.lines) else ""
        self.diags.append(Diagnostic(message, line, span.column, hint, self.program.path, src))

    def _suggest(self, name: str, options) -> str:
        near = difflib.get_close_matches(name, sorted(options), n=1, cutoff=0.6)
        return f"did you mean '{near[0]}'?" if near else ""

    # --- statements --------------------------------------------------------------------------
    def run(self) -> TypedProgram:
        prog = self.program
        if len(prog.statements) > MAX_STATEMENTS:
            self.error(N.NO_SPAN, f"strategy has {len(prog.statements)} statements; the limit is {MAX_STATEMENTS}")
            raise StrategyError(self.diags)
        rules: dict[str, N.Expr] = {}
        rule_stmts: dict[str, N.Rule] = {}
        exits: dict[str, float] = {}
        exit_stmts: list[N.Exit] = []
        portfolio_stmts: list = []
        names_seen = 0
        for stmt in prog.statements:
            if isinstance(stmt, N.StrategyName):
                names_seen += 1
                if names_seen > 1:
                    self.error(stmt.span, "a strategy has one name; this is the second `strategy` line")
            elif isinstance(stmt, N.Param):
                self.param(stmt)
            elif isinstance(stmt, N.Assign):
                self.assign(stmt)
            elif isinstance(stmt, N.Rule):
                if stmt.kind in rule_stmts:
                    first = rule_stmts[stmt.kind].span.line
                    self.error(stmt.span, f"second `{stmt.kind} when` rule (the first is on line {first})",
                               f"combine the conditions with or: {stmt.kind} when <first> or <second>")
                    continue
                rule_stmts[stmt.kind] = stmt
                kind = self.expr(stmt.expr)
                if kind == NUM:
                    self.error(stmt.expr.span, f"the {stmt.kind} rule is a number, not a condition",
                               "compare it to something, e.g. rsi(close, 14) < 30")
                rules[stmt.kind] = stmt.expr
            elif isinstance(stmt, N.Exit):
                if stmt.kind in exits:
                    self.error(stmt.span, f"second `{stmt.kind}` exit; a strategy has at most one of each")
                    continue
                exit_stmts.append(stmt)
                exits[stmt.kind] = self.exit(stmt)
            elif isinstance(stmt, N.PORTFOLIO_STATEMENTS):
                portfolio_stmts.append(stmt)
        # A missing rule has no place in the text: point below the last line, where it would go.
        content = [i for i, text in enumerate(self.lines, 1) if text.strip()]
        end = N.Span(content[-1] + 1 if content else 1, 1)
        if prog.is_portfolio and not self.portfolio:
            not_here(self, portfolio_stmts[0])
        if prog.is_portfolio:
            spec = check_portfolio(self, portfolio_stmts, rule_stmts, exit_stmts, end)
            if self.diags:
                raise StrategyError(self.diags)
            warmup = max(self.lookbacks.get(name, 0) for name in spec.scores)
            return TypedProgram(prog, self.params, self.bindings, self.types, {}, {}, warmup, self.max_lookback,
                                {k: p.value.value for k, p in self.params.items()}, spec)
        for kind in ("buy", "sell"):
            if kind not in rules:
                self.error(end, f"missing `{kind} when` rule",
                           f"every strategy needs both: add a line `{kind} when <condition>`")
        if ("short" in rules) != ("cover" in rules):
            have, need = ("short", "cover") if "short" in rules else ("cover", "short")
            self.error(rule_stmts[have].span, f"`{have} when` needs a `{need} when` rule too",
                       "short selling takes both an entry (short) and an exit (cover) rule")
        if self.diags:
            raise StrategyError(self.diags)
        warmup = max(self.lookback(e) for e in rules.values())
        return TypedProgram(prog, self.params, self.bindings, self.types, rules, exits, warmup,
                            self.max_lookback, {k: p.value.value for k, p in self.params.items()})

    def bind(self, name: str, span: N.Span) -> bool:
        if name in BUILTINS:
            self.error(span, f"'{name}' is a built-in function; choose another name")
            return False
        if name in SERIES:
            self.error(span, f"'{name}' is a price series; choose another name")
            return False
        if name in KEYWORDS:
            self.error(span, f"'{name}' is a keyword; choose another name")
            return False
        if name in self.types:
            self.error(span, f"'{name}' is already bound on line {self.bound_at[name]}; names are bound once",
                       "choose a new name for the new value")
            return False
        self.bound_at[name] = span.line
        return True

    def param(self, p: N.Param) -> None:
        if not self.bind(p.name, p.span):
            return
        self.params[p.name] = p
        self.types[p.name] = NUM
        self.lookbacks[p.name] = 0
        self.param_range(p)

    def param_range(self, p: N.Param) -> None:
        if p.lo is not None and p.hi is not None:
            lo, hi, v = p.lo.value, p.hi.value, p.value.value
            if lo > hi:
                self.error(p.lo.span or p.span, f"param {p.name}: range {_num(p.lo)}..{_num(p.hi)} is empty",
                           "write the range low..high")
            elif not lo <= v <= hi:
                self.error(p.value.span or p.span, f"param {p.name} = {_num(p.value)} is outside its range "
                           f"{_num(p.lo)}..{_num(p.hi)}", "move the value into the range or widen it")

    def assign(self, a: N.Assign) -> None:
        before = len(self.diags)
        self.binding = a.name
        kind = self.expr(a.expr)
        self.binding = None
        clean = len(self.diags) == before
        if self.bind(a.name, a.span):
            self.bindings[a.name] = a.expr
            self.types[a.name] = kind
            self.lookbacks[a.name] = self.lookback(a.expr) if clean else 0

    def exit(self, e: N.Exit) -> float:
        # Errors point at the exit's own value (the literal, or the param's name), not at the
        # param's declaration; the message names the param.
        v, where, what = e.value, e.value.span, ""
        if isinstance(v, N.Name):
            if v.id not in self.params:
                hint = self._suggest(v.id, self.params) or f"declare it first: param {v.id} = 8% in 2%..20%"
                self.error(where, f"{e.kind} takes a number or a param; '{v.id}' is not a param", hint)
                return 0.0
            what = f" (param {v.id})"
            v = self.params[v.id].value
        if e.kind == "max_hold":
            if v.percent or not float(v.literal).is_integer() or not 1 <= v.literal <= 100_000:
                self.error(where, f"max_hold takes a whole number of bars from 1 to 100000, got {_num(v)}{what}")
            return float(v.value)
        top = 10.0 if e.kind == "take_profit" else 1.0
        if not 0 < v.value <= top:
            hint = f"write a percentage, e.g. {e.kind} 8%"
            if v.value > top and not v.percent:
                hint = f"{_num(v)} means {v.value:.0%}; write {_num(v)}% for {v.literal:g} percent"
            self.error(where, f"{e.kind} {_num(v)}{what} is out of range (more than 0, at most {top:.0%})", hint)
        return float(v.value)

    # --- expressions -------------------------------------------------------------------------
    def expr(self, e: N.Expr) -> str:
        if e.depth > MAX_DEPTH or e.size > MAX_NODES:
            self.error(e.span, f"expression exceeds the limits (depth {MAX_DEPTH}, {MAX_NODES} parts)")
            return _UNKNOWN
        return self._type(e)

    def _type(self, e: N.Expr) -> str:
        if isinstance(e, N.Num):
            return NUM
        if isinstance(e, N.Bool):
            return BOOL
        if isinstance(e, N.Name):
            return self.name(e)
        if isinstance(e, N.Lag):
            if e.n > self.max_lookback:
                self.error(e.span, f"lag [{e.n}] is longer than the maximum lookback {self.max_lookback}")
            return self._type(e.expr)
        if isinstance(e, N.Unary):
            want = NUM if e.op == "-" else BOOL
            got = self._type(e.operand)
            if got not in (want, _UNKNOWN):
                if e.op == "-":
                    self.error(e.span, "'-' negates a number, not a condition")
                else:
                    self.error(e.span, "`not` needs a condition, got a number",
                               "compare the number first, e.g. not (close > open)")
                return _UNKNOWN
            return want
        if isinstance(e, N.Binary):
            return self.binary(e)
        if isinstance(e, N.Call):
            return self.call(e)
        raise TypeError(f"not an expression node: {e!r}")

    def name(self, e: N.Name) -> str:
        if e.id in SERIES:
            return NUM
        if e.id in self.types:
            return self.types[e.id]
        if e.id in BUILTINS:
            b = BUILTINS[e.id]
            self.error(e.span, f"'{e.id}' is a function; call it: {b.signature}")
            return _UNKNOWN
        if e.id in KEYWORDS:
            self.error(e.span, f"'{e.id}' is a keyword, not a value", "did a word go missing before or after it?")
            return _UNKNOWN
        later = [s for s in self.program.statements if getattr(s, "name", None) == e.id
                 and isinstance(s, (N.Assign, N.Param))]
        if later and self.binding == e.id:
            self.error(e.span, f"'{e.id}' is used in its own definition",
                       "a name is bound once; use a lag of an existing series, e.g. close[1], or a new name")
        elif later:
            self.error(e.span, f"'{e.id}' is used before it is bound (on line {later[0].span.line})",
                       "move its definition above this line")
        elif e.id.lower() in KEYWORDS or e.id.lower() in SERIES:
            self.error(e.span, f"unknown name '{e.id}'", f"names are case-sensitive: write '{e.id.lower()}'")
        else:
            hint = self._suggest(e.id, set(SERIES) | set(self.types)) or (
                "the price series are open high low close volume; bind other names first: name = expr")
            self.error(e.span, f"unknown name '{e.id}'", hint)
        return _UNKNOWN

    def binary(self, e: N.Binary) -> str:
        lt, rt = self._type(e.left), self._type(e.right)
        if _UNKNOWN in (lt, rt):
            return _UNKNOWN
        if e.op in N.LOGIC:
            for side, t in ((e.left, lt), (e.right, rt)):
                if t != BOOL:
                    self.error(side.span, f"`{e.op}` combines conditions; this side is a number",
                               "compare it first, e.g. close > sma(close, 50)")
                    return _UNKNOWN
            return BOOL
        for side, t in ((e.left, lt), (e.right, rt)):
            if t != NUM:
                what = "compares numbers" if e.op in N.COMPARISONS else "works on numbers"
                self.error(side.span, f"'{e.op}' {what}; this side is a condition",
                           "use and / or / not to combine conditions, or if_else(c, 1, 0) to turn one into a number")
                return _UNKNOWN
        return BOOL if e.op in N.COMPARISONS else NUM

    def call(self, e: N.Call) -> str:
        b = BUILTINS.get(e.func)
        if b is None:
            hint = self._suggest(e.func, BUILTINS) or "see `autostrat reference` for the built-in functions"
            self.error(e.span, f"unknown function '{e.func}'", hint)
            for a in e.args:
                self._type(a)
            return _UNKNOWN
        if b.cross_sectional and not self.program.is_portfolio:
            cross_sectional_misuse(self, e)
        if len(e.args) != len(b.params):
            self.error(e.span, f"{e.func} takes {len(b.params)} argument{'s' if len(b.params) != 1 else ''} "
                       f"({', '.join(b.params)}), got {len(e.args)}", f"usage: {b.signature}")
            return b.result
        ok = True
        for arg, pname, kind in zip(e.args, b.params, b.kinds):
            if kind == "n":
                ok &= self.window(arg, e.func, pname) is not None
            elif kind == "k":
                ok &= self.constant(arg, e.func, pname) is not None
            else:
                want = BOOL if kind == "c" else NUM
                got = self._type(arg)
                if got not in (want, _UNKNOWN):
                    what = "a condition" if want == BOOL else "a number series"
                    self.error(arg.span, f"argument {pname} of {e.func} must be {what}, got "
                               f"{'a condition' if got == BOOL else 'a number series'}", f"usage: {b.signature}")
                    ok = False
        return b.result

    def window(self, arg: N.Expr, func: str, pname: str) -> int | None:
        """A window: an integer literal or integer param within 1..max_lookback."""
        limit = self.max_lookback
        if isinstance(arg, N.Num) and not arg.percent and float(arg.literal).is_integer():
            if 1 <= arg.literal <= limit:
                return int(arg.literal)
            self.error(arg.span, f"window {pname} of {func} is {_num(arg)}; it must be from 1 to {limit}")
            return None
        if isinstance(arg, N.Num):
            self.error(arg.span, f"window {pname} of {func} is {_num(arg)}; it must be a whole number of bars "
                       f"from 1 to {limit}")
            return None
        if isinstance(arg, N.Unary) and arg.op == "-" and isinstance(arg.operand, N.Num):
            self.error(arg.span, f"window {pname} of {func} is -{_num(arg.operand)}; it must be from 1 to {limit}")
            return None
        if isinstance(arg, N.Name) and arg.id not in self.params and self._reported(arg):
            return None
        if isinstance(arg, N.Name) and arg.id in self.params:
            p = self.params[arg.id]
            if not p.is_int:
                self.error(arg.span, f"window {pname} of {func} uses param {p.name}, which is not a whole number",
                           f"declare it with whole numbers: param {p.name} = 20 in 5..100")
                return None
            lo = p.lo.value if p.lo is not None else p.value.value
            hi = p.hi.value if p.hi is not None else p.value.value
            if lo < 1 or hi > limit:
                self.error(arg.span, f"window {pname} of {func} uses param {p.name}, whose range must lie "
                           f"within 1..{limit}")
                return None
            return int(p.value.value)
        self.error(arg.span, f"window {pname} of {func} must be a constant: an integer literal or an integer param",
                   f"e.g. {func}(..., 20), or declare `param {pname} = 20 in 5..100` and use {pname}")
        self._type(arg)
        return None

    def constant(self, arg: N.Expr, func: str, pname: str) -> float | None:
        """A number constant: a literal (possibly negated) or a param."""
        if isinstance(arg, N.Num):
            return arg.value
        if isinstance(arg, N.Unary) and arg.op == "-" and isinstance(arg.operand, N.Num):
            return -arg.operand.value
        if isinstance(arg, N.Name) and arg.id in self.params:
            return self.params[arg.id].value.value
        if isinstance(arg, N.Name) and self._reported(arg):
            return None
        self.error(arg.span, f"argument {pname} of {func} must be a number constant (a literal or a param)",
                   f"e.g. {func}(close, 20, 2)")
        self._type(arg)
        return None

    def _reported(self, arg: N.Name) -> bool:
        """Type a name that cannot be a constant; True when that reported it (unknown, unbound)."""
        before = len(self.diags)
        self._type(arg)
        return len(self.diags) > before

    # --- warm-up -----------------------------------------------------------------------------
    def lookback(self, e: N.Expr) -> int:
        """Leading bars an expression needs before it can be valid (static)."""
        return warmup_bars(e, self.lookbacks, self._window_value)

    def _window_value(self, arg: N.Expr) -> int:
        if isinstance(arg, N.Num):
            return int(arg.literal)
        return int(self.params[arg.id].value.value)


def warmup_bars(e: N.Expr, lookbacks: dict, window_value, maximum=max):
    """Leading bars `e` needs: `lookbacks` of the names it reads, `window_value(arg)` of a window.

    With int64 arrays as window values and lookbacks and `np.maximum`, the warm-ups of many param
    variants at once (autostrat.lang.variants.GridVariants), by the same rules.
    """
    if isinstance(e, (N.Num, N.Bool)):
        return 0
    if isinstance(e, N.Name):
        return lookbacks.get(e.id, 0)
    if isinstance(e, N.Lag):
        return e.n + warmup_bars(e.expr, lookbacks, window_value, maximum)
    if isinstance(e, N.Unary):
        return warmup_bars(e.operand, lookbacks, window_value, maximum)
    if isinstance(e, N.Binary):
        return maximum(warmup_bars(e.left, lookbacks, window_value, maximum),
                       warmup_bars(e.right, lookbacks, window_value, maximum))
    b = BUILTINS[e.func]
    values, inner = {}, 0
    for arg, pname, kind in zip(e.args, b.params, b.kinds):
        if kind == "n":
            values[pname] = window_value(arg)
        elif kind in "xc":
            inner = maximum(inner, warmup_bars(arg, lookbacks, window_value, maximum))
    return inner + lookback(b, values, maximum)


def _num(n: N.Num) -> str:
    text = f"{int(n.literal)}" if float(n.literal).is_integer() else repr(n.literal)
    return text + ("%" if n.percent else "")


def check(program: N.Program, max_lookback: int = MAX_LOOKBACK, portfolio: bool = False) -> TypedProgram:
    """Check a parsed program; return the TypedProgram or raise StrategyError with every problem.

    A portfolio strategy passes only with `portfolio=True`, where its caller can evaluate one (on
    a universe); elsewhere its hold statement is an error that says so.
    """
    return _Checker(program, max_lookback, portfolio).run()


def load(text: str, path: str | None = None, max_lookback: int = MAX_LOOKBACK, portfolio: bool = False) -> TypedProgram:
    """Parse and check in one call."""
    from autostrat.lang.parse import parse

    return check(parse(text, path), max_lookback, portfolio)
