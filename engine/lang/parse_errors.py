"""Diagnostics of strategy text: the limits, the slips found on the text before parsing
(`prescan`), and lark's errors explained (`explain`), all in the one error format.

autostrat.lang.parse runs these; they read the text and lark's exception, never the AST.
"""

from __future__ import annotations

import dataclasses
import difflib
import re

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from autostrat.errors import Diagnostic, StrategyError
from autostrat.lang.registry import KEYWORDS

# Limits: each gives a clean error; none is reached through Python recursion.
MAX_SOURCE_BYTES = 64 * 1024
MAX_STATEMENTS = 200
MAX_DEPTH = 64
MAX_NODES = 2000
MAX_NUMBER = 1e15


def too_many(count: int) -> str:
    return f"strategy has {count} statements; the limit is {MAX_STATEMENTS}"


def too_deep(depth: int) -> str:
    return f"expression nested {depth} levels deep; the limit is {MAX_DEPTH}"


TOO_MANY_HINT = "keep strategies small: a few params, names, rules and exits"
TOO_DEEP_HINT = ("each operator, call and lag adds a level, and so does each term of a chain like a + b + c: "
                  "split the expression into named parts, `a = ...` on its own line, then use `a`")
TOO_BIG = f"expression has more than {MAX_NODES} parts"
TOO_BIG_HINT = "a strategy expression this large is not meant to be written; simplify it"


# The portfolio statements, word by word: a set of words, or "number", "name", "number or name".
HOLD = ({"long", "short"}, {"top", "bottom"}, "number", {"by"}, "name")
PORTFOLIO_FORMS = {
    "hold": ("hold long top 10% by score", {"": HOLD}),
    "rebalance": ("rebalance every 21 bars", {"": ({"every"}, "number or name", {"bars"})}),
    "weight": ("weight equal, or weight by NAME, either optionally followed by capped at 10%",
               {"equal": ({"equal"},), "by": ({"by"}, "name"), "equal capped": ({"equal"}, {"capped"}, {"at"}, "number"),
                "by capped": ({"by"}, "name", {"capped"}, {"at"}, "number")}),
}


def code_point(ch: str) -> str:
    """U+043E CYRILLIC SMALL LETTER O: what a character is, when it only looks like another."""
    import unicodedata

    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"


_LOOK_ALIKES = {"\u2014": "-", "\u2013": "-", "\u2212": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"',
                "\u201d": '"', "\u00a0": " ", "\u2009": " ", "\u00d7": "*", "\u00f7": "/", "\u2264": "<=",
                "\u2265": ">=", "\u2260": "!="}


def look_alike(ch: str) -> str:
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


def unknown_statement(word: str, line: int, column: int) -> tuple[str, int, int, str]:
    """(message, line, column, hint) for a line that starts with a word no statement starts with."""
    near = difflib.get_close_matches(word, _STATEMENT_WORDS, n=1)
    hint = f"did you mean '{near[0]}'?" if near else (
        "a line is `strategy \"...\"`, `param NAME = N`, `NAME = expr`, `buy when ...`, `sell when ...` or an exit")
    return f"unknown statement starting with '{word}'", line, column, hint


def located_error(path, lines, message, line, column, hint="") -> StrategyError:
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


def prescan(text: str, lines: list[str], path: str) -> None:
    """Named errors for slips a model makes, found before the parser gives a generic message, and
    the limits that must fail fast: statements, nesting and expression size are checked on the text."""
    code_lines = [i for i, raw in enumerate(lines, 1) if (s := raw.lstrip()) and s[0] != "#"]
    if len(code_lines) > MAX_STATEMENTS:  # statements are one per line
        i = code_lines[MAX_STATEMENTS]
        raw = lines[i - 1]
        raise located_error(path, lines, too_many(len(code_lines)), i, len(raw) - len(raw.lstrip()) + 1, TOO_MANY_HINT)
    for i in code_lines:
        raw = lines[i - 1]
        if raw.lstrip().startswith("```"):
            raise located_error(path, lines, "markdown fence left in the strategy", i, raw.index("`") + 1,
                         "send only the strategy text: remove the ``` lines")
        code = _code_of(raw)
        m = _PYTHON.match(code)
        if m or re.match(r"^\s*if\b.*:\s*$", code):
            col = (m.start(1) if m else code.index("if")) + 1
            word = m.group(1) if m else "if"
            raise located_error(path, lines, f"this is Python (`{word}`), not the strategy language", i, col,
                         "write statements: `name = expr`, `buy when <condition>`, `sell when <condition>`")
        m = re.search(r"\b[A-Za-z_]\w*\s*\[\s*['\"]", code)
        if m:
            raise located_error(path, lines, "dataframe indexing like df['close'] is not part of the language", i,
                         m.start() + 1, "use the series names directly: open high low close volume")
        m = re.search(r"\.\s*([A-Za-z_]\w*)\s*\(", code)
        if m:
            raise located_error(path, lines, f"method call .{m.group(1)}(...) is not part of the language", i,
                         m.start() + 1, "call a built-in instead, e.g. sma(close, 20) rather than close.rolling(20).mean()")
        depth = 0
        opened = []
        for col, ch in enumerate(code, 1):
            if ch == "(":
                depth += 1
                opened.append(col)
                if depth > MAX_DEPTH:
                    raise located_error(path, lines, f"parentheses nested more than {MAX_DEPTH} deep", i, col,
                                 "split the expression into named parts")
            elif ch == ")":
                if not opened:
                    raise located_error(path, lines, "unbalanced parentheses: this ')' has no matching '('", i, col,
                                 "remove it or add the missing '(' before it")
                depth -= 1
                opened.pop()
        if opened:
            raise located_error(path, lines, "unbalanced parentheses: this '(' is never closed", i, opened[-1],
                         "add the missing ')' (a statement must fit on one line)")
        m = _PREFIX_RUN.search(code)
        if m:
            raise located_error(path, lines, f"operators `-` and `not` nested more than {MAX_DEPTH} deep", i,
                         m.start() + 1, "split the expression into named parts")
        words = _WORD.findall(code)
        if len(words) > MAX_NODES + _STATEMENT_WORDS_MAX:
            raise located_error(path, lines, TOO_BIG, i, len(raw) - len(raw.lstrip()) + 1, TOO_BIG_HINT)


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


def explain(exc: UnexpectedInput, path: str, lines: list[str], parser) -> StrategyError:
    """The located error for lark's `exc` from `parser`, named for the slip it most likely is."""
    err = _explain_input(exc, path, lines, parser)
    d = err.diagnostics[0]
    head = re.match(r"\s*([A-Za-z_]\w*)\s*(=?)", d.source_line)
    if head and not head.group(2) and head.group(1) in PORTFOLIO_FORMS:  # the statement's own form helps most
        d = dataclasses.replace(d, hint=f"write {PORTFOLIO_FORMS[head.group(1)][0]}")
        return StrategyError(d)
    return err


def _explain_input(exc: UnexpectedInput, path: str, lines: list[str], parser) -> StrategyError:
    line, col = exc.line if exc.line > 0 else len(lines), exc.column if exc.column > 0 else 1
    raw = lines[line - 1] if 0 < line <= len(lines) else ""
    rest = raw[col - 1 :]
    before = raw[: col - 1].rstrip()
    if isinstance(exc, UnexpectedCharacters):
        for op, word in (("&&", "and"), ("||", "or"), ("&", "and"), ("|", "or")):
            if rest.startswith(op):
                return located_error(path, lines, f"'{op}' is not an operator here; write '{word}'", line, col,
                              "conditions combine with and, or, not")
        if rest.startswith("!"):
            return located_error(path, lines, "'!' is not an operator; write 'not'", line, col,
                          "negate a condition with not, e.g. not (close > open)")
        if rest.startswith(".") and raw[col - 2 : col - 1] == ".":
            return located_error(path, lines, "a range is written LO..HI, with two dots", line, col - 2,
                          "e.g. param n = 20 in 5..100")
        if rest.startswith(".") and rest[1:2].isdigit():
            return located_error(path, lines, "a number needs a digit before the point", line, col, "write 0.5, not .5")
        if rest.startswith(".") and (rest[1:2].isalpha() or rest[1:2] == "_"):
            return located_error(path, lines, "attribute access like df.close is not part of the language", line, col,
                          "use the series names directly: open high low close volume")
        if rest.startswith("^"):
            return located_error(path, lines, _NO_POWER % "^", line, col, _NO_POWER_HINT)
        if rest.startswith("%"):
            if before[-1:].isdigit():
                return located_error(path, lines, "the % sign goes right after the number", line, col,
                              f"write {before.split()[-1]}%, with no space")
            return located_error(path, lines, "'%' is not an operator; it only marks a percentage, like 5%", line, col,
                          "there is no remainder operator")
        if rest.startswith("'"):
            return located_error(path, lines, "single quotes are not part of the language", line, col,
                          'a strategy name is written in double quotes: strategy "my idea"')
        ch = rest[:1] or "end of line"
        if ch and not ch.isascii():
            return located_error(path, lines, f"unexpected character {ch!r} ({code_point(ch)})", line, col,
                          look_alike(ch))
        return located_error(path, lines, f"unexpected character {ch!r}", line, col,
                      f"expected {_expected(exc, parser)}" if _expected(exc, parser) else "")
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        expected = _accepted(exc)
        words = before.split()
        if tok.type == "EQUAL":
            for op, right in (("=>", ">="), ("=<", "<=")):
                if rest.startswith(op):
                    return located_error(path, lines, f"'{op}' is not an operator; write '{right}'", line, col)
            if "COMPARE" in expected:
                return located_error(path, lines, "'=' binds a name; to compare two values write '=='", line, col,
                              "e.g. buy when close == open")
            if len(words) == 1 and words[0] in _STATEMENT_WORDS:
                return located_error(path, lines, f"'{words[0]}' starts a statement; it cannot be bound as a name", line,
                              len(raw) - len(raw.lstrip()) + 1,
                              f"choose another name, e.g. {words[0]}_level")
            if before.endswith("=") and len(words) == 2:
                return located_error(path, lines, "'==' compares two values; to bind a name write one '='", line, col - 1,
                              f"e.g. {words[0]} = close - open; a condition belongs in a rule: buy when ...")
        # A line of names that is no statement: the grammar reads names after a first one only for the
        # portfolio statements, so any other first word not followed by `=` is an unknown statement.
        head = re.match(r"\s*([A-Za-z_]\w*)\s*(=?)", raw)
        if (head and not head.group(2) and head.group(1) not in _STATEMENT_WORDS and head.group(1) not in KEYWORDS
                and head.end(1) < col):
            return located_error(path, lines, *unknown_statement(head.group(1), line, head.start(1) + 1))
        if before.endswith("["):
            return located_error(path, lines, "a lag must be a whole number literal, like x[1]", line, col,
                          "the number of bars back cannot be a name or an expression")
        if tok.type == "COMPARE" and before.endswith("<") and str(tok) == ">":
            return located_error(path, lines, "'<>' is not an operator; write '!='", line, col - 1)
        if tok.type == "COMPARE":
            return located_error(path, lines, "comparisons cannot be chained", line, col,
                          "write a < b and b < c")
        if tok.type == "MUL_OP" and str(tok) == "*" and before.endswith("*"):
            return located_error(path, lines, _NO_POWER % "**", line, col - 1, _NO_POWER_HINT)
        if tok.type == "NAME" and str(tok).lower() in ("and", "or", "not"):
            return located_error(path, lines, f"unexpected '{tok}'", line, col,
                          f"keywords are lower case: write '{str(tok).lower()}'")
        if tok.type in ("_NL", "$END"):
            if tok.type == "$END":  # lark places it at the last token; the end of that line is meant
                col = len(raw.rstrip()) + 1
            return located_error(path, lines, "the statement ends too early", line, col,
                          f"expected {_expected(exc, parser)}")
        return located_error(path, lines, f"unexpected {tok.type.lower() if tok.type.isupper() and len(tok) == 0 else repr(str(tok))}",
                      line, col, f"expected {_expected(exc, parser)}")
    if isinstance(exc, UnexpectedEOF):
        return located_error(path, lines, "the strategy ends in the middle of a statement", len(lines), 1,
                      f"expected {_expected(exc, parser)}")
    return located_error(path, lines, str(exc).splitlines()[0], line, col)
