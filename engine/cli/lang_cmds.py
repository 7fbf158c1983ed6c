"""Language commands: check, fmt, reference."""

from __future__ import annotations

import sys
from pathlib import Path

from autostrat.errors import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, AutostratError, StrategyError
from autostrat.lang.check import check
from autostrat.lang.fmt import fmt
from autostrat.lang.parse import parse
from autostrat.lang.reference import builtins_markdown, reference_text, update_language_md
from autostrat.resources import read_text


def read_source(path: str) -> str:
    """A strategy file (or stdin for '-'), with a clear error when it cannot be read."""
    return read_text(path, "strategy")


def cmd_check(args) -> int:
    """`autostrat check FILE...`: 0 when every file parses and checks, 1 otherwise."""
    bad = 0
    for path in args.files:
        try:
            typed = check(parse(read_source(path), path), portfolio=True)
        except StrategyError as exc:
            print(exc.format(), file=sys.stderr)
            bad += 1
            continue
        if not args.quiet:
            rules = "portfolio" if typed.portfolio else ", ".join(typed.rules)
            print(f"{path}: ok ({rules}; warm-up {typed.warmup} bars)")
    if bad:
        print(f"{bad} of {len(args.files)} file{'s' if len(args.files) != 1 else ''} failed the check",
              file=sys.stderr)
    return EXIT_FINDINGS if bad else EXIT_OK


def cmd_fmt(args) -> int:
    """`autostrat fmt [--check] FILE...`: rewrite (or list) files not in the canonical layout."""
    changed, failed = [], 0
    for path in args.files:
        try:
            source = read_source(path)
            out = fmt(parse(source, path))
        except StrategyError as exc:
            print(exc.format(), file=sys.stderr)
            failed += 1
            continue
        if path == "-" and not args.check:
            sys.stdout.write(out)
            continue
        if out != source:
            changed.append(path)
            if not args.check:
                Path(path).write_text(out, encoding="utf-8")
    verb = "would reformat" if args.check else "reformatted"
    for path in changed:
        print(f"{verb} {path}")
    if failed:
        return EXIT_USAGE
    return EXIT_FINDINGS if (args.check and changed) else EXIT_OK


def cmd_reference(args) -> int:
    """`autostrat reference [--markdown | --update FILE]`."""
    if args.update:
        try:
            changed = update_language_md(args.update)
        except (OSError, ValueError) as exc:  # a missing file, or a file without the markers
            raise AutostratError(f"{args.update}: cannot update the reference: {exc}") from None
        print(f"{args.update}: {'updated' if changed else 'already up to date'}")
    elif args.markdown:
        print(builtins_markdown())
    else:
        sys.stdout.write(reference_text())
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("check", help="check strategy files for errors",
                       description="Parse and type-check strategy files. Prints each error as "
                       "file:line:col with the source line, a caret and a hint. Exit 0 when all are "
                       "valid, 1 when any is not.")
    p.add_argument("files", nargs="+", metavar="FILE", help="strategy files (.strat); - reads stdin")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("fmt", help="rewrite strategy files in the canonical layout",
                       description="Format strategy files in place (comments kept). With --check, "
                       "change nothing and exit 1 naming the files that would change. - formats "
                       "stdin to stdout.")
    p.add_argument("files", nargs="+", metavar="FILE", help="strategy files (.strat); - reads stdin")
    p.add_argument("--check", action="store_true", help="report files that would change; write nothing")
    p.set_defaults(handler=cmd_fmt)

    p = sub.add_parser("reference", help="print the language reference",
                       description="Print the strategy language reference generated from the built-in registry.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--markdown", action="store_true", help="print the generated built-in tables of LANGUAGE.md")
    g.add_argument("--update", metavar="FILE", help="rewrite the generated section of FILE (grammar/LANGUAGE.md)")
    p.set_defaults(handler=cmd_reference)
