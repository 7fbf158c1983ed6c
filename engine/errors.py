"""The project's error types and its one diagnostic format.

Every error a user (or a model asked to repair a strategy) sees goes through here:

    path:line:col: error: message
        source line
        ^
    hint: what to do about it

Exit codes of the command line: 0 ok, 1 findings or a failed check, 2 usage or input error,
3 internal error.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


class AutostratError(Exception):
    """Base class of every error autostrat raises on purpose; the CLI prints it without a traceback."""

    exit_code = EXIT_USAGE


class DataError(AutostratError):
    """Market data that cannot be loaded or fails validation (names file, row and column)."""


class ConfigError(AutostratError):
    """A bad setting in autostrat.toml or on the command line."""


@dataclass(frozen=True)
class Diagnostic:
    """One located problem in a strategy's source text. Lines and columns are 1-based."""

    message: str
    line: int = 0
    column: int = 0
    hint: str = ""
    path: str = "<strategy>"
    source_line: str = ""

    def format(self) -> str:
        """Render as `path:line:col: error: message`, the source line, a caret and the hint."""
        where = f"{self.path}:{self.line}:{self.column}" if self.line else self.path
        out = [f"{where}: error: {self.message}"]
        if self.line and self.source_line:
            text = self.source_line.rstrip("\n").expandtabs(1)
            if len(text) > 200:  # keep a huge line readable around the column
                start = max(0, self.column - 100)
                text = ("..." if start else "") + text[start : start + 200]
                caret_col = self.column - start + (3 if start else 0)
            else:
                caret_col = self.column
            out.append(f"    {text}")
            out.append("    " + " " * max(caret_col - 1, 0) + "^")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


class StrategyError(AutostratError):
    """A strategy that does not parse or does not check. Carries one or more diagnostics."""

    exit_code = EXIT_FINDINGS

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__(self.format())

    def format(self) -> str:
        """All diagnostics in the one error format, separated by blank lines."""
        return "\n\n".join(d.format() for d in self.diagnostics)

    @property
    def first(self) -> Diagnostic:
        return self.diagnostics[0]
