"""Parse strategy text into the AST (autostrat.lang.nodes), with the project's one error format.

The grammar is grammar/strategy.lark (LALR). The transformer runs inline, during the parse, so no
step walks the tree by Python recursion: the limits on nesting depth and expression size are
enforced as nodes are built, and pathological inputs fail fast with a limit error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput

from autostrat.lang import nodes as N
from autostrat.lang.parse_errors import (MAX_DEPTH, MAX_NODES, MAX_NUMBER, MAX_SOURCE_BYTES, MAX_STATEMENTS,
                                         PORTFOLIO_FORMS, TOO_BIG, TOO_BIG_HINT, TOO_DEEP_HINT, TOO_MANY_HINT, explain,
                                         located_error, prescan, too_deep, too_many, unknown_statement)
from autostrat.resources import grammar_path


class _Fail(Exception):
    """Raised inside the transformer; turned into a StrategyError with the source line."""

    def __init__(self, message: str, line: int, column: int, hint: str = ""):
        super().__init__(message)
        self.message, self.line, self.column, self.hint = message, line, column, hint


def _span_of(items) -> N.Span:
    first = last = None
    for it in items:
        if it is None:
            continue
        s = it.span if hasattr(it, "span") else N.Span(it.line, it.column, it.end_line, it.end_column)
        if not s.line:
            continue
        first = first or s
        last = s
    if first is None:
        return N.NO_SPAN
    return N.Span(first.line, first.column, last.end_line, last.end_column)


def _limit(node):
    if node.depth > MAX_DEPTH:
        s = node.span
        raise _Fail(too_deep(node.depth), s.line, s.column, TOO_DEEP_HINT)
    if node.size > MAX_NODES:
        s = node.span
        raise _Fail(TOO_BIG, s.line, s.column, TOO_BIG_HINT)
    return node


def _number(tok: Token) -> N.Num:
    text = str(tok)
    percent = text.endswith("%")
    literal = float(text[:-1] if percent else text)
    if not math.isfinite(literal) or abs(literal) > MAX_NUMBER:
        raise _Fail(f"number {text} is out of range (magnitude at most {MAX_NUMBER:g})", tok.line, tok.column)
    if literal == 0 and any(c in "123456789" for c in text.lower().split("e")[0]):
        raise _Fail(f"number {text} is too small to hold: it would read as 0; write 0 if you mean it",
                    tok.line, tok.column)
    return N.Num(literal, percent, span=_span_of([tok]))


def _portfolio(tokens: list[Token]):
    """A hold, rebalance or weight statement from the names and numbers the grammar read."""
    first = tokens[0]
    if str(first) not in PORTFOLIO_FORMS:
        raise _Fail(*unknown_statement(str(first), first.line, first.column))
    usage, forms = PORTFOLIO_FORMS[str(first)]
    rest = tokens[1:]
    key = ""
    if str(first) == "weight":  # which of its forms: by the word after it, and whether a cap follows
        lead = str(rest[0])
        if lead not in ("equal", "by"):
            raise _Fail(f"unexpected '{lead}' (expected 'equal' or 'by')", rest[0].line, rest[0].column, f"write {usage}")
        key = lead
        key += " capped" if len(rest) > (2 if key == "by" else 1) else ""
    form = forms[key]
    for i, want in enumerate(form):
        if i >= len(rest):
            last = tokens[-1]
            raise _Fail("the statement ends too early", last.line, last.end_column, f"write {usage}")
        tok = rest[i]
        is_number = tok.type == "NUMBER"
        if want == "number" and is_number or want == "name" and not is_number or want == "number or name":
            continue
        if isinstance(want, set) and not is_number and str(tok) in want:
            continue
        expected = {"number": "a number", "name": "a name"}.get(want) if isinstance(want, str) else (
            " or ".join(f"'{w}'" for w in sorted(want, key=lambda w: (w not in ("long", "top", "equal"), w))))
        raise _Fail(f"unexpected '{tok}' (expected {expected})", tok.line, tok.column, f"write {usage}")
    if len(rest) > len(form):
        tok = rest[len(form)]
        raise _Fail(f"unexpected '{tok}' (expected the end of the statement)", tok.line, tok.column, f"write {usage}")
    span = _span_of(tokens)
    word = str(first)
    if word == "hold":
        side, edge, fraction, _, name = rest
        return N.Hold(str(side), str(edge), _number(fraction), N.Name(str(name), span=_span_of([name])), span=span)
    if word == "rebalance":
        every = rest[1]
        value = _number(every) if every.type == "NUMBER" else N.Name(str(every), span=_span_of([every]))
        return N.Rebalance(value, span=span)
    by = N.Name(str(rest[1]), span=_span_of([rest[1]])) if str(rest[0]) == "by" else None
    cap = _number(rest[-1]) if rest[-1].type == "NUMBER" else None
    return N.Weight(by, cap, span=span)


class _Build(Transformer):
    """One method per grammar alias, each building the node of the same name."""

    # statements
    def strategy_name(self, c):
        return N.StrategyName(str(c[0])[1:-1], span=_span_of(c))

    def param(self, c):
        name, value, lo, dots, hi = (c + [None] * 5)[:5]
        return N.Param(str(name), value, lo, hi, span=_span_of([name, value, hi]))

    def assign(self, c):
        return N.Assign(str(c[0]), c[1], span=_span_of(c))

    def rule(self, c):
        return N.Rule(str(c[0]), c[1], span=_span_of(c))

    def exit(self, c):
        return N.Exit(str(c[0]), c[1], span=_span_of(c))

    def portfolio(self, c):
        return _portfolio([t for t in c if t is not None])

    def pos(self, c):
        return _number(c[0])

    def neg_num(self, c):  # c is the `-` token and the number
        num = _number(c[-1])
        return N.Num(-num.literal, num.percent, span=_span_of(c))

    # expressions
    def paren(self, c):
        return dataclasses.replace(c[1], span=_span_of(c))

    def number(self, c):
        return _number(c[0])

    def true(self, c):
        return N.Bool(True, span=_span_of(c))

    def false(self, c):
        return N.Bool(False, span=_span_of(c))

    def name(self, c):
        return N.Name(str(c[0]), span=_span_of(c))

    def call(self, c):
        args = tuple(a for a in c[1:] if a is not None)
        return _limit(N.Call(str(c[0]), args, span=_span_of(c)))

    def lag(self, c):
        expr, tok = c
        text = str(tok)
        if text.endswith("%") or not re.fullmatch(r"[0-9]+", text):
            raise _Fail(f"lag [{text}] must be a whole number of bars, like x[1]", tok.line, tok.column)
        _number(tok)  # the magnitude limit, before int() meets thousands of digits
        return _limit(N.Lag(expr, int(text), span=_span_of(c)))

    def negative_lag(self, c):
        tok = c[1]
        raise _Fail(f"negative lag [-{tok}] would read a later bar", tok.line, tok.column - 1,
                    "strategies can only look back: x[1] is the previous bar's value")

    # The grammar keeps the operator token (`!` rules), so the span starts at the `-` or `not`.
    def negate(self, c):
        return _limit(N.Unary("-", c[-1], span=_span_of(c)))

    def not_(self, c):
        return _limit(N.Unary("not", c[-1], span=_span_of(c)))

    def binary(self, c):
        return _limit(N.Binary(str(c[1]), c[0], c[2], span=_span_of(c)))

    compare = binary

    def and_(self, c):
        return _limit(N.Binary("and", c[0], c[1], span=_span_of(c)))

    def or_(self, c):
        return _limit(N.Binary("or", c[0], c[1], span=_span_of(c)))

    def start(self, c):
        return [s for s in c if s is not None]


@lru_cache(maxsize=1)
def _parser() -> Lark:
    # Building the LALR tables takes ~0.1 s, a noticeable part of a short command; lark can pickle
    # them. The file lives in the user's own cache folder (a pickle in the shared /tmp could be
    # planted by someone else) and is named by the grammar's hash and lark's version; lark also
    # checks the hash inside and rebuilds when it is stale or unreadable.
    text = grammar_path().read_text(encoding="utf-8")
    key = hashlib.sha256(f"{text}\0{lark.__version__}\0{_NamesEverywhere.always_accept}".encode()).hexdigest()[:16]
    cache = _cache_dir() / f"lark-{key}.pickle"
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        cache = None
    return Lark(text, parser="lalr", transformer=_Build(), lexer="contextual", maybe_placeholders=True,
                postlex=_NamesEverywhere(), **({"cache": str(cache)} if cache else {}))


class _NamesEverywhere:
    """Let the contextual lexer read a whole word everywhere, so a keyword is never a word's prefix.

    The contextual lexer only tries the terminals the parser can take next. After `a` it does not
    try NAME, so `a orb` would lex as `a`, `or`, `b` and parse as `a or b` (and `buy whenx > 1` as
    `buy when x > 1`). With NAME always tried, `orb` is one word and the parser refuses it where a
    name cannot stand; a word that is exactly a keyword still lexes as the keyword.
    """

    always_accept = ("NAME",)

    def process(self, stream):
        return stream


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "autostrat"


def parse(text: str, path: str | None = None) -> N.Program:
    """Parse strategy text into a Program; raise StrategyError (located, with a hint) if it is bad."""
    path = path or "<strategy>"
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):  # a byte-order mark some editors write; not part of the text
        text = text[1:]
    size = len(text.encode("utf-8", errors="replace"))
    lines = text.split("\n")
    if size > MAX_SOURCE_BYTES:
        raise located_error(path, lines, f"strategy is {size} bytes; the limit is {MAX_SOURCE_BYTES}", 1, 1,
                     "a strategy is a few dozen lines; this is not one")
    prescan(text, lines, path)
    comments: list[Token] = []
    parser = _parser()
    try:
        statements = _parse_with(parser, text, comments)
    except _Fail as f:
        raise located_error(path, lines, f.message, f.line, f.column, f.hint) from None
    except UnexpectedInput as exc:
        raise explain(exc, path, lines, parser) from None
    if len(statements) > MAX_STATEMENTS:  # normally caught by _prescan, which counts lines
        s = statements[MAX_STATEMENTS].span
        raise located_error(path, lines, too_many(len(statements)), s.line, s.column, TOO_MANY_HINT)
    return _attach_comments(statements, comments, lines, path, text)


def _parse_with(parser: Lark, text: str, comments: list) -> list:
    # lexer_callbacks are fixed at construction, so comments are collected by re-lexing: cheap, and
    # the contextual lexer's COMMENT terminal is the same regex everywhere.
    statements = parser.parse(text)
    for m in re.finditer(r'"[^"\n]*"|#[^\n]*', text):
        if m.group().startswith("#"):
            line = text.count("\n", 0, m.start()) + 1
            comments.append((line, m.group().rstrip()))
    return statements


def _attach_comments(statements, comments, lines, path, text) -> N.Program:
    """Give each statement the comment and blank lines above it and the comment at its line end.

    Runs of blank lines collapse to one; blank lines before the first statement are dropped.
    """
    by_line = dict(comments)

    def between(first: int, last: int, drop_leading: bool) -> tuple[str, ...]:
        layout: list[str] = []
        for ln in range(first, last):
            if ln in by_line:
                layout.append(by_line[ln])
            elif not lines[ln - 1].strip() and (layout[-1:] != [""]) and (layout or not drop_leading):
                layout.append("")
        return tuple(layout)

    out = []
    prev = 0
    for stmt in statements:
        line = stmt.span.line
        out.append(_with_layout(stmt, between(prev + 1, line, prev == 0), by_line.get(line, "")))
        prev = stmt.span.end_line or line
    end = between(prev + 1, len(lines) + 1, False)
    while end and end[-1] == "":
        end = end[:-1]
    return N.Program(tuple(out), path=path, end_comments=end, source=text)


def _with_layout(stmt, comments, trailing):
    return dataclasses.replace(stmt, comments=comments, trailing=trailing)


