"""Where the files that ship inside the package live: the grammar, the examples and the prompts.

They sit at the repository root (grammar/, prompts/) and are mapped into the installed package as
`autostrat.grammar` and `autostrat.prompts`, so a plain `pip install .` works from any directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


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
