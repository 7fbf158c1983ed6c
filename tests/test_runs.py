"""The run folder: atomic writes, the commit order of an iteration, reading records back, results.tsv."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from autostrat.search import runs as R
from autostrat.errors import AutostratError
from autostrat.sim.objective import Objective
from autostrat import files
from autostrat.files import atomic_write
from autostrat.search.runs import clean_json, read_results_tsv, RunFolder


def _record(i, status="keep", objective=0.5, **extra):
    metrics = None if objective is None else {"train": {"total_return": objective / 2, "sharpe": 1.0},
                                              "validation": {"total_return": objective, "sharpe": 2.0}}
    return {"iteration": i, "status": status, "objective": objective, "metrics": metrics,
            "description": f"candidate {i}", **extra}


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "a" / "file.txt"
    atomic_write(path, "one")
    atomic_write(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.txt"]


def test_atomic_write_gives_the_permissions_open_would(tmp_path):
    path = tmp_path / "new.txt"
    atomic_write(path, "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # umask applied, not 0600
    os.chmod(path, 0o640)
    atomic_write(path, "y")
    assert path.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "file.txt"
    atomic_write(path, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def test_clean_json_turns_nan_into_null():
    out = clean_json({"a": math.nan, "b": [1.0, math.inf, np.float64(2.5)], "c": np.int64(3)})
    assert out == {"a": None, "b": [1.0, None, 2.5], "c": 3}
    assert json.loads(json.dumps(out)) == out


def test_commit_writes_the_record_last(tmp_path, monkeypatch):
    run = RunFolder.create(tmp_path / "r", {"x": 1})
    order = []
    real = R.atomic_write
    monkeypatch.setattr(R, "atomic_write", lambda p, d: (order.append(p.name), real(p, d)))
    run.commit(_record(0), "strategy text\n", np.arange(4, dtype=np.float64), "prompt", "response")
    assert order[-1] == "iter_0000.json"
    assert set(order) == {"iter_0000.strat", "iter_0000.npy", "iter_0000.md", "iter_0000.json"}
    assert order.count("iter_0000.md") == 2  # the prompt and the response
    record = json.loads((tmp_path / "r" / "iter_0000.json").read_text())
    assert record["strategy"] == "iter_0000.strat" and record["returns"] == "returns/iter_0000.npy"
    returns = run.read_returns(0)
    assert returns.dtype == np.float32 and returns.tolist() == [0, 1, 2, 3]
    assert run.read_strategy(0) == "strategy text\n"


def test_load_records_in_order_and_refuses_a_gap(tmp_path):
    run = RunFolder.create(tmp_path / "r", {})
    for i in (0, 1, 2):
        run.commit(_record(i), f"s{i}\n")
    assert [r["iteration"] for r in run.load_records()] == [0, 1, 2]
    (tmp_path / "r" / "iter_0001.json").unlink()
    with pytest.raises(AutostratError, match="iteration 1 has no record"):
        run.load_records()


def test_an_unreadable_last_record_is_moved_aside_but_not_an_earlier_one(tmp_path):
    run = RunFolder.create(tmp_path / "r", {})
    for i in (0, 1, 2):
        run.commit(_record(i), f"s{i}\n")
    (tmp_path / "r" / "iter_0002.json").write_text("")  # a torn write after a power cut
    assert [r["iteration"] for r in run.load_records()] == [0, 1]  # a reader leaves it in place
    assert (tmp_path / "r" / "iter_0002.json").exists() and "left out" in run.notices[-1]
    assert [r["iteration"] for r in run.load_records(repair=True)] == [0, 1]  # a resume moves it aside
    assert not (tmp_path / "r" / "iter_0002.json").exists()
    assert (tmp_path / "r" / "damaged" / "iter_0002.json").read_text() == ""
    assert (tmp_path / "r" / "damaged" / "iter_0002.strat").read_text() == "s2\n"
    (tmp_path / "r" / "iter_0000.json").write_text("{")
    with pytest.raises(AutostratError, match="iter_0000.json"):
        run.load_records()


def test_remove_uncommitted_deletes_leftovers_of_the_next_iteration(tmp_path):
    run = RunFolder.create(tmp_path / "r", {})
    run.commit(_record(0), "s0\n", np.zeros(3), "p", "r")
    for rel in ("iter_0001.strat", "returns/iter_0001.npy", "prompts/iter_0001.md", "responses/iter_0001.md",
                ".iter_0000.json.abc.tmp"):
        (tmp_path / "r" / rel).write_text("partial")
    run.remove_uncommitted(1)
    left = sorted(str(p.relative_to(tmp_path / "r")) for p in (tmp_path / "r").rglob("*") if p.is_file())
    assert left == ["config.json", "iter_0000.json", "iter_0000.strat", "prompts/iter_0000.md",
                    "responses/iter_0000.md", "returns/iter_0000.npy"]


def test_create_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "notes.txt").write_text("mine")
    with pytest.raises(AutostratError, match="not a run"):
        RunFolder.create(tmp_path / "r", {})
    assert not RunFolder.exists(tmp_path / "r")


def test_results_tsv_has_one_row_per_record(tmp_path):
    run = RunFolder.create(tmp_path / "r", {})
    records = [_record(0), _record(1, "discard", 0.25), _record(2, "invalid", None, description="bad\tanswer\nhere"),
               _record(3, "keep", math.nan)]
    run.write_results_tsv(records, Objective.parse("validation.total_return"))
    rows = read_results_tsv(tmp_path / "r" / "results.tsv")
    assert list(rows[0]) == list(R.TSV_COLUMNS)
    assert [r["iteration"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[1] == {"iteration": "1", "objective": "0.250000", "train": "0.125000", "validation": "0.250000",
                       "status": "discard", "description": "candidate 1"}
    assert rows[2]["objective"] == "nan" and rows[2]["train"] == "nan" and rows[2]["description"] == "bad answer here"
    assert rows[3]["objective"] == "nan"


def test_results_tsv_columns_follow_the_objective_metric(tmp_path):
    run = RunFolder.create(tmp_path / "r", {})
    run.write_results_tsv([_record(0)], Objective.parse("train.sharpe"))
    row = read_results_tsv(tmp_path / "r" / "results.tsv")[0]
    assert (row["train"], row["validation"]) == ("1.000000", "2.000000")


def test_summary_round_trip(tmp_path):
    run = RunFolder.create(tmp_path / "r", {})
    assert run.read_summary() is None
    run.write_summary({"through": 4, "text": "- short"})
    assert run.read_summary() == {"through": 4, "text": "- short"}
    assert not [p for p in os.listdir(tmp_path / "r") if p.endswith(".tmp")]
