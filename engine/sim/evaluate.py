"""Evaluate compiled tapes: run the VM once, then simulate and score every program and period.

`evaluate_arrays` is the pure core of all evaluation, single or bulk: (tape arrays, market
arrays, periods, costs) -> metrics array. It has no Python objects in its signature, so a
distributed executor can map it over chunks of programs and assets.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_num_threads, njit, prange

from autostrat.sim.metrics import METRIC_NAMES, sharpe_rows_nb
from autostrat.sim.simulate import (evaluation_args, simulate_close_long_nb, simulate_close_nb, simulate_into_nb,
                                    simulate_long_nb)
from autostrat.tape.kernel_table import kernel_table
from autostrat.tape.opcodes import FIRST_FREE_REG
from autostrat.tape.prefix import input_prefixes, no_prefixes
from autostrat.tape.vm import run_tape_nb

N_METRICS = len(METRIC_NAMES)


GROUP = 4  # programs a scorer trades one after another, then finishes their Sharpe ratios in one loop


def _group_scorer(at_close: bool, long_only: bool):
    """The kernel scoring a group of at most GROUP programs on every period, through one simulator
    of autostrat.sim.simulate._simulator: the one specialised for fill `close` with no stop, target
    or max_hold (`at_close`) or the general one, each compiled without the short side for programs
    with no short or cover rule (`long_only`). `evaluate_arrays` sorts the programs. numba reads
    the flags as constants and compiles only the simulator the branch calls, so a first backtest
    compiles one simulator, and every simulator is the same source: the same bits whichever scores.

    Per period, each program is traded with its metrics summed bar by bar (no equity or trade
    arrays), its daily returns left in its row of `rets`; then `sharpe_rows_nb` runs the group's
    Sharpe passes side by side, each in its own order: the bits of one program scored alone.
    """

    @njit(cache=True)
    def score_group_nb(regs, rules, warmups, exits, open_, high, low, close, spans, fill_close,
                       commission, slippage, capital, out, rets):
        for s in range(spans.shape[0]):
            a, b = spans[s, 0], spans[s, 1]
            for j in range(rules.shape[0]):
                e = exits[j]
                if at_close:
                    if long_only:
                        simulate_close_long_nb(open_, high, low, close, regs, rules[j], a, b, warmups[j], True,
                                               commission, slippage, e[0], e[1], e[2], int(e[3]), capital, False,
                                               out[j, s], rets[j])
                    else:
                        simulate_close_nb(open_, high, low, close, regs, rules[j], a, b, warmups[j], True,
                                          commission, slippage, e[0], e[1], e[2], int(e[3]), capital, False,
                                          out[j, s], rets[j])
                elif long_only:
                    simulate_long_nb(open_, high, low, close, regs, rules[j], a, b, warmups[j], fill_close,
                                     commission, slippage, e[0], e[1], e[2], int(e[3]), capital, False, out[j, s],
                                     rets[j])
                else:
                    simulate_into_nb(open_, high, low, close, regs, rules[j], a, b, warmups[j], fill_close,
                                     commission, slippage, e[0], e[1], e[2], int(e[3]), capital, False, out[j, s],
                                     rets[j])
            sharpe_rows_nb(rets[:rules.shape[0]], b - a - 1, out[:, s])

    return score_group_nb


_score_group_nb = _group_scorer(False, False)
_score_long_group_nb = _group_scorer(False, True)
_score_close_group_nb = _group_scorer(True, False)
_score_close_long_group_nb = _group_scorer(True, True)


def longest_period(spans: np.ndarray) -> int:
    """Bars in the longest period (at least 2): a group's returns buffer holds one less per program."""
    return max([2] + [b - a for a, b in spans.tolist()])  # a list: a backtest's two rows, no array calls


def _batch_scorers(at_close: bool, long_only: bool):
    """(parallel, serial) kernels scoring a batch's programs, GROUP at a time, with the group
    scorer of the same flags. The closure holds only the flags, and the group scorers are module
    globals: numba keys its disk cache by the closure's values, which must be the same in every
    process (a kernel closing over another kernel would be compiled again in every process)."""

    @njit(cache=True, parallel=True)
    def score_many_nb(regs, rules, warmups, exits, open_, high, low, close, spans, fill_close,
                      commission, slippage, capital, longest, threads):
        n_prog = rules.shape[0]
        out = np.empty((n_prog, spans.shape[0], N_METRICS))
        n_groups = (n_prog + GROUP - 1) // GROUP
        n_parts = max(min(threads, n_groups), 1)
        # One part per thread (`threads`: numba's thread count, which a kernel cannot read and
        # still be cached), each allocating one returns buffer (158 KB for the default periods)
        # for all its groups, not one per group.
        for part in prange(n_parts):
            rets = np.empty((min(GROUP, n_prog), longest - 1))
            for g in range(part * n_groups // n_parts, (part + 1) * n_groups // n_parts):
                p, q = g * GROUP, min(g * GROUP + GROUP, n_prog)
                args = (regs, rules[p:q], warmups[p:q], exits[p:q], open_, high, low, close, spans, fill_close,
                        commission, slippage, capital, out[p:q], rets)
                if at_close:
                    if long_only:
                        _score_close_long_group_nb(*args)
                    else:
                        _score_close_group_nb(*args)
                elif long_only:
                    _score_long_group_nb(*args)
                else:
                    _score_group_nb(*args)
        return out

    @njit(cache=True)
    def score_serial_nb(regs, rules, warmups, exits, open_, high, low, close, spans, fill_close,
                        commission, slippage, capital, longest):
        n_prog = rules.shape[0]
        out = np.empty((n_prog, spans.shape[0], N_METRICS))
        rets = np.empty((min(GROUP, n_prog), longest - 1))  # a group's daily returns
        for p in range(0, n_prog, GROUP):
            q = min(p + GROUP, n_prog)
            args = (regs, rules[p:q], warmups[p:q], exits[p:q], open_, high, low, close, spans, fill_close,
                    commission, slippage, capital, out[p:q], rets)
            if at_close:
                if long_only:
                    _score_close_long_group_nb(*args)
                else:
                    _score_close_group_nb(*args)
            elif long_only:
                _score_long_group_nb(*args)
            else:
                _score_group_nb(*args)
        return out

    return score_many_nb, score_serial_nb


_SCORERS = {(c, lo): _batch_scorers(c, lo) for c in (False, True) for lo in (False, True)}  # by (at_close, long_only)


def _at_close(exits: np.ndarray) -> np.ndarray:
    """Which programs the fill-`close` simulators may score: no stop, target, trailing stop or max_hold."""
    return np.isnan(exits[:, 0]) & np.isnan(exits[:, 1]) & np.isnan(exits[:, 2]) & (exits[:, 3] < 1)


def _long_only(rules: np.ndarray) -> np.ndarray:
    """Which programs have no short and no cover rule (their rule forms' operands are -1)."""
    return (rules[:, 2, 1] < 0) & (rules[:, 3, 1] < 0)


def evaluate_arrays(code, consts, n_regs, rules, warmups, exits, open_, high, low, close, volume,
                     spans, fill_close, commission, slippage, capital, per_period=False, parallel=True,
                     kept_prefix=True):
    """Metrics float64[n_programs, n_periods, N_METRICS] for every program of a tape.

    `code` is a tape's run_code and `rules` its rule forms (autostrat.tape.compile.Tape). Runs the
    tape once (shared sub-expressions computed once), then simulates the programs in
    parallel on all cores; one program alone, or `parallel=False` (a worker process that is
    itself one of many, e.g. on a Dask cluster), runs on the calling thread only.
    `per_period` (backtest.indicators = "period"): the tape runs on each period's bars alone, so
    every indicator warms up again inside the period, as if the period were the whole data.
    `kept_prefix`: a read-only close's rolling-sum prefix block is made once and kept
    (autostrat.tape.prefix.input_prefixes), for the next strategy on the same market; a period's
    slice, made anew for each call, does not keep one.
    """
    if per_period:
        out = np.empty((rules.shape[0], spans.shape[0], N_METRICS))
        for s in range(spans.shape[0]):
            a, b = int(spans[s, 0]), int(spans[s, 1])
            out[:, s:s + 1] = evaluate_arrays(code, consts, n_regs, rules, warmups, exits, open_[a:b], high[a:b],
                                              low[a:b], close[a:b], volume[a:b], np.array([[0, b - a]], np.int64),
                                              fill_close, commission, slippage, capital, False, parallel, False)
        return out
    # The rules' operand registers (a comparison's two, or a register) are read after the run.
    given = input_prefixes(close) if kept_prefix else no_prefixes(close.shape[0])
    regs = run_tape_nb(code, consts, run_registers(code, rules, n_regs), kernel_table(code), open_, high, low, close,
                       volume, rules[:, :, 1:].reshape(-1), *given)
    args = (open_, high, low, close, spans, bool(fill_close), float(commission), float(slippage), float(capital))
    if rules.shape[0] == 1:  # one backtest: its flags without array operations, which cost more here
        e, r = exits[0].tolist(), rules[0]
        plain = bool(fill_close) and math.isnan(e[0]) and math.isnan(e[1]) and math.isnan(e[2]) and e[3] < 1
        return _score(2 * plain + bool(r[2, 1] < 0 and r[3, 1] < 0), parallel, regs, rules, warmups, exits, *args)
    plain = _at_close(exits) if fill_close else np.zeros(rules.shape[0], dtype=bool)
    kind = 2 * plain + _long_only(rules)  # each program to the scorer of its flags; a mixed batch is split
    kinds = np.flatnonzero(np.bincount(kind, minlength=4))
    if kinds.size == 1:
        return _score(int(kinds[0]), parallel, regs, rules, warmups, exits, *args)
    out = np.empty((rules.shape[0], spans.shape[0], N_METRICS))
    for k in kinds:
        part = np.flatnonzero(kind == k)
        out[part] = _score(int(k), parallel, regs, rules[part], warmups[part], exits[part], *args)
    return out


SMALL_FILE = 64  # register rows below which run_registers does not look for unused ones


def run_registers(code: np.ndarray, rules: np.ndarray, n_regs: int) -> int:
    """The rows of the register file a run of `code` needs: up to the last register it writes or a
    rule reads. A tape numbers its fused comparisons' registers last (autostrat.tape.compile.assemble),
    and `code` (a run_code) never writes them, so a batch of crossovers allocates a row per average,
    not one per comparison too. A register file of a few rows per program stays within what the
    allocator keeps for reuse; one of 2,115 rows for 1,000 crossovers (110 written) was mapped
    afresh on every run, its written rows faulted in (1,467 page faults a run, against none),
    and that took three quarters of the run. A file of up to
    SMALL_FILE rows (a backtest's) is returned as it is: measuring it costs more than it saves."""
    if n_regs <= SMALL_FILE:
        return int(n_regs)
    used = FIRST_FREE_REG
    if code.shape[0]:
        used = max(used, int(code[:, 1].max()) + 1)
    if rules.size:
        used = max(used, int(rules[:, :, 1:].max()) + 1)
    return min(int(n_regs), used)


def _score(kind: int, parallel: bool, regs, rules, warmups, exits, *args) -> np.ndarray:
    """Score the programs with the batch scorer of their flags (`kind`), in `locality_order`."""
    many, serial = _SCORERS[(bool(kind & 2), bool(kind & 1))]
    longest = longest_period(args[4])  # args: open, high, low, close, spans, ...
    if rules.shape[0] == 1:
        return serial(regs, rules, warmups, exits, *args, longest)
    order = locality_order(rules)
    rules, warmups, exits = rules[order], warmups[order], exits[order]
    if parallel:
        scored = many(regs, rules, warmups, exits, *args, longest, get_num_threads())
    else:
        scored = serial(regs, rules, warmups, exits, *args, longest)
    out = np.empty_like(scored)
    out[order] = scored
    return out


def locality_order(rules: np.ndarray) -> np.ndarray:
    """The order to score programs in: by the registers their buy rule reads (the second operand,
    then the first), so programs reading the same rows score one after another while those rows
    are in cache. A grid of crossovers lists the points fast average first; in this order each
    slow average is read by ten programs in a row: two threads scored bench_engine's 1,000
    crossovers 19% faster, and its sweep, end to end, 2 to 4%. Each program is scored alone, so
    the order changes no result."""
    return np.lexsort((rules[:, 0, 1], rules[:, 0, 2]))


def spans_array(spans: dict[str, tuple[int, int]]) -> np.ndarray:
    """Period ranges as the int64 (n_periods, 2) array the kernels take."""
    return np.array(list(spans.values()), dtype=np.int64).reshape(-1, 2)


_SPANS: dict[tuple, np.ndarray] = {}  # spans_array of the period ranges evaluate_tape saw, by range


def _kept_spans_array(spans: dict[str, tuple[int, int]]) -> np.ndarray:
    """spans_array(spans), made once per distinct ranges (the kernels only read it)."""
    key = tuple(spans.values())
    hit = _SPANS.get(key)
    if hit is None:
        if len(_SPANS) >= 256:
            _SPANS.clear()
        hit = _SPANS[key] = spans_array(spans)
    return hit


def evaluate_tape(tape, market, spans: dict[str, tuple[int, int]], backtest) -> np.ndarray:
    """`evaluate_arrays` for a Tape, a Market, named periods and BacktestSettings."""
    return evaluate_arrays(tape.run_code, tape.consts, tape.n_regs, tape.rules, tape.warmups, tape.exits,
                           market.open, market.high, market.low, market.close, market.volume, _kept_spans_array(spans),
                           *evaluation_args(backtest))


def metrics_dicts(values: np.ndarray, names) -> dict[str, dict[str, float]]:
    """One program's (n_periods, N_METRICS) array as {period: {metric: value}}."""
    out = {}
    for name, row in zip(names, values.tolist()):  # tolist: Python floats in one call
        d = dict(zip(METRIC_NAMES, row))
        d["num_trades"] = int(d["num_trades"])
        out[name] = d
    return out
