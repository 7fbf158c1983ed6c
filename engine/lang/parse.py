"""Parse strategy text into the AST (autostrat.lang.nodes), with the project's one error format.

The grammar is grammar/strategy.lark (LALR). The transformer runs inline, during the parse, so no
step walks the tree by Python recursion: the limits on nesting depth and expression size are
enforced as nodes are built, and pathological inputs fail fast with a limit error.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import os
import re
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from autostrat.errors import Diagnostic, StrategyError
from autostrat.lang import nodes as N
from autostrat.lang.registry import KEYWORDS
from autostrat.resources import grammar_path

# Limits: each gives a clean error; none is reached through Python recursion.
MAX_SOURCE_BYTES = 64 * 1024
MAX_STATEMENTS = 200
MAX_DEPTH = 64
MAX_NODES = 2000
MAX_NUMBER = 1e15


def _too_many(count: int) -> str:
    return f"strategy has {count} statements; the limit is {MAX_STATEMENTS}"


def _too_deep(depth: int) -> str:
    return f"expression nested {depth} levels deep; the limit is {MAX_DEPTH}"


_TOO_MANY_HINT = "keep strategies small: a few params, names, rules and exits"
_TOO_DEEP_HINT = ("each operator, call and lag adds a level, and so does each term of a chain like a + b + c: "
                  "split the expression into named parts, `a = ...` on its own line, then use `a`")
_TOO_BIG = f"expression has more than {MAX_NODES} parts"
_TOO_BIG_HINT = "a strategy expression this large is not meant to be written; simplify it"


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
        raise _Fail(_too_deep(node.depth), s.line, s.column, _TOO_DEEP_HINT)
    if node.size > MAX_NODES:
        s = node.span
        raise _Fail(_TOO_BIG, s.line, s.column, _TOO_BIG_HINT)
    return node


def _code_point(ch: str) -> str:
    """U+043E CYRILLIC SMALL LETTER O: what a character is, when it only looks like another."""
    import unicodedata

    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"


_LOOK_ALIKES = {"\u2014": "-", "\u2013": "-", "\u2212": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
                "\u201d": '"', "\u00a0": " ", "\u2009": " ", "\u00d7": "*", "\u00f7": "/", "\u2264": "<=",
                "\u2265": ">=", "\u2260": "!="}


def _look_alike(ch: str) -> str:
    """A hint for a non-ASCII character: the ASCII one it looks like, when there is one."""
    import unicodedata

    plain = _LOOK_ALIKES.get(ch) or unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    if not plain:
        name = unicodedata.name(ch, "")
        for script in ("CYRILLIC", "GREEK"):  # letters that look Latin: о, а, е, р, с, ο, ν ...
            if name.startswith(script) and " LETTER " in name:
                latin = name.split(" LETTER ")[1].split()[-1]
                plain = latin.lower() if "SMALL" in name else latin
                plain = plain if len(plain) == 1 else ""
    if plain:
        return f"it looks like {plain!r} but is another character; type {plain!r} (a strategy is written in ASCII)"
    return "a strategy is written in ASCII: names, numbers, operators and double-quoted names only"


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


# The portfolio statements, word by word: a set of words, or "number", "name", "number or name".
_HOLD = ({"long", "short"}, {"top", "bottom"}, "number", {"by"}, "name")
_PORTFOLIO_FORMS = {
    "hold": ("hold long top 10% by score", {"": _HOLD}),
    "rebalance": ("rebalance every 21 bars", {"": ({"every"}, "number or name", {"bars"})}),
    "weight": ("weight equal, or weight by NAME, either optionally followed by capped at 10%",
               {"equal": ({"equal"},), "by": ({"by"}, "name"), "equal capped": ({"equal"}, {"capped"}, {"at"}, "number"),
                "by capped": ({"by"}, "name", {"capped"}, {"at"}, "number")}),
}


def _portfolio(tokens: list[Token]):
    """A hold, rebalance or weight statement from the names and numbers the grammar read."""
    first = tokens[0]
    if str(first) not in _PORTFOLIO_FORMS:
        raise _Fail(*_unknown_statement(str(first), first.line, first.column))
    usage, forms = _PORTFOLIO_FORMS[str(first)]
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


def _unknown_statement(word: str, line: int, column: int) -> tuple[str, int, int, str]:
    """(message, line, column, hint) for a line that starts with a word no statement starts with."""
    near = difflib.get_close_matches(word, _STATEMENT_WORDS, n=1)
    hint = f"did you mean '{near[0]}'?" if near else (
        "a line is `strategy \"...\"`, `param NAME = N`, `NAME = expr`, `buy when ...`, `sell when ...` or an exit")
    return f"unknown statement starting with '{word}'", line, column, hint


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
        raise _error(path, lines, f"strategy is {size} bytes; the limit is {MAX_SOURCE_BYTES}", 1, 1,
                     "a strategy is a few dozen lines; this is not one")
    _prescan(text, lines, path)
    comments: list[Token] = []
    parser = _parser()
    try:
        statements = _parse_with(parser, text, comments)
    except _Fail as f:
        raise _error(path, lines, f.message, f.line, f.column, f.hint) from None
    except UnexpectedInput as exc:
        raise _explain(exc, path, lines) from None
    if len(statements) > MAX_STATEMENTS:  # normally caught by _prescan, which counts lines
        s = statements[MAX_STATEMENTS].span
        raise _error(path, lines, _too_many(len(statements)), s.line, s.column, _TOO_MANY_HINT)
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


# --- errors -----------------------------------------------------------------------------------


def _error(path, lines, message, line, column, hint="") -> StrategyError:
    source_line = lines[line - 1].rstrip("\r") if 0 < line <= len(lines) else ""
    return StrategyError(Diagnostic(message, line, column, hint, path, source_line))


def _code_of(line: str) -> str:
    """The line with string contents and the comment blanked, columns and quote marks kept."""
    line = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', line)
    return line.split("#", 1)[0]


_STRING = re.compile(r'"[^"\n]*"')
# A Python keyword opening a line, unless the line binds it as a name (`from = ...` is allowed).
_PYTHON = re.compile(r"^\s*(def|import|from|return|class|for|while|elif|else|try|except|with|lambda|print)\b"
                     r"(?!\s*=(?!=))")
# A name or number in the source is at most one AST node (statement keywords aside), so a line with
# more of them than an expression may have nodes is over the limit before anything is parsed.
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_STATEMENT_WORDS_MAX = 2  # `buy when`
# A run of k prefix operators nests an expression at least k deep; the parser would shift every one
# of them before building a node, so a long run is refused here.
_PREFIX_RUN = re.compile(r"(?:(?<![A-Za-z0-9_])not(?![A-Za-z0-9_])\s*|-\s*){%d,}" % (MAX_DEPTH + 1))


def _prescan(text: str, lines: list[str], path: str) -> None:
    """Named errors for slips a model makes, found before the parser gives a generic message, and
    the limits that must fail fast: statements, nesting and expression size are checked on the text."""
    code_lines = [i for i, raw in enumerate(lines, 1) if (s := raw.lstrip()) and s[0] != "#"]
    if len(code_lines) > MAX_STATEMENTS:  # statements are one per line
        i = code_lines[MAX_STATEMENTS]
        raw = lines[i - 1]
        raise _error(path, lines, _too_many(len(code_lines)), i, len(raw) - len(raw.lstrip()) + 1, _TOO_MANY_HINT)
    for i in code_lines:
        raw = lines[i - 1]
        if raw.lstrip().startswith("```"):
            raise _error(path, lines, "markdown fence left in the strategy", i, raw.index("`") + 1,
                         "send only the strategy text: remove the ``` lines")
        code = _code_of(raw)
        m = _PYTHON.match(code)
        if m or re.match(r"^\s*if\b.*:\s*$", code):
            col = (m.start(1) if m else code.index("if")) + 1
            word = m.group(1) if m else "if"
            raise _error(path, lines, f"this is Python (`{word}`), not the strategy language", i, col,
                         "write statements: `name = expr`, `buy when <condition>`, `sell when <condition>`")
        m = re.search(r"\b[A-Za-z_]\w*\s*\[\s*['\"]", code)
        if m:
            raise _error(path, lines, "dataframe indexing like df['close'] is not part of the language", i,
                         m.start() + 1, "use the series names directly: open high low close volume")
        m = re.search(r"\.\s*([A-Za-z_]\w*)\s*\(", code)
        if m:
            raise _error(path, lines, f"method call .{m.group(1)}(...) is not part of the language", i,
                         m.start() + 1, "call a built-in instead, e.g. sma(close, 20) rather than close.rolling(20).mean()")
        depth = 0
        opened = []
        for col, ch in enumerate(code, 1):
            if ch == "(":
                depth += 1
                opened.append(col)
                if depth > MAX_DEPTH:
                    raise _error(path, lines, f"parentheses nested more than {MAX_DEPTH} deep", i, col,
                                 "split the expression into named parts")
            elif ch == ")":
                if not opened:
                    raise _error(path, lines, "unbalanced parentheses: this ')' has no matching '('", i, col,
                                 "remove it or add the missing '(' before it")
                depth -= 1
                opened.pop()
        if opened:
            raise _error(path, lines, "unbalanced parentheses: this '(' is never closed", i, opened[-1],
                         "add the missing ')' (a statement must fit on one line)")
        m = _PREFIX_RUN.search(code)
        if m:
            raise _error(path, lines, f"operators `-` and `not` nested more than {MAX_DEPTH} deep", i,
                         m.start() + 1, "split the expression into named parts")
        words = _WORD.findall(code)
        if len(words) > MAX_NODES + _STATEMENT_WORDS_MAX:
            raise _error(path, lines, _TOO_BIG, i, len(raw) - len(raw.lstrip()) + 1, _TOO_BIG_HINT)


_FRIENDLY = {
    "NAME": "a name", "NUMBER": "a number", "STRING": 'a "quoted name"', "_NL": "end of line",
    "$END": "end of file", "COMPARE": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
    "RULE_KIND": "buy/sell/short/cover", "EXIT_KIND": "an exit", "RANGE_DOTS": "'..'",
}


# Expected tokens are listed values first, in the order a reader thinks of them.
_FIRST = ["NAME", "NUMBER", "TRUE", "FALSE", "LPAR", "MINUS", "NOT"]


def _accepted(exc) -> set[str]:
    """The terminals the parser could take where it failed.

    Read from the LALR table when lark passes the parser state: the lexer's own `expected` set also
    holds NAME, which _NamesEverywhere lets it read everywhere, whether or not a name fits.
    """
    state = getattr(exc, "state", None)
    try:
        # The table's row also holds the gotos of rules (lower case); only terminals are upper case.
        accepted = {s for s in state.parse_conf.states[state.position] if s.isupper()}
    except (AttributeError, KeyError, TypeError):
        accepted = set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or [])
    if "_NL" in accepted:  # a program may end without a newline; "end of line" says it already
        accepted.discard("$END")
    return accepted


def _expected(exc, parser) -> str:
    names = sorted(_accepted(exc), key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n))
    shown = []
    for name in names:
        if name in _FRIENDLY:
            shown.append(_FRIENDLY[name])
        else:
            try:
                shown.append(f"'{parser.get_terminal(name).pattern.value}'".replace("\\", ""))
            except KeyError:
                shown.append(name.lower())
    return ", ".join(dict.fromkeys(shown))


_STATEMENT_WORDS = ["strategy", "param", "buy", "sell", "short", "cover", "stop_loss", "take_profit",
                    "trailing_stop", "max_hold", "hold", "rebalance", "weight"]


_NO_POWER = "'%s' is not an operator; there is no power operator"
_NO_POWER_HINT = "write x * x for a square, or exp(k * log(x)) for x to the power k"


def _explain(exc: UnexpectedInput, path: str, lines: list[str]) -> StrategyError:
    err = _explain_input(exc, path, lines)
    d = err.diagnostics[0]
    head = re.match(r"\s*([A-Za-z_]\w*)\s*(=?)", d.source_line)
    if head and not head.group(2) and head.group(1) in _PORTFOLIO_FORMS:  # the statement's own form helps most
        d = dataclasses.replace(d, hint=f"write {_PORTFOLIO_FORMS[head.group(1)][0]}")
        return StrategyError(d)
    return err


def _explain_input(exc: UnexpectedInput, path: str, lines: list[str]) -> StrategyError:
    parser = _parser()
    line, col = exc.line if exc.line > 0 else len(lines), exc.column if exc.column > 0 else 1
    raw = lines[line - 1] if 0 < line <= len(lines) else ""
    rest = raw[col - 1 :]
    before = raw[: col - 1].rstrip()
    if isinstance(exc, UnexpectedCharacters):
        for op, word in (("&&", "and"), ("||", "or"), ("&", "and"), ("|", "or")):
            if rest.startswith(op):
                return _error(path, lines, f"'{op}' is not an operator here; write '{word}'", line, col,
                              "conditions combine with and, or, not")
        if rest.startswith("!"):
            return _error(path, lines, "'!' is not an operator; write 'not'", line, col,
                          "negate a condition with not, e.g. not (close > open)")
        if rest.startswith(".") and raw[col - 2 : col - 1] == ".":
            return _error(path, lines, "a range is written LO..HI, with two dots", line, col - 2,
                          "e.g. param n = 20 in 5..100")
        if rest.startswith(".") and rest[1:2].isdigit():
            return _error(path, lines, "a number needs a digit before the point", line, col, "write 0.5, not .5")
        if rest.startswith(".") and (rest[1:2].isalpha() or rest[1:2] == "_"):
            return _error(path, lines, "attribute access like df.close is not part of the language", line, col,
                          "use the series names directly: open high low close volume")
        if rest.startswith("^"):
            return _error(path, lines, _NO_POWER % "^", line, col, _NO_POWER_HINT)
        if rest.startswith("%"):
            if before[-1:].isdigit():
                return _error(path, lines, "the % sign goes right after the number", line, col,
                              f"write {before.split()[-1]}%, with no space")
            return _error(path, lines, "'%' is not an operator; it only marks a percentage, like 5%", line, col,
                          "there is no remainder operator")
        if rest.startswith("'"):
            return _error(path, lines, "single quotes are not part of the language", line, col,
                          'a strategy name is written in double quotes: strategy "my idea"')
        ch = rest[:1] or "end of line"
        if ch and not ch.isascii():
            return _error(path, lines, f"unexpected character {ch!r} ({_code_point(ch)})", line, col,
                          _look_alike(ch))
        return _error(path, lines, f"unexpected character {ch!r}", line, col,
                      f"expected {_expected(exc, parser)}" if _expected(exc, parser) else "")
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        expected = _accepted(exc)
        words = before.split()
        if tok.type == "EQUAL":
            for op, right in (("=>", ">="), ("=<", "<=")):
                if rest.startswith(op):
                    return _error(path, lines, f"'{op}' is not an operator; write '{right}'", line, col)
            if "COMPARE" in expected:
                return _error(path, lines, "'=' binds a name; to compare two values write '=='", line, col,
                              "e.g. buy when close == open")
            if len(words) == 1 and words[0] in _STATEMENT_WORDS:
                return _error(path, lines, f"'{words[0]}' starts a statement; it cannot be bound as a name", line,
                              len(raw) - len(raw.lstrip()) + 1,
                              f"choose another name, e.g. {words[0]}_level")
            if before.endswith("=") and len(words) == 2:
                return _error(path, lines, "'==' compares two values; to bind a name write one '='", line, col - 1,
                              f"e.g. {words[0]} = close - open; a condition belongs in a rule: buy when ...")
        # A line of names that is no statement: the grammar reads names after a first one only for the
        # portfolio statements, so any other first word not followed by `=` is an unknown statement.
        head = re.match(r"\s*([A-Za-z_]\w*)\s*(=?)", raw)
        if (head and not head.group(2) and head.group(1) not in _STATEMENT_WORDS and head.group(1) not in KEYWORDS
                and head.end(1) < col):
            return _error(path, lines, *_unknown_statement(head.group(1), line, head.start(1) + 1))
        if before.endswith("["):
            return _error(path, lines, "a lag must be a whole number literal, like x[1]", line, col,
                          "the number of bars back cannot be a name or an expression")
        if tok.type == "COMPARE" and before.endswith("<") and str(tok) == ">":
            return _error(path, lines, "'<>' is not an operator; write '!='", line, col - 1)
        if tok.type == "COMPARE":
            return _error(path, lines, "comparisons cannot be chained", line, col,
                          "write a < b and b < c")
        if tok.type == "MUL_OP" and str(tok) == "*" and before.endswith("*"):
            return _error(path, lines, _NO_POWER % "**", line, col - 1, _NO_POWER_HINT)
        if tok.type == "NAME" and str(tok).lower() in ("and", "or", "not"):
            return _error(path, lines, f"unexpected '{tok}'", line, col,
                          f"keywords are lower case: write '{str(tok).lower()}'")
        if tok.type in ("_NL", "$END"):
            if tok.type == "$END":  # lark places it at the last token; the end of that line is meant
                col = len(raw.rstrip()) + 1
            return _error(path, lines, "the statement ends too early", line, col,
                          f"expected {_expected(exc, parser)}")
        return _error(path, lines, f"unexpected {tok.type.lower() if tok.type.isupper() and len(tok) == 0 else repr(str(tok))}",
                      line, col, f"expected {_expected(exc, parser)}")
    if isinstance(exc, UnexpectedEOF):
        return _error(path, lines, "the strategy ends in the middle of a statement", len(lines), 1,
                      f"expected {_expected(exc, parser)}")
    return _error(path, lines, str(exc).splitlines()[0], line, col)
