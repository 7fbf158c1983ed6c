"""Red flags: the warnings a reader of a run's report should see first, and their thresholds.

Each rule reads the report's dict (autostrat.report.build) and gives one sentence. The
thresholds are settings ([honest] flag_*, in the report's `thresholds`); their defaults are the
conventional ones: a Deflated Sharpe Ratio below 0.95 does not rule out selection luck; a
Probability of Backtest Overfitting above 0.5 means the in-sample best is usually below the
median out of sample; fewer than 20 trades cannot tell skill from luck.
"""

from __future__ import annotations

import math
from typing import Any

MIN_TRADES = 20  # the defaults of [honest] flag_min_trades, flag_dsr_below, flag_pbo_above
DSR_BAR = 0.95
PBO_BAR = 0.5


def thresholds(report: dict[str, Any]) -> tuple[float, float, float]:
    """(DSR bar, PBO bar, minimum trades) of a report: its settings', else the defaults."""
    t = report.get("thresholds") or {}
    return (float(t.get("flag_dsr_below", DSR_BAR)), float(t.get("flag_pbo_above", PBO_BAR)),
            float(t.get("flag_min_trades", MIN_TRADES)))


def num(x: Any) -> float:
    """A number read from the report: None and text that is not a number are NaN."""
    try:
        return math.nan if x is None else float(x)
    except (TypeError, ValueError):
        return math.nan


def red_flags(report: dict[str, Any]) -> list[str]:
    """The warnings a reader should see first, one sentence each."""
    s, flags = report["stats"], []
    best = report["best"]["metrics"]
    dsr_bar, pbo_bar, min_trades = thresholds(report)
    dsr, pbo = num(s.get("dsr")), num(s.get("pbo"))
    if math.isnan(dsr):
        flags.append("DSR could not be computed (too few trials or a constant record): selection luck is unmeasured.")
    elif dsr < dsr_bar:
        flags.append(f"DSR {dsr:.2f} is below {dsr_bar:g}: the best result is consistent with the luck of picking "
                     f"the best of {s['n_trials']} tries.")
    if pbo > pbo_bar:
        flags.append(f"PBO {pbo:.2f} is above {pbo_bar:g}: the candidate that looks best in one half of the data "
                     "is usually below the median in the other half.")
    names = ("train", "validation") if report["folds"] else (s["selection"],)
    trades = sum(num((best.get(p) or {}).get("num_trades")) for p in names)
    if trades < min_trades:
        flags.append(f"Only {trades:.0f} trades in {' and '.join(names)}: too few to tell skill from luck "
                     f"(fewer than {min_trades:g}).")
    ledger = report.get("ledger") or {}
    for unknown in dict.fromkeys(u for u in ((report.get("sealed") or {}).get("count_unknown"),
                                            ledger.get("count_unknown")) if u):
        flags.append(f"The sealed test period was opened before an unknown number of times ({unknown}): "
                     "read the test result as one of several looks.")
    flags += _ledger_flags(ledger, best.get("test"))
    val, test = best.get("validation") or {}, best.get("test")
    if test is not None:
        vs, ts = num(val.get("sharpe")), num(test.get("sharpe"))
        if vs > 0 and not ts >= 0.5 * vs:
            flags.append(f"The sealed test period is far below validation: Sharpe {ts:.2f} on test against "
                         f"{vs:.2f} on validation.")
    edge = [p for p in ("validation", "test") if (best.get(p) or {}).get("excess_return") is not None
            and num(best[p]["excess_return"]) <= 0]
    if edge:
        flags.append(f"No edge over buy and hold after costs on {' and '.join(edge)}: the strategy returned "
                     "no more than holding the market.")
    mtrl, record = num(s.get("min_track_record")), num(s.get("track_record"))
    if not math.isnan(mtrl) and mtrl > record:
        flags.append(f"The record is too short: {record:.0f} days, while {mtrl:.0f} are needed for 95% "
                     "confidence that the Sharpe ratio is above zero.")
    null = report.get("null")
    if null and num(null["best_objective"]) >= num(s.get("best_objective")):
        flags.append(f"On pure noise the same search reached {report['objective']} = {num(null['best_objective']):.4f}, "
                     f"at least the {num(s.get('best_objective')):.4f} it reached on the market.")
    elif null and num(null.get("best_validation_excess")) >= num(val.get("excess_return")):
        flags.append(f"On pure noise the same search's best beat buy and hold on validation by "
                     f"{num(null['best_validation_excess']):.1%}, at least the {num(val.get('excess_return')):.1%} "
                     "it managed on the market.")
    rob = report.get("robustness")
    if rob:
        found = num(rob["found"]["objective"])
        median = num(rob["rows"][0]["objective"][1])
        if found > 0 and not median >= 0.5 * found:
            flags.append(f"Fragile: with its numbers moved by +-{rob['factor']:.0%} the median objective is "
                         f"{median:.4f}, less than half of the {found:.4f} found.")
    return flags


def _ledger_flags(ledger: dict[str, Any], test: dict[str, Any] | None) -> list[str]:
    """Looks at this test period in other runs (autostrat.honest.ledger): it may have become a validation set."""
    out = []
    runs, bar = ledger.get("earlier_runs", 0), ledger.get("flag_earlier_runs", 0)
    if bar > 0 and runs >= bar:
        bests = [num((e.get("best") or {}).get("total_return")) for e in ledger.get("earlier", [])]
        bests = [b for b in bests if not math.isnan(b)]
        here = num((test or {}).get("total_return"))
        compare = (f" The best test return seen in those looks was {max(bests):.1%}; this run's best strategy "
                   f"has {here:.1%}."
                   if bests and not math.isnan(here) else "")
        out.append(f"The sealed test period was opened before this run: {ledger['earlier_openings']} "
                   f"time{'s' if ledger['earlier_openings'] != 1 else ''} in {runs} other "
                   f"run{'s' if runs != 1 else ''}.{compare} Read today's test number as one of several looks.")
    k, bar = ledger.get("strategies", 0), ledger.get("flag_strategies", 0)
    if bar > 0 and k >= bar:
        out.append(f"{k} distinct strategies have been looked at on this test period across runs: choosing among "
                   "them by their test results has made it a validation set.")
    return out
