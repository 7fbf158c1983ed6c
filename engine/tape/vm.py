"""The interpreter: one numba dispatch loop over the tape, a column at a time.

Each instruction runs its kernel over the whole series (dispatch costs once per instruction, not
once per bar). Registers are the rows of one 2-D float64 array; rows 0..4 hold open, high, low,
close and volume. The opcode constants come from autostrat.tape.opcodes (numba reads them as
compile-time constants); every opcode has one branch here, grouped as the registry groups them.
A branch calls its kernel through `kernels`, the process's kernel table (autostrat.tape.kernel_table),
so the loop compiles without compiling the kernels, and a kernel compiles when a tape first uses it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from autostrat.tape.kernel_table import FINGERPRINT, TABLE_SIZE, caller, kernel_table
from autostrat.tape.opcodes import NAMES, Op

# Every kernel's caller under its `<name>_nb` name in this module's globals, where numba resolves
# the calls of the dispatch loop below: `sma_nb(kernels, a, n1, d)` calls the table's sma kernel.
globals().update({f"{name}_nb": caller(name) for name in NAMES})


@njit(cache=True)
def run_tape_nb(code, consts, n_regs, kernels, open_, high, low, close, volume):
    """Run a tape over one market's arrays; return the register file (n_regs, n_bars).

    `kernels` is the int64 kernel table of `kernel_table(code)`, with every opcode of `code` filled.
    """
    if kernels.shape[0] != TABLE_SIZE or kernels[TABLE_SIZE - 1] != FINGERPRINT:
        # A loop compiled for another instruction set (a stale cache in a NUMBA_CACHE_DIR of the
        # user's own, or a table from elsewhere) must not call into it.
        raise ValueError("the kernel table does not match this dispatch loop; clear the numba "
                         "cache (the folder NUMBA_CACHE_DIR names) and run again")
    n = close.shape[0]
    if open_.shape[0] != n or high.shape[0] != n or low.shape[0] != n or volume.shape[0] != n:
        raise ValueError("open, high, low, close and volume must have the same length")
    regs = np.empty((n_regs, n))
    # One loop per row, not `regs[0, :] = open_`: slice assignment compiles numba's shape-error
    # path (3 s), and separate loops let the five series have different array types.
    for j in range(n):
        regs[0, j] = open_[j]
    for j in range(n):
        regs[1, j] = high[j]
    for j in range(n):
        regs[2, j] = low[j]
    for j in range(n):
        regs[3, j] = close[j]
    for j in range(n):
        regs[4, j] = volume[j]
    H = regs[1]
    L = regs[2]
    Cl = regs[3]
    V = regs[4]
    for i in range(code.shape[0]):
        op = code[i, 0]
        d = regs[code[i, 1]]
        a = regs[code[i, 2]]
        b = regs[code[i, 3]]
        c = regs[code[i, 4]]
        n1 = code[i, 5]
        n2 = code[i, 6]
        n3 = code[i, 7]
        k = consts[code[i, 8]] if consts.shape[0] > 0 else 0.0
        # ---- constants, lag and operators
        if op == Op.fill:
            fill_nb(kernels, k, d)
        elif op == Op.lag:
            lag_nb(kernels, a, n1, d)
        elif op == Op.neg:
            neg_nb(kernels, a, d)
        elif op == Op.not_:
            not_nb(kernels, a, d)
        elif op == Op.add:
            add_nb(kernels, a, b, d)
        elif op == Op.sub:
            sub_nb(kernels, a, b, d)
        elif op == Op.mul:
            mul_nb(kernels, a, b, d)
        elif op == Op.div:
            div_nb(kernels, a, b, d)
        elif op == Op.lt:
            lt_nb(kernels, a, b, d)
        elif op == Op.le:
            le_nb(kernels, a, b, d)
        elif op == Op.gt:
            gt_nb(kernels, a, b, d)
        elif op == Op.ge:
            ge_nb(kernels, a, b, d)
        elif op == Op.eq:
            eq_nb(kernels, a, b, d)
        elif op == Op.ne:
            ne_nb(kernels, a, b, d)
        elif op == Op.and_:
            and_nb(kernels, a, b, d)
        elif op == Op.or_:
            or_nb(kernels, a, b, d)
        # ---- averages
        elif op == Op.sma:
            sma_nb(kernels, a, n1, d)
        elif op == Op.ema:
            ema_nb(kernels, a, n1, d)
        elif op == Op.wma:
            wma_nb(kernels, a, n1, d)
        elif op == Op.rma:
            rma_nb(kernels, a, n1, d)
        # ---- statistics
        elif op == Op.stdev:
            stdev_nb(kernels, a, n1, d)
        elif op == Op.zscore:
            zscore_nb(kernels, a, n1, d)
        elif op == Op.highest:
            highest_nb(kernels, a, n1, d)
        elif op == Op.lowest:
            lowest_nb(kernels, a, n1, d)
        elif op == Op.sum:
            sum_nb(kernels, a, n1, d)
        elif op == Op.percent_rank:
            percent_rank_nb(kernels, a, n1, d)
        elif op == Op.slope:
            slope_nb(kernels, a, n1, d)
        elif op == Op.corr:
            corr_nb(kernels, a, b, n1, d)
        elif op == Op.bars_since_high:
            bars_since_high_nb(kernels, a, n1, d)
        elif op == Op.bars_since_low:
            bars_since_low_nb(kernels, a, n1, d)
        # ---- change
        elif op == Op.change:
            change_nb(kernels, a, n1, d)
        elif op == Op.roc:
            roc_nb(kernels, a, n1, d)
        # ---- oscillators
        elif op == Op.rsi:
            rsi_nb(kernels, a, n1, d)
        elif op == Op.stoch_k:
            stoch_k_nb(kernels, H, L, Cl, n1, d)
        elif op == Op.stoch_d:
            stoch_d_nb(kernels, H, L, Cl, n1, n2, d)
        elif op == Op.williams_r:
            williams_r_nb(kernels, H, L, Cl, n1, d)
        elif op == Op.cci:
            cci_nb(kernels, H, L, Cl, n1, d)
        elif op == Op.mfi:
            mfi_nb(kernels, H, L, Cl, V, n1, d)
        elif op == Op.macd:
            macd_nb(kernels, a, n1, n2, d)
        elif op == Op.macd_signal:
            macd_signal_nb(kernels, a, n1, n2, n3, d)
        elif op == Op.macd_hist:
            macd_hist_nb(kernels, a, n1, n2, n3, d)
        # ---- volatility
        elif op == Op.tr:
            tr_nb(kernels, H, L, Cl, d)
        elif op == Op.atr:
            atr_nb(kernels, H, L, Cl, n1, d)
        elif op == Op.bb_upper:
            bb_upper_nb(kernels, a, n1, k, d)
        elif op == Op.bb_lower:
            bb_lower_nb(kernels, a, n1, k, d)
        elif op == Op.keltner_upper:
            keltner_upper_nb(kernels, H, L, Cl, n1, k, d)
        elif op == Op.keltner_lower:
            keltner_lower_nb(kernels, H, L, Cl, n1, k, d)
        # ---- volume
        elif op == Op.obv:
            obv_nb(kernels, Cl, V, d)
        elif op == Op.vwap:
            vwap_nb(kernels, H, L, Cl, V, n1, d)
        # ---- trend
        elif op == Op.adx:
            adx_nb(kernels, H, L, Cl, n1, d)
        elif op == Op.plus_di:
            plus_di_nb(kernels, H, L, Cl, n1, d)
        elif op == Op.minus_di:
            minus_di_nb(kernels, H, L, Cl, n1, d)
        # ---- math
        elif op == Op.abs:
            abs_nb(kernels, a, d)
        elif op == Op.log:
            log_nb(kernels, a, d)
        elif op == Op.sqrt:
            sqrt_nb(kernels, a, d)
        elif op == Op.exp:
            exp_nb(kernels, a, d)
        elif op == Op.sign:
            sign_nb(kernels, a, d)
        elif op == Op.min:
            min_nb(kernels, a, b, d)
        elif op == Op.max:
            max_nb(kernels, a, b, d)
        elif op == Op.clip:
            clip_nb(kernels, a, b, c, d)
        elif op == Op.if_else:
            if_else_nb(kernels, a, b, c, d)
        # ---- events
        elif op == Op.cross_above:
            cross_above_nb(kernels, a, b, d)
        elif op == Op.cross_below:
            cross_below_nb(kernels, a, b, d)
        elif op == Op.bars_since:
            bars_since_nb(kernels, a, d)
        else:
            raise ValueError("unknown opcode")
    return regs


def run_tape(tape, market) -> np.ndarray:
    """Evaluate a tape on a market (anything with open/high/low/close/volume arrays)."""
    return run_tape_nb(tape.code, tape.consts, tape.n_regs, kernel_table(tape.code), market.open,
                       market.high, market.low, market.close, market.volume)
