"""The search loop: propose, check, evaluate, select, log; resumable at every iteration.

Iteration 0 evaluates the baseline. Each later iteration asks the proposer for a candidate from a
parent, checks it, rejects a canonical duplicate of anything evaluated before (no backtest),
evaluates it on train and validation, and ranks it by the objective:

- the population is the best `population` candidates so far (best first; NaN ranks last, ties go
  to the earlier iteration). A candidate is kept when fewer than `population` are kept or it
  beats the worst kept one; anything else (discarded, invalid, duplicate, error) is a failure;
- `max_fails` failures in a row stop the search, and so does the `iterations` cap (iteration 0
  included), or the token budget (`max_total_tokens`) once spent;
- after a kept candidate the next parent is that candidate; after a failure it is a member of
  the population drawn with random.Random(f"{seed}:{iteration}:parent"), so a resumed run draws
  exactly what an uninterrupted one would;
- a candidate whose signals on train and validation are those of an evaluated one (same rules,
  warm-up and exits: the simulator gets the same input) is a `duplicate` too (`search.dedupe`
  behaviour; `text` keeps only the canonical-text check); it is evaluated but not a new trial.
  In a portfolio run (the evaluator's `portfolio`) the same rule reads the portfolio's signature
  (autostrat.sim.portfolio_evaluator), the record's duplicate_kind is `portfolio`, and a
  candidate of the other kind (single-market there, portfolio elsewhere) is `invalid`;
- a candidate that breaks `search.min_trades` or `search.max_drawdown` in train or validation is
  a `discard` whatever its objective; the record's `constraint` says which.

With `search.parallel` K > 1 a step asks for K candidates at once, all from the state after the
last step: the first from the parent the rule above gives, the others from members drawn with
their own iteration's seed. They are evaluated together, then judged one by one in iteration
order by the rules above, so a step is K serial iterations whose proposals saw the same state. A
stop (failures, iterations, tokens) ends the step at the record that reaches it; the rest are
dropped. Each record of a step carries `step` (its first iteration) and `step_size`, and the last
one `step_end`: on resume a step without its end is run again from its first iteration.

Strategies no proposer wrote (autostrat.search.memory) are judged by the same rules, with no
parent: the `starts` of `--from` right after the baseline (as written; one not kept is not a
failure in a row) and, via `add`, a hand-written one at any later point. With `search.niches`
the parents drawn after a failure come from the population and the niche elites
(autostrat.search.niches); each competing record carries its `niche`.

All state is rebuilt from the iteration records on resume (see autostrat.runs); nothing is kept
that the records do not hold.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from autostrat.lang import nodes as N
from autostrat.errors import AutostratError, StrategyError
from autostrat.lang.fmt import canonical_hash
from autostrat.search.learnings import for_prompt, render
from autostrat.search.memory import HAND, START
from autostrat.search.niches import Niches, cell, period_years
from autostrat.search.population import Member
from autostrat.search.proposal import Context, MutateProposer, Proposal, Proposer
from autostrat.sim.evaluator import Evaluation
from autostrat.sim.objective import beats, Objective
from autostrat.lang.parse import parse
from autostrat.search.prompting import header_hypothesis
from autostrat.search.runs import RunFolder, as_float, fmt_number
from autostrat.search.steps import broken_constraint, call, check_for_run, unfinished_step, unwrap
from autostrat.search.tune import Tuned, tune

# Proposal, Context and MutateProposer live in autostrat.search.proposal; callers may import them from here
__all__ = ["Context", "FAILURES", "MutateProposer", "Outcome", "Proposal", "Proposer", "Search"]
FAILURES = ("discard", "invalid", "duplicate", "error")


@dataclass
class Outcome:
    """How a search ended: the reason, every record, the final population."""

    reason: str  # iterations | fails | tokens | interrupted
    records: list[dict[str, Any]]
    population: list[Member]
    ran: int  # iterations run by this call (not counting those resumed from disk)


class Search:
    """One search over one run folder. `run()` resumes from whatever the folder holds."""

    def __init__(self, run: RunFolder, settings, objective: Objective, evaluator: Callable[[Any], Evaluation],
                 proposer: Proposer, baseline_text: str, baseline_path: str = "baseline.strat",
                 out: Callable[[str], None] = print, should_stop: Callable[[], bool] = lambda: False,
                 starts: list[dict[str, str]] | None = None):
        self.run_folder, self.settings, self.objective = run, settings, objective
        self.starts = list(starts or [])  # strategies evaluated after the baseline (autostrat.search.memory)
        self.prior = str((run.config.get("learnings_from") or {}).get("text") or "")  # --learnings-from
        self.niches = Niches() if getattr(settings.search, "niches", False) else None
        self.evaluate, self.proposer = evaluator, proposer
        self.portfolio = bool(getattr(evaluator, "portfolio", False))  # a portfolio run takes only portfolio programs
        self.baseline_text, self.baseline_path = baseline_text, baseline_path
        self.out, self.should_stop = out, should_stop
        self.records: list[dict[str, Any]] = []
        self.population: list[Member] = []
        self.fails = 0
        self.hashes: dict[str, int] = {}
        self.behaviours: dict[str, int] = {}
        self.tokens = 0
        self._programs: dict[int, N.Program] = {}

    # --- state ---------------------------------------------------------------------------------

    def _apply(self, record: dict[str, Any]) -> None:
        """Fold one record into the state (used live and when replaying records on resume)."""
        self.records.append(record)
        self.tokens += int((record.get("tokens") or {}).get("total", 0) or 0)
        if record.get("hash") and record["status"] in ("keep", "discard", "error"):
            self.hashes.setdefault(record["hash"], record["iteration"])
        if record.get("behaviour") and record["status"] in ("keep", "discard"):
            self.behaviours.setdefault(record["behaviour"], record["iteration"])
        i = record["iteration"]
        if record["status"] == "keep" or (self.niches is not None and record.get("niche")):
            member = Member(i, as_float(record.get("objective")), record.get("metrics") or {},
                            self.run_folder.read_strategy(i), record.get("hash", ""))
            if self.niches is not None and record.get("niche"):
                self.niches.add(member, record["niche"])
        if record["status"] == "keep":
            self.population.append(member)
            self.population.sort(key=lambda m: m.key)
            del self.population[self.settings.search.population:]
            self.fails = 0
        elif record.get("proposer") != START:  # a starting strategy not kept: the search has not begun
            self.fails += 1

    def _program(self, member: Member) -> N.Program:
        if member.iteration not in self._programs:
            self._programs[member.iteration] = parse(member.text, f"iter_{member.iteration:04d}.strat")
        return self._programs[member.iteration]

    def _refresh(self) -> None:
        run = self.run_folder
        run.write_results_tsv(self.records, self.objective)
        run.write_learnings(render(self.records, self.objective, self.prior))
        run.write_best(self.population[0].iteration if self.population else None)
        if self.niches is not None:
            run.write_niches(self.niches.table())

    def stop_reason(self) -> str | None:
        """Why the search must stop before the next iteration, or None."""
        s = self.settings.search
        if self.records and self.fails >= s.max_fails:
            return "fails"
        if len(self.records) >= s.iterations:
            return "iterations"
        if s.max_total_tokens and self.tokens >= s.max_total_tokens:
            return "tokens"
        return None

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Resume from the folder's records, then iterate until a stop condition; return the outcome."""
        self.restore()
        ran = 0
        while True:
            reason = self.stop_reason()
            if reason is None and self.should_stop():
                reason = "interrupted"
            if reason:
                return Outcome(reason, self.records, self.population, ran)
            k = max(int(self.settings.search.parallel), 1)
            if k > 1 and len(self.records) > len(self.starts):
                ran += len(self.step_parallel(k))
            else:
                self.step()
                ran += 1

    def restore(self) -> None:
        """Rebuild the state from the folder's records (an unfinished step is dropped, leftovers removed)."""
        records = self.run_folder.load_records(repair=True)
        cut = unfinished_step(records)
        if cut is not None:
            self.run_folder.notices.append(f"iterations {cut}-{len(records) - 1} are a step that did not finish; "
                                           f"it runs again from iteration {cut}")
            records = records[:cut]
        for record in records:
            self._apply(record)
        for notice in self.run_folder.notices:
            self.out(f"warning: {notice}")
        self.run_folder.notices.clear()
        self.run_folder.remove_uncommitted(len(self.records))
        if self.records:
            self._refresh()

    def step(self) -> dict[str, Any]:
        """Run and commit one iteration; return its record."""
        i = len(self.records)
        start = time.perf_counter()
        if i == 0:
            record, proposal = self._baseline(), None
        elif i <= len(self.starts):
            given = self.starts[i - 1]
            record, proposal = self._unparented(i, given["text"], given["path"], START, given["origin"]), None
        else:
            proposal, record = self._propose(i)
        record["seconds"] = round(time.perf_counter() - start, 6)
        self._commit(record, proposal)
        return record

    def step_parallel(self, k: int) -> list[dict[str, Any]]:
        """Run and commit one step of up to `k` candidates (see the module docstring); their records.

        A proposer that fails for good on one candidate (ModelError) ends the step after the
        candidates before it are committed; the error is raised then.
        """
        i0, s = len(self.records), self.settings.search
        n = min(k, s.iterations - i0)
        start = time.perf_counter()
        learnings = self._learnings() if getattr(self.proposer, "uses_prompt", False) else None
        contexts = [self._context(i0 + j, self._parent(i0 + j, first=j == 0), learnings) for j in range(n)]
        many = getattr(self.proposer, "propose_many", None)
        results = many(contexts) if many else [call(self.proposer.propose, ctx) for ctx in contexts]
        seconds = (time.perf_counter() - start) / n
        evaluations = self._evaluate_batch([(ctx.iteration, r) for ctx, r in zip(contexts, results)
                                            if isinstance(r, Proposal)])
        records = []
        for j, (ctx, result) in enumerate(zip(contexts, results)):
            if not isinstance(result, Proposal):
                if records:
                    self._commit_step_end(records[-1])
                raise result
            t = time.perf_counter()
            record = self._record(ctx, result, learnings if j == 0 else None)
            self._judge(record, result, lambda typed: unwrap(evaluations[canonical_hash(typed.program)]))
            record.update(step=i0, step_size=n)
            if j == n - 1 or self._ends_search(record):
                record["step_end"] = True
            record["seconds"] = round(seconds + time.perf_counter() - t, 6)
            self._commit(record, result)
            records.append(record)
            if record.get("step_end"):
                break
        return records

    def _evaluate_batch(self, proposals: list[tuple[int, Proposal]]) -> dict[str, Any]:
        """Each distinct checked, unseen candidate of a step evaluated once: {hash: Evaluation or exception}.

        Untuned candidates are evaluated as one bulk batch when the evaluator has `many` (each
        result equals its one-by-one evaluation bit for bit); tuned ones each run their own bulk grid.
        """
        out: dict[str, Any] = {}
        for i, proposal in proposals:
            if proposal.program is None or proposal.status != "ok":
                continue
            try:
                typed = check_for_run(proposal.program, self.portfolio)
            except StrategyError:
                continue
            h = canonical_hash(proposal.program)
            if h in self.hashes or h in out:
                continue
            out[h] = (i, typed)
        many = getattr(self.evaluate, "many", None)
        if self.settings.search.tune <= 0 and many is not None and len(out) > 1:
            try:  # one bulk batch; a failure falls back to one by one, so it stays with its candidate
                return dict(zip(out, many([typed for _, typed in out.values()])))
            except Exception:
                pass
        return {h: call(self._evaluator_for(i), typed) for h, (i, typed) in out.items()}

    def _ends_search(self, record: dict[str, Any]) -> bool:
        """Whether stop_reason() will hold once `record` is applied (a step ends there)."""
        s = self.settings.search
        fails = 0 if record["status"] == "keep" else self.fails + 1
        tokens = self.tokens + int((record.get("tokens") or {}).get("total", 0) or 0)
        return (fails >= s.max_fails or len(self.records) + 1 >= s.iterations
                or bool(s.max_total_tokens and tokens >= s.max_total_tokens))

    def _commit_step_end(self, record: dict[str, Any]) -> None:
        """Mark an already committed record as its step's last (the step was cut short)."""
        record["step_end"] = True
        self.run_folder.rewrite_record(record)

    def _commit(self, record: dict[str, Any], proposal: Proposal | None) -> None:
        returns = record.pop("_returns", None)
        self.run_folder.commit(record, record.pop("_text"), returns,
                               proposal.prompt if proposal else None, proposal.response if proposal else None)
        self._apply(record)
        self._refresh()
        self.out(self._progress(record))

    def _baseline(self) -> dict[str, Any]:
        text = self.baseline_text
        try:
            program = parse(text, self.baseline_path)
            typed = check_for_run(program, self.portfolio)
        except StrategyError as exc:
            raise AutostratError(f"the baseline strategy does not check:\n{exc.format()}") from None
        record = {"iteration": 0, "parent": None, "proposer": "baseline", "_text": text,
                  "hypothesis": header_hypothesis(text), "description": "baseline: " + (
                      header_hypothesis(text) or program.name or self.baseline_path)}
        evaluation = self.evaluate(typed)
        self._score(record, canonical_hash(program), evaluation)
        return record

    def add(self, text: str, path: str) -> dict[str, Any]:
        """Evaluate a hand-written strategy as the run's next iteration, by the run's rules; its record."""
        self.restore()
        i = len(self.records)
        if i <= len(self.starts):
            raise AutostratError(f"{self.run_folder.path}: error: the run has not evaluated its starting strategies "
                                 "yet; resume it first (autostrat evolve --run NAME), then add")
        start = time.perf_counter()
        record = self._unparented(i, text, path, HAND, f"added by hand: {path}")
        record["seconds"] = round(time.perf_counter() - start, 6)
        self._commit(record, None)
        return record

    def _unparented(self, i: int, text: str, path: str, proposer: str, origin: str) -> dict[str, Any]:
        """The judged record of a strategy no proposer wrote: a starting one (as written) or an added one."""
        program = parse(text, path)
        hypothesis = header_hypothesis(text)
        record = {"iteration": i, "parent": None, "proposer": proposer, "_text": text, "hypothesis": hypothesis,
                  "description": f"{origin}: {hypothesis or program.name or path}" if proposer == START else origin}
        self._judge(record, Proposal(program, text), self.evaluate if proposer == START else self._evaluator_for(i))
        return record

    def _propose(self, i: int) -> tuple[Proposal, dict[str, Any]]:
        learnings = self._learnings() if getattr(self.proposer, "uses_prompt", False) else None
        ctx = self._context(i, self._parent(i, first=True), learnings)
        proposal = self.proposer.propose(ctx)
        record = self._record(ctx, proposal, learnings)
        self._judge(record, proposal, self._evaluator_for(i))
        return proposal, record

    def _evaluator_for(self, i: int) -> Callable[[Any], Evaluation | Tuned]:
        """How iteration i's candidate is evaluated: as written, or tuned (search.tune)."""
        s = self.settings.search
        if s.tune <= 0:
            return self.evaluate
        rng = random.Random(f"{s.seed}:{i}:tune")
        return lambda typed: tune(typed, self.evaluate, self.objective, s.tune, s.tune_pick, rng)

    def _parent(self, i: int, first: bool) -> Member:
        """The seed's rule: the last candidate when it was kept (for a step's first), else a seeded draw."""
        last = self.records[-1]
        if first and last["status"] == "keep":
            return next(m for m in self.population if m.iteration == last["iteration"])
        pool = self.niches.pool(self.population) if self.niches is not None else self.population
        return random.Random(f"{self.settings.search.seed}:{i}:parent").choice(pool)

    def _context(self, i: int, parent: Member, learnings) -> Context:
        return Context(i, parent, list(self.population),
                       [self._program(parent)] + [self._program(m) for m in self.population if m is not parent],
                       self.records[-1], self.fails, learnings.text if learnings else "",
                       random.Random(f"{self.settings.search.seed}:{i}:propose"))

    def _record(self, ctx: Context, proposal: Proposal, learnings) -> dict[str, Any]:
        """An iteration's record before it is judged: what was proposed and what it cost."""
        i, parent = ctx.iteration, ctx.parent
        tokens = dict(proposal.tokens)
        if learnings and learnings.tokens:
            for k, v in learnings.tokens.items():
                tokens[k] = tokens.get(k, 0) + v
            tokens["compaction"] = learnings.tokens.get("total", 0)
        if learnings and learnings.summary:
            self.run_folder.write_summary(learnings.summary)
        hypothesis = proposal.hypothesis or header_hypothesis(proposal.text)
        record = {"iteration": i, "parent": parent.iteration, "proposer": self.proposer.name,
                  "_text": proposal.text, "hypothesis": hypothesis, "learned": proposal.learned,
                  "description": proposal.description or hypothesis or _name(proposal.program),
                  "tokens": tokens, "repairs": proposal.repairs,
                  "model_seconds": round(proposal.model_seconds, 6)}
        if learnings and learnings.compacted:
            record["learnings_compacted"] = learnings.compacted
        if proposal.retries:
            record["retries"] = proposal.retries
        if proposal.finish:
            record["finish"] = proposal.finish
        return record

    def _learnings(self):
        s = self.settings.search
        summarise = getattr(self.proposer, "summarise", None)
        return for_prompt(self.records, self.objective, s.learnings_budget_chars,
                          self.run_folder.read_summary() if summarise else None, summarise, self.prior)

    def _judge(self, record: dict[str, Any], proposal: Proposal, evaluate: Callable[[Any], Evaluation]) -> None:
        if proposal.program is None or proposal.status != "ok":
            record.update(status="invalid" if proposal.status in ("ok", "invalid") else "error",
                          error=proposal.error)
            return
        try:
            typed = check_for_run(proposal.program, self.portfolio)
        except StrategyError as exc:
            record.update(status="invalid", error=exc.format())
            return
        h = canonical_hash(proposal.program)
        record["hash"] = h
        if h in self.hashes:
            record.update(status="duplicate", duplicate_of=self.hashes[h])
            return
        try:
            evaluation = evaluate(typed)
        except Exception as exc:  # a candidate must not end an overnight run; the record says why
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            record.update(status="error", error=f"evaluation failed: {last}")
            return
        if isinstance(evaluation, Tuned):  # the kept file carries the chosen values
            record.update(_text=evaluation.text, tuning=evaluation.info, trials=evaluation.info["variants"])
            evaluation = evaluation.evaluation
        self._score(record, h, evaluation)

    def _score(self, record: dict[str, Any], h: str, evaluation: Evaluation) -> None:
        s = self.settings.search
        if s.dedupe == "behaviour" and evaluation.behaviour:
            record.update(hash=h, behaviour=evaluation.behaviour)
            if evaluation.behaviour in self.behaviours:
                record.update(status="duplicate", duplicate_of=self.behaviours[evaluation.behaviour],
                              duplicate_kind="portfolio" if self.portfolio else "behaviour")
                return
        value = self.objective.value(evaluation.metrics)
        broken = broken_constraint(evaluation.metrics, s.min_trades, s.max_drawdown)
        k = self.settings.search.population
        worst = self.population[-1].objective if len(self.population) >= k else None
        joins = not self.population or (not broken and (worst is None or beats(value, worst)))
        record.update(status="keep" if joins else "discard", objective=value, objective_name=str(self.objective),
                      metrics=evaluation.metrics, hash=h, _returns=evaluation.returns)
        if worst is not None:
            record["worst_kept"] = worst
        if self.niches is not None and not broken:
            period = self.objective.period
            niche = cell(evaluation.metrics, period, period_years(self.evaluate, period))
            if niche is not None:
                record["niche"] = niche  # the elites are rebuilt from this on resume
        if broken:
            record["constraint"] = broken  # the baseline is kept anyway: the search needs a parent

    def _progress(self, r: dict[str, Any]) -> str:
        best = self.population[0].objective if self.population else float("nan")
        parent = "-" if r.get("parent") is None else r["parent"]
        tokens = int((r.get("tokens") or {}).get("total", 0) or 0)
        return (f"iter {r['iteration']} status={r['status']} objective={fmt_number(r.get('objective'))} "
                f"best={fmt_number(best)} parent={parent} tokens={tokens} seconds={r['seconds']:.2f}")


def _name(program: N.Program | None) -> str:
    return program.name if program is not None else ""

