"""The expression trees the grammar export is built from, regex terminals read into them, and
their printing as GBNF and as regex text.

A tree is made of Lit (a literal string), Chars (a character class), Ref (a rule), Seq, Alt and
Rep (a bounded or unbounded repetition). Regexes are read with Python's own regex parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from re import _constants as C
from re import _parser as sre

WORD = ((48, 57), (65, 90), (95, 95), (97, 122))  # [0-9A-Z_a-z]


# --- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    """A literal string."""

    text: str


@dataclass(frozen=True)
class Chars:
    """A character class: code-point ranges, maybe negated."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False


@dataclass(frozen=True)
class Ref:
    """A reference to a rule."""

    name: str


@dataclass(frozen=True)
class Seq:
    """A sequence."""

    items: tuple


@dataclass(frozen=True)
class Alt:
    """Alternatives."""

    items: tuple


@dataclass(frozen=True)
class Rep:
    """lo..hi repetitions of an item (hi None: unbounded)."""

    item: object
    lo: int
    hi: int | None  # None: unbounded


def seq(*items):
    """A sequence, flattened, adjacent literals joined; a single item stands alone."""
    flat = []
    for it in items:
        flat.extend(it.items if isinstance(it, Seq) else [it])
    merged = []
    for it in flat:
        if isinstance(it, Lit) and merged and isinstance(merged[-1], Lit):
            merged[-1] = Lit(merged[-1].text + it.text)
        else:
            merged.append(it)
    return merged[0] if len(merged) == 1 else Seq(tuple(merged))


def alt(items):
    """Alternatives; a single one stands alone."""
    return items[0] if len(items) == 1 else Alt(tuple(items))


def overlaps(ranges, other) -> bool:
    """Whether two lists of code-point ranges share a character."""
    return any(lo <= b and a <= hi for lo, hi in ranges for a, b in other)


def minus(ranges, chars: set[str]):
    """The ranges without the given characters (non-negated classes only)."""
    out = []
    for lo, hi in ranges:
        start = lo
        for c in sorted(ord(ch) for ch in chars if lo <= ord(ch) <= hi):
            if c > start:
                out.append((start, c - 1))
            start = c + 1
        if start <= hi:
            out.append((start, hi))
    return tuple(out)


# --- regex terminals ---------------------------------------------------------------------------


def regex_tree(pattern: str, cap: int):
    """A regex terminal as an expression tree; unbounded repeats capped at `cap`."""
    return _sre(sre.parse(pattern), cap, top=True)


def _sre(sub, cap: int, top: bool = False):
    items = []
    ops = list(sub)
    for i, (op, av) in enumerate(ops):
        if op is C.LITERAL:
            items.append(Lit(chr(av)))
        elif op is C.NOT_LITERAL:
            items.append(Chars(((av, av),), True))
        elif op is C.ANY:
            items.append(Chars(((10, 10),), True))
        elif op is C.IN:
            items.append(_charset(av))
        elif op is C.BRANCH:
            items.append(alt([_sre(b, cap) for b in av[1]]))
        elif op is C.SUBPATTERN:
            items.append(_sre(av[-1], cap))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, body = av
            items.append(Rep(_sre(body, cap), lo, max(lo, cap) if hi is C.MAXREPEAT else hi))
        elif op is C.AT and av is C.AT_BOUNDARY and top and i == len(ops) - 1:
            continue  # a word boundary after the token: the separators between tokens keep it
        else:
            raise ValueError(f"regex feature {op} ({av}) has no GBNF form; simplify the terminal")
    return seq(*items) if items else Lit("")


_CATEGORIES = {C.CATEGORY_DIGIT: ((48, 57),), C.CATEGORY_WORD: WORD,
               C.CATEGORY_SPACE: ((9, 13), (32, 32))}


def _charset(av) -> Chars:
    ranges, negated = [], False
    for op, arg in av:
        if op is C.NEGATE:
            negated = True
        elif op is C.LITERAL:
            ranges.append((arg, arg))
        elif op is C.RANGE:
            ranges.append(arg)
        elif op is C.CATEGORY and arg in _CATEGORIES:
            ranges.extend(_CATEGORIES[arg])
        else:
            raise ValueError(f"character class item {op} ({arg}) has no GBNF form")
    return Chars(tuple(ranges), negated)


def strings(node) -> set[str] | None:
    """Every string a small finite expression matches; None when infinite or not plain."""
    if isinstance(node, Lit):
        return {node.text}
    if isinstance(node, Alt):
        parts = [strings(i) for i in node.items]
        return None if None in parts else set().union(*parts)
    if isinstance(node, Seq):
        out = {""}
        for i in node.items:
            part = strings(i)
            if part is None:
                return None
            out = {a + b for a in out for b in part}
        return out
    return None


def nullable(node) -> bool:
    if isinstance(node, Lit):
        return not node.text
    if isinstance(node, Seq):
        return all(nullable(i) for i in node.items)
    if isinstance(node, Alt):
        return any(nullable(i) for i in node.items)
    if isinstance(node, Rep):
        return node.lo == 0 or nullable(node.item)
    return False


def edge_word(node, last: bool) -> bool:
    """Whether a match can start (or end, `last`) with a word character [A-Za-z0-9_]."""
    if isinstance(node, Lit):
        return bool(node.text) and bool(re.fullmatch(r"\w", node.text[-1 if last else 0], re.A))
    if isinstance(node, Chars):
        return node.negated or overlaps(node.ranges, WORD)
    if isinstance(node, Alt):
        return any(edge_word(i, last) for i in node.items)
    if isinstance(node, Rep):
        return edge_word(node.item, last)
    if isinstance(node, Seq):
        for i in reversed(node.items) if last else node.items:
            if edge_word(i, last):
                return True
            if not nullable(i):
                return False
    return False


def edge_other(node) -> bool:
    """Whether a match can start with a character that is not a word character."""
    if isinstance(node, Lit):
        return bool(node.text) and not re.fullmatch(r"\w", node.text[0], re.A)
    if isinstance(node, Chars):
        return node.negated or bool(minus(node.ranges, {chr(c) for lo, hi in WORD for c in range(lo, hi + 1)}))
    if isinstance(node, Alt):
        return any(edge_other(i) for i in node.items)
    if isinstance(node, Rep):
        return edge_other(node.item)
    if isinstance(node, Seq):
        for i in node.items:
            if edge_other(i):
                return True
            if not nullable(i):
                return False
    return False


def identifier(node):
    """(head, tail) when the terminal is an identifier, `[head][tail]*`; else None."""
    if (isinstance(node, Seq) and len(node.items) == 2 and isinstance(node.items[0], Chars)
            and isinstance(node.items[1], Rep) and node.items[1].lo == 0 and isinstance(node.items[1].item, Chars)
            and not node.items[0].negated and not node.items[1].item.negated):
        return node.items[0], node.items[1].item
    return None


def identifier_rules(name: str, head: Chars, tail: Chars, keywords: set[str], length: int) -> dict:
    """An identifier of at most `length` characters that is none of `keywords`, as a trie of rules."""
    rules = {name: None}  # the entry rule first

    def node(prefix: str, allowed: Chars):
        kids = sorted({k[len(prefix)] for k in keywords if k.startswith(prefix) and len(k) > len(prefix)})
        alts = []
        free = minus(allowed.ranges, set(kids))
        if free:
            alts.append(seq(Chars(free), Rep(tail, 0, length - len(prefix) - 1)))
        for ch in kids:
            sub = f"{name}-{prefix + ch}".replace("_", "-")
            rules[sub] = node(prefix + ch, tail)
            alts.append(seq(Lit(ch), Ref(sub)))
        body = alt(alts)
        return Rep(body, 0, 1) if prefix and prefix not in keywords else body

    rules[name] = node("", head)
    return rules



def longest(node, rules: dict) -> int | None:
    """The most UTF-8 bytes a match of `node` can have (its rules in `rules`); None when unbounded:
    an unbounded repetition of something non-empty, or a rule that refers back to itself (the
    typed grammar is a finite expansion and has neither)."""
    memo: dict[str, int | None] = {}
    busy: set[str] = set()

    def of(n) -> int | None:
        if isinstance(n, Lit):
            return len(n.text.encode())
        if isinstance(n, Chars):  # a negated class admits every code point, up to 4 bytes
            return 4 if n.negated else max(len(chr(hi).encode()) for _, hi in n.ranges)
        if isinstance(n, Ref):
            if n.name in busy:
                return None
            if n.name not in memo:
                busy.add(n.name)
                memo[n.name] = of(rules[n.name])
                busy.discard(n.name)
            return memo[n.name]
        if isinstance(n, (Seq, Alt)):
            parts = [of(i) for i in n.items]
            if None in parts:
                return None
            return sum(parts) if isinstance(n, Seq) else max(parts)
        item = of(n.item)
        if item is None or (n.hi is None and item > 0):
            return None
        return item * (n.hi if n.hi is not None else 0)

    return of(node)


def refs(node, acc: set[str]) -> set[str]:
    """The rule names a tree refers to, added to `acc`."""
    if isinstance(node, Ref):
        acc.add(node.name)
    elif isinstance(node, (Seq, Alt)):
        for i in node.items:
            refs(i, acc)
    elif isinstance(node, Rep):
        refs(node.item, acc)
    return acc



# --- printing ----------------------------------------------------------------------------------


def gbnf_char(c: int, in_class: bool) -> str:
    """A code point as GBNF writes it in a string or (in_class) a character class."""
    named = {9: "\\t", 10: "\\n", 13: "\\r", 92: "\\\\", 34: '\\"'}
    if c in named:
        return named[c]
    if (in_class and chr(c) in "[]^-") or c < 32 or c == 127:  # llama.cpp has no \\- or \\^ escape
        return f"\\x{c:02X}"
    return chr(c)


def class_body(node: Chars, char) -> str:
    """The inside of a character class, each character written by `char`."""
    body = "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in node.ranges)
    return ("^" if node.negated else "") + body


def gbnf_text(node, top: bool = False) -> str:
    """A tree as GBNF (`top`: a rule body, needing no parentheses)."""
    if isinstance(node, Lit):
        return '"' + "".join(gbnf_char(ord(c), False) for c in node.text) + '"'
    if isinstance(node, Chars):
        return "[" + class_body(node, lambda c: gbnf_char(c, True)) + "]"
    if isinstance(node, Ref):
        return node.name
    if isinstance(node, Seq):
        text = " ".join(gbnf_text(i) for i in node.items)
        return text if top else f"({text})"
    if isinstance(node, Alt):
        text = " | ".join(gbnf_text(i, top=True) for i in node.items)
        return text if top else f"({text})"
    inner = gbnf_text(node.item)
    return inner + quantifier(node.lo, node.hi)


def quantifier(lo: int, hi: int | None) -> str:
    """The suffix for lo..hi repetitions: ?, *, +, {m}, {m,} or {m,n}."""
    if (lo, hi) == (0, 1):
        return "?"
    if hi is None:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


_REGEX_META = set("\\.^$|?*+()[]{}/")


def regex_char(c: int) -> str:
    """A code point as a regex writes it inside or outside a class (escaped when special)."""
    named = {9: "\\t", 10: "\\n", 13: "\\r"}
    if c in named:
        return named[c]
    if c < 32 or c == 127 or chr(c) in "\\]^-[/":
        return f"\\x{c:02x}"
    return chr(c)


def regex_text(node, rules, bare: bool = False) -> str:
    """A token's expression tree as one regex, the token rules it refers to inlined."""
    if isinstance(node, Lit):
        text = "".join("\\" + c if c in _REGEX_META else regex_char(ord(c)) for c in node.text)
        return text if bare or len(node.text) == 1 else f"(?:{text})"
    if isinstance(node, Chars):
        return "[" + class_body(node, regex_char) + "]"
    if isinstance(node, Ref):
        return regex_text(rules[node.name], rules, bare)
    if isinstance(node, Seq):
        text = "".join(regex_text(i, rules, isinstance(i, (Seq, Lit))) for i in node.items)
        return text if bare else f"(?:{text})"
    if isinstance(node, Alt):
        return "(?:" + "|".join(regex_text(i, rules, True) for i in node.items) + ")"
    return regex_text(node.item, rules) + quantifier(node.lo, node.hi)
