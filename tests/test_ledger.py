"""The ledger of sealed-test openings across runs: concurrent appends, a damaged ledger, two runs on
one dataset, the counts that evolve, report, data and sealed print."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

import pytest

from autostrat.cli import main
from autostrat.honest.ledger import (append_opening, counts_line, ledger_path, ledger_root, read_ledger, summarize,
                                     way_out)
from autostrat.honest.red_flags import red_flags

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import DATA, SPLIT_FLAGS, evolve  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures

PERIOD = {"first": "2005-01-03", "last": "2005-12-30", "bars": 260}


def _entry(run: str, i: int = 0, period=PERIOD, ret: float = 0.1, hashes=("h1",)) -> dict:
    return {"run": run, "run_path": f"/runs/{run}", "opened_at": f"2026-01-01T00:00:{i:02d}", "by": "evolve",
            "data": "d", "sha256": "s", "test_period": dict(period),
            "strategies": [{"iteration": 1, "hash": h, "test": {"total_return": ret, "sharpe": 1.0,
                                                                 "excess_return": 0.0}} for h in hashes]}


def test_the_default_ledger_lives_under_xdg_data_home(ledger_home, monkeypatch):
    assert ledger_root() == ledger_home
    assert ledger_root("~/elsewhere") == Path.home() / "elsewhere"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert ledger_root() == Path.home() / ".local" / "share" / "autostrat" / "sealed"


def test_the_test_session_never_writes_into_the_users_data_folder():
    home = Path(os.environ["XDG_DATA_HOME"])
    assert home.is_relative_to(tempfile.gettempdir()) and ledger_root().is_relative_to(home)


def _append_many(path: str, who: str, n: int, start) -> None:
    start.wait()
    for i in range(n):
        append_opening(Path(path), _entry(f"{who}{i}", i % 60, hashes=(f"{who}-{i}",)))


def test_two_processes_appending_at_once_both_land_whole(tmp_path):
    path = ledger_path(tmp_path, "SPY")
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_append_many, args=(str(path), who, 150, start)) for who in ("a", "b")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)  # a hang guard, not a timing assertion
        assert p.exitcode == 0
    entries, unreadable = read_ledger(path)
    assert unreadable == "" and len(entries) == 300
    for who in ("a", "b"):  # each process's lines whole and in its own order
        assert [e["run"] for e in entries if e["run"].startswith(who)] == [f"{who}{i}" for i in range(150)]
    assert summarize(entries, PERIOD)["strategies"] == 300
    assert not (tmp_path / "damaged").exists()


def test_a_damaged_ledger_is_moved_aside_and_the_next_opening_says_count_unknown(tmp_path):
    path = ledger_path(tmp_path, "SPY")
    append_opening(path, _entry("first"))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"run": "torn", "test_per')  # a line cut off mid-write
    damaged = path.read_bytes()
    entries, unreadable = read_ledger(path)  # reading alone moves nothing
    assert entries == [] and "cannot be read" in unreadable and path.exists()
    assert summarize(entries, PERIOD, unreadable)["count_unknown"]

    notices = append_opening(path, _entry("second", 1))
    moved = list((tmp_path / "damaged").iterdir())
    assert len(moved) == 1 and moved[0].read_bytes() == damaged  # kept, byte for byte, never reset silently
    assert "moved to" in notices[0] and str(moved[0]) in notices[0]
    entries, unreadable = read_ledger(path)
    assert unreadable == "" and [e["run"] for e in entries] == ["second"]
    assert "could not be read" in entries[0]["count_unknown"]
    summary = summarize(entries, PERIOD)
    assert summary["openings"] == 1 and summary["count_unknown"]
    assert "count unknown" in counts_line(summary)
    # a third opening: the file reads again, the lost count stays said
    append_opening(path, _entry("third", 2))
    assert summarize(read_ledger(path)[0], PERIOD)["count_unknown"] == entries[0]["count_unknown"]
    report = {"stats": {"dsr": 0.99, "pbo": 0.1, "n_trials": 5, "selection": "validation"}, "best": {"metrics": {}},
              "folds": 0, "ledger": summary}
    assert any("unknown number of times" in f for f in red_flags(report))


def test_counts_runs_strategies_and_overlapping_test_periods(tmp_path):
    later = {"first": "2006-01-02", "last": "2006-12-29", "bars": 250}
    entries = [_entry("a", 1, hashes=("h1", "h2")), _entry("a", 2, hashes=("h2",)), _entry("b", 3, ret=0.3),
               _entry("c", 4, period=later)]
    s = summarize(entries, PERIOD, run_path=Path("/runs/b"), before="2026-01-01T00:00:03")
    assert (s["openings"], s["runs"], s["strategies"]) == (3, 2, 2)  # c looked at other days
    assert s["earlier_openings"] == 2 and s["earlier_runs"] == 1 and s["last_seen"] == PERIOD["last"]
    assert counts_line(s) == "opened 3 times in 2 runs, 2 distinct strategies looked at"
    spanning = {"first": "2005-06-01", "last": "2006-06-30"}
    assert summarize(entries, spanning)["openings"] == 4  # a test period sharing days with both counts both
    assert "--test-start" in way_out(s) and PERIOD["last"] in way_out(s)
    # a lost count of this data's ledger makes every test period's count a lower bound
    lost = summarize([dict(_entry("c", 5, period=later), count_unknown="moved aside"), *entries[:1]], PERIOD)
    assert lost["openings"] == 1 and lost["count_unknown"] == "moved aside"
    # a NaN test result (no trades) is written as null, not refused
    append_opening(ledger_path(tmp_path, "d"), _entry("nan", ret=float("nan")))
    assert read_ledger(ledger_path(tmp_path, "d"))[0][0]["strategies"][0]["test"]["total_return"] is None


def test_ledger_red_flags_follow_their_thresholds():
    base = {"stats": {"dsr": 0.99, "pbo": 0.1, "n_trials": 5, "selection": "validation"}, "folds": 0,
            "best": {"metrics": {"test": {"total_return": 0.05}}}}
    ledger = summarize([_entry("a", 1, ret=0.3), _entry("b", 2)], PERIOD, run_path=Path("/runs/b"))
    flags = red_flags({**base, "ledger": {**ledger, "flag_earlier_runs": 1, "flag_strategies": 0}})
    [flag] = [f for f in flags if "opened before this run" in f]
    assert "1 time in 1 other run" in flag and "seen in those looks was 30.0%" in flag and "has 5.0%" in flag
    assert not [f for f in red_flags({**base, "ledger": {**ledger, "flag_earlier_runs": 2, "flag_strategies": 0}})
                if "opened before" in f]
    assert [f for f in red_flags({**base, "ledger": {**ledger, "flag_earlier_runs": 0, "flag_strategies": 1}})
            if "validation set" in f]


def test_two_runs_on_one_dataset_the_second_flags_the_first(clean_env, warm, ledger_home, capsys):
    assert evolve(clean_env, "--run", "one", "--iterations", "3", "--no-report") == 0
    assert main(["report", "one", "--runs-dir", str(clean_env / "runs"), "--no-robustness"]) == 0
    first = capsys.readouterr().out
    assert "test_openings_all_runs: 1" in first and "test_opened_in_runs: 1" in first
    assert "opened before this run" not in first

    assert evolve(clean_env, "--run", "two", "--iterations", "3", "--seed", "5") == 0
    out = capsys.readouterr().out
    assert "test_openings_all_runs: 2" in out and "test_opened_in_runs: 2" in out
    assert "red_flag: The sealed test period was opened before this run: 1 time in 1 other run." in out
    report = json.loads((clean_env / "runs" / "two" / "report.json").read_text())
    assert [e["run"] for e in report["ledger"]["earlier"]] == ["one"]
    html = (clean_env / "runs" / "two" / "report.html").read_text()
    assert "Looks at this test period, across runs" in html and "this run (two)" in html
    [ledger] = list(ledger_home.glob("*.jsonl"))
    assert [json.loads(x)["run"] for x in ledger.read_text().splitlines()] == ["one", "two"]

    # reporting again opens nothing new: the ledger is unchanged
    assert main(["report", "two", "--runs-dir", str(clean_env / "runs"), "--no-robustness"]) == 0
    assert len(ledger.read_text().splitlines()) == 2
    capsys.readouterr()

    assert main(["data", DATA, *SPLIT_FLAGS]) == 0
    assert "sealed_test: opened 2 times in 2 runs" in capsys.readouterr().out
    assert main(["sealed", DATA, *SPLIT_FLAGS]) == 0
    out = capsys.readouterr().out
    assert out.count("opening: ") == 2 and "run one by report" in out and "run two by evolve" in out
    assert "cannot be undone" in out and "--test-start" in out
    with pytest.raises(SystemExit) as exc:
        main(["sealed", DATA, "--forget"])
    assert exc.value.code == 2
    capsys.readouterr()
    # a later test start after every day looked at: nothing counts, and there is no test period left here
    assert main(["sealed", DATA, *SPLIT_FLAGS[:-1], "2099-01-01"]) == 0
    assert "test_period: none" in capsys.readouterr().out


def test_an_unwritable_ledger_stops_the_opening_with_one_clear_error(clean_env, warm, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    (clean_env / "autostrat.toml").write_text(f'[honest]\nledger_dir = "{blocker}"\n')
    assert evolve(clean_env, "--run", "w", "--iterations", "2") == 2
    err = capsys.readouterr().err
    assert "cannot record this opening" in err and "honest.ledger_dir" in err and "Traceback" not in err
    assert not (clean_env / "runs" / "w" / "sealed.json").exists()  # the look was not taken
