"""Files: where the ones that ship inside the package live, and the one reader of the user's text.

The grammar, the examples and the prompts sit at the repository root (grammar/, prompts/) and are
mapped into the installed package as `autostrat.grammar` and `autostrat.prompts`, so a plain
`pip install .` works from any directory.

`read_text` reads every text file a user or a model gives autostrat (strategies, a baseline, a
universe list): UTF-8 only, with one clear error for a missing file, a folder, unreadable bytes
or a file too large to be what it claims.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from autostrat.errors import AutostratError

MAX_TEXT_BYTES = 16 << 20  # no strategy, list or template is this large: refuse rather than read gigabytes


def read_text(path: str | Path, what: str = "file", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The text of a UTF-8 file (or standard input for '-'), exactly as written (CRLF kept).

    Errors read `PATH: error: ...` and say what to do. `what` names the file in them ("strategy").
    """
    if str(path) == "-":
        return sys.stdin.read(max_bytes + 1)[:max_bytes]
    p = Path(path)
    try:
        if p.is_dir():
            raise AutostratError(f"{path}: error: this is a folder, not a {what}; give the path of a file")
        with p.open("rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise AutostratError(f"{path}: error: no such file") from None
    except OSError as exc:
        raise AutostratError(f"{path}: error: cannot read the {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise AutostratError(f"{path}: error: the {what} is larger than {max_bytes >> 20} MiB; is it the right file?")
    try:
        # Bytes, not text mode: text mode would turn CRLF into LF and hide it from `fmt --check`.
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1].hex()
        line = data.count(b"\n", 0, exc.start) + 1
        raise AutostratError(f"{path}:{line}: error: not UTF-8 text (byte 0x{bad} at offset {exc.start}: "
                             f"{exc.reason}); save the {what} as UTF-8") from None


def _dir(package: str) -> Path:
    return Path(str(resources.files(package)))


def grammar_dir() -> Path:
    """The folder holding strategy.lark and LANGUAGE.md."""
    return _dir("autostrat.grammar")


def grammar_path() -> Path:
    """The one grammar of the strategy language."""
    return grammar_dir() / "strategy.lark"


def examples_dir() -> Path:
    """The example strategies (grammar/examples/*.strat)."""
    return grammar_dir() / "examples"


def example_path(name: str) -> Path:
    """An example strategy by file name, with or without the .strat suffix."""
    if not name.endswith(".strat"):
        name += ".strat"
    return examples_dir() / name


def prompts_dir() -> Path:
    """The prompt templates (program.md and friends)."""
    return _dir("autostrat.prompts")
