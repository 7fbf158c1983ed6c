"""Cross-sectional kernels: each bar's values across a universe's assets (numba, arrays only).

The kernel takes a bars x assets float64 array `x` (the transpose of the universe's layout, see
xsection_nb) and writes `out` of the same shape. At each bar only the assets with a finite value
take part; NaN means the asset is not in the universe that bar (no bar, not listed yet,
delisted) or its input is still warming up, and its output is NaN. The definitions (the registry's "cross-sectional" group) match pandas on a frame
grouped by date:

    rank         groupby(date).rank()            (method "average": ties share their mean rank)
    percentile   groupby(date).rank(pct=True)    rank / count
    demean       x - groupby(date).transform("mean")
    standardize  demean / groupby(date).transform(lambda s: s.std(ddof=0)); NaN when that is 0

Nothing reads another bar, so a cross-sectional value at bar t depends on bar t's inputs only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from autostrat.tape.opcodes import FIRST_FREE_REG
from autostrat.tape.prefix import PREFIX_ROWS
from autostrat.tape.vm import run_tape_nb

# The kernels by built-in name, in the registry's order; `xsection_nb` dispatches on the number.
XS_CODE = {"rank": 0, "percentile": 1, "demean": 2, "standardize": 3}


@njit(cache=True)
def _average_ranks_nb(values, order, ranks):
    """ranks[i]: the 1-based rank of values[i], ties sharing their mean rank; `order` sorts values."""
    m = values.shape[0]
    i = 0
    while i < m:
        j = i
        while j + 1 < m and values[order[j + 1]] == values[order[i]]:
            j += 1
        mean_rank = (i + j) / 2.0 + 1.0
        for q in range(i, j + 1):
            ranks[order[q]] = mean_rank
        i = j + 1


@njit(cache=True)
def xsection_nb(kind, x, out):
    """Apply cross-sectional kernel `kind` (XS_CODE) to every bar of x into out, both bars x assets.

    Bars x assets, not the universe's assets x bars: each bar reads every asset, and this way they
    are next to each other in memory (portfolio_eval.cross_section transposes).
    """
    n_bars, n_assets = x.shape
    values = np.empty(n_assets)
    where = np.empty(n_assets, dtype=np.int64)
    ranks = np.empty(n_assets)
    for t in range(n_bars):
        m = 0
        for a in range(n_assets):
            v = x[t, a]
            out[t, a] = math.nan
            if not math.isnan(v) and not math.isinf(v):
                values[m] = v
                where[m] = a
                m += 1
        if m == 0:
            continue
        if kind <= 1:
            order = np.argsort(values[:m], kind="mergesort")
            _average_ranks_nb(values[:m], order, ranks)
            for i in range(m):
                out[t, where[i]] = ranks[i] if kind == 0 else ranks[i] / m
            continue
        total = 0.0
        for i in range(m):
            total += values[i]
        mean = total / m
        if kind == 2:
            for i in range(m):
                out[t, where[i]] = values[i] - mean
            continue
        ss = 0.0
        for i in range(m):
            ss += (values[i] - mean) ** 2
        std = math.sqrt(ss / m)
        if std == 0.0:
            continue
        for i in range(m):
            out[t, where[i]] = (values[i] - mean) / std


@njit(cache=True)
def _gather_nb(x, a, idx, out):
    for j in range(idx.shape[0]):
        out[j] = x[a, idx[j]]


@njit(cache=True, parallel=True)
def run_assets_nb(code, consts, n_regs, kernels, open_, high, low, close, volume, offsets, rows, out_regs, out,
                  reads):
    """Run a tape on every asset's own bars: asset a's are rows[offsets[a]:offsets[a + 1]].

    The inputs are assets x bars; out[k, a, bar] receives register out_regs[k], NaN where the
    asset has no bar: every entry of `out` is written, so it need not be filled beforehand (a
    fill is one more pass over memory, and a serial one). `reads[i]` says whether the tape may read input i (open, high, low,
    close, volume; `tape_reads`): an input it never reads is not gathered, and the VM is handed
    close in its place. The assets run in parallel on all cores: each writes its own rows of
    `out`, and its values do not depend on which thread computed them.
    """
    no_given = np.empty((0, PREFIX_ROWS, 0))  # (each asset's bars are gathered anew: no block is kept)
    no_given_at = np.empty(FIRST_FREE_REG, dtype=np.int64)
    for r in range(FIRST_FREE_REG):
        no_given_at[r] = -1
    for a in prange(offsets.shape[0] - 1):
        idx = rows[offsets[a]:offsets[a + 1]]
        m = idx.shape[0]
        if m == 0:
            for k in range(out_regs.shape[0]):
                for t in range(out.shape[2]):
                    out[k, a, t] = math.nan
            continue
        c = np.empty(m)
        _gather_nb(close, a, idx, c)
        o, h, lo, v = c, c, c, c
        if reads[0]:
            o = np.empty(m)
            _gather_nb(open_, a, idx, o)
        if reads[1]:
            h = np.empty(m)
            _gather_nb(high, a, idx, h)
        if reads[2]:
            lo = np.empty(m)
            _gather_nb(low, a, idx, lo)
        if reads[4]:
            v = np.empty(m)
            _gather_nb(volume, a, idx, v)
        regs = run_tape_nb(code, consts, n_regs, kernels, o, h, lo, c, v, out_regs, no_given, no_given_at)
        for k in range(out_regs.shape[0]):
            r = out_regs[k]
            t = 0  # the next bar of the row to write
            for j in range(m):
                while t < idx[j]:
                    out[k, a, t] = math.nan
                    t += 1
                out[k, a, t] = regs[r, j]
                t += 1
            while t < out.shape[2]:
                out[k, a, t] = math.nan
                t += 1

