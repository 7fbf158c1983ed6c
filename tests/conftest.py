"""Shared test setup.

numba's on-disk cache does not notice edits to kernels defined in another module, so the tests
point NUMBA_CACHE_DIR at a folder keyed by a hash of the engine's sources: an edit means a fresh
cache, an unchanged tree reuses the compiled kernels. This must happen before numba is imported.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _engine_hash() -> str:
    h = hashlib.sha256()
    for path in sorted((ROOT / "engine").rglob("*.py")):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache" / _engine_hash()))
