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

A null run (`evolve --null`, autostrat.nullrun) is a run folder of its own, NAME-null, beside it.

Every file is written to a temporary name in the same folder and renamed over the target
(os.replace), so a killed process leaves either the old file or the new one, never a torn one.
An iteration counts once its iter_NNNN.json exists: its other files are written first, and the
derived files (results.tsv, learnings.md, best.strat) are rebuilt from the records after it. A
resumed run deletes leftovers of an iteration that never reached its record. Files are written by
autostrat.files.atomic_write, which fsyncs (a record that cannot be read on resume is still
treated as never written when it is the last one).
"""

from __future__ import annotations

import io
import json
import math
import re
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


class RunFolder:
    """One search run's folder. `create` starts one, `open` reads an existing one."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path = Path(path)
        self.config = config

    @property
    def name(self) -> str:
        return self.path.name

    @staticmethod
    def exists(path: Path) -> bool:
        """True when `path` holds a run (its config.json)."""
        return (Path(path) / "config.json").is_file()

    @classmethod
    def create(cls, path: Path, config: dict[str, Any]) -> "RunFolder":
        """Start a run in `path` (new or empty) by writing its config.json."""
        path = Path(path)
        if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
            raise AutostratError(f"{path}: the folder exists and is not a run (no config.json); "
                                 "choose another --run name or remove the folder")
        run = cls(path, config)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: Path) -> "RunFolder":
        """An existing run, with its config.json read."""
        path = Path(path)
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AutostratError(f"{path / 'config.json'}: cannot read the run's config ({exc})") from None
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

    def load_records(self) -> list[dict[str, Any]]:
        """The committed iterations' records, in order; checks that they run 0, 1, 2, ... with no gap.

        A last record that cannot be read (a power cut mid-write) is removed and its iteration is
        run again; an unreadable record before others is an error naming the file.
        """
        found = sorted((int(m.group(1)), p) for p in self.path.iterdir() if (m := _RECORD.match(p.name)))
        records = []
        for n, (i, path) in enumerate(found):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if record.get("iteration") != i or record.get("status") not in STATUSES:
                    raise ValueError("not an iteration record")
            except (OSError, ValueError) as exc:
                if n == len(found) - 1:
                    path.unlink()
                    break
                raise AutostratError(f"{path}: cannot read the iteration record ({exc}); "
                                     "restore the file or start a new run") from None
            if i != len(records):
                raise AutostratError(f"{self.path}: iteration {len(records)} has no record but "
                                     f"{path.name} exists; the run folder was edited by hand")
            records.append(record)
        return records

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
        """The strategy text of iteration i."""
        return self.strat_path(i).read_text(encoding="utf-8")

    def read_returns(self, i: int) -> np.ndarray | None:
        """Iteration i's daily returns (float32, train then validation), or None if not evaluated."""
        path = self.returns_path(i)
        return np.load(path) if path.is_file() else None

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


def read_results_tsv(path: Path) -> list[dict[str, str]]:
    """results.tsv as a list of {column: text}."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:] if line]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
