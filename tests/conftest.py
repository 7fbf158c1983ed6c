"""Shared test setup.

autostrat keys numba's on-disk cache on a hash of its sources (autostrat/_numba_cache.py), so the
tests never run stale kernels after an edit and reuse compiled ones otherwise. Importing the
package first makes that happen before any test module imports numba.
"""

from __future__ import annotations

import autostrat  # noqa: F401  (configures NUMBA_CACHE_DIR before numba is imported)
