"""The trade simulator: signal arrays in, equity curve, positions and trades out.

`simulate_nb` is the numba kernel (arrays and scalars only); `simulate` (autostrat.sim.simulation)
is the thin Python wrapper that takes a market and settings and returns a `SimResult` with a
readable trade table.

Simulation rules (each is enforced by the commented step of `simulate_nb` named in brackets):

- One call trades one period, bars [start, stop), starting flat with `initial_capital`. Signals
  come from the whole history (indicators are causal); signals before `start` or before `warmup`
  are ignored. [loop bounds, step 5]
- A rule is evaluated at the close of bar t. A signal value is on when it is > 0 (NaN is off).
  Fill `next_open` (fill_close=False): the order fills at open[t+1]; a signal on the last bar of
  the period cannot fill and is ignored. Fill `close` (fill_close=True): the order fills at
  close[t]; this reproduces the seed harness exactly. [steps 1 and 5]
- Flat: enter long when long_entry[t] and not long_exit[t]; otherwise enter short when
  short_entry[t] and not short_exit[t]. Long: exit when long_exit[t]. Short: exit when
  short_exit[t]. After a rule exit the same bar's entry rules are checked again, so a long exit plus
  a short entry reverses. The entry rules are also checked when a stop, target, max_hold or
  liquidation exit left the position flat earlier in the same bar. [step 5]
- All equity in, fractional shares. With E the equity before the entry, c the commission and s the
  slippage (per side, fractions):
  long entry at P: fill = P(1+s), shares = E(1-c)/fill; long exit at P: fill = P(1-s),
  cash = shares*fill*(1-c).
  short entry at P: fill = P(1-s), shares = E(1-c)/fill, Ea = E(1-c); equity while short at
  close C = Ea + shares*(fill - C); short exit at P: xfill = P(1+s),
  cash = Ea + shares*(fill - xfill) - c*shares*xfill. [_enter_nb, _close_nb]
- Cash after any exit is clamped at 0. A short whose equity marked at a close is <= 0 (the price
  about doubled) is closed at that close with reason "liquidation"; with no equity left no new
  position is opened. [step 4, _close_nb]
- stop_loss / take_profit / trailing_stop (fractions, NaN = off) are checked against each bar's
  open/low/high from the bar after the entry bar (the bar whose open or close the entry filled at).
  Long: stop = entry_fill(1-stop_loss); trailing = peak(1-trailing_stop) with peak =
  max(entry_fill, highest high of the bars after the entry bar up to the previous bar), so there is
  no intrabar look-ahead; the higher of the two is the active stop and names the reason (a tie is a
  stop_loss). Target = entry_fill(1+take_profit). In time order: an open at or through the stop
  fills at the open (gap); else an open at or through the target fills at the open; else a low at
  or through the stop fills at the stop; else a high at or through the target fills at the target.
  So when a stop and the target are both inside one bar, the stop is assumed first. Shorts mirror:
  stop above, target below, trough = lowest low. These fills take slippage and commission like any
  exit. [step 2]
- max_hold N (bars; < 1 = off): exit at the close of bar entry_bar + N. [step 3]
- Order within bar b: fills of orders from b-1's close (next_open), then intrabar stops and
  targets, then max_hold at the close, then liquidation, then the rules at b's close. [steps 1-5]
- A position still open after the last bar's rules is closed at that bar's close with reason
  "end", paying exit costs. `position` on that bar keeps the side held into the close: the close-out
  is bookkeeping, not a decision. [step 6]
- Equity is marked at every close: cash when flat, shares*close when long, the short formula above
  when short. [step 6]

Trade rows (float64[n_trades, 8]): entry_bar, exit_bar (absolute bar indices), entry_price and
exit_price (fill prices, slippage included), side (+1/-1), return (net of all costs: equity after
the exit / equity before the entry - 1), exit_reason (index into EXIT_REASONS), bars_held
(exit_bar - entry_bar).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from autostrat.sim.metrics import BAR_START, bar_nb, finish_nb, trade_nb, trade_start_nb
from autostrat.tape.opcodes import Op
from autostrat.tape.vm import run_tape

EXIT_REASONS = ("signal", "stop_loss", "take_profit", "trailing_stop", "max_hold", "end",
                "liquidation")
TRADE_COLUMNS = ("entry_bar", "exit_bar", "entry_price", "exit_price", "side", "return",
                 "exit_reason", "bars_held")

# Reason codes as plain ints: numba treats module globals as compile-time constants.
SIGNAL, STOP_LOSS, TAKE_PROFIT, TRAILING_STOP, MAX_HOLD, END, LIQUIDATION = range(7)


@njit(cache=True, inline="always")
def _enter_nb(side, price, equity, commission, slippage):
    """(entry_fill, shares, equity_after_commission) of an all-in entry at `price`."""
    fill = price * (1.0 + slippage) if side == 1 else price * (1.0 - slippage)
    invested = equity * (1.0 - commission)
    return fill, invested / fill, invested


@njit(cache=True, inline="always")  # inlined: one compile instead of one per literal argument
def _close_nb(trades, record, acc, b, price, reason, side, shares, entry_fill, invested,
              equity_before, entry_bar, commission, slippage):
    """Close the whole position at `price` on bar b, append its trade row (when recording) and take
    it into the per-trade sums `acc` (in place); returns the cash, clamped at 0."""
    if side == 1:
        fill = price * (1.0 - slippage)
        cash = shares * fill * (1.0 - commission)
    else:
        fill = price * (1.0 + slippage)
        cash = invested + shares * (entry_fill - fill) - commission * shares * fill
    cash = max(cash, 0.0)
    ret = cash / equity_before - 1.0
    if record:
        n_trades = int(acc[0])
        trades[n_trades, 0] = entry_bar
        trades[n_trades, 1] = b
        trades[n_trades, 2] = entry_fill
        trades[n_trades, 3] = fill
        trades[n_trades, 4] = side
        trades[n_trades, 5] = ret
        trades[n_trades, 6] = reason
        trades[n_trades, 7] = b - entry_bar
    trade_nb(acc, ret, entry_fill, fill)
    return cash


@njit(cache=True)
def rule_bits_nb(regs, kind, a, b, start, stop, out):
    """out[i] = 1 when a rule is on at bar start + i, read as `Tape.rules` says, else 0.

    kind -1: register a > 0; kind = an opcode of autostrat.tape.compile.FUSED_OPS: that
    comparison of registers a and b, with its kernel's NaN rules (`!=` is false on NaN, a cross is
    false on the first bar); a < 0: off. One tight loop per kind, so the simulator's bar loop
    reads a byte instead of dispatching on the kind at every bar.

    The loops index slices of the period from 0: an index numba knows is not negative needs no
    wraparound, so each loop compiles to vector code (about 18x faster than indexing the whole
    row at start + i, which ran at 4 ns a bar and cost a crossover over half of its scoring time).
    """
    n = stop - start
    if n <= 0:
        return
    o = out[:n]
    if a < 0:
        o[:] = 0
        return
    x = regs[a, start:stop]
    if kind < 0:
        for i in range(n):
            o[i] = x[i] > 0.0
        return
    y = regs[b, start:stop]
    if kind == Op.gt:
        for i in range(n):
            o[i] = x[i] > y[i]
    elif kind == Op.lt:
        for i in range(n):
            o[i] = x[i] < y[i]
    elif kind == Op.ge:
        for i in range(n):
            o[i] = x[i] >= y[i]
    elif kind == Op.le:
        for i in range(n):
            o[i] = x[i] <= y[i]
    elif kind == Op.eq:
        for i in range(n):
            o[i] = x[i] == y[i]
    elif kind == Op.ne:
        for i in range(n):
            u = x[i]
            v = y[i]
            o[i] = u != v and not math.isnan(u) and not math.isnan(v)
    elif kind == Op.cross_above or kind == Op.cross_below:
        # Bar start + i against bar start + i - 1: the first bar of the period looks back
        # before the slice, and the first bar of the history has nothing to look back at.
        above = kind == Op.cross_above
        if start >= 1:
            u, v, pu, pv = x[0], y[0], regs[a, start - 1], regs[b, start - 1]
            o[0] = (u > v and pu <= pv) if above else (u < v and pu >= pv)
        else:
            o[0] = 0
        if above:
            for i in range(1, n):
                o[i] = x[i] > y[i] and x[i - 1] <= y[i - 1]
        else:
            for i in range(1, n):
                o[i] = x[i] < y[i] and x[i - 1] >= y[i - 1]
    else:
        raise ValueError("unknown rule kind")


@njit(cache=True)
def simulate_nb(open_, high, low, close, long_entry, long_exit, short_entry, short_exit,
                start, stop, warmup, fill_close, commission, slippage,
                stop_loss, take_profit, trailing_stop, max_hold, initial_capital):
    """Trade bars [start, stop) from the signal arrays; returns (equity, position, trades).

    Price and signal arrays (float64, C-contiguous) cover the whole history; a signal is on when
    it is > 0; warmup is the first bar whose signals count; fill_close picks `close` over
    `next_open`; commission and slippage are per-side fractions; stop_loss, take_profit,
    trailing_stop are fractions (NaN = off); max_hold is in bars (< 1 = off). The rules are in
    the module docstring.
    """
    n = close.shape[0]
    signals = np.empty((4, n))
    for t in range(n):
        signals[0, t] = long_entry[t]
        signals[1, t] = long_exit[t]
        signals[2, t] = short_entry[t]
        signals[3, t] = short_exit[t]
    rules = np.full((4, 3), -1, dtype=np.int64)
    for j in range(4):
        rules[j, 1] = j
    return simulate_into_nb(open_, high, low, close, signals, rules, start, stop, warmup, fill_close,
                            commission, slippage, stop_loss, take_profit, trailing_stop, max_hold,
                            initial_capital, True, np.empty(0), np.empty(0))


def _simulator(shorts: bool, general: bool = True):
    """simulate_into_nb, compiled for programs that may go short (`shorts`) or that have no short
    rules, and for any settings (`general`) or only for scoring (record False) at fill `close`
    with no stop_loss, take_profit, trailing_stop or max_hold. numba reads `shorts` and `general`
    as constants, so a specialised loop has no code for what it cannot meet (the long-only loop
    has no short side and runs about a fifth faster). The source is the same, so every variant
    makes the same float operations and trades, and scores, bit for bit alike where it applies.
    """

    @njit(cache=True)
    def simulate_into_nb(open_, high, low, close, regs, rules, start, stop, warmup, fill_close, commission,
                         slippage, stop_loss, take_profit, trailing_stop, max_hold, initial_capital, record, out,
                         rets):
        """simulate_nb with the rules read from registers, and the period's metrics written into `out`
        when it is not empty.

        `regs` is a tape's register file and `rules` one program's int64 (4, 3) rule forms, buy, sell,
        short, cover (autostrat.tape.compile.Tape.rules; `rule_bits_nb`). With record False no equity,
        position or trade array is kept (empty ones are returned): the metrics are summed bar by bar
        and trade by trade as the period is traded (autostrat.sim.metrics: bar_nb, trade_nb,
        finish_nb), which is how a search scores a strategy. `rets`, when not empty, is a buffer of at
        least stop - start - 1 floats the period's daily returns are left in, for a caller that
        finishes the Sharpe ratios of several programs at once (finish_nb's own_sharpe,
        sharpe_rows_nb); when empty the Sharpe ratio is finished here. The step numbers below refer
        to the rules in the module docstring.
        """
        if not general:  # the caller guarantees these (see _simulator)
            fill_close = True
            record = False
        bits = np.empty((4, max(stop - start, 0)), dtype=np.uint8)  # buy, sell, short, cover
        for j in range(4):
            rule_bits_nb(regs, rules[j, 0], rules[j, 1], rules[j, 2], start, stop, bits[j])
        long_entry, long_exit, short_entry, short_exit = bits[0], bits[1], bits[2], bits[3]
        n = stop - start
        score = out.shape[0] > 0
        equity = np.empty(n if record else 0, dtype=np.float64)
        position = np.zeros(n if record else 0, dtype=np.int8)
        trades = np.empty((n + 1 if record else 0, 8), dtype=np.float64)  # at most one entry per bar
        own_sharpe = rets.shape[0] == 0
        if own_sharpe:
            rets = np.empty(max(n - 1, 0) if score else 0, dtype=np.float64)
        bars = BAR_START
        acc = trade_start_nb(initial_capital)

        cash = initial_capital
        side = 0
        shares = 0.0
        entry_fill = 0.0
        invested = 0.0  # equity after the entry commission (the short's collateral)
        equity_before = 0.0
        entry_bar = -1
        extreme = 0.0  # peak (long) or trough (short) for the trailing stop
        pend_exit = False
        pend_side = 0
        use_sl = general and not math.isnan(stop_loss)
        use_tp = general and not math.isnan(take_profit)
        use_ts = general and not math.isnan(trailing_stop)
        use_stops = use_sl or use_tp or use_ts
        use_max_hold = general and max_hold >= 1

        # The bar loop indexes the period's slices from 0: an index numba knows is not negative
        # needs no wraparound code (the rule bits likewise, rule_bits_nb).
        op, hi, lo, cl = open_[start:stop], high[start:stop], low[start:stop], close[start:stop]
        for i in range(n):
            b = start + i
            # Step 1: orders decided at the previous close fill at this open (next_open only).
            if not fill_close:
                if pend_exit and side != 0:
                    cash = _close_nb(trades, record, acc, b, op[i], SIGNAL, side, shares,
                                     entry_fill, invested, equity_before, entry_bar,
                                     commission, slippage)
                    side = 0
                if pend_side != 0 and side == 0 and cash > 0.0:
                    side = pend_side
                    equity_before = cash
                    entry_fill, shares, invested = _enter_nb(side, op[i], cash, commission, slippage)
                    entry_bar = b
                    extreme = entry_fill
                    cash = 0.0
                pend_exit = False
                pend_side = 0

            # Step 2: intrabar stops and targets, from the bar after the entry bar.
            exit_price = math.nan
            reason = -1
            if use_stops and side != 0 and b > entry_bar:
                if side == 1:
                    stop_level = -math.inf
                    stop_reason = STOP_LOSS
                    if use_sl:
                        stop_level = entry_fill * (1.0 - stop_loss)
                    if use_ts and extreme * (1.0 - trailing_stop) > stop_level:
                        stop_level = extreme * (1.0 - trailing_stop)
                        stop_reason = TRAILING_STOP
                    target = entry_fill * (1.0 + take_profit) if use_tp else math.inf
                    if op[i] <= stop_level:
                        exit_price, reason = op[i], stop_reason
                    elif op[i] >= target:
                        exit_price, reason = op[i], TAKE_PROFIT
                    elif lo[i] <= stop_level:
                        exit_price, reason = stop_level, stop_reason
                    elif hi[i] >= target:
                        exit_price, reason = target, TAKE_PROFIT
                    else:  # the peak takes this bar's high only after the bar was checked
                        extreme = max(extreme, hi[i])
                else:
                    stop_level = math.inf
                    stop_reason = STOP_LOSS
                    if use_sl:
                        stop_level = entry_fill * (1.0 + stop_loss)
                    if use_ts and extreme * (1.0 + trailing_stop) < stop_level:
                        stop_level = extreme * (1.0 + trailing_stop)
                        stop_reason = TRAILING_STOP
                    target = entry_fill * (1.0 - take_profit) if use_tp else -math.inf
                    if op[i] >= stop_level:
                        exit_price, reason = op[i], stop_reason
                    elif op[i] <= target:
                        exit_price, reason = op[i], TAKE_PROFIT
                    elif hi[i] >= stop_level:
                        exit_price, reason = stop_level, stop_reason
                    elif lo[i] <= target:
                        exit_price, reason = target, TAKE_PROFIT
                    else:
                        extreme = min(extreme, lo[i])

            # Step 3: max_hold at the close.
            if use_max_hold and reason < 0 and side != 0 and b - entry_bar >= max_hold:
                exit_price, reason = cl[i], MAX_HOLD

            # Step 4: a short whose equity at this close is gone is closed here.
            if reason < 0 and side == -1 and invested + shares * (entry_fill - cl[i]) <= 0.0:
                exit_price, reason = cl[i], LIQUIDATION

            if reason >= 0:
                cash = _close_nb(trades, record, acc, b, exit_price, reason, side, shares,
                                 entry_fill, invested, equity_before, entry_bar,
                                 commission, slippage)
                side = 0

            # Step 5: the rules at this close.
            if b >= warmup:
                want_exit = (side == 1 and long_exit[i] != 0) or (shorts and side == -1 and short_exit[i] != 0)
                new_side = 0
                if side == 0 or want_exit:
                    if long_entry[i] != 0 and long_exit[i] == 0:
                        new_side = 1
                    elif shorts and short_entry[i] != 0 and short_exit[i] == 0:
                        new_side = -1
                if fill_close:
                    if want_exit:
                        cash = _close_nb(trades, record, acc, b, cl[i], SIGNAL, side,
                                         shares, entry_fill, invested, equity_before,
                                         entry_bar, commission, slippage)
                        side = 0
                    if new_side != 0 and side == 0 and cash > 0.0:
                        side = new_side
                        equity_before = cash
                        entry_fill, shares, invested = _enter_nb(side, cl[i], cash, commission,
                                                                 slippage)
                        entry_bar = b
                        extreme = entry_fill
                        cash = 0.0
                elif b + 1 < stop:  # an order from the last bar's close has no open to fill at
                    pend_exit = want_exit
                    pend_side = new_side

            # Step 6: mark to the close; the last bar closes out what is still open.
            held = side
            if side != 0 and b == stop - 1:
                cash = _close_nb(trades, record, acc, b, cl[i], END, side, shares, entry_fill,
                                 invested, equity_before, entry_bar, commission, slippage)
                side = 0
            if side == 0:
                e = cash
            elif side == 1:
                e = shares * cl[i]
            else:
                e = invested + shares * (entry_fill - cl[i])
            if record:
                equity[i] = e
                position[i] = held
            if score:
                bars = bar_nb(bars, i, e, held != 0, rets)

        if score:
            finish_nb(bars, acc, rets, n, close, start, stop, initial_capital, out, own_sharpe)
        return equity, position, trades[:int(acc[0])].copy()
    return simulate_into_nb


simulate_into_nb = _simulator(True)
simulate_long_nb = _simulator(False)
# Scoring at fill `close` without stops, targets or max_hold: compiled on first use only.
simulate_close_nb = _simulator(True, False)
simulate_close_long_nb = _simulator(False, False)


# ---------------------------------------------------------------- arguments


def fraction_of_bps(bps: float) -> float:
    """Basis points as a fraction: 1 bp is 0.0001."""
    return bps / 1e4


def backtest_args(bt) -> tuple[bool, float, float, float]:
    """(fill_close, commission, slippage, capital): BacktestSettings as every kernel takes them."""
    return (bt.fill == "close", fraction_of_bps(bt.commission_bps), fraction_of_bps(bt.slippage_bps),
            float(bt.initial_capital))


def evaluation_args(bt) -> tuple[bool, float, float, float, bool]:
    """backtest_args and whether indicators run on each period alone: evaluate_arrays' settings."""
    return (*backtest_args(bt), bt.indicators == "period")


def period_simulation(tape, market, start: int, stop: int, bt, registers: np.ndarray | None = None,
                      program: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """simulate_nb's (equity, position, trades) for one program over bars [start, stop).

    With backtest.indicators = "history" the tape's `registers` on the whole market are used (run
    here when None); with "period" the tape runs on the period's bars alone. Trades' bar indices
    count from the market's first bar either way.
    """
    if bt.indicators != "period":
        regs = run_tape(tape, market) if registers is None else registers
        return simulate_nb(*simulator_args(tape, regs, market, start, stop, bt, program))
    part = market.slice(start, stop)
    equity, position, trades = simulate_nb(*simulator_args(tape, run_tape(tape, part), part, 0, stop - start, bt,
                                                            program))
    trades = trades.copy()
    trades[:, :2] += start  # entry_bar, exit_bar (TRADE_COLUMNS)
    return equity, position, trades


def simulator_args(tape, registers: np.ndarray, market, start: int, stop: int, bt, program: int = 0) -> tuple:
    """The positional arguments of `simulate_nb` for one program of a tape over bars [start, stop).

    `registers` is the tape's register file on `market` (autostrat.tape.vm.run_tape) and `bt` the
    BacktestSettings. A missing short rule is an all-zero series, a missing exit NaN (max_hold -1),
    as the kernel expects.
    """
    fill_close, commission, slippage, capital = backtest_args(bt)
    zeros = np.zeros(len(market.close))
    long_entry, long_exit, short_entry, short_exit = (registers[r] if r >= 0 else zeros
                                                      for r in tape.outputs[program])
    ex = tape.exits[program]
    return (market.open, market.high, market.low, market.close, long_entry, long_exit, short_entry, short_exit,
            int(start), int(stop), int(tape.warmups[program]), fill_close, commission, slippage,
            ex[0], ex[1], ex[2], int(ex[3]), capital)
