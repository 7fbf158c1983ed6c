"""The instruction set of the tape: one opcode per kernel, and one metadata table.

The opcode numbers are plain module constants and a NamedTuple instance (`Op`) that numba reads
as compile-time constants in the dispatch loop. The metadata table says, for each opcode, which
operand columns it uses; the disassembler and the completeness test read it.
"""

from __future__ import annotations

from collections import namedtuple

from autostrat.lang.registry import BUILTINS

# Operand columns of one instruction row (int64): the opcode, the destination register, up to
# three source registers, up to three window integers, and an index into the constant pool.
OP, DST, A, B, C, N1, N2, N3, K = range(9)
WIDTH = 9

# Registers 0..4 hold the bar data; the tape never writes them.
SERIES_REGS = {"open": 0, "high": 1, "low": 2, "close": 3, "volume": 4}
FIRST_FREE_REG = 5

# Language operators and their kernels (the rest of the opcodes are the built-ins, by name).
OPERATORS = {
    "fill": "fill", "lag": "lag", "neg": "neg", "not": "not",
    "+": "add", "-": "sub", "*": "mul", "/": "div",
    "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne",
    "and": "and", "or": "or",
}

_BASE = ["fill", "lag", "neg", "not", "add", "sub", "mul", "div", "lt", "le", "gt", "ge", "eq", "ne", "and", "or"]
# Cross-sectional built-ins read every asset at once: they run between tapes (tape/xsection.py),
# not in the single-asset VM, so they have no opcode.
NAMES: tuple[str, ...] = tuple(_BASE + [name for name, b in BUILTINS.items() if not b.cross_sectional])
CODE = {name: i for i, name in enumerate(NAMES)}

# Python keywords cannot be namedtuple fields: `and`, `or`, `not` get a trailing underscore.
_FIELDS = [n + "_" if n in ("and", "or", "not") else n for n in NAMES]
OpT = namedtuple("OpT", _FIELDS)
Op = OpT(*range(len(NAMES)))

# Operand use per opcode: register args (count), windows (count), constant (bool), bar inputs.
Meta = namedtuple("Meta", "name regs windows const")


def _meta(name: str) -> Meta:
    if name == "fill":
        return Meta(name, 0, 0, True)
    if name == "lag":
        return Meta(name, 1, 1, False)
    if name in ("neg", "not"):
        return Meta(name, 1, 0, False)
    if name in _BASE:
        return Meta(name, 2, 0, False)
    b = BUILTINS[name]
    return Meta(name, sum(k in "xc" for k in b.kinds), sum(k == "n" for k in b.kinds), "k" in b.kinds)


META: tuple[Meta, ...] = tuple(_meta(n) for n in NAMES)
