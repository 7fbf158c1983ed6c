"""A run folder under damage and contention: nothing is lost, nothing crashes.

Two processes on one run (the second is refused at once, told who holds it; a kill -9 leaves no
stale lock), a damaged last record (moved into damaged/ with its files, the iteration runs again),
damaged records elsewhere, a deleted strategy, a config.json that is not an object, a garbage
returns file, a damaged or missing sealed.json (the count of openings is never reset), and a
failed start (nothing is created).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autostrat.cli import main
from autostrat.search.runs import RunFolder, RunLockedError

DATA = "synthetic:bars=1500"
SPLIT_FLAGS = ["--train-end", "2003-12-31", "--validation-start", "2004-01-01", "--validation-end", "2004-12-31",
               "--test-start", "2005-01-01"]


def evolve(*args) -> int:
    return main(["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs", "--proposer", "mutate",
                 "--no-report", *args])


def report(name: str) -> int:
    return main(["report", name, "--runs-dir", "runs", "--no-robustness"])


@pytest.fixture
def run3(clean_env, warm_mutate, capsys):
    """A finished three-iteration run `r` in a clean working directory; its folder."""
    assert evolve("--run", "r", "--iterations", "3") == 0
    capsys.readouterr()
    return clean_env / "runs" / "r"


@pytest.fixture(scope="session")
def warm_mutate(tmp_path_factory):
    """One small search, so the kernels the tests' searches use are compiled once per session."""
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("warm"))
    try:
        assert evolve("--run", "w", "--iterations", "2") == 0
    finally:
        os.chdir(cwd)


def _no_traceback(captured) -> None:
    assert "Traceback" not in captured.err and "internal error" not in captured.err, captured.err


# --- one process per run ---------------------------------------------------------------------------

def test_a_second_process_on_a_running_run_is_refused_and_a_kill_leaves_no_stale_lock(clean_env, warm_mutate):
    args = [sys.executable, "-m", "autostrat", "evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs",
            "--proposer", "mutate", "--no-report", "--run", "race", "--iterations", "1000000",
            "--max-fails", "1000000"]  # a budget it cannot finish before it is killed
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in first.stdout:  # the first process holds the run once it reports an iteration
            if line.startswith("iter "):
                break
        second = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by `autostrat evolve` (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    run = RunFolder.open(clean_env / "runs" / "race")
    done = len(run.load_records())
    run.lock()  # the kernel released the dead process's lock
    run.unlock()
    resumed = subprocess.run([*args[:-2], "--iterations", str(done + 1)], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert len(RunFolder.open(clean_env / "runs" / "race").load_records()) == done + 1


def test_the_lock_is_per_process_and_names_the_holder(tmp_path):
    a = RunFolder(tmp_path / "r", {}).lock("evolve")
    code = ("import sys; from autostrat.search.runs import RunFolder, RunLockedError\n"
            f"try:\n    RunFolder({str(tmp_path / 'r')!r}, {{}}).lock('report')\n"
            "except RunLockedError as e:\n    print(e); sys.exit(7)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 7 and f"`autostrat evolve` (pid {os.getpid()})" in out.stdout
    a.unlock()
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
    held = RunFolder(tmp_path / "r", {}).lock("x")
    assert held.lock("x") is held  # taking it again is a no-op
    other = RunFolder(tmp_path / "r", {}).lock("y")  # the lock is the process's: shared, not refused
    held.unlock()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 7, "released while another folder of this process still held it"
    other.unlock()
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- damaged records ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["torn", "unknown status", "a list", "wrong types", "not utf-8"])
def test_a_damaged_last_record_is_moved_aside_with_its_files_and_run_again(run3, capsys, damage):
    record = run3 / "iter_0002.json"
    good = json.loads(record.read_text())
    bad = {"torn": record.read_text()[:40], "unknown status": json.dumps(dict(good, status="weird")),
           "a list": json.dumps([good]), "wrong types": json.dumps(dict(good, metrics=[1, 2])),
           "not utf-8": record.read_text().replace('"', "\xe9\"", 1).encode("latin-1")}[damage]
    record.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
    strat = (run3 / "iter_0002.strat").read_text()
    assert evolve("--run", "r", "--iterations", "3") == 0
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "warning: " in captured.out and "moved to r/damaged/iter_0002.json" in captured.out
    assert (run3 / "damaged" / "iter_0002.json").read_bytes() == (bad if isinstance(bad, bytes) else bad.encode())
    assert (run3 / "damaged" / "iter_0002.strat").read_text() == strat
    records = RunFolder.open(run3).load_records()
    assert [r["iteration"] for r in records] == [0, 1, 2]


def test_a_damaged_record_before_others_is_an_error_and_nothing_is_deleted(run3, capsys):
    (run3 / "iter_0001.json").write_text("[]")
    before = sorted(p.name for p in run3.iterdir())
    assert evolve("--run", "r", "--iterations", "4") == 2
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "iter_0001.json: error: cannot read the iteration record" in captured.err
    assert sorted(p.name for p in run3.iterdir()) == before


def test_a_report_leaves_a_damaged_last_record_in_place_and_says_so(run3, capsys):
    (run3 / "iter_0002.json").write_text("{")
    assert report("r") == 0
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "iter_0002.json: cannot read the iteration record" in captured.err and "left out" in captured.err
    assert (run3 / "iter_0002.json").read_text() == "{"


def test_a_deleted_kept_strategy_is_a_clear_error(run3, capsys):
    (run3 / "iter_0000.strat").unlink()  # the baseline is always kept
    assert evolve("--run", "r", "--iterations", "4") == 2
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "iter_0000.strat: error: cannot read iteration 0's strategy" in captured.err


@pytest.mark.parametrize("config", ["[1, 2]", "{", "\"text\""])
def test_a_config_that_is_not_an_object_is_a_clear_error(run3, capsys, config):
    (run3 / "config.json").write_text(config)
    assert evolve("--run", "r", "--iterations", "4") == 2
    assert report("r") == 2
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "config.json: " in captured.err and "restore the file" in captured.err


def test_a_garbage_returns_file_is_a_clear_error(run3, capsys):
    (run3 / "returns" / "iter_0000.npy").write_bytes(b"\x93NUMPY garbage")
    assert report("r") == 2
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert "iter_0000.npy: error: cannot read iteration 0's daily returns" in captured.err


# --- the sealed test's count is never reset ----------------------------------------------------------

def _opened(run: Path) -> dict:
    return json.loads((run / "sealed.json").read_text())


def test_a_damaged_sealed_file_is_moved_aside_and_the_count_is_unknown(run3, capsys):
    assert report("r") == 0
    assert _opened(run3)["times_opened"] == 1 and "count_unknown" not in _opened(run3)
    (run3 / "sealed.json").write_text("{ torn")
    assert evolve("--run", "r", "--iterations", "4") == 0 and report("r") == 0
    captured = capsys.readouterr()
    _no_traceback(captured)
    assert (run3 / "damaged" / "sealed.json").read_text() == "{ torn"
    sealed = _opened(run3)
    assert "could not be read" in sealed["count_unknown"]
    assert "opened before an unknown number of times" in captured.out  # the red flag
    assert "and before that an unknown number of times" in (run3 / "report.html").read_text()


def test_a_missing_sealed_file_after_an_opening_is_flagged(run3, capsys):
    assert report("r") == 0
    (run3 / "sealed.json").unlink()
    assert evolve("--run", "r", "--iterations", "4") == 0 and report("r") == 0
    captured = capsys.readouterr()
    assert "missing, but config.json says the test period was opened 1 time before" in _opened(run3)["count_unknown"]
    assert "opened before an unknown number of times" in captured.out
    assert json.loads((run3 / "config.json").read_text())["sealed_openings"] == 2


# --- a failed start creates nothing ------------------------------------------------------------------

def test_a_failed_start_leaves_no_half_made_run(clean_env, warm_mutate, capsys):
    (clean_env / "typo.strat").write_text("buy when close >> open\nsell when close < open\n")
    assert evolve("--run", "a", "--from", "typo.strat") == 2
    assert "the baseline strategy does not check" in capsys.readouterr().err
    assert main(["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", "runs", "--proposer", "llm",
                 "--run", "b"]) == 2
    assert "needs a model endpoint" in capsys.readouterr().err
    assert not (clean_env / "runs" / "a").exists() and not (clean_env / "runs" / "b").exists()
    assert evolve("--run", "a", "--iterations", "2") == 0  # the name is free to use
