"""The strategy grammar in the forms constrained decoding takes: GBNF (llama.cpp) and Lark.

Both are generated from grammar/strategy.lark, read with lark's own loader (the compiled rules and
terminals the parser uses), so there is one grammar of the language. The export is the language
as a model should write it, a subset of what the parser accepts:

- in GBNF whitespace is explicit (GBNF has no %ignore): optional spaces between tokens, a required
  one between two word-like tokens (`buy when`, `a and b`), a bounded run of spaces or tabs; the
  Lark form leaves inline spaces to `%ignore`, as a lexer reads them;
- layout is bounded: a few comment or blank lines first, then at most `statements` statements,
  one per line, each with an optional trailing comment and a few comment or blank lines between;
- names exclude the keywords, regex terminals become character classes, and unbounded
  repetitions inside a token are capped (`token_chars`);
- what the parser's transformer refuses is left out: the negative lag (an error production),
  a lag that is not a whole number, a number beyond the parser's magnitude limit (at most 15
  integer digits, only negative exponents down to e-307 after at most 16 decimals, so that no
  number underflows to 0, which the parser refuses), so every answer that fits the grammar parses.

Left recursion (`sum: sum "+" product`) is rewritten as repetition, since llama.cpp's grammar
engine cannot run left-recursive rules, and alternatives sharing a prefix are factored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark

from autostrat.lang.grammar_tree import (Alt, Chars, Lit, Ref, Rep, Seq, alt, edge_other, edge_word, gbnf_char,
                                         gbnf_text, identifier, identifier_rules, quantifier, refs, regex_text,
                                         regex_tree, seq, strings)
from autostrat.lang.parse import MAX_NUMBER
from autostrat.resources import grammar_path

FORMATS = ("gbnf", "lark")
_STATEMENT = "statement"
# Alternatives the export leaves out: the grammar has `negative_lag` only to give a better error
# message; the portfolio statements' shapes (runs of names the parser then reads word by word)
# would let a model write runs of names that are no statement, and the search writes
# single-asset strategies.
_ERROR_ALIASES = frozenset({"negative_lag", "portfolio"})
# Terminals narrowed to what the parser's transformer accepts: a whole number of bars in a lag;
# a number whose magnitude cannot pass MAX_NUMBER (fmt writes no positive exponent), and none
# small enough to underflow to 0 (the smallest is 1e-16 x 1e-307; the parser refuses a 0 so written).
_DIGITS = len(str(int(MAX_NUMBER))) - 1
# The exponent form comes first: a regex takes the first alternative that matches, not the longest.
_NARROW = {"NUMBER": rf"[0-9]{{1,{_DIGITS}}}((\.[0-9]{{1,16}})?[eE]-(30[0-7]|[12][0-9][0-9]|[0-9]{{1,2}})|(\.[0-9]{{1,20}})?)%?"}
_NARROW_IN = {("lag", "NUMBER"): ("WHOLE_NUMBER", rf"[0-9]{{1,{_DIGITS}}}")}


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
    tokens = {n: (regex_tree(p, cap) if is_re else Lit(p)) for n, (p, is_re) in patterns.items()}

    by_origin: dict[str, list[tuple[str, ...]]] = {}
    for r in rules:
        if r.alias in _ERROR_ALIASES or r.origin.name == "start":
            continue
        names = tuple(_NARROW_IN.get((r.alias, s.name), (s.name,))[0] for s in r.expansion)
        if not names:
            raise ValueError(f"rule {r.origin.name} has an empty alternative; the export cannot bound it")
        by_origin.setdefault(r.origin.name, []).append(names)
    _no_indirect_left_recursion(by_origin)

    idents = {n: identifier(tokens[n]) for n, (_, is_re) in patterns.items() if is_re}
    idents = {n: hs for n, hs in idents.items() if hs}
    keywords = {n: set() for n in idents}
    for n, node in tokens.items():
        for word in strings(node) or ():
            for ident in idents:
                if n != ident and re.fullmatch(patterns[ident][0], word):
                    keywords[ident].add(word)

    # Which symbols can start with a word character, start with another one, end with a word one.
    starts = {n: edge_word(t, False) for n, t in tokens.items()}
    other = {n: edge_other(t) for n, t in tokens.items()}
    ends = {n: edge_word(t, True) for n, t in tokens.items()}
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
            return seq(Ref("ws0"), symbol(first))
        if not other[first]:
            return seq(Ref("ws1"), symbol(first))
        return Alt((seq(Ref("ws1"), symbol(first)), symbol(first + "@nonword")))  # `when (x)` or `when(x)`

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
            out.append(seq(symbol(first) if hoisted else head, *tail))
        return seq(hoisted, alt(out)) if hoisted else alt(out)

    def define(origin, alts):
        rec = [a[1:] for a in by_origin[origin] if a[0] == origin]
        body = factor(alts, None)
        return seq(body, Rep(factor(rec, origin), 0, None)) if rec else body

    b = bounds
    blanks = Rep(Ref("blank"), 0, b.blank_lines)
    out = {  # the layout: bounded comment and blank lines around one statement per line
        "root": seq(Ref("head"), Ref("line"), Rep(seq(Lit("\n"), Ref("gap"), Ref("line")), 0, b.statements - 1),
                     Rep(seq(Lit("\n"), Ref("gap")), 0, 1)),
        "head": seq(blanks, Rep(seq(Ref("comment-line"), blanks), 0, b.head_comments)),
        "gap": seq(blanks, Rep(seq(Ref("comment-line"), blanks), 0, b.gap_comments)),
        "line": seq(Ref("ws0"), Ref(_gname(_STATEMENT)), Ref("ws0"), Rep(Ref("comment"), 0, 1)),
        "blank": seq(Ref("ws0"), Lit("\n")),
        "comment-line": seq(Ref("ws0"), Ref("comment"), Lit("\n")),
        "comment": seq(Lit("#"), Rep(Chars(((10, 10),), True), 0, b.comment_chars - 1)),
        "ws0": Rep(Chars(((9, 9), (32, 32))), 0, b.spaces),
        "ws1": Rep(Chars(((9, 9), (32, 32))), 1, b.spaces),
    }
    if not spaced:
        out["line"] = seq(Ref(_gname(_STATEMENT)), Rep(Ref("comment"), 0, 1))
        out["blank"] = Lit("\n")
        out["comment-line"] = seq(Ref("comment"), Lit("\n"))
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
        made = identifier_rules(_gname(n), *idents[n], keywords[n], cap) if n in idents else {_gname(n): node}
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


def _reachable(rules: dict) -> dict:
    keep, todo = set(), ["root"]
    while todo:
        n = todo.pop()
        if n not in rules:
            raise ValueError(f"the export refers to rule {n!r}, which is not defined")
        if n not in keep:
            keep.add(n)
            todo.extend(refs(rules[n], set()))
    return {n: r for n, r in rules.items() if n in keep}


def keywords() -> frozenset[str]:
    """The words a name cannot be in the export: the language's keywords, read from the grammar."""
    return _grammar(Bounds()).keywords


def _lark(node, names: dict, helpers: dict, top: bool = False) -> str:
    """A rule's expression tree in Lark syntax; `names` maps token rules to terminal references,
    `helpers` collects the rules that spell bounded repetitions out."""
    if isinstance(node, Lit):
        if node.text in names:
            return names[node.text]
        return '"' + "".join(gbnf_char(ord(c), False) for c in node.text) + '"'
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
        return inner + quantifier(node.lo, node.hi)
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
    lines = [f"{n.ljust(width)} ::= {gbnf_text(r, top=True)}" for n, r in rules.items()]
    return _header("gbnf", bounds, "#") + "\n".join(lines) + "\n"


def lark_grammar(bounds: Bounds = Bounds()) -> str:
    """The grammar in Lark syntax, entry rule `start`, for Lark-reading servers (vLLM's guidance
    backend, outlines) and lark itself.

    Tokens are regex terminals (the keyword-free name included, without lookarounds) and inline
    spaces are `%ignore`d, as a lexer reads them; the layout (lines, comments) stays explicit and
    bounded. It is LALR(1), so lark parses it with its contextual lexer.
    """
    ex = _grammar(bounds, spaced=False)
    used = set().union(*(refs(r, set()) for n, r in ex.rules.items() if n not in ex.tokens))
    terminals, names = {}, {}
    for n in [n for n in ex.rules if n in ex.tokens and n in used]:
        term = n.upper().replace("-", "_")
        terminals[term] = regex_text(ex.rules[n], ex.rules, bare=True)
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
