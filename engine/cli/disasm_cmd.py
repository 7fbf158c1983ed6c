"""`autostrat disasm`: print the instruction tape a strategy compiles to."""

from __future__ import annotations

import sys

from autostrat.cli.lang_cmds import read_source
from autostrat.errors import EXIT_FINDINGS, EXIT_OK, StrategyError
from autostrat.lang.check import check
from autostrat.lang.parse import parse
from autostrat.tape.compile import compile, compile_many
from autostrat.tape.disasm import disassemble


def cmd_disasm(args) -> int:
    """Check and compile each file, print its tape; with --batch, one shared tape for all."""
    typed, bad = [], 0
    for path in args.files:
        try:
            typed.append(check(parse(read_source(path), path)))
        except StrategyError as exc:
            print(exc.format(), file=sys.stderr)
            bad += 1
    if bad:
        return EXIT_FINDINGS
    if args.batch:
        sys.stdout.write(disassemble(compile_many(typed)))
        return EXIT_OK
    for i, t in enumerate(typed):
        if len(typed) > 1:
            print(("\n" if i else "") + f"; {args.files[i]}")
        sys.stdout.write(disassemble(compile(t)))
    return EXIT_OK


def register(sub) -> None:
    """Add the `disasm` subcommand."""
    p = sub.add_parser("disasm", help="print the instruction tape a strategy compiles to",
                       description="Check and compile strategy files and print each tape: one "
                       "instruction per line with its registers, windows and constants, and the source "
                       "line it came from; then the registers of the rules and the exits. Exit 0 when "
                       "all compile, 1 when any fails the check (errors on stderr).")
    p.add_argument("files", nargs="+", metavar="FILE", help="strategy files (.strat); - reads stdin")
    p.add_argument("--batch", action="store_true",
                   help="compile all files into one tape, sharing common sub-expressions, as bulk "
                   "evaluation does")
    p.set_defaults(handler=cmd_disasm)
