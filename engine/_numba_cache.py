"""Point numba's on-disk cache at a folder keyed by a hash of autostrat's own sources.

numba checks a cached function against its own file's timestamp only, so after an edit to a
kernel in another module the dispatch loop could run stale machine code. A folder per source hash
makes every edit start a fresh cache, and lets the same sources share one cache across runs,
commands and the test suite. A NUMBA_CACHE_DIR set by the user wins. Must run before numba is
imported.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def configure() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "autostrat" / "numba"
    os.environ["NUMBA_CACHE_DIR"] = str(base / h.hexdigest()[:16])
