"""The exported grammars (GBNF for llama.cpp, Lark for Earley readers) against the parser.

Every valid program (the golden `# expect: ok` files, the examples, random programs from
tests/strategies.py) must fit both exports; invalid text (Python, markdown fences, a negative
lag, `&&`) must fit neither; and everything the GBNF grammar can generate must parse, which is
the promise of constrained decoding. The GBNF text is read here by a small matcher of its own
(below), not by the exporter's code; llama.cpp's own grammar engine checks it too when the
`local` extra is installed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import LarkError
from strategies import programs

from autostrat.lang import grammar_export as ge
from autostrat.lang.grammar_tree import regex_tree
from autostrat.cli import main
from autostrat.lang.fmt import fmt
from autostrat.lang.parse import parse
from autostrat.lang.registry import KEYWORDS
from autostrat.resources import examples_dir

TESTS = Path(__file__).parent
GOLDEN_OK = sorted(p for p in (TESTS / "programs").glob("*.strat") if "# expect: ok" in p.read_text())
EXAMPLES = sorted(examples_dir().glob("*.strat"))
INVALID = {
    "python": "def strategy(df):\n    return df.close > df.open\n",
    "python import": "import numpy as np\nbuy when close > open\n",
    "markdown fence": "```strat\nbuy when close > open\nsell when close < open\n```\n",
    "negative lag": "buy when close[-1] > open\nsell when close < open\n",
    "double ampersand": "buy when close > open && volume > 0\nsell when close < open\n",
    "fractional lag": "buy when close[1.5] > open\nsell when close < open\n",
    "keyword bound": "buy = close\nbuy when buy > 0\n",
    "power": "buy when close ** 2 > open\nsell when close < open\n",
    "prose": "Here is my strategy: buy when the price rises.\n",
    "empty": "",
    "positive exponent": "x = 1e5\nbuy when close > x\nsell when close < x\n",
}


# --- a reader and matcher for the GBNF the exporter writes ----------------------------------------

_TOKEN = re.compile(r'(?P<str>"(?:\\.|[^"\\])*")|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<rule>[A-Za-z0-9-]+\s*::=)'
                    r'|(?P<name>[A-Za-z0-9-]+)|(?P<rep>\{\d+(?:,\d*)?\})|(?P<op>[()|?*+])|(?P<skip>\s+|#[^\n]*)')
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)")


def _unescape(text: str) -> str:
    named = {"n": "\n", "t": "\t", "r": "\r"}
    return _ESCAPE.sub(lambda m: chr(int(m.group(1)[1:], 16)) if len(m.group(1)) > 1 else
                       named.get(m.group(1), m.group(1)), text)


def _char_class(text: str):
    body, negated = text[1:-1], text.startswith("[^")
    chars = [m.group() for m in re.finditer(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)|.", body[negated:], re.S)]
    chars = [_unescape(c) for c in chars]
    ranges, i = [], 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            ranges.append((chars[i], chars[i + 2]))
            i += 3
        else:
            ranges.append((chars[i], chars[i]))
            i += 1
    return ("cls", tuple(ranges), negated)


class Gbnf:
    """A GBNF grammar: rules read from the text, a recognizer, and a random generator."""

    def __init__(self, text: str):
        tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text) if m.lastgroup != "skip"]
        assert "".join(m.group() for m in _TOKEN.finditer(text)) == text, "GBNF text has unreadable parts"
        self.rules, self._toks, self._i = {}, tokens, 0
        while self._i < len(tokens):
            kind, value = tokens[self._i]
            assert kind == "rule", f"expected a rule definition, got {value!r}"
            self._i += 1
            self.rules[value.split("::=")[0].strip()] = self._alt()
        self._height = self._heights()

    def _peek(self):
        return self._toks[self._i] if self._i < len(self._toks) else ("end", "")

    def _alt(self):
        seqs = [self._seq()]
        while self._peek() == ("op", "|"):
            self._i += 1
            seqs.append(self._seq())
        return seqs[0] if len(seqs) == 1 else ("alt", tuple(seqs))

    def _seq(self):
        items = []
        while self._peek()[0] in ("str", "cls", "name") or self._peek() == ("op", "("):
            kind, value = self._peek()
            self._i += 1
            if kind == "str":
                node = ("lit", _unescape(value[1:-1]))
            elif kind == "cls":
                node = _char_class(value)
            elif kind == "name":
                node = ("ref", value)
            else:
                node = self._alt()
                assert self._peek() == ("op", ")")
                self._i += 1
            while self._peek()[0] == "rep" or self._peek() in (("op", "?"), ("op", "*"), ("op", "+")):
                q = self._peek()[1]
                self._i += 1
                lo, hi = {"?": (0, 1), "*": (0, None), "+": (1, None)}.get(q, (None, None))
                if lo is None:
                    parts = q[1:-1].split(",")
                    lo = int(parts[0])
                    hi = lo if len(parts) == 1 else (int(parts[1]) if parts[1] else None)
                node = ("rep", node, lo, hi)
            items.append(node)
        return items[0] if len(items) == 1 else ("seq", tuple(items))

    # recognizing: the set of positions where a node can end, given where it starts
    def accepts(self, text: str) -> bool:
        """Whether the whole text is a `root`."""
        self._text, self._memo = text, {}
        return len(text) in self._ends(("ref", "root"), 0)

    def _ends(self, node, pos: int) -> frozenset[int]:
        kind, text = node[0], self._text
        if kind == "lit":
            return frozenset([pos + len(node[1])]) if text.startswith(node[1], pos) else frozenset()
        if kind == "cls":
            if pos >= len(text):
                return frozenset()
            inside = any(lo <= text[pos] <= hi for lo, hi in node[1])
            return frozenset([pos + 1]) if inside != node[2] else frozenset()
        if kind == "ref":
            key = (node[1], pos)
            if key not in self._memo:
                self._memo[key] = frozenset()  # GBNF has no left recursion; this only guards loops
                self._memo[key] = self._ends(self.rules[node[1]], pos)
            return self._memo[key]
        if kind == "alt":
            return frozenset().union(*(self._ends(n, pos) for n in node[1]))
        if kind == "seq":
            current = frozenset([pos])
            for item in node[1]:
                current = frozenset().union(*(self._ends(item, p) for p in current))
            return current
        _, item, lo, hi = node
        current, seen, count = {pos}, {pos}, 0
        out = {pos} if lo == 0 else set()
        while current and (hi is None or count < hi):
            current = set().union(*(self._ends(item, p) for p in current))
            count += 1
            if hi is None:
                current -= seen
                seen |= current
            if count >= lo:
                out |= current
        return frozenset(out)

    # generating: random text the grammar accepts
    def _heights(self) -> dict:
        """The depth of the shortest derivation of each rule (a fixed point)."""
        height = {n: None for n in self.rules}

        def of(node):
            kind = node[0]
            if kind in ("lit", "cls"):
                return 0
            if kind == "ref":
                return None if height[node[1]] is None else height[node[1]] + 1
            if kind == "alt":
                hs = [h for h in map(of, node[1]) if h is not None]
                return min(hs) if hs else None
            if kind == "seq":
                hs = list(map(of, node[1]))
                return None if None in hs else max(hs, default=0)
            return 0 if node[2] == 0 else of(node[1])

        changed = True
        while changed:  # heights only fall from None to a number, then to smaller ones: this ends
            changed = False
            for n, r in self.rules.items():
                h = of(r)
                changed |= h != height[n]
                height[n] = h
        self._of = of
        return height

    def generate(self, draw, node=None, depth: int = 0) -> str:
        """A random text of `node` (default root); past a depth or a size it takes the shortest ways out."""
        if node is None:
            self._budget, node = 300, ("ref", "root")
        self._budget -= 1
        deep = depth > 40 or self._budget < 0
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "cls":
            pool = [c for c in "aZ_09 \t#\"'()[]-+*/<>=!&|%.,:;`\\é€中\r" if
                    any(lo <= c <= hi for lo, hi in node[1]) != node[2]]
            pool += [chr(c) for lo, hi in ([] if node[2] else node[1]) for c in (ord(lo), ord(hi))]
            return draw(st.sampled_from(pool))
        if kind == "ref":
            return self.generate(draw, self.rules[node[1]], depth + 1)
        if kind == "seq":
            return "".join(self.generate(draw, n, depth) for n in node[1])
        if kind == "alt":
            options = list(node[1])
            if deep:
                best = min(self._of(n) for n in options if self._of(n) is not None)
                options = [n for n in options if self._of(n) == best]
            return self.generate(draw, draw(st.sampled_from(options)), depth)
        _, item, lo, hi = node
        top = lo if deep else min(hi if hi is not None else lo + 3, lo + 3)
        return "".join(self.generate(draw, item, depth) for _ in range(draw(st.integers(lo, top))))


@lru_cache(maxsize=1)
def gbnf() -> Gbnf:
    return Gbnf(ge.gbnf())


@lru_cache(maxsize=1)
def lark_form() -> Lark:
    return Lark(ge.lark_grammar(), parser="earley", lexer="dynamic")


def lark_accepts(text: str) -> bool:
    try:
        lark_form().parse(text)
    except LarkError:
        return False
    return True


# --- acceptance --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", GOLDEN_OK + EXAMPLES, ids=lambda p: p.name)
def test_valid_files_fit_both_exports(path):
    text = path.read_text(encoding="utf-8")
    parse(text)
    assert gbnf().accepts(text)
    assert lark_accepts(text)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_text_fits_neither_export(name):
    text = INVALID[name]
    assert not gbnf().accepts(text)
    assert not lark_accepts(text)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_valid_programs_fit_the_gbnf_export(program):
    assert gbnf().accepts(fmt(program))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_valid_programs_fit_the_lark_export(program):
    assert lark_accepts(fmt(program))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_everything_the_gbnf_export_generates_parses(data):
    text = gbnf().generate(data.draw)
    assert gbnf().accepts(text)  # the matcher and the generator agree
    parse(text)  # raises StrategyError if constrained decoding could produce an unparsable answer


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_what_the_gbnf_export_generates_fits_the_lark_export(data):
    assert lark_accepts(gbnf().generate(data.draw))


# --- the bounds and the conversion ---------------------------------------------------------------


def test_keywords_come_from_the_grammar_and_match_the_registry():
    assert ge.keywords() == KEYWORDS


def test_bounds_limit_comments_statements_names_and_spaces():
    g = gbnf()
    body = "buy when close > open\nsell when close < open\n"
    assert g.accepts("# " + "x" * 158 + "\n" + body)
    assert not g.accepts("# " + "x" * 159 + "\n" + body)
    assert g.accepts("\n\n\n" + "# a\n\n" * 6 + body)
    assert not g.accepts("# a\n" * 7 + body)
    assert not g.accepts("\n\n\n\n" + body)
    assert g.accepts("buy when close > open\n# a\n\n# b\nsell when close < open\n# c\n# d\n")
    assert not g.accepts("buy when close > open\n# a\n# b\n# c\nsell when close < open\n")
    many = "".join(f"x{i} = close\n" for i in range(38)) + body
    assert g.accepts(many) and not g.accepts("x = open\n" + many)
    assert g.accepts(f"{'n' * 64} = close\n" + body) and not g.accepts(f"{'n' * 65} = close\n" + body)
    assert g.accepts("buy when close >    open\nsell when close < open\n")
    assert not g.accepts("buy when close >     open\nsell when close < open\n")
    assert not g.accepts("buy when close > 1234567890123456\nsell when close < open\n")  # parse's limit


def test_smaller_bounds_change_the_export():
    small = Gbnf(ge.gbnf(ge.Bounds(head_comments=1, statements=2)))
    body = "buy when close > open\nsell when close < open\n"
    assert small.accepts("# a\n" + body) and not small.accepts("# a\n# b\n" + body)
    assert not small.accepts("x = 1\n" + body)


def test_names_that_start_like_keywords_are_names():
    text = "buyer = close\nnot_up = close < open\nandor = true\nintrend = 1\nbuy when buyer > 0 and andor\n"
    assert gbnf().accepts(text) and lark_accepts(text)
    for word in ("when", "and", "not", "strategy", "max_hold", "true"):
        assert not gbnf().accepts(f"{word} = close\nbuy when close > 0\n")


def test_spaces_are_required_only_between_two_words():
    assert gbnf().accepts("buy when(close>open) and(volume>0)\nsell when not(close > open)\n")
    assert not gbnf().accepts("buy when(close>open)and(volume>0)\nsell when close < open\n")  # conservative
    assert not gbnf().accepts("buy when close > open andvolume > 0\nsell when close < open\n")
    assert not gbnf().accepts("buy when close > 0and open > 0\nsell when close < open\n")
    assert gbnf().accepts("buy when notx\nsell when close < open\n")  # a name


def test_the_export_follows_the_grammar_file(monkeypatch, tmp_path):
    # The export reads strategy.lark: a new operator there appears in both forms, with no other edit.
    source = ge.grammar_path().read_text(encoding="utf-8").replace('MUL_OP: "*" | "/"', 'MUL_OP: "*" | "/" | "%%"')
    grammar = tmp_path / "strategy.lark"
    grammar.write_text(source, encoding="utf-8")
    monkeypatch.setattr(ge, "grammar_path", lambda: grammar)
    ge._compiled.cache_clear()
    ge._grammar.cache_clear()
    try:
        assert "%%" in ge.gbnf() and "%%" in ge.lark_grammar()
        assert Gbnf(ge.gbnf()).accepts("buy when close %% 2 > 0\nsell when close < open\n")
    finally:
        ge._compiled.cache_clear()
        ge._grammar.cache_clear()


def test_unsupported_regex_features_are_refused():
    with pytest.raises(ValueError, match="no GBNF form"):
        regex_tree(r"(?=a)b", 8)
    with pytest.raises(ValueError, match="unknown grammar format"):
        ge.export("yaml")


def test_grammar_command_prints_each_format(capsys):
    assert main(["grammar", "--format", "gbnf"]) == 0
    assert capsys.readouterr().out == ge.gbnf()
    assert main(["grammar", "--format", "lark"]) == 0
    assert capsys.readouterr().out == ge.lark_grammar()


# --- llama.cpp's own grammar engine (the `local` extra) ------------------------------------------


class LlamaGrammarCheck:
    """llama.cpp's grammar sampler over the SmolLM2 vocabulary: does a text fit the grammar?

    The text is tokenized with the model's tokenizer; each token must keep a finite logit when
    the grammar sampler is applied to it alone, and the end-of-text token must be allowed last.
    """

    def __init__(self):
        llama_cpp = pytest.importorskip("llama_cpp", reason="the local extra is not installed: "
                                                            "pip install -e '.[local]'")
        from autostrat.search.local import model_path

        try:
            path = model_path()
        except Exception as exc:  # noqa: BLE001 - the package is part of the extra
            pytest.skip(f"the SmolLM2 model package is not installed ({exc})")
        self.ll = llama_cpp
        self.llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)

    def sampler(self, grammar: str):
        return self.ll.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")

    def accepts(self, grammar: str, text: str) -> bool:
        import ctypes
        import math

        smpl = self.sampler(grammar)
        assert smpl, "llama.cpp refused the grammar"
        try:
            cell = (self.ll.llama_token_data * 1)()
            for tok in [*self.llm.tokenize(text.encode(), add_bos=False, special=False), self.eos]:
                cell[0].id, cell[0].logit, cell[0].p = tok, 0.0, 0.0
                candidates = self.ll.llama_token_data_array(data=cell, size=1, selected=-1, sorted=False)
                self.ll.llama_sampler_apply(smpl, ctypes.byref(candidates))
                if math.isinf(cell[0].logit):
                    return False
                if tok != self.eos:
                    self.ll.llama_sampler_accept(smpl, tok)
            return True
        finally:
            self.ll.llama_sampler_free(smpl)


@pytest.fixture(scope="module")
def llama():
    check = LlamaGrammarCheck()
    yield check
    check.llm.close()  # now, not at interpreter exit, when llama_cpp's globals are gone


def test_llama_cpp_loads_the_gbnf_export_and_refuses_a_broken_one(llama):
    assert llama.sampler(ge.gbnf())
    assert llama.sampler(ge.gbnf(ge.Bounds(statements=5, spaces=1)))
    assert not llama.sampler("root ::= undefined-rule\n")


@pytest.mark.parametrize("path", GOLDEN_OK + EXAMPLES, ids=lambda p: p.name)
def test_llama_cpp_accepts_every_valid_file(llama, path):
    assert llama.accepts(ge.gbnf(), path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_llama_cpp_rejects_invalid_text(llama, name):
    assert not llama.accepts(ge.gbnf(), INVALID[name])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_llama_cpp_and_the_matcher_agree(llama, data):
    # Generated texts fit; random programs fit; each with one character changed, they agree too.
    text = data.draw(st.one_of(st.builds(lambda d: gbnf().generate(d.draw), st.data()), programs().map(fmt)))
    assert llama.accepts(ge.gbnf(), text)
    if text:
        i = data.draw(st.integers(0, len(text) - 1))
        mutated = text[:i] + data.draw(st.sampled_from(list("x(]-=\n #&"))) + text[i + 1:]
        assert llama.accepts(ge.gbnf(), mutated) == gbnf().accepts(mutated)
