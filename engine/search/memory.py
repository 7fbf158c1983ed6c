"""Memory across runs: a starting population from files or earlier runs, inherited learnings, added strategies.

- `--from` (`resolve_from`) takes strategy files and run folders, repeated or as a comma list. A
  run folder gives its final top-K (the kept strategies ranked by its records, K its own
  population), best first, read from its kept `iter_NNNN.strat` files. The first start is the
  new run's baseline (iteration 0); each other one is evaluated as the next iteration, before
  any proposal (proposer `from`, no parent). They are judged by the usual rules, but a start
  that is not kept is not a failure in a row: the search has not begun.
- `--learnings-from RUN` (`inherited_learnings`) copies that run's learnings.md into the new
  run's config.json (`learnings_from`); the new run's learnings.md and prompts show it before its
  own entries (autostrat.search.learnings.prior_view).
- `evolve --run NAME --add FILE` (Search.add) evaluates a hand-written strategy into a run as
  its next iteration (proposer `hand`, no parent): the run's objective, periods, constraints,
  tuning and dedupe apply, the population and the failures in a row follow, and no proposer is
  asked. The sealed test period stays shut.

Every error names the file (and for a strategy that does not check, its line and column).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autostrat.errors import AutostratError, StrategyError
from autostrat.lang.check import check
from autostrat.lang.parse import parse
from autostrat.resources import read_text
from autostrat.search.population import Member
from autostrat.search.runs import RunFolder, as_float

MAX_STARTS = 64  # strategies a run may start from: each is an iteration before the first proposal
START, HAND = "from", "hand"  # the `proposer` of a starting strategy's record and of an added one's


@dataclass
class Start:
    """One starting strategy: where it was read, its text, and where it came from in words."""

    path: str
    text: str
    origin: str

    def as_config(self) -> dict[str, str]:
        return {"path": self.path, "text": self.text, "origin": self.origin}


def split_specs(values: list[str] | str | Path | None) -> list[str]:
    """`--from` values, repeated or comma separated, as one list (empty items dropped)."""
    if values is None:
        return []
    if isinstance(values, (str, Path)):
        values = [str(values)]
    return [part.strip() for v in values for part in str(v).split(",") if part.strip()]


def checked_text(path: Path | str, what: str = "strategy") -> str:
    """A strategy file's text, parsed and checked; AutostratError naming the file, line and column."""
    text = read_text(path, what)
    try:
        check(parse(text, str(path)), portfolio=True)  # the run's kind is judged by the loop
    except StrategyError as exc:
        raise AutostratError(f"the {what} does not check:\n{exc.format()}") from None
    return text


def _run_folder(spec: str, runs_dir: Path) -> Path | None:
    """The run folder `spec` names (a path, else a name under runs_dir), or None when it names a file."""
    p = Path(spec)
    if p.is_dir():
        if not RunFolder.exists(p):
            raise AutostratError(f"{spec}: error: a folder that is not a run (no config.json); give a run folder "
                                 "or strategy files")
        return p
    if not p.exists() and "/" not in spec and RunFolder.exists(runs_dir / spec):
        return runs_dir / spec
    return None


def top_of_run(path: Path) -> list[Start]:
    """A run's final top-K, best first, from its records and kept strategy files."""
    run = RunFolder.open(path)
    k = int(((run.config.get("settings") or {}).get("search") or {}).get("population") or 3)
    members = [Member(r["iteration"], as_float(r.get("objective")), {}, "") for r in run.load_records()
               if r["status"] == "keep"]
    if not members:
        raise AutostratError(f"{path}: error: the run has no kept strategy yet; give another run or files")
    starts = []
    for m in sorted(members, key=lambda m: m.key)[:k]:
        strat = run.strat_path(m.iteration)
        starts.append(Start(str(strat), checked_text(strat), f"{run.name} iteration {m.iteration}"))
    return starts


def resolve_from(values: list[str] | str | Path | None, runs_dir: Path) -> list[Start]:
    """The starting strategies `--from` names, in order (a run folder's best first); [] when none."""
    starts: list[Start] = []
    for spec in split_specs(values):
        folder = _run_folder(spec, Path(runs_dir))
        if folder is not None:
            starts.extend(top_of_run(folder))
        else:
            starts.append(Start(spec, checked_text(spec, "starting strategy" if starts else "baseline strategy"), spec))
        if len(starts) > MAX_STARTS:
            raise AutostratError(f"--from: error: more than {MAX_STARTS} starting strategies; give fewer files "
                                 "or runs (each is an iteration before the first proposal)")
    return starts


def starts_config(starts: list[Start]) -> dict[str, Any]:
    """config.json's keys for the starts: `baseline` (the first) and, when there are more, `starts`."""
    first = {"path": starts[0].path, "text": starts[0].text}
    if starts[0].origin != starts[0].path:
        first["origin"] = starts[0].origin
    return {"baseline": first, **({"starts": [s.as_config() for s in starts[1:]]} if len(starts) > 1 else {})}


def same_starts(config: dict[str, Any], starts: list[Start]) -> bool:
    """Whether `starts` are the strategies the run in `config` started from (their texts, in order)."""
    had = [config["baseline"]["text"]] + [s["text"] for s in config.get("starts") or []]
    return had == [s.text for s in starts]


def inherited_learnings(spec: str, runs_dir: Path) -> tuple[str, str]:
    """(the run's folder, its learnings as the new run shows them) for `--learnings-from RUN`."""
    folder = _run_folder(spec, Path(runs_dir))
    if folder is None:
        raise AutostratError(f"{spec}: error: no such run folder; give a run's folder or its name under the "
                             "runs folder")
    text = read_text(folder / "learnings.md", "learnings log")
    if text.startswith("# Learnings"):  # the log's own header; the entries start at the first "## "
        text = text[text.find("\n## ") + 1:] if "\n## " in text else ""
    body = re.sub(r"(?m)^## ", "### ", text.strip())  # its entries, one level under the new run's own
    return str(folder), f"## Learnings of run {folder.name}\n\n{body}\n" if body else ""

