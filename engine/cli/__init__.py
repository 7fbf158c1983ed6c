"""The `autostrat` command line: a thin layer over the public functions.

Each group of subcommands lives in its own module with a `register(subparsers)` function; a
subcommand's handler takes the parsed arguments and returns an exit code.

Exit codes: 0 ok, 1 findings or a failed check, 2 usage or input error, 3 internal error.

cli only parses arguments and prints: starting or resuming a run, loading data, backtesting and
reporting are functions of the layers below, which a notebook calls the same way.
Imports: any layer; no module of the package imports cli (autostrat/__main__.py runs it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from autostrat.errors import EXIT_INTERNAL, EXIT_USAGE, AutostratError

# Modules that add subcommands, in the order their commands appear in --help.
_COMMAND_MODULES = [
    "autostrat.cli.data_cmds",
    "autostrat.cli.lang_cmds",
    "autostrat.cli.disasm_cmd",
    "autostrat.cli.engine_cmds",
    "autostrat.cli.search_cmds",
    "autostrat.cli.local_cmds",
    "autostrat.cli.report_cmd",
    "autostrat.cli.sealed_cmd",
]


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on usage errors already; keep the message to one clear line."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand."""
    parser = _Parser(
        prog="autostrat",
        description="autostrat: write, check, backtest and evolve declarative trading strategies.",
        epilog="Exit codes: 0 ok, 1 findings or a failed check, 2 usage or input error, 3 internal error.",
    )
    from autostrat import __version__

    parser.add_argument("--version", action="version", version=f"autostrat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a command group not built yet
                continue
            raise
        module.register(sub)
    return parser


def error_text(exc: AutostratError) -> str:
    """The error as printed: `WHERE: error: WHAT`, or `error: WHAT` when it names no place.

    Strategy errors carry their own `FILE:LINE:COL: error:` lines; other messages start with the
    file, setting or data spec they are about, followed by ': '.
    """
    text = str(exc)
    first = text.split("\n", 1)[0]
    if "error:" in first:
        return text
    where, sep, rest = text.partition(": ")
    if sep and where and " " not in where.strip() and len(where) < 300:
        return f"{where}: error: {rest}"
    return f"error: {text}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `autostrat` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code = args.handler(args)
    except AutostratError as exc:
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # an autostrat bug: say so, keep the traceback for the report
        traceback.print_exc()
        print("autostrat: internal error (exit 3). Please report it with the traceback above.", file=sys.stderr)
        return EXIT_INTERNAL
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
