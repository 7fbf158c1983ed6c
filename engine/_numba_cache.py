"""Point numba's on-disk cache at a folder keyed by a hash of autostrat's jitted sources.

numba checks a cached function against its own file's timestamp only, so after an edit to a
kernel in another module the dispatch loop could run stale machine code. A folder per source hash
makes every edit start a fresh cache, and lets the same sources share one cache across runs,
commands and the test suite. The hash covers the modules that mention numba (every module with a
jitted function or a constant that jitted code reads says so), so an edit elsewhere does not cost
a recompile. A NUMBA_CACHE_DIR set by the user wins. Runs before any autostrat kernel is defined
(numba picks a function's cache folder when it is decorated).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path


def configure() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "autostrat" / "numba"
    folder = str(base / source_key())
    os.environ["NUMBA_CACHE_DIR"] = folder
    # A program that imported numba before autostrat (a notebook, a script with its own kernels)
    # has numba's config read already: without this, the kernels would be cached next to their
    # sources, checked against their own file only, and could run stale after an edit elsewhere.
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.CACHE_DIR = folder


def source_key(root: Path | None = None) -> str:
    """The cache folder's name: a hash of the jitted sources under `root` (the package by default)."""
    root = root or Path(__file__).parent
    h = hashlib.sha256()
    for path in jitted_sources(root):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def jitted_sources(root: Path | None = None) -> list[Path]:
    """The modules that import numba, and every autostrat module they import, transitively, sorted.

    An imported module can change what jitted code computes without a jitted line changing (the
    registry's order numbers the opcodes), so it is part of the key.
    """
    root = root or Path(__file__).parent
    files = {_dotted(root, p): p for p in root.rglob("*.py")}
    texts = {name: p.read_text(encoding="utf-8") for name, p in files.items()}
    todo = [name for name, text in texts.items() if _NUMBA.search(text)]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in texts:
            continue
        seen.add(name)
        for match in _IMPORT.finditer(texts[name]):
            package = match.group(1)
            todo.append(package)  # `from autostrat.tape.opcodes import X` or a package's names
            for item in match.group(2).split(","):  # `from autostrat.tape import kernels_rolling`
                todo.append(f"{package}.{item.strip().split(' ')[0]}")
    seen -= {"__init__", "_numba_cache"}
    return [files[name] for name in sorted(seen)]


def _dotted(root: Path, path: Path) -> str:
    """engine/tape/vm.py -> tape.vm; a package's __init__.py -> its name (__init__ at the top)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1]) if parts[-1] == "__init__" and len(parts) > 1 else ".".join(parts)


_NUMBA = re.compile(r"^(?:from numba\b|import numba\b)", re.M)
_IMPORT = re.compile(r"^[ \t]*from autostrat\.([\w.]+) import \(?([\w, ]+)", re.M)
