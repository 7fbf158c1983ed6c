"""The run folder of a search: every file it writes, written atomically, and read back to resume.

    runs/NAME/
      config.json            resolved settings, data and grammar sha256, autostrat version
      iter_NNNN.strat        the candidate as proposed (also when it did not parse)
      iter_NNNN.json         the iteration's record: the commit point of the iteration
      returns/iter_NNNN.npy  float32 daily returns, train then validation (evaluated candidates)
      prompts/iter_NNNN.md   what the model was sent, responses/iter_NNNN.md what it answered
      results.tsv            one row per iteration, regenerated from the records
      learnings.md           the learnings log, regenerated from the records
      learnings_summary.json the model's summary of the log, when it outgrew its budget
      best.strat             the best kept strategy
      sealed.json            the sealed test period's openings, after the search (autostrat.sealed)
      report.html            the report, self-contained; report.json its numbers (autostrat.report)
      verdict.json           the registered pass bar's gradings (autostrat.honest.verdict), with a bar
      damaged/               files that could not be read, moved aside (never deleted)
      .lock                  held by the process working on the run (an OS lock: it dies with it)

A null run (`evolve --null`, autostrat.nullrun) is a run folder of its own, NAME-null, beside it.

Every file is written to a temporary name in the same folder and renamed over the target
(os.replace), so a killed process leaves either the old file or the new one, never a torn one.
An iteration counts once its iter_NNNN.json exists: its other files are written first, and the
derived files (results.tsv, learnings.md, best.strat) are rebuilt from the records after it. A
resumed run deletes leftovers of an iteration that never reached its record. Files are written by
autostrat.files.atomic_write, which fsyncs. A last record that cannot be read on resume (a torn
write, a hand edit) is moved into damaged/ with its iteration's other files, the run says so,
and the iteration runs again; nothing that cannot be read is deleted.

One process works on a run at a time: `lock()` takes an exclusive OS lock (flock) on the run's
.lock file, which the kernel releases when the process ends however it ends, so a kill -9 never
leaves a stale lock. A second process is refused at once, told which process holds the run.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from autostrat.errors import AutostratError
from autostrat.files import atomic_write

STATUSES = ("keep", "discard", "invalid", "duplicate", "error")
TSV_COLUMNS = ("iteration", "objective", "train", "validation", "status", "description")
_RECORD = re.compile(r"^iter_(\d{4,})\.json$")


def clean_json(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None (JSON has no NaN) and numpy scalars unwrapped."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_float(value: Any) -> float:
    """A number read back from JSON: None is NaN."""
    return math.nan if value is None else float(value)


def fmt_number(value: Any, digits: int = 4) -> str:
    """A metric for a table or a prompt: fixed decimals, `nan` for a missing value."""
    x = as_float(value)
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


class RunLockedError(AutostratError):
    """Another process is working on the run."""


_HELD_LOCKS: dict[str, list] = {}  # run folder -> [its open .lock file, holds]: this process's locks


class RunFolder:
    """One search run's folder. `create` starts one, `open` reads an existing one."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path = Path(path)
        self.config = config
        self.notices: list[str] = []  # what reading the folder found and did (files moved aside), to print
        self._lock_file = None

    def lock(self, purpose: str = "evolve") -> "RunFolder":
        """Hold the run for this process until it ends (or `unlock`); RunLockedError if another holds it.

        `purpose` is written into the lock file so that a refused process can say who holds the
        run. The lock belongs to the process: another RunFolder of the same run in this process
        (a notebook resuming what it started, a report at the end of a search) shares it. Without
        fcntl (Windows) there is no lock.
        """
        if self._lock_file is not None:
            return self
        try:
            import fcntl
        except ImportError:
            return self
        key = str(self.path.resolve())
        held = _HELD_LOCKS.get(key)
        if held is not None:
            held[1] += 1
            self._lock_file = held[0]
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / ".lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read(200).strip() or "another process"
            f.close()
            raise RunLockedError(f"{self.path}: the run is in use by {holder}; wait until it ends, or stop it, "
                                 "then try again (one process works on a run at a time)") from None
        f.seek(0)
        f.truncate()
        f.write(f"`autostrat {purpose}` (pid {os.getpid()})\n")
        f.flush()
        _HELD_LOCKS[key] = [f, 1]
        self._lock_file = f
        return self

    def unlock(self) -> None:
        """Release this folder's hold on the run; the lock goes when the process's last hold does."""
        f, self._lock_file = self._lock_file, None
        if f is None:
            return
        for key, held in list(_HELD_LOCKS.items()):
            if held[0] is f:
                held[1] -= 1
                if held[1] == 0:
                    del _HELD_LOCKS[key]
                    f.close()

    def move_aside(self, path: Path, why: str) -> Path:
        """Move a file that cannot be used into damaged/ (never delete it); a notice says where."""
        folder = self.path / "damaged"
        folder.mkdir(exist_ok=True)
        target, n = folder / path.name, 1
        while target.exists():
            target, n = folder / f"{path.name}.{n}", n + 1
        shutil.move(str(path), str(target))
        self.notices.append(f"{path}: {why}; moved to {target.relative_to(self.path.parent)}")
        return target

    @property
    def name(self) -> str:
        return self.path.name

    @staticmethod
    def exists(path: Path) -> bool:
        """True when `path` holds a run (its config.json)."""
        return (Path(path) / "config.json").is_file()

    @classmethod
    def create(cls, path: Path, config: dict[str, Any], lock: str | None = None) -> "RunFolder":
        """Start a run in `path` (new or empty) by writing its config.json; locked first when `lock` names the command."""
        path = Path(path)
        run = cls(path, config)
        if lock:
            run.lock(lock)
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
            run.unlock()
            what = "a run now (another process started it)" if cls.exists(path) else "not a run (no config.json)"
            raise AutostratError(f"{path}: the folder exists and is {what}; "
                                 "choose another --run name or remove the folder")
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        """An existing run, with its config.json read."""
        path = Path(path)
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AutostratError(f"{path / 'config.json'}: cannot read the run's config ({exc}); restore the "
                                 "file, or start a new run with another --run NAME") from None
        if not isinstance(config, dict):
            raise AutostratError(f"{path / 'config.json'}: not a run's config (a JSON {type(config).__name__}, "
                                 "not an object); restore the file, or start a new run with another --run NAME")
        return cls(path, config)

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace config.json."""
        self.config = config
        atomic_write(self.path / "config.json", json.dumps(clean_json(config), indent=2) + "\n")

    # --- paths ---------------------------------------------------------------------------------

    def strat_path(self, i: int) -> Path:
        return self.path / f"iter_{i:04d}.strat"

    def record_path(self, i: int) -> Path:
        return self.path / f"iter_{i:04d}.json"

    def returns_path(self, i: int) -> Path:
        return self.path / "returns" / f"iter_{i:04d}.npy"

    def prompt_path(self, i: int) -> Path:
        return self.path / "prompts" / f"iter_{i:04d}.md"

    def response_path(self, i: int) -> Path:
        return self.path / "responses" / f"iter_{i:04d}.md"

    # --- records -------------------------------------------------------------------------------

    def load_records(self, repair: bool = False) -> list[dict[str, Any]]:
        """The committed iterations' records, in order; checks that they run 0, 1, 2, ... with no gap.

        A last record that cannot be read (a power cut mid-write, a hand edit) is left out, with a
        notice; with `repair` (a search resuming) it is moved into damaged/ with its iteration's
        other files, and its iteration runs again. An unreadable record before others is an error
        naming the file: the run cannot be replayed past it.
        """
        found = sorted((int(m.group(1)), p) for p in self.path.iterdir() if (m := _RECORD.match(p.name)))
        records = []
        for n, (i, path) in enumerate(found):
            try:
                record = _read_record(path, i)
            except (OSError, ValueError) as exc:
                if n == len(found) - 1:
                    if repair:
                        self._move_iteration_aside(i, f"cannot read the iteration record ({exc})")
                        self.notices.append(f"iteration {i} runs again")
                    else:
                        self.notices.append(f"{path}: cannot read the iteration record ({exc}); left out")
                    break
                raise AutostratError(f"{path}: cannot read the iteration record ({exc}); "
                                     "restore the file or start a new run") from None
            if i != len(records):
                raise AutostratError(f"{self.path}: iteration {len(records)} has no record but "
                                     f"{path.name} exists; the run folder was edited by hand")
            records.append(record)
        return records

    def _move_iteration_aside(self, i: int, why: str) -> None:
        """The record and every other file of iteration i, into damaged/."""
        self.move_aside(self.record_path(i), why)
        for path in (self.strat_path(i), self.returns_path(i), self.prompt_path(i), self.response_path(i)):
            if path.exists():
                self.move_aside(path, f"a file of iteration {i}, whose record could not be read")

    def commit(self, record: dict[str, Any], strategy_text: str, returns: np.ndarray | None = None,
               prompt: str | None = None, response: str | None = None) -> None:
        """Write one iteration: its strategy, returns, prompt and response, then its record."""
        i = int(record["iteration"])
        atomic_write(self.strat_path(i), strategy_text)
        if returns is not None:
            path = self.returns_path(i)
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, _npy_bytes(np.asarray(returns, dtype=np.float32)))
            record["returns"] = str(path.relative_to(self.path))
        if prompt is not None:
            atomic_write(self.prompt_path(i), prompt)
        if response is not None:
            atomic_write(self.response_path(i), response)
        record["strategy"] = self.strat_path(i).name
        atomic_write(self.record_path(i), json.dumps(clean_json(record), indent=2) + "\n")

    def rewrite_record(self, record: dict[str, Any]) -> None:
        """Replace a committed iteration's record (its other files stay)."""
        atomic_write(self.record_path(int(record["iteration"])), json.dumps(clean_json(record), indent=2) + "\n")

    def remove_uncommitted(self, next_iteration: int) -> None:
        """Delete temporary files and the files of iterations >= next_iteration (never committed)."""
        for folder in (self.path, self.path / "returns", self.path / "prompts", self.path / "responses"):
            if not folder.is_dir():
                continue
            for p in folder.iterdir():
                if p.name.startswith(".") and p.name.endswith(".tmp"):
                    p.unlink(missing_ok=True)
                    continue
                m = re.match(r"^iter_(\d{4,})\.", p.name)
                if m and int(m.group(1)) >= next_iteration:
                    p.unlink(missing_ok=True)

    def read_strategy(self, i: int) -> str:
        """The strategy text of iteration i; AutostratError naming the file when it cannot be read."""
        path = self.strat_path(i)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise AutostratError(f"{path}: cannot read iteration {i}'s strategy ({exc}); its "
                                 f"record {self.record_path(i).name} needs it: restore the file, or start a "
                                 "new run with another --run NAME") from None

    def read_returns(self, i: int) -> np.ndarray | None:
        """Iteration i's daily returns (float32, train then validation), or None if not evaluated."""
        path = self.returns_path(i)
        if not path.is_file():
            return None
        try:
            returns = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise AutostratError(f"{path}: cannot read iteration {i}'s daily returns ({exc}); restore the "
                                 "file, or start a new run with another --run NAME") from None
        if not isinstance(returns, np.ndarray) or returns.ndim != 1 or returns.dtype.kind != "f":
            raise AutostratError(f"{path}: not a run's daily returns (a {getattr(returns, 'dtype', '?')} array "
                                 f"of shape {getattr(returns, 'shape', '?')}); restore the file, or start a new run")
        return returns

    # --- derived files -------------------------------------------------------------------------

    def write_results_tsv(self, records: list[dict[str, Any]], objective) -> None:
        """results.tsv: one row per record (iteration, objective, train, validation, status, description).

        train and validation are the objective's metric in each period.
        """
        rows = ["\t".join(TSV_COLUMNS)]
        for r in records:
            metrics = r.get("metrics") or {}
            train = (metrics.get("train") or {}).get(objective.metric)
            valid = (metrics.get("validation") or {}).get(objective.metric)
            desc = re.sub(r"\s+", " ", str(r.get("description") or "")).strip()
            rows.append("\t".join([str(r["iteration"]), fmt_number(r.get("objective"), 6),
                                   fmt_number(train, 6), fmt_number(valid, 6), r["status"], desc]))
        atomic_write(self.path / "results.tsv", "\n".join(rows) + "\n")

    def write_best(self, iteration: int | None) -> None:
        """best.strat: a copy of the best kept strategy."""
        if iteration is not None:
            atomic_write(self.path / "best.strat", self.read_strategy(iteration))

    def write_learnings(self, text: str) -> None:
        """learnings.md: the full log (never compacted on disk)."""
        atomic_write(self.path / "learnings.md", text)

    def write_niches(self, table: dict[str, Any]) -> None:
        """niches.json: the niche grid's elites (autostrat.search.niches), rebuilt from the records."""
        atomic_write(self.path / "niches.json", json.dumps(clean_json(table), indent=2) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        """learnings_summary.json, or None."""
        path = self.path / "learnings_summary.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Replace learnings_summary.json."""
        atomic_write(self.path / "learnings_summary.json", json.dumps(clean_json(summary), indent=2) + "\n")


def _read_record(path: Path, i: int) -> dict[str, Any]:
    """One iteration record, checked for the fields and types the search and the report rely on."""
    record = json.loads(path.read_text(encoding="utf-8"))  # bad UTF-8 is a ValueError too
    if not isinstance(record, dict):
        raise ValueError(f"a JSON {type(record).__name__}, not an object")
    if record.get("iteration") != i or record.get("status") not in STATUSES:
        raise ValueError("not an iteration record (iteration or status)")
    for key, kinds in _RECORD_TYPES.items():
        if record.get(key) is not None and not isinstance(record[key], kinds):
            raise ValueError(f"field {key!r} is a {type(record[key]).__name__}")
    return record


_RECORD_TYPES = {"objective": (int, float), "hash": str, "metrics": dict, "tokens": dict, "parent": int,
                 "description": str, "hypothesis": str, "error": str}


def read_results_tsv(path: Path) -> list[dict[str, str]]:
    """results.tsv as a list of {column: text}."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
