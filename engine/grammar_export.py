"""The strategy grammar in the forms constrained decoding takes: GBNF (llama.cpp) and Lark.

Both are generated from grammar/strategy.lark, read with lark's own loader (the compiled rules and
terminals the parser uses), so there is one grammar of the language. The export is the language
as a model should write it, a subset of what the parser accepts:

- whitespace is explicit (no %ignore): optional spaces between tokens, a required one between two
  word-like tokens (`buy when`, `a and b`), a bounded run of spaces or tabs;
- layout is bounded: a few comment or blank lines first, then at most `statements` statements,
  one per line, each with an optional trailing comment and a few comment or blank lines between;
- names exclude the keywords, regex terminals become character classes, and unbounded
  repetitions inside a token are capped (`token_chars`);
- what the parser's transformer refuses is left out: the negative lag (an error production),
  a lag that is not a whole number, a number beyond the parser's magnitude limit (at most 15
  integer digits, only negative exponents), so every answer that fits the grammar parses.

Left recursion (`sum: sum "+" product`) is rewritten as repetition, since llama.cpp's grammar
engine cannot run left-recursive rules, and alternatives sharing a prefix are factored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from re import _constants as C
from re import _parser as sre

from lark import Lark

from autostrat.parse import MAX_NUMBER
from autostrat.resources import grammar_path

FORMATS = ("gbnf", "lark")
_STATEMENT = "statement"
# Alternatives the grammar has only to give a better error message.
_ERROR_ALIASES = frozenset({"negative_lag"})
# Terminals narrowed to what the parser's transformer accepts: a whole number of bars in a lag;
# a number whose magnitude cannot pass MAX_NUMBER (fmt writes no positive exponent).
_DIGITS = len(str(int(MAX_NUMBER))) - 1
_NARROW = {"NUMBER": rf"[0-9]{{1,{_DIGITS}}}(\.[0-9]{{1,20}})?([eE]-[0-9]{{1,3}})?%?"}
_NARROW_IN = {("lag", "NUMBER"): ("WHOLE_NUMBER", rf"[0-9]{{1,{_DIGITS}}}")}
_WORD = ((48, 57), (65, 90), (95, 95), (97, 122))  # [0-9A-Z_a-z]


@dataclass(frozen=True)
class Bounds:
    """How much a constrained model may write."""

    head_comments: int = 6  # comment lines before the first statement
    gap_comments: int = 2  # comment lines between two statements, and after the last
    blank_lines: int = 3  # blank lines in a row
    statements: int = 40
    comment_chars: int = 160  # one comment, its `#` included
    token_chars: int = 64  # the longest name or strategy name, and any capped repetition
    spaces: int = 4  # the longest run of spaces or tabs


# --- the grammar as data: a tiny expression tree both emitters print ----------------------------


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Chars:
    ranges: tuple[tuple[int, int], ...]
    negated: bool = False


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Seq:
    items: tuple


@dataclass(frozen=True)
class Alt:
    items: tuple


@dataclass(frozen=True)
class Rep:
    item: object
    lo: int
    hi: int | None  # None: unbounded


def _seq(*items):
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


def _alt(items):
    return items[0] if len(items) == 1 else Alt(tuple(items))


def _overlaps(ranges, other) -> bool:
    return any(lo <= b and a <= hi for lo, hi in ranges for a, b in other)


def _minus(ranges, chars: set[str]):
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


def _regex(pattern: str, cap: int):
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
            items.append(_alt([_sre(b, cap) for b in av[1]]))
        elif op is C.SUBPATTERN:
            items.append(_sre(av[-1], cap))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, body = av
            items.append(Rep(_sre(body, cap), lo, max(lo, cap) if hi is C.MAXREPEAT else hi))
        elif op is C.AT and av is C.AT_BOUNDARY and top and i == len(ops) - 1:
            continue  # a word boundary after the token: the separators between tokens keep it
        else:
            raise ValueError(f"regex feature {op} ({av}) has no GBNF form; simplify the terminal")
    return _seq(*items) if items else Lit("")


_CATEGORIES = {C.CATEGORY_DIGIT: ((48, 57),), C.CATEGORY_WORD: _WORD,
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


def _strings(node) -> set[str] | None:
    """Every string a small finite expression matches; None when infinite or not plain."""
    if isinstance(node, Lit):
        return {node.text}
    if isinstance(node, Alt):
        parts = [_strings(i) for i in node.items]
        return None if None in parts else set().union(*parts)
    if isinstance(node, Seq):
        out = {""}
        for i in node.items:
            part = _strings(i)
            if part is None:
                return None
            out = {a + b for a in out for b in part}
        return out
    return None


def _nullable(node) -> bool:
    if isinstance(node, Lit):
        return not node.text
    if isinstance(node, Seq):
        return all(_nullable(i) for i in node.items)
    if isinstance(node, Alt):
        return any(_nullable(i) for i in node.items)
    if isinstance(node, Rep):
        return node.lo == 0 or _nullable(node.item)
    return False


def _edge_word(node, last: bool) -> bool:
    """Whether a match can start (or end, `last`) with a word character [A-Za-z0-9_]."""
    if isinstance(node, Lit):
        return bool(node.text) and bool(re.fullmatch(r"\w", node.text[-1 if last else 0], re.A))
    if isinstance(node, Chars):
        return node.negated or _overlaps(node.ranges, _WORD)
    if isinstance(node, Alt):
        return any(_edge_word(i, last) for i in node.items)
    if isinstance(node, Rep):
        return _edge_word(node.item, last)
    if isinstance(node, Seq):
        for i in reversed(node.items) if last else node.items:
            if _edge_word(i, last):
                return True
            if not _nullable(i):
                return False
    return False


def _edge_other(node) -> bool:
    """Whether a match can start with a character that is not a word character."""
    if isinstance(node, Lit):
        return bool(node.text) and not re.fullmatch(r"\w", node.text[0], re.A)
    if isinstance(node, Chars):
        return node.negated or bool(_minus(node.ranges, {chr(c) for lo, hi in _WORD for c in range(lo, hi + 1)}))
    if isinstance(node, Alt):
        return any(_edge_other(i) for i in node.items)
    if isinstance(node, Rep):
        return _edge_other(node.item)
    if isinstance(node, Seq):
        for i in node.items:
            if _edge_other(i):
                return True
            if not _nullable(i):
                return False
    return False


def _identifier(node):
    """(head, tail) when the terminal is an identifier, `[head][tail]*`; else None."""
    if (isinstance(node, Seq) and len(node.items) == 2 and isinstance(node.items[0], Chars)
            and isinstance(node.items[1], Rep) and node.items[1].lo == 0 and isinstance(node.items[1].item, Chars)
            and not node.items[0].negated and not node.items[1].item.negated):
        return node.items[0], node.items[1].item
    return None


def _identifier_rules(name: str, head: Chars, tail: Chars, keywords: set[str], length: int) -> dict:
    """An identifier of at most `length` characters that is none of `keywords`, as a trie of rules."""
    rules = {name: None}  # the entry rule first

    def node(prefix: str, allowed: Chars):
        kids = sorted({k[len(prefix)] for k in keywords if k.startswith(prefix) and len(k) > len(prefix)})
        alts = []
        free = _minus(allowed.ranges, set(kids))
        if free:
            alts.append(_seq(Chars(free), Rep(tail, 0, length - len(prefix) - 1)))
        for ch in kids:
            sub = f"{name}-{prefix + ch}".replace("_", "-")
            rules[sub] = node(prefix + ch, tail)
            alts.append(_seq(Lit(ch), Ref(sub)))
        body = _alt(alts)
        return Rep(body, 0, 1) if prefix and prefix not in keywords else body

    rules[name] = node("", head)
    return rules


# --- from lark's compiled rules -------------------------------------------------------------------


@lru_cache(maxsize=1)
def _compiled():
    lk = Lark(grammar_path().read_text(encoding="utf-8"), parser="lalr", lexer="contextual",
              maybe_placeholders=True)
    return lk.rules, {t.name: t for t in lk.terminals}


def _gname(symbol: str) -> str:
    return symbol.strip("_").lower().replace("_", "-")


@dataclass(frozen=True)
class _Export:
    rules: dict  # name -> expression tree, `root` first
    keywords: frozenset[str]  # the words names exclude
    tokens: frozenset[str]  # the rules that are one token each (regular, no recursion)


@lru_cache(maxsize=8)
def _grammar(bounds: Bounds, spaced: bool = True) -> _Export:
    """The export as expression trees, built from lark's compiled rules and terminals.

    `spaced`: whitespace explicit between tokens (GBNF); else left to the reader (Lark %ignore).
    """
    rules, terms = _compiled()
    cap = bounds.token_chars
    patterns = {n: (_NARROW.get(n, t.pattern.value), t.pattern.type == "re") for n, t in terms.items()}
    for (_alias, term), (new, regex) in _NARROW_IN.items():
        patterns[new] = (regex, True)
    tokens = {n: (_regex(p, cap) if is_re else Lit(p)) for n, (p, is_re) in patterns.items()}

    by_origin: dict[str, list[tuple[str, ...]]] = {}
    for r in rules:
        if r.alias in _ERROR_ALIASES or r.origin.name == "start":
            continue
        names = tuple(_NARROW_IN.get((r.alias, s.name), (s.name,))[0] for s in r.expansion)
        if not names:
            raise ValueError(f"rule {r.origin.name} has an empty alternative; the export cannot bound it")
        by_origin.setdefault(r.origin.name, []).append(names)
    _no_indirect_left_recursion(by_origin)

    idents = {n: _identifier(tokens[n]) for n, (_, is_re) in patterns.items() if is_re}
    idents = {n: hs for n, hs in idents.items() if hs}
    keywords = {n: set() for n in idents}
    for n, node in tokens.items():
        for word in _strings(node) or ():
            for ident in idents:
                if n != ident and re.fullmatch(patterns[ident][0], word):
                    keywords[ident].add(word)

    # Which symbols can start with a word character, start with another one, end with a word one.
    starts = {n: _edge_word(t, False) for n, t in tokens.items()}
    other = {n: _edge_other(t) for n, t in tokens.items()}
    ends = {n: _edge_word(t, True) for n, t in tokens.items()}
    changed = True
    while changed:  # a fixed point over the rules
        changed = False
        for origin, alts in by_origin.items():
            now = (any(starts[a[0]] for a in alts if a[0] in starts), any(other[a[0]] for a in alts if a[0] in other),
                   any(ends[a[-1]] for a in alts if a[-1] in ends))
            if now != (starts.get(origin), other.get(origin), ends.get(origin)):
                starts[origin], other[origin], ends[origin], changed = *now, True
    split: dict[str, list] = {}  # origin -> its alternatives that start with a non-word character

    def lead(prev: str | None, first: str):
        """`first`, and the spaces before it: required between two word characters."""
        if prev is None or not spaced:
            return symbol(first)
        if not (ends[prev.split("@")[0]] and starts[first]):
            return _seq(Ref("ws0"), symbol(first))
        if not other[first]:
            return _seq(Ref("ws1"), symbol(first))
        return Alt((_seq(Ref("ws1"), symbol(first)), symbol(first + "@nonword")))  # `when (x)` or `when(x)`

    def symbol(s: str):
        if s.endswith("@nonword"):
            base = s[: -len("@nonword")]
            if not starts[base]:  # it never starts with a word character: it is its own variant
                return symbol(base)
            if base in tokens:
                if starts[base]:
                    raise ValueError(f"terminal {base} may start with a letter or not; split it in two")
                return symbol(base)
            if base not in split:
                split[base] = [(a[0] + "@nonword", *a[1:]) for a in by_origin[base]
                               if a[0] != base and other.get(a[0])]
            return Ref(_gname(base) + "-nonword")
        return tokens[s] if s in tokens and isinstance(tokens[s], Lit) else Ref(_gname(s))

    def factor(alts, prev):
        groups: dict[str, list[tuple[str, ...]]] = {}
        for a in alts:
            groups.setdefault(a[0], []).append(a[1:])
        leads = [lead(prev, first) for first in groups]
        seps = {x.items[0] if isinstance(x, Seq) and prev else None for x in leads}
        hoisted = seps.pop() if len(seps) == 1 and None not in seps and len(leads) > 1 else None
        out = []
        for (first, rests), head in zip(groups.items(), leads):
            more = [r for r in rests if r]
            tail = [factor(more, first)] if more else []
            if more and len(more) < len(rests):
                tail = [Rep(tail[0], 0, 1)]
            out.append(_seq(symbol(first) if hoisted else head, *tail))
        return _seq(hoisted, _alt(out)) if hoisted else _alt(out)

    def define(origin, alts):
        rec = [a[1:] for a in by_origin[origin] if a[0] == origin]
        body = factor(alts, None)
        return _seq(body, Rep(factor(rec, origin), 0, None)) if rec else body

    b = bounds
    blanks = Rep(Ref("blank"), 0, b.blank_lines)
    out = {  # the layout: bounded comment and blank lines around one statement per line
        "root": _seq(Ref("head"), Ref("line"), Rep(_seq(Lit("\n"), Ref("gap"), Ref("line")), 0, b.statements - 1),
                     Rep(_seq(Lit("\n"), Ref("gap")), 0, 1)),
        "head": _seq(blanks, Rep(_seq(Ref("comment-line"), blanks), 0, b.head_comments)),
        "gap": _seq(blanks, Rep(_seq(Ref("comment-line"), blanks), 0, b.gap_comments)),
        "line": _seq(Ref("ws0"), Ref(_gname(_STATEMENT)), Ref("ws0"), Rep(Ref("comment"), 0, 1)),
        "blank": _seq(Ref("ws0"), Lit("\n")),
        "comment-line": _seq(Ref("ws0"), Ref("comment"), Lit("\n")),
        "comment": _seq(Lit("#"), Rep(Chars(((10, 10),), True), 0, b.comment_chars - 1)),
        "ws0": Rep(Chars(((9, 9), (32, 32))), 0, b.spaces),
        "ws1": Rep(Chars(((9, 9), (32, 32))), 1, b.spaces),
    }
    if not spaced:
        out["line"] = _seq(Ref(_gname(_STATEMENT)), Rep(Ref("comment"), 0, 1))
        out["blank"] = Lit("\n")
        out["comment-line"] = _seq(Ref("comment"), Lit("\n"))
    token_rules = {"comment", "ws0", "ws1"}
    for origin, alts in by_origin.items():
        out[_gname(origin)] = define(origin, [a for a in alts if a[0] != origin])
    done = set()
    while set(split) - done:  # the non-word variants, made on demand (they may ask for more)
        base = sorted(set(split) - done)[0]
        done.add(base)
        out[_gname(base) + "-nonword"] = define(base, split[base])
    used = {s for alts in by_origin.values() for a in alts for s in a}
    for n, node in tokens.items():
        if n not in used or isinstance(node, Lit):
            continue
        made = _identifier_rules(_gname(n), *idents[n], keywords[n], cap) if n in idents else {_gname(n): node}
        clash = set(made) & set(out)
        if clash:
            raise ValueError(f"terminal {n} and rule {clash.pop()} have the same name in the export; rename one")
        out.update(made)
        token_rules |= set(made)
    rules_out = _reachable(out)
    return _Export(rules_out, frozenset().union(*keywords.values()), frozenset(token_rules & set(rules_out)))


def _no_indirect_left_recursion(by_origin) -> None:
    left = {o: {a[0] for a in alts if a[0] != o and a[0] in by_origin} for o, alts in by_origin.items()}
    for start in left:
        seen, todo = set(), list(left[start])
        while todo:
            n = todo.pop()
            if n == start:
                raise ValueError(f"rule {start} is left-recursive through other rules; the export handles "
                                 "only direct left recursion")
            if n not in seen:
                seen.add(n)
                todo.extend(left[n])


def _refs(node, acc: set[str]) -> set[str]:
    if isinstance(node, Ref):
        acc.add(node.name)
    elif isinstance(node, (Seq, Alt)):
        for i in node.items:
            _refs(i, acc)
    elif isinstance(node, Rep):
        _refs(node.item, acc)
    return acc


def _reachable(rules: dict) -> dict:
    keep, todo = set(), ["root"]
    while todo:
        n = todo.pop()
        if n not in rules:
            raise ValueError(f"the export refers to rule {n!r}, which is not defined")
        if n not in keep:
            keep.add(n)
            todo.extend(_refs(rules[n], set()))
    return {n: r for n, r in rules.items() if n in keep}


def keywords() -> frozenset[str]:
    """The words a name cannot be in the export: the language's keywords, read from the grammar."""
    return _grammar(Bounds()).keywords


# --- printing ----------------------------------------------------------------------------------


def _gbnf_char(c: int, in_class: bool) -> str:
    named = {9: "\\t", 10: "\\n", 13: "\\r", 92: "\\\\", 34: '\\"'}
    if c in named:
        return named[c]
    if (in_class and chr(c) in "[]^-") or c < 32 or c == 127:  # llama.cpp has no \\- or \\^ escape
        return f"\\x{c:02X}"
    return chr(c)


def _class_body(node: Chars, char) -> str:
    body = "".join(char(lo) if lo == hi else f"{char(lo)}-{char(hi)}" for lo, hi in node.ranges)
    return ("^" if node.negated else "") + body


def _gbnf(node, top: bool = False) -> str:
    if isinstance(node, Lit):
        return '"' + "".join(_gbnf_char(ord(c), False) for c in node.text) + '"'
    if isinstance(node, Chars):
        return "[" + _class_body(node, lambda c: _gbnf_char(c, True)) + "]"
    if isinstance(node, Ref):
        return node.name
    if isinstance(node, Seq):
        text = " ".join(_gbnf(i) for i in node.items)
        return text if top else f"({text})"
    if isinstance(node, Alt):
        text = " | ".join(_gbnf(i, top=True) for i in node.items)
        return text if top else f"({text})"
    inner = _gbnf(node.item)
    return inner + _quantifier(node.lo, node.hi)


def _quantifier(lo: int, hi: int | None) -> str:
    if (lo, hi) == (0, 1):
        return "?"
    if hi is None:
        return {0: "*", 1: "+"}.get(lo, f"{{{lo},}}")
    return f"{{{lo}}}" if lo == hi else f"{{{lo},{hi}}}"


_REGEX_META = set("\\.^$|?*+()[]{}/")


def _regex_char(c: int) -> str:
    named = {9: "\\t", 10: "\\n", 13: "\\r"}
    if c in named:
        return named[c]
    if c < 32 or c == 127 or chr(c) in "\\]^-[/":
        return f"\\x{c:02x}"
    return chr(c)


def _regex_text(node, rules, bare: bool = False) -> str:
    """A token's expression tree as one regex, the token rules it refers to inlined."""
    if isinstance(node, Lit):
        text = "".join("\\" + c if c in _REGEX_META else _regex_char(ord(c)) for c in node.text)
        return text if bare or len(node.text) == 1 else f"(?:{text})"
    if isinstance(node, Chars):
        return "[" + _class_body(node, _regex_char) + "]"
    if isinstance(node, Ref):
        return _regex_text(rules[node.name], rules, bare)
    if isinstance(node, Seq):
        text = "".join(_regex_text(i, rules, isinstance(i, (Seq, Lit))) for i in node.items)
        return text if bare else f"(?:{text})"
    if isinstance(node, Alt):
        return "(?:" + "|".join(_regex_text(i, rules, True) for i in node.items) + ")"
    return _regex_text(node.item, rules) + _quantifier(node.lo, node.hi)


def _lark(node, names: dict, helpers: dict, top: bool = False) -> str:
    """A rule's expression tree in Lark syntax; `names` maps token rules to terminal references,
    `helpers` collects the rules that spell bounded repetitions out."""
    if isinstance(node, Lit):
        if node.text in names:
            return names[node.text]
        return '"' + "".join(_gbnf_char(ord(c), False) for c in node.text) + '"'
    if isinstance(node, Ref):
        if node.name in names:
            return names[node.name]
        return "start" if node.name == "root" else node.name.replace("-", "_")
    if isinstance(node, (Seq, Alt)):
        glue = " " if isinstance(node, Seq) else " | "
        text = glue.join(_lark(i, names, helpers, top=isinstance(node, Alt)) for i in node.items)
        return text if top else f"({text})"
    inner = _lark(node.item, names, helpers)
    if node.hi is None or node.hi == 1:
        return inner + _quantifier(node.lo, node.hi)
    # Lark's `x ~ m..n` lists every count as an alternative, and nested ones multiply; a chain of
    # rules, `rep_k: (x rep_k-1)?`, stays small for Earley parsers.
    parts = [inner] * node.lo + ([_chain(inner, node.hi - node.lo, helpers)] if node.hi > node.lo else [])
    return parts[0] if len(parts) == 1 else "(" + " ".join(parts) + ")"


def _chain(inner: str, count: int, helpers: dict) -> str:
    """The name of a rule matching `inner` 0..count times."""
    prefix = helpers.setdefault(("prefix", inner), f"_rep{sum(1 for k in helpers if k[0] == 'prefix')}")
    for k in range(1, count + 1):
        body = f"{inner}?" if k == 1 else f"({inner} {prefix}_{k - 1})?"
        helpers.setdefault(("rule", prefix, k), f"{prefix}_{k}: {body}")
    return f"{prefix}_{count}"


def _header(fmt: str, bounds: Bounds, mark: str) -> str:
    b = bounds
    return (f"{mark} The autostrat strategy language for constrained decoding ({fmt}), generated from "
            f"strategy.lark\n{mark} by `autostrat grammar --format {fmt}`. Bounds: {b.statements} statements, "
            f"{b.head_comments} comment lines first,\n{mark} {b.gap_comments} between statements, "
            f"{b.blank_lines} blank lines in a row, comments of {b.comment_chars} characters,\n"
            f"{mark} names of {b.token_chars}, runs of {b.spaces} spaces.\n")


def gbnf(bounds: Bounds = Bounds()) -> str:
    """The grammar as GBNF, for llama.cpp servers (the request's `grammar` field) and vLLM."""
    rules = _grammar(bounds).rules
    width = max(len(n) for n in rules)
    lines = [f"{n.ljust(width)} ::= {_gbnf(r, top=True)}" for n, r in rules.items()]
    return _header("gbnf", bounds, "#") + "\n".join(lines) + "\n"


def lark_grammar(bounds: Bounds = Bounds()) -> str:
    """The grammar in Lark syntax, entry rule `start`, for Lark-reading servers (vLLM's guidance
    backend, outlines) and lark itself.

    Tokens are regex terminals (the keyword-free name included, without lookarounds) and inline
    spaces are `%ignore`d, as a lexer reads them; the layout (lines, comments) stays explicit and
    bounded. It is LALR(1), so lark parses it with its contextual lexer.
    """
    ex = _grammar(bounds, spaced=False)
    refs = set().union(*(_refs(r, set()) for n, r in ex.rules.items() if n not in ex.tokens))
    terminals, names = {}, {}
    for n in [n for n in ex.rules if n in ex.tokens and n in refs]:
        term = n.upper().replace("-", "_")
        terminals[term] = _regex_text(ex.rules[n], ex.rules, bare=True)
        names[n] = term
    names["\n"] = "NL"
    helpers: dict = {}
    lines = [f"{_lark(Ref(n), {}, helpers)}: {_lark(r, names, helpers, top=True)}"
             for n, r in ex.rules.items() if n not in ex.tokens]
    lines += [text for key, text in helpers.items() if key[0] == "rule"]
    lines += [f"{t}: /{r}/" for t, r in terminals.items()]
    lines += ['NL: "\\n"', "WS: /[ \\t]+/", "%ignore WS"]
    return _header("lark", bounds, "//") + "\n".join(lines) + "\n"


def export(fmt: str, bounds: Bounds = Bounds()) -> str:
    """The grammar in `fmt` ("gbnf" or "lark")."""
    if fmt == "gbnf":
        return gbnf(bounds)
    if fmt == "lark":
        return lark_grammar(bounds)
    raise ValueError(f"unknown grammar format {fmt!r}: use one of {', '.join(FORMATS)}")
