"""The typed grammar: the part of the language a constrained model can write that always checks.

strategy.lark (and its export, grammar_export) fixes the syntax only. This grammar is generated
from the built-in registry and the checker's rules, so every text it matches passes `check`:

- conditions and numbers are different rules: `when`, `and`, `or`, `not` and the condition
  arguments take conditions; comparisons, arithmetic and the number arguments take numbers;
- each built-in appears with its own arity and argument kinds (registry.Builtin.kinds): a number
  series is an expression, a window a whole number from 1 to MAX_LOOKBACK (or a param, which is
  one), a constant a literal or a param;
- names are fixed and used only after they are defined, with their kind: params `p1..pN` (whole
  numbers, so windows too), params `f1..fM` (a number with tenths or a percentage: constants,
  and the percentages exits too), number values `x1..`, condition values `c1..`; every
  combination of how many of each are defined so far is its own set of rules (a finite
  expansion), and which f params are percentages is carried to the exits;
- a param may declare its search range, `param p1 = 20 in 10..60`, in a form whose range always
  holds its value (grammar_ranges);
- expressions nest at most `levels` deep (call arguments and parentheses go one level down, and
  the deepest level holds no call), so their depth and size stay within the checker's MAX_DEPTH
  and MAX_NODES; generation refuses bounds that could exceed them;
- a condition has at most `factors` operands in all, its tests joined by `and` and `or` in any
  mix, so its length grows with that count rather than with the product of and/or counts;
- the program has one shape and an end: an optional `# hypothesis:` line, the `strategy` line, the
  params, the named values, `buy` and `sell` (then `short` and `cover`, both or neither), each exit
  at most once with a value in its range, and nothing after the last line's newline;
- spacing is the one `autostrat fmt` writes, so a model has no spaces to choose;
- it is printable ASCII and has a longest text (longest_text), which bounds_for fits to a token
  limit: no answer under it can be cut off.

GBNF and Lark are two printings of the same expression trees; the Lark form writes the tokens
(numbers, the strategy's name) as terminals and every space explicitly (no %ignore).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from autostrat.errors import ConfigError
from autostrat.lang import grammar_ranges as gr
from autostrat.lang.grammar_tree import (Alt, Chars, Lit, Ref, Rep, Seq, alt, gbnf_text, longest, quantifier,
                                         regex_text, seq)
from autostrat.lang.parse import MAX_DEPTH, MAX_NODES
from autostrat.lang.registry import BOOL, BUILTINS, MAX_LOOKBACK, SERIES

FORMATS = ("gbnf", "lark")
COMPARE = ("<", ">", "<=", ">=", "==", "!=")
RULE_KINDS = ("buy", "sell", "short", "cover")
EXITS = ("stop_loss", "take_profit", "trailing_stop", "max_hold")


@dataclass(frozen=True)
class TypedBounds:
    """How much a typed-constrained model may write."""

    params: int = 3  # params p1..pN, whole numbers, declared first
    fractions: int = 1  # params f1..fN, numbers with tenths or percentages, declared next
    numbers: int = 4  # number values x1..
    conditions: int = 2  # condition values c1..
    values: int = 4  # named values in all (numbers and conditions)
    levels: int = 2  # expression levels: call arguments and parentheses go one down; the deepest holds no call
    factors: int = 6  # operands in a condition: `rsi(close, 14) < 30 and c1` has 3
    name_chars: int = 40  # the strategy's name
    hypothesis_chars: int = 120  # the `# hypothesis:` line's text
    shorts: bool = True  # `short when` and `cover when` allowed


def _digits(lo: int, hi: int):
    """A whole number from `lo` (1..9) to `hi`, no leading zero, as an expression tree."""
    d, nz = Chars(((48, 57),)), Chars(((49, 57),))
    out, width = [], len(str(hi))
    for n in range(1, width):  # every shorter length is below hi
        out.append(seq(nz, *([d] * (n - 1))) if n > 1 else nz)
    out.append(_at_most(str(hi)))
    if lo != 1:
        raise ValueError("numbers start at 1")
    return alt(out[::-1])  # longest first: a regex alternation takes the first that matches


def _at_most(top: str):
    """Numbers with exactly len(top) digits (no leading zero) that are at most `top`."""
    d = Chars(((48, 57),))
    alts = []
    for k, ch in enumerate(top):
        first = 49 if k == 0 else 48
        if ord(ch) > first:
            rest = [d] * (len(top) - k - 1)
            alts.append(seq(*([Lit(top[:k])] if k else []), Chars(((first, ord(ch) - 1),)), *rest))
    alts.append(Lit(top))
    return alt(alts)


@dataclass(frozen=True)
class _State:
    """How many params, number values and condition values are defined so far."""

    p: int
    f: int
    x: int
    c: int

    @property
    def tag(self) -> str:
        return f"p{self.p}f{self.f}x{self.x}c{self.c}"


class _Builder:
    """Builds the rules, with each expression rule's largest AST size and depth alongside."""

    def __init__(self, b: TypedBounds):
        if b.levels < 2:
            raise ValueError("typed grammar: levels must be at least 2")
        self.b = b
        self.rules: dict[str, object] = {}
        self.size: dict[str, int] = {}  # most AST nodes an expression rule's match has
        self.depth: dict[str, int] = {}
        self.tokens: set[str] = set()

    def token(self, name: str, tree) -> Ref:
        self.rules[name] = tree
        self.tokens.add(name)
        self.size[name], self.depth[name] = 1, 1
        return Ref(name)

    def rule(self, name: str, options: list[tuple[object, int, int]]) -> Ref:
        """A rule of alternatives, each (tree, size, depth)."""
        if name not in self.rules:
            self.rules[name] = alt([t for t, _, _ in options])
            self.size[name] = max(s for _, s, _ in options)
            self.depth[name] = max(d for _, _, d in options)
        return Ref(name)

    def sd(self, ref: Ref) -> tuple[int, int]:
        return self.size[ref.name], self.depth[ref.name]

    # --- tokens -----------------------------------------------------------------------------
    def build_tokens(self):
        b = self.b
        d = Chars(((48, 57),))
        self.num = self.token("number", seq(Rep(d, 1, 5), Rep(seq(Lit("."), Rep(d, 1, 3)), 0, 1),
                                            Rep(Lit("%"), 0, 1)))
        self.win = self.token("window", _digits(1, MAX_LOOKBACK))
        self.lagn = self.token("lag", _digits(1, 999))
        self.bars = self.token("bars", _digits(1, 9999))  # max_hold takes 1..100000
        one = seq(Chars(((49, 57),)), Rep(d, 0, 1), Rep(seq(Lit("."), d), 0, 1), Lit("%"))  # 1% .. 99.9%
        ten = seq(Chars(((49, 57),)), Rep(d, 0, 2), Rep(seq(Lit("."), d), 0, 1), Lit("%"))  # 1% .. 999.9%
        self.pct1, self.pct10 = self.token("percent", one), self.token("percent-large", ten)
        # printable ASCII: one character is one byte, so the longest text in bytes bounds the tokens
        self.sname = self.token("name-text", Rep(Chars(((32, 33), (35, 126))), 1, b.name_chars))
        self.htext = self.token("hypothesis-text", Rep(Chars(((32, 126),)), 1, b.hypothesis_chars))
        top = gr.TENTHS_MAX
        self.whole_param = self.token("param-whole", gr.declarations(gr.whole, gr.whole_classes(MAX_LOOKBACK),
                                                                     MAX_LOOKBACK))
        self.tenths_param = self.token("param-tenths", gr.declarations(gr.tenths, gr.tenths_classes(top), top))
        self.pct_param = self.token("param-percent", gr.declarations(gr.tenths, gr.tenths_classes(top), top, "%"))

    # --- expressions ------------------------------------------------------------------------
    def names(self, s: _State, kind: str) -> list[tuple[object, int, int]]:
        if kind == "c":
            return [(Lit(f"c{k}"), 1, 1) for k in range(1, s.c + 1)]
        return [(Lit(f"{n}{k}"), 1, 1) for n, top in (("p", s.p), ("f", s.f), ("x", s.x)) for k in range(1, top + 1)]

    def window(self, s: _State) -> Ref:
        return self.rule(f"window-p{s.p}", [(self.win, 1, 1)] + [(Lit(f"p{k}"), 1, 1) for k in range(1, s.p + 1)])

    def constant(self, s: _State) -> Ref:
        return self.rule(f"constant-p{s.p}f{s.f}", [(seq(Rep(Lit("-"), 0, 1), self.num), 2, 2)]
                         + [(Lit(f"{n}{k}"), 1, 1) for n, top in (("p", s.p), ("f", s.f)) for k in range(1, top + 1)])

    def calls(self, s: _State, level: int, result: str):
        """The built-ins returning `result` whose arguments fit below `level`, grouped by kinds."""
        deepest = level == self.b.levels - 1
        groups: dict[tuple[str, ...], list[str]] = {}
        for f in BUILTINS.values():
            if f.cross_sectional:  # portfolio programs only; this grammar writes single-asset ones
                continue
            if (f.result == BOOL) != (result == "c"):
                continue
            if deepest or level > 0 and "c" in f.kinds:  # if_else, bars_since: top level
                continue
            groups.setdefault(f.kinds, []).append(f.name)
        out, plain = [], []  # plain: the calls without a series argument, shared by every state with these params
        for kinds, funcs in groups.items():
            fname = alt([Lit(f) for f in sorted(funcs)])
            if len(funcs) > 1:
                fname = self.rule("fn-" + ("".join(kinds) or "none") + ("-c" if result == "c" else ""),
                                  [(fname, 1, 1)])
            args = []
            for k in kinds:
                if k == "x":
                    args.append(self.num_expr(s, level + 1))
                elif k == "c":
                    args.append(self.cond_expr(s, level + 1))
                elif k == "n":
                    args.append(self.window(s))
                else:
                    args.append(self.constant(s))
            parts = [fname, Lit("(")]
            for i, a in enumerate(args):
                parts += ([Lit(", ")] if i else []) + [a]
            parts.append(Lit(")"))
            sizes = [self.sd(a) for a in args]
            call = (seq(*parts), 1 + sum(x for x, _ in sizes), 1 + max((y for _, y in sizes), default=0))
            (out if any(k in "xc" for k in kinds) else plain).append(call)
        if plain:
            out.append((self.rule(f"calls-{result}-p{s.p}f{s.f}", plain), *[max(c[i] for c in plain) for i in (1, 2)]))
        return out

    def num_expr(self, s: _State, level: int) -> Ref:
        name = f"num{level}-{s.tag}"
        if name in self.rules:
            return Ref(name)
        atoms = [(self.num, 1, 1), (alt([Lit(x) for x in SERIES]), 1, 1)] + self.names(s, "x")
        atoms += self.calls(s, level, "x")
        if level == 0:  # parentheses: a sum one level down
            inner = self.num_expr(s, 1)
            sz, dp = self.sd(inner)
            atoms.append((seq(Lit("("), inner, Alt((Lit(" + "), Lit(" - "))), inner, Lit(")")), 2 * sz + 1, dp + 1))
        atom = self.rule(f"atom{level}-{s.tag}", atoms)
        if level == self.b.levels - 1:
            return self.rule(name, [(atom, *self.sd(atom))])
        sz, dp = self.sd(atom)
        factor = self.rule(f"factor{level}-{s.tag}", [
            (seq(Rep(Lit("-"), 0, 1), atom, Rep(seq(Lit("["), self.lagn, Lit("]")), 0, 1)), sz + 2, dp + 2)])
        if level > 0:
            return self.rule(name, [(factor, *self.sd(factor))])
        sz, dp = self.sd(factor)
        product = self.rule(f"product{level}-{s.tag}", [
            (seq(factor, Alt((Lit(" * "), Lit(" / "))), factor), 2 * sz + 1, dp + 1)])
        term = self.rule(f"term{level}-{s.tag}", [(factor, sz, dp), (product, *self.sd(product))])
        sz, dp = self.sd(term)
        return self.rule(name, [(seq(term, Rep(seq(Alt((Lit(" + "), Lit(" - "))), term), 0, 1)), 2 * sz + 1, dp + 1)])

    def cond_expr(self, s: _State, level: int) -> Ref:
        name = f"cond{level}-{s.tag}"
        if name in self.rules:
            return Ref(name)
        cmp = alt([Lit(f" {op} ") for op in COMPARE])
        boolean = [(alt([Lit("true"), Lit("false")]), 1, 1)] + self.names(s, "c") + self.calls(s, level, "c")
        if level > 0:
            num = self.num_expr(s, level)
            nz, nd = self.sd(num)
            return self.rule(name, [(seq(num, cmp, num), 2 * nz + 1, nd + 1)] + boolean)
        # The top level: tests joined by `and` and `or`, `factors` operands in all, each test
        # costing its operands: a side of a comparison is a factor (1) or a product of two (2);
        # a sum goes in parentheses. So a condition's length grows with `factors`, not with the
        # product of the and/or counts. conds{f}: a condition of at most f operands.
        self.num_expr(s, 0)
        sides = {1: Ref(f"factor0-{s.tag}"), 2: Ref(f"product0-{s.tag}")}
        inner = self.cond_expr(s, 1)
        sz, dp = self.sd(inner)
        boolean.append((seq(Lit("("), inner, Lit(" or "), inner, Lit(")")), 2 * sz + 1, dp + 1))
        tests = {1: boolean}
        for a in (1, 2):
            for c in (1, 2):
                (az, ad), (cz, cd) = self.sd(sides[a]), self.sd(sides[c])
                tests.setdefault(a + c, []).append((seq(sides[a], cmp, sides[c]), az + cz + 1, max(ad, cd) + 1))
        for k, options in tests.items():
            basis = self.rule(f"basis{k}-{s.tag}", options)
            sz, dp = self.sd(basis)
            tests[k] = self.rule(f"test{k}-{s.tag}", [(seq(Rep(Lit("not "), 0, 1), basis), sz + 1, dp + 1)])
        join = Alt((Lit(" and "), Lit(" or ")))
        for f in range(1, self.b.factors + 1):
            options = []
            for k in range(1, min(f, 4) + 1):
                (tz, td), rest = self.sd(tests[k]), f"conds{f - k}-{s.tag}"
                if f == k:
                    options.append((tests[k], tz, td))
                else:
                    rz, rd = self.sd(Ref(rest))
                    options.append((seq(tests[k], Rep(seq(join, Ref(rest)), 0, 1)), tz + rz + 1, max(td, rd) + 1))
            self.rule(name if f == self.b.factors else f"conds{f}-{s.tag}", options)
        return Ref(name)

    # --- the program --------------------------------------------------------------------------
    def program(self):
        b = self.b
        self.build_tokens()
        nl = Lit("\n")
        head = seq(Rep(seq(Lit("# hypothesis: "), self.htext, nl), 0, 1),
                   Lit('strategy "'), self.sname, Lit('"\n'))
        self.rules["root"] = seq(head, Ref("params-p0"))
        for p in range(b.params + 1):  # params-pK: K whole params declared, p(K+1) next or the f params
            more = [seq(Lit(f"param p{p + 1} = "), self.whole_param, nl, Ref(f"params-p{p + 1}"))]
            self.rules[f"params-p{p}"] = alt((more if p < b.params else []) + [Ref(f"fparams-p{p}f0m0")])
        for p in range(b.params, -1, -1):
            for f in range(b.fractions, -1, -1):
                for mask in range(1 << f):  # bit k: f(k+1) is a percentage, which an exit takes
                    self.fparams(p, f, mask)
                    for x in range(b.numbers, -1, -1):
                        for c in range(b.conditions, -1, -1):
                            if x + c <= b.values:
                                self.definitions(_State(p, f, x, c), mask)
        for name, ref in list(self.size.items()):
            if name.startswith("cond0-") or name.startswith("num0-"):
                if ref > MAX_NODES or self.depth[name] > MAX_DEPTH:
                    raise ValueError(f"typed grammar: {name} allows {ref} nodes and depth {self.depth[name]}; the "
                                     f"checker's limits are {MAX_NODES} and {MAX_DEPTH}: lower the bounds")
        return self.rules

    def fparams(self, p: int, f: int, mask: int):
        """After p whole params and f others (`mask`: the percentages): f(f+1) next, or the values."""
        nl, out = Lit("\n"), []
        if f < self.b.fractions:
            out.append(seq(Lit(f"param f{f + 1} = "), self.tenths_param, nl, Ref(f"fparams-p{p}f{f + 1}m{mask}")))
            out.append(seq(Lit(f"param f{f + 1} = "), self.pct_param, nl,
                           Ref(f"fparams-p{p}f{f + 1}m{mask | 1 << f}")))
        self.rules[f"fparams-p{p}f{f}m{mask}"] = alt(out + [Ref(f"defs-p{p}f{f}m{mask}x0c0")])

    def definitions(self, s: _State, mask: int):
        b, nl = self.b, Lit("\n")
        at = f"defs-p{s.p}f{s.f}m{mask}"
        out = []
        if s.x < b.numbers and s.x + s.c < b.values:
            out.append(seq(Lit(f"x{s.x + 1} = "), self.num_expr(s, 0), nl, Ref(f"{at}x{s.x + 1}c{s.c}")))
        if s.c < b.conditions and s.x + s.c < b.values:
            out.append(seq(Lit(f"c{s.c + 1} = "), self.cond_expr(s, 0), nl, Ref(f"{at}x{s.x}c{s.c + 1}")))
        cond = self.cond_expr(s, 0)
        rules = [seq(Lit(f"{k} when "), cond, nl) for k in RULE_KINDS]
        shorts = [Rep(seq(rules[2], rules[3]), 0, 1)] if b.shorts else []
        out.append(seq(rules[0], rules[1], *shorts, self.exits(s.p, mask)))
        self.rules[f"{at}x{s.x}c{s.c}"] = alt(out)

    def exits(self, p: int, mask: int) -> Ref:
        name = f"exits-p{p}m{mask}"
        if name not in self.rules:
            pct = [Lit(f"f{k + 1}") for k in range(mask.bit_length()) if mask >> k & 1]  # at most 99.9%
            values = {"stop_loss": alt([self.pct1, *pct]), "take_profit": alt([self.pct10, *pct]),
                      "trailing_stop": alt([self.pct1, *pct]),
                      "max_hold": alt([self.bars] + [Lit(f"p{k}") for k in range(1, p + 1)])}
            self.rules[name] = seq(*[Rep(seq(Lit(f"{e} "), values[e], Lit("\n")), 0, 1) for e in EXITS])
        return Ref(name)


@lru_cache(maxsize=8)
def _built(bounds: TypedBounds) -> tuple[dict, frozenset[str]]:
    b = _Builder(bounds)
    return b.program(), frozenset(b.tokens)


def rules(bounds: TypedBounds = TypedBounds()) -> dict:
    """The grammar's expression trees by rule name, `root` first."""
    return dict(_built(bounds)[0])


def _header(fmt: str, b: TypedBounds, mark: str) -> str:
    return (f"{mark} The autostrat typed strategy grammar ({fmt}): every text it matches passes `autostrat check`.\n"
            f"{mark} Generated from the built-in registry by `autostrat grammar --typed --format {fmt}`. Bounds: "
            f"{b.params} params p1.., {b.fractions} params f1..,\n{mark} {b.numbers} number values x1.., "
            f"{b.conditions} condition values c1.., {b.values} values in all,\n{mark} {b.levels} expression levels, "
            f"{b.factors} operands in a condition; at most {longest_text(b)} characters.\n")


def gbnf(bounds: TypedBounds = TypedBounds()) -> str:
    """The typed grammar as GBNF (llama.cpp's `grammar` field, vLLM's structured outputs)."""
    tree = _built(bounds)[0]
    width = max(len(n) for n in tree)
    return _header("gbnf", bounds, "#") + "".join(f"{n.ljust(width)} ::= {gbnf_text(r, top=True)}\n"
                                                  for n, r in tree.items())


def _lark(node, terms: dict[str, str], top: bool = False) -> str:
    if isinstance(node, Lit):
        return '"' + node.text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(node, Ref):
        return terms.get(node.name) or ("start" if node.name == "root" else node.name.replace("-", "_"))
    if isinstance(node, Chars):
        return "/" + regex_text(node, {}) + "/"
    if isinstance(node, (Seq, Alt)):
        glue = " " if isinstance(node, Seq) else " | "
        text = glue.join(_lark(i, terms, top=isinstance(node, Alt)) for i in node.items)
        return text if top else f"({text})"
    if node.hi is None or node.hi <= 1:
        return _lark(node.item, terms) + quantifier(node.lo, node.hi)
    return f"{_lark(node.item, terms)} ~ {node.lo}..{node.hi}"


def lark_grammar(bounds: TypedBounds = TypedBounds()) -> str:
    """The typed grammar in Lark syntax, entry rule `start`: OpenAI's custom-tool grammars
    (LLGuidance), vLLM's guidance backend, and lark itself (Earley)."""
    tree, tokens = _built(bounds)
    terms = {n: n.upper().replace("-", "_") for n in tokens}
    lines = [f"{_lark(Ref(n), {})}: {_lark(r, terms, top=True)}" for n, r in tree.items() if n not in tokens]
    lines += [f"{terms[n]}: /{regex_text(tree[n], tree, bare=True)}/" for n in tree if n in tokens]
    return _header("lark", bounds, "//") + "\n".join(lines) + "\n"


def export(fmt: str, bounds: TypedBounds = TypedBounds()) -> str:
    """The typed grammar in `fmt` ("gbnf" or "lark")."""
    if fmt == "gbnf":
        return gbnf(bounds)
    if fmt == "lark":
        return lark_grammar(bounds)
    raise ValueError(f"unknown grammar format {fmt!r}: use one of {', '.join(FORMATS)}")


def longest_text(bounds: TypedBounds = TypedBounds()) -> int:
    """The most characters (= bytes: the grammar is ASCII) a text of the grammar can have."""
    tree = _built(bounds)[0]
    return longest(tree["root"], tree)


# The bounds a constrained run may use, largest first. An answer under the grammar is at most
# longest_text(bounds) characters, and a token the grammar admits adds at least one (llama.cpp's
# grammar sampler refuses tokens whose text is empty), so no answer is cut off at a max_tokens
# at least that large; bounds_for picks the first that fits. The first takes every covered
# example; the last is the smallest grammar worth searching with.
LADDER = (
    TypedBounds(),
    TypedBounds(factors=4),  # a condition of two comparisons still fits
    TypedBounds(factors=4, values=4, numbers=3, conditions=1, shorts=False),  # fits [llm] max_tokens' default
    TypedBounds(factors=4, values=3, numbers=2, conditions=1, shorts=False),
    TypedBounds(factors=4, values=2, numbers=2, conditions=1, shorts=False, hypothesis_chars=60),
    TypedBounds(params=2, factors=2, values=2, numbers=1, conditions=1, name_chars=20, hypothesis_chars=60,
                shorts=False),
)


def bounds_for(max_tokens: int) -> TypedBounds:
    """The largest bounds of LADDER whose every answer fits `max_tokens` tokens; a ConfigError
    naming the max_tokens needed when even the smallest does not fit."""
    for bounds in LADDER:
        if longest_text(bounds) <= max_tokens:
            return bounds
    need = longest_text(LADDER[-1])
    raise ConfigError(f"llm.max_tokens {max_tokens}: too small for the typed grammar, whose shortest useful form "
                      f"allows answers of {need} characters (up to {need} tokens) that would be cut off; set "
                      f"[llm] max_tokens to at least {need} (at least {longest_text(LADDER[0])} for the full "
                      f"bounds), or constrain = \"gbnf\" or \"off\"")
