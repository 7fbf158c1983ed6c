"""The honest-evaluation statistics of a run, read from its folder without re-running anything.

Inputs, all from the run folder:

- the trials: every candidate that was evaluated (status keep or discard: it has metrics and a
  returns file). Invalid answers, duplicates (never backtested) and evaluation errors (no
  backtest result) are not trials. N is their count, each tuned candidate counting every variant
  it was chosen from (its record's `trials`, autostrat.search.tune);
- the returns matrix: returns/iter_NNNN.npy of every trial, as columns, in iteration order; rows
  are the days of train then validation (config.json's returns_layout). The test period is not
  in it: those files never hold it;
- the best: the best kept record (best.strat).

On a universe each returns file holds one series, the equal-weight average of the markets' daily
returns over their common dates (autostrat.sim.evaluator.UniverseEvaluator; config.json's
returns_series says so), so the statistics read one portfolio's record rather than the markets'
records laid end to end. `series` names what was read.

PSR, DSR and the minimum track record use the days the objective selected on: the objective's
period (validation for validation.METRIC), or train and validation together for a walk-forward
objective. V, the variance of the trials' Sharpe ratios, uses the same days and the saved returns
; a tuned candidate counts with every variant's Sharpe ratio on the selection period (its
record's `tuning.sharpes`; with a walk-forward objective, whose days span both periods, only its
chosen variant's returns). PBO (CSCV) uses the saved returns, all of train and validation, S blocks (`search.pbo_splits`, 16 by default). autostrat.honest.deflated_sharpe and
autostrat.honest.backtest_overfitting compute the numbers; docs/overfitting.md defines them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from autostrat.config import Settings
from autostrat.errors import AutostratError
from autostrat.honest.deflated_sharpe import (expected_max_sharpe, min_track_record_length, pbo, psr, sharpe_ratio,
                                              trial_sharpe_variance)
from autostrat.honest.sealed import best_record
from autostrat.search.runs import RunFolder
from autostrat.sim.metrics import TRADING_DAYS
from autostrat.sim.objective import Objective

TRIAL_STATUSES = ("keep", "discard")


def run_settings(run: RunFolder) -> Settings:
    """The settings a run was made with (its config.json), over today's defaults for newer fields."""
    settings = Settings()
    settings.apply(run.config.get("settings", {}), source=str(run.path / "config.json"))
    return settings


def run_objective(run: RunFolder, settings: Settings) -> Objective:
    """The objective a run searched with (a portfolio run's may name a portfolio metric)."""
    return Objective.from_settings(settings.search, portfolio=bool(run.config.get("portfolio")))


def trials(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records that count as trials: evaluated candidates (keep or discard) with returns."""
    return [r for r in records if r.get("status") in TRIAL_STATUSES]


def trial_count(records: list[dict[str, Any]]) -> int:
    """N: the trials, a tuned candidate counting each variant evaluated for it."""
    return sum(int(r.get("trials") or 1) for r in trials(records))


def all_trial_sharpes(selected: np.ndarray, iterations: list[int], records: list[dict[str, Any]],
                      period: str) -> np.ndarray | None:
    """Daily Sharpe ratios of every trial on the selection rows, each tuned variant on its own.

    None when no trial was tuned (V is then the saved returns' own variance). Non-finite values
    are left out, as trial_sharpe_variance leaves out such columns.
    """
    by_iteration = {r["iteration"]: r for r in records}
    if not any((by_iteration[i].get("tuning") or {}).get("sharpes") for i in iterations):
        return None
    out = []
    for col, i in enumerate(iterations):
        variants = ((by_iteration[i].get("tuning") or {}).get("sharpes") or {}).get(period)
        if variants:
            out += [v / math.sqrt(TRADING_DAYS) for v in variants if v is not None]
        else:
            out.append(sharpe_ratio(selected[:, col]))
    values = np.asarray(out, dtype=np.float64)
    return values[np.isfinite(values)]


def returns_matrix(run: RunFolder, records: list[dict[str, Any]]) -> tuple[np.ndarray, list[int]]:
    """T x N float64 daily returns (train then validation) of the trials, and their iterations."""
    columns, iterations = [], []
    for r in trials(records):
        x = run.read_returns(r["iteration"])
        if x is None:
            raise AutostratError(f"{run.returns_path(r['iteration'])}: the returns of evaluated iteration "
                                 f"{r['iteration']} are missing; the run folder is incomplete")
        columns.append(np.asarray(x, dtype=np.float64))
        iterations.append(r["iteration"])
    if not columns:
        return np.zeros((0, 0)), []
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise AutostratError(f"{run.path}: the returns files have different lengths {sorted(lengths)}; "
                             "they must cover the same train and validation days")
    return np.column_stack(columns), iterations


def selection_rows(layout: dict[str, Any], objective: Objective, n_rows: int) -> tuple[slice, str]:
    """The rows of the returns matrix the objective selected on, and their name."""
    if objective.folds or objective.period not in layout:
        return slice(0, n_rows), "train+validation"
    lo, hi = layout[objective.period]
    return slice(int(lo), int(hi)), objective.period


def run_statistics(run: RunFolder, records: list[dict[str, Any]] | None = None, objective: Objective | None = None,
                   n_splits: int | None = None, prob: float = 0.95) -> dict[str, Any]:
    """PSR, DSR, minimum track record and PBO of the run's best strategy and trials, as a flat dict.

    Keys: series (what the returns files hold on a universe, else ""), n_records, n_trials, n_kept, n_discarded, n_invalid, n_duplicate, n_error,
    best_iteration, best_objective, selection (the rows' name), track_record (days), sharpe_daily,
    sharpe_annual, psr, var_trials, expected_max_sharpe, expected_max_sharpe_annual, dsr,
    min_track_record, min_track_record_deflated (days), pbo, prob_oos_loss, degradation_slope,
    degradation_intercept, pbo_rows, pbo_n_splits, pbo_n_strategies, pbo_n_combinations,
    pbo_reason ("" or why PBO could not be computed; its values are then NaN).
    """
    records = run.load_records() if records is None else records
    settings = run_settings(run)
    objective = objective or run_objective(run, settings)
    n_splits = int(n_splits or settings.search.pbo_splits)
    counts = {s: sum(r.get("status") == s for r in records)
              for s in ("keep", "discard", "invalid", "duplicate", "error")}
    n_trials = trial_count(records)
    out: dict[str, Any] = {
        "n_records": len(records), "n_trials": n_trials, "n_kept": counts["keep"],
        "n_discarded": counts["discard"], "n_invalid": counts["invalid"], "n_duplicate": counts["duplicate"],
        "n_error": counts["error"], "objective": str(objective), "series": _series(run.config),
    }
    best = best_record(records)
    out["best_iteration"] = best["iteration"] if best else None
    out["best_objective"] = float(best["objective"]) if best and best.get("objective") is not None else math.nan
    matrix, iterations = returns_matrix(run, records)
    layout = run.config.get("returns_layout") or {}
    rows, name = selection_rows(layout, objective, matrix.shape[0])
    out["selection"] = name
    nan_keys = ("track_record", "sharpe_daily", "sharpe_annual", "psr", "var_trials", "expected_max_sharpe",
                "expected_max_sharpe_annual", "dsr", "min_track_record", "min_track_record_deflated")
    out.update({k: math.nan for k in nan_keys})
    if best is not None and best["iteration"] in iterations:
        selected = matrix[rows]
        r = selected[:, iterations.index(best["iteration"])]
        n = n_trials  # a tuned candidate's variants are trials too; V is estimated from the saved returns
        with np.errstate(all="ignore"):
            var = trial_sharpe_variance(selected)
            tuned = all_trial_sharpes(selected, iterations, records, name)
            if tuned is not None:
                var = float(tuned.var(ddof=1)) if len(tuned) >= 2 else math.nan
            sr_star = expected_max_sharpe(n, 0.0 if n == 1 else var)
            sr = sharpe_ratio(r)
            out.update({
                "track_record": int(len(r)), "sharpe_daily": sr, "sharpe_annual": sr * math.sqrt(TRADING_DAYS),
                "psr": psr(r), "var_trials": var, "expected_max_sharpe": sr_star,
                "expected_max_sharpe_annual": sr_star * math.sqrt(TRADING_DAYS),
                "dsr": psr(r, sr_star) if not math.isnan(sr_star) else math.nan,
                "min_track_record": min_track_record_length(r, 0.0, prob),
                "min_track_record_deflated": (min_track_record_length(r, sr_star, prob)
                                              if not math.isnan(sr_star) else math.nan),
            })
    out.update(_pbo(matrix, n_splits))
    return out


def _series(config: dict[str, Any]) -> str:
    """What the returns files hold: "" for one market's own returns."""
    if config.get("returns_series"):
        return str(config["returns_series"])
    if (config.get("data") or {}).get("source") == "universe":
        return "the markets' daily returns laid end to end, as this run folder stores them (longer than the evidence)"
    return ""


def _pbo(matrix: np.ndarray, n_splits: int) -> dict[str, Any]:
    out = {"pbo_rows": int(matrix.shape[0]), "pbo_n_splits": n_splits, "pbo_n_strategies": 0,
           "pbo_n_combinations": 0, "pbo_reason": ""}
    try:
        res = pbo(matrix, n_splits=n_splits)
    except ValueError as exc:
        out.update(pbo=math.nan, prob_oos_loss=math.nan, degradation_slope=math.nan,
                   degradation_intercept=math.nan, pbo_reason=str(exc))
        return out
    out.update(pbo=res.pbo, prob_oos_loss=res.prob_oos_loss, degradation_slope=res.degradation_slope,
               degradation_intercept=res.degradation_intercept, pbo_n_strategies=res.n_strategies,
               pbo_n_combinations=res.n_combinations)
    return out
