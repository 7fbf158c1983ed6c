"""Shared test setup.

autostrat keys numba's on-disk cache on a hash of its sources (autostrat/_numba_cache.py), so the
tests never run stale kernels after an edit and reuse compiled ones otherwise. Importing the
package first makes that happen before any test module imports numba. `clean_env` is the
empty working directory, without model settings, that command-line tests run in.
"""

from __future__ import annotations

import pytest

import autostrat  # noqa: F401  (configures NUMBA_CACHE_DIR before numba is imported)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """An empty working directory and no OPENAI_* variables (restored afterwards)."""
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return tmp_path
