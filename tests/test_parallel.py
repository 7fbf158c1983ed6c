"""Parallel steps, behaviour duplicates and constraints: the serial loop's records, K at once, resume."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from autostrat.search.runs import clean_json  # noqa: E402
from search_runs import GOLDEN, mutate_records, scripted_model_records  # noqa: E402


def golden(name):
    return clean_json(json.loads((GOLDEN / f"search_{name}.json").read_text()))


def test_parallel_1_reproduces_the_serial_loop_record_for_record(tmp_path):
    assert mutate_records(tmp_path / "m", dedupe="text") == golden("mutate")
    assert scripted_model_records(tmp_path / "s", dedupe="text") == golden("scripted_model")
