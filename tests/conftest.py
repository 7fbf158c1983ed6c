"""Shared test setup.

autostrat keys numba's on-disk cache on a hash of its sources (autostrat/_numba_cache.py), so the
tests never run stale kernels after an edit and reuse compiled ones otherwise. Importing the
package first makes that happen before any test module imports numba. `clean_env` is the
empty working directory, without model settings, that command-line tests run in.

The ledger of sealed-test openings lives under XDG_DATA_HOME: the session points it at a folder of
its own (removed at the end), so no test writes into the user's data folder; `ledger_home` gives
a test an empty one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="autostrat-tests-data-")
atexit.register(shutil.rmtree, os.environ["XDG_DATA_HOME"], True)

import autostrat  # noqa: F401  (configures NUMBA_CACHE_DIR before numba is imported)


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """An empty working directory and no OPENAI_* variables (restored afterwards)."""
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.setenv(var, "x")
        monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def ledger_home(tmp_path_factory, monkeypatch):
    """An empty XDG data home for this test; the ledger folder under it is returned."""
    home = tmp_path_factory.mktemp("data-home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home / "autostrat" / "sealed"
