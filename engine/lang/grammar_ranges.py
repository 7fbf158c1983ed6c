"""Numbers by value for the typed grammar, and param ranges `V in LO..HI` that always check.

The checker wants LO <= V <= HI, but a context-free grammar cannot compare two numbers it reads.
So a declaration is split by V's value into classes, each an interval [a, b]: a class's V is any
number in [a, b], its LO any number up to a, its HI any number from b, and every choice has
LO <= V <= HI. Whole numbers are exact up to 20 (`20 in 10..60`, `2 in 2..10`) and go by their
first digit above (V = 55 is in 50..59, so HI is at least 59; V = 126 is in 100..199); numbers
with tenths go by their whole part below 10 (V = 2.5 is in 2.0..2.9) and by their tens above.
"""

from __future__ import annotations

from autostrat.lang.grammar_tree import Chars, Lit, alt, seq

DIGIT = Chars(((48, 57),))
TENTHS_MAX = 999  # 99.9, the largest number with tenths (a fraction or a percentage) a param takes


def _digit(lo: int, hi: int):
    return Lit(str(lo)) if lo == hi else Chars(((48 + lo, 48 + hi),))


def _same_length(lo: str, hi: str):
    """Digit strings of one length from lo to hi (either may start with 0 inside a number)."""
    if lo == hi:
        return Lit(lo)
    a, b, n = int(lo[0]), int(hi[0]), len(lo) - 1
    if n == 0 or (lo[1:] == "0" * n and hi[1:] == "9" * n):
        return seq(_digit(a, b), *[DIGIT] * n)
    if a == b:
        return seq(Lit(lo[0]), _same_length(lo[1:], hi[1:]))
    parts = [seq(Lit(lo[0]), _same_length(lo[1:], "9" * n))]
    if b - a > 1:
        parts.append(seq(_digit(a + 1, b - 1), *[DIGIT] * n))
    parts.append(seq(Lit(hi[0]), _same_length("0" * n, hi[1:])))
    return alt(parts)


def whole(a: int, b: int):
    """Whole numbers from a (at least 1) to b, without leading zeros."""
    if not 1 <= a <= b:
        raise ValueError(f"whole numbers from {a} to {b}: need 1 <= a <= b")
    parts = []
    for width in range(len(str(a)), len(str(b)) + 1):
        lo, hi = max(a, 10 ** (width - 1)), min(b, 10 ** width - 1)
        parts.append(_same_length(str(lo), str(hi)))
    return alt(parts[::-1])  # longest first: a regex alternation takes the first that matches


def tenths(a: int, b: int):
    """Numbers written `I` or `I.D` whose value in tenths (10 I + D) is from a (at least 1) to b."""
    if not 1 <= a <= b:
        raise ValueError(f"tenths from {a} to {b}: need 1 <= a <= b")
    parts = []
    i0, i1 = a // 10, b // 10
    if i0 == i1:
        parts.append(seq(Lit(str(i0)), Lit("."), _digit(a % 10, b % 10)))
    else:
        parts.append(seq(Lit(str(i0)), Lit("."), _digit(a % 10, 9)))
        if i1 - i0 > 1:
            parts.append(seq(whole(i0 + 1, i1 - 1), Lit("."), DIGIT))
        parts.append(seq(Lit(str(i1)), Lit("."), _digit(0, b % 10)))
    lo, hi = max(1, -(-a // 10)), b // 10  # the whole numbers among them, written without a point
    if lo <= hi:
        parts.append(whole(lo, hi))
    return alt(parts)


def whole_classes(top: int, exact: int = 20) -> list[tuple[int, int]]:
    """The classes of a whole-number param's value from 1 to top: exact up to `exact`, then by
    the first digit (21..29, 30..39, 100..199, ...)."""
    out = [(v, v) for v in range(1, min(top, exact) + 1)]
    for width in range(len(str(exact)), len(str(top)) + 1):
        step = 10 ** (width - 1)
        out += [(max(exact + 1, d * step), min(top, d * step + step - 1)) for d in range(1, 10)
                if exact < d * step + step - 1 and d * step <= top]
    return out


def tenths_classes(top: int = TENTHS_MAX) -> list[tuple[int, int]]:
    """The classes of a value in tenths from 1 to top: by the whole part below 10, then by tens."""
    out = [(max(1, 10 * i), min(top, 10 * i + 9)) for i in range(10) if 10 * i <= top]
    return out + [(100 * t, min(top, 100 * t + 99)) for t in range(1, 10) if 100 * t <= top]


def declarations(number, classes: list[tuple[int, int]], top: int, suffix: str = ""):
    """A param's value with an optional range: `V` or `V in LO..HI` with LO <= V <= HI, where
    number(a, b) is the tree of the numbers from a to b and `suffix` follows each (`%`)."""
    end = Lit(suffix) if suffix else None

    def num(a: int, b: int):
        return seq(number(a, b), end) if end else number(a, b)

    ranged = [seq(num(a, b), Lit(" in "), num(1, a), Lit(".."), num(b, top)) for a, b in classes]
    return alt([*ranged, num(1, top)])  # a regex alternation takes the first that matches: ranges first
