"""The disassembler: a tape as text, one instruction per line with the source it came from.

    0002  sma          r6 <- r3:close, n=50             ; 8: s = sma(close, slow)

In a tape of several programs the comment names the program: `; program 3 line 8: s = ...`.
"""

from __future__ import annotations

import math

from autostrat.lang.registry import BUILTINS
from autostrat.tape.compile import RULE_ORDER, Tape
from autostrat.tape.opcodes import META, NAMES, SERIES_REGS

_REG_NAMES = {v: k for k, v in SERIES_REGS.items()}


def _reg(r: int) -> str:
    return f"r{r}:{_REG_NAMES[r]}" if r in _REG_NAMES else f"r{r}"


def operands(tape: Tape, i: int) -> str:
    """The operand text of instruction i, from the opcode's metadata."""
    row = tape.code[i]
    meta = META[row[0]]
    parts = [_reg(int(row[2 + j])) for j in range(meta.regs)]
    if meta.windows:
        b = BUILTINS.get(meta.name)
        names = [b.params[j] for j in b.windows] if b else ["n"] * meta.windows
        parts += [f"{names[j]}={int(row[5 + j])}" for j in range(meta.windows)]
    if meta.const:
        value = float(tape.consts[row[8]])
        text = f"{value:g}"
        if math.isfinite(value) and float(text) != value:  # %g keeps 6 digits; show them all
            text = repr(value)
        parts.append(text if meta.name == "fill" else f"k={text}")
    return ", ".join(parts)


def disassemble(tape: Tape) -> str:
    """The whole tape: a header, one line per instruction, then the rule outputs and exits."""
    lines = []
    for p in range(tape.n_programs):
        name = tape.names[p] if p < len(tape.names) and tape.names[p] else f"program {p}"
        lines.append(f"; {name}: {len(tape)} instructions, {tape.n_regs} registers, "
                     f"warm-up {int(tape.warmups[p])} bars")
    sources = [s.split("\n") for s in tape.sources]
    texts = tape.texts
    for i in range(len(tape)):
        row = tape.code[i]
        text = f"{i:04d}  {NAMES[row[0]]:<16} r{int(row[1])} <- {operands(tape, i)}"
        # In a batch, a span is a line of the program that first needed the instruction: name it.
        origin = tape.origins[i] if i < len(tape.origins) else 0
        src = sources[origin] if origin < len(sources) else []
        where = f"program {origin} " if tape.n_programs > 1 else ""
        span = tape.spans[i] if i < len(tape.spans) else None
        if span is not None and span.line and 0 < span.line <= len(src):
            text = f"{text:<58} ; {where}{'line ' if where else ''}{span.line}: {src[span.line - 1].strip()}"
        elif i < len(texts) and texts[i]:  # a program built in code has no source text
            text = f"{text:<58} ; {where}{texts[i]}"
        lines.append(text)
    for p in range(tape.n_programs):
        outs = ", ".join(f"{k} r{int(r)}" for k, r in zip(RULE_ORDER, tape.outputs[p]) if r >= 0)
        ex = tape.exits[p]
        exits = [f"{k} {v:.4g}" for k, v in zip(("stop_loss", "take_profit", "trailing_stop"), ex[:3])
                 if not math.isnan(v)]
        if ex[3] >= 0:
            exits.append(f"max_hold {int(ex[3])}")
        prefix = f"program {p}: " if tape.n_programs > 1 else ""
        lines.append(f"; {prefix}rules: {outs}" + (f"; exits: {', '.join(exits)}" if exits else ""))
    return "\n".join(lines) + "\n"
