"""The ledger of sealed-test openings: every look at a dataset's test period, across runs.

A run's sealed.json counts the looks of one run. A user who runs `evolve` ten times on SPY has
looked at SPY's test period ten times and kept the best, and no single run folder knows it. The
ledger does: one JSON-lines file per dataset in the user's data folder (`honest.ledger_dir`,
default $XDG_DATA_HOME/autostrat/sealed, else ~/.local/share/autostrat/sealed: a data folder, not
a cache that gets cleared), one line per opening:

    {"run", "run_path", "opened_at", "by", "data": name, "sha256", "test_period": {"first", "last", "bars"},
     "strategies": [{"iteration", "hash", "test": {"total_return", "sharpe", "excess_return"}}],
     "count_unknown": why the openings before this one are not all known (only when they are not)}

The file is named after the data's name; the openings that count for a test period are those
whose test period shares at least one day with it, whatever the data's hash: a refreshed download
of the same ticker has a new hash, but its test days were seen all the same. Moving the test start
only helps once it is after every day already looked at.

Appends hold an exclusive fcntl lock on a lock file beside the ledger (not on the ledger itself,
which a damaged-file move replaces) and write one line with O_APPEND, then fsync: two runs ending
at once both land, whole. A ledger that cannot be read (a torn or edited line) is never reset
silently: it is moved into damaged/ beside it, and the next opening records `count_unknown`, so
every later reading says the count is a lower bound.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autostrat.errors import AutostratError
from autostrat.search.runs import clean_json

LEDGER_SUFFIX = ".jsonl"
MAX_LEDGER_BYTES = 64 * 1024 * 1024  # a ledger this large is not one person's looks; refuse to read it whole
_SHOWN_METRICS = ("total_return", "sharpe", "excess_return")


def ledger_root(setting: str = "") -> Path:
    """The ledger folder: `honest.ledger_dir` when set, else $XDG_DATA_HOME/autostrat/sealed."""
    if setting:
        return Path(setting).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "autostrat" / "sealed"


def ledger_path(root: Path, data_name: str) -> Path:
    """The ledger file of one dataset: its name made safe for a file name, and a hash of the exact name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", data_name)[:60].strip("._") or "data"
    return Path(root) / f"{safe}-{hashlib.sha256(data_name.encode()).hexdigest()[:12]}{LEDGER_SUFFIX}"


@contextmanager
def _locked(path: Path):
    """Hold the ledger's lock file exclusively (no lock without fcntl, i.e. on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as f:
        try:
            import fcntl
        except ImportError:
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _parse(path: Path) -> list[dict[str, Any]]:
    """Every opening in the ledger; ValueError when any line is not a JSON object."""
    size = path.stat().st_size
    if size > MAX_LEDGER_BYTES:
        raise ValueError(f"{size} bytes, more than the {MAX_LEDGER_BYTES} a ledger may hold")
    entries = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if not isinstance(entry, dict) or not isinstance(entry.get("test_period"), dict):
            raise ValueError(f"line {n} is not an opening")
        entries.append(entry)
    return entries


def _move_aside(path: Path, why: str) -> Path:
    folder = path.parent / "damaged"
    folder.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    target, n = folder / f"{path.name}.{stamp}", 1
    while target.exists():
        target, n = folder / f"{path.name}.{stamp}.{n}", n + 1
    shutil.move(str(path), str(target))
    return target


def read_ledger(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The ledger's openings and "", or [] and why it cannot be read (it is left where it is)."""
    try:
        return _parse(path), ""
    except FileNotFoundError:
        return [], ""
    except (OSError, ValueError) as exc:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return [], f"{path} cannot be read ({exc})"


def append_opening(path: Path, entry: dict[str, Any]) -> list[str]:
    """Append one opening under the lock; a damaged ledger is moved aside first. Notices of what was done.

    Raises AutostratError when the ledger folder cannot be written: a look that cannot be recorded
    must not be shown.
    """
    notices = []
    try:
        with _locked(path):
            if path.exists():
                try:
                    _parse(path)
                except (OSError, ValueError) as exc:
                    moved = _move_aside(path, str(exc))
                    why = f"the ledger {path.name} could not be read ({exc}) and was moved to {moved}"
                    notices.append(why)
                    entry = dict(entry, count_unknown=why)
            line = json.dumps(clean_json(entry), sort_keys=True, allow_nan=False, default=str) + "\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line.encode("utf-8"))  # one write of one line: appends of two runs never interleave
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise AutostratError(f"{path}: cannot record this opening of the sealed test period ({exc}); set "
                             "honest.ledger_dir in autostrat.toml to a folder you can write, then run "
                             "`autostrat report RUN` to open it") from None
    return notices


def overlaps(period: dict[str, Any], other: dict[str, Any]) -> bool:
    """True when two test periods ({"first", "last"} ISO dates) share at least one day."""
    return str(other.get("first")) <= str(period["last"]) and str(other.get("last")) >= str(period["first"])


def make_entry(run_name: str, run_path: Path, opened_at: str, by: str, data_name: str, sha256: str,
               period: dict[str, Any], strategies: list[dict[str, Any]]) -> dict[str, Any]:
    """One ledger line from an opening of a run's sealed.json."""
    return {"run": run_name, "run_path": str(Path(run_path).resolve()), "opened_at": opened_at, "by": by,
            "data": data_name, "sha256": sha256,
            "test_period": {k: period.get(k) for k in ("first", "last", "bars", "markets") if k in period},
            "strategies": [{"iteration": s.get("iteration"), "hash": s.get("hash", ""),
                            "test": {k: (s.get("test") or {}).get(k) for k in _SHOWN_METRICS}}
                           for s in strategies]}


def summarize(entries: list[dict[str, Any]], period: dict[str, Any] | None, unreadable: str = "",
              run_path: Path | None = None, before: str | None = None) -> dict[str, Any]:
    """The openings that count for `period`: how many, in how many runs, how many distinct strategies.

    `run_path` names this run: `earlier` lists the other runs' openings (before `before`, an ISO
    time, when given), each with its best test result. `count_unknown` is the reason the count is
    a lower bound ("" when it is not).
    """
    matching = [e for e in entries if period is not None and overlaps(period, e["test_period"])]
    this = str(Path(run_path).resolve()) if run_path is not None else None
    # a lost ledger may have held openings of any test period of this data: every count is a lower bound
    unknown = unreadable or next((e["count_unknown"] for e in entries if e.get("count_unknown")), "")
    earlier = [e for e in matching if e.get("run_path") != this and (before is None or str(e["opened_at"]) < before)]
    return {"openings": len(matching), "runs": len({e.get("run_path") for e in matching}),
            "strategies": len({s.get("hash") for e in matching for s in e.get("strategies", []) if s.get("hash")}),
            "count_unknown": unknown, "earlier_openings": len(earlier),
            "earlier_runs": len({e.get("run_path") for e in earlier}),
            "earlier": [{"run": e.get("run"), "opened_at": e.get("opened_at"), "by": e.get("by"),
                         "sha256": e.get("sha256"), "test_period": e["test_period"], "best": best_test(e)}
                        for e in earlier],
            "last_seen": max((str(e["test_period"].get("last")) for e in matching), default="")}


def best_test(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The opening's best test result by total return: {iteration, hash, total_return, sharpe, excess_return}."""
    rows = [s for s in entry.get("strategies", []) if isinstance((s.get("test") or {}).get("total_return"), (int, float))]
    if not rows:
        return None
    s = max(rows, key=lambda s: s["test"]["total_return"])
    return {"iteration": s.get("iteration"), "hash": s.get("hash"), **s["test"]}


def counts_line(summary: dict[str, Any]) -> str:
    """One sentence: how often this test period was opened, in how many runs, how many strategies seen."""
    n, runs, k = summary["openings"], summary["runs"], summary["strategies"]
    text = (f"opened {n} time{'s' if n != 1 else ''} in {runs} run{'s' if runs != 1 else ''}, "
            f"{k} distinct strateg{'ies' if k != 1 else 'y'} looked at")
    if summary["count_unknown"]:
        text += f"; count unknown: more openings before these ({summary['count_unknown']})"
    return text


def way_out(summary: dict[str, Any]) -> str:
    """What to do instead of forgetting: a look cannot be undone."""
    last = summary.get("last_seen") or "the last day already looked at"
    return (f"A look cannot be undone, so there is no way to forget one. The honest way out is a test period "
            f"no run has seen: a later test start (--test-start, or split.test_start) after {last}, once the "
            "data reaches past it.")


def lookup(ledger_dir: str, data_name: str, period: dict[str, Any] | None, run_path: Path | None = None,
           before: str | None = None) -> dict[str, Any]:
    """`summarize` of the dataset's ledger for `period`, with the ledger's `path`; nothing is written."""
    path = ledger_path(ledger_root(ledger_dir), data_name)
    entries, unreadable = read_ledger(path)
    return {"path": str(path), **summarize(entries, period, unreadable, run_path, before)}


def ledger_entries(ledger_dir: str, data_name: str) -> tuple[Path, list[dict[str, Any]], str]:
    """The dataset's ledger path, all its openings, and why it cannot be read ("" when it can)."""
    path = ledger_path(ledger_root(ledger_dir), data_name)
    entries, unreadable = read_ledger(path)
    return path, entries, unreadable
