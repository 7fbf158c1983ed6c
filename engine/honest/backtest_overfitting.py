"""Probability of Backtest Overfitting by combinatorially symmetric cross-validation (CSCV).

Source: Bailey, Borwein, Lopez de Prado and Zhu (2015), "The Probability of Backtest Overfitting",
Journal of Computational Finance 20(4): the CSCV algorithm, and the performance degradation
and probability of loss statistics.

The procedure, on a T x N matrix of daily returns (T rows, N candidate strategies):

1. Drop trailing rows so that T divides by S (`n_splits`), and cut the rows into S contiguous
   blocks of m = T // S rows.
2. For every choice of S/2 blocks as in-sample (IS), the other S/2 being out-of-sample (OOS),
   C(S, S/2) combinations in `itertools.combinations` order:
   - measure every candidate on the IS rows and on the OOS rows (by default the Sharpe ratio
     mean / std(ddof=1) of the rows concatenated, per day, not annualised);
   - n* = the IS-best candidate (on an exact tie, the lowest column index);
   - its OOS rank among the N candidates, 1 = worst and N = best; tied OOS values share their
     average rank (as `scipy.stats.rankdata(method="average")`), so the result does not depend
     on column order within a tie;
   - omega = rank / (N + 1), in (0, 1), and the logit lambda = ln(omega / (1 - omega)).
3. PBO = the share of combinations with lambda <= 0: the IS-best landed at or below the OOS
   median.

Also reported: the least-squares line OOS(n*) = intercept + slope * IS(n*) over the combinations
(the paper's "performance degradation"; a slope well below 0 means IS success predicts OOS
failure) and the probability of OOS loss, the share of combinations where OOS(n*) < 0.

Columns with any non-finite value (a candidate that failed to evaluate) are left out.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

METRICS = ("sharpe", "mean")
MAX_SPLITS = 20  # C(20, 10) = 184,756 combinations; C(64, 32) would never finish
_CHUNK = 256  # combinations scored per pass (fastest of 16..1024 on 200 x 5,000)

# A standard deviation this small relative to |mean| is the rounding noise of a constant series
# (mean and sum of squares of identical values are not exact in floating point); it counts as 0,
# and a series with standard deviation 0 has Sharpe 0 (the convention of autostrat.sim.metrics).
ZERO_SD_RTOL = 1e-10


@dataclass(frozen=True)
class PBOResult:
    """What `pbo` measured; see the module docstring for the definitions.

    pbo: share of combinations whose IS-best candidate ranked at or below the OOS median.
    logits: lambda per combination, in `itertools.combinations(range(n_splits), n_splits // 2)`
        order (the IS blocks of each combination).
    degradation_slope, degradation_intercept: OOS(n*) ~ intercept + slope * IS(n*); NaN when the
        IS performance of n* does not vary across combinations.
    prob_oos_loss: share of combinations with OOS(n*) < 0.
    n_combinations: C(n_splits, n_splits / 2). n_strategies: candidates used (finite columns).
    n_excluded: columns left out because they held NaN or infinite values.
    n_rows_used: rows used (T rounded down to a multiple of n_splits).
    """

    pbo: float
    logits: np.ndarray = field(compare=False, repr=False)
    degradation_slope: float
    degradation_intercept: float
    prob_oos_loss: float
    n_combinations: int
    n_splits: int
    n_strategies: int
    n_excluded: int = 0
    n_rows_used: int = 0


def safe_sharpe(mean, sd):
    """mean / sd elementwise, with 0 where sd is 0 or only rounding noise (see ZERO_SD_RTOL)."""
    mean = np.asarray(mean, dtype=np.float64)
    sd = np.asarray(sd, dtype=np.float64)
    zero = sd <= ZERO_SD_RTOL * np.abs(mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(zero, 0.0, mean / np.where(zero, 1.0, sd))
    return out


def _validate(matrix, n_splits: int, metric: str):
    """The finite columns of matrix as float64, the number left out, after checking the inputs."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if isinstance(n_splits, bool) or int(n_splits) != n_splits:
        raise ValueError(f"n_splits must be an even integer >= 2, got {n_splits!r}")
    n_splits = int(n_splits)
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even integer >= 2 (half the blocks in-sample, half "
                         f"out), got {n_splits}")
    if n_splits > MAX_SPLITS:
        raise ValueError(f"n_splits={n_splits} gives {math.comb(n_splits, n_splits // 2):,} combinations; the "
                         f"limit is {MAX_SPLITS} splits ({math.comb(MAX_SPLITS, MAX_SPLITS // 2):,} combinations)")
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"pbo needs a 2-D matrix of returns (rows = days, columns = strategies), "
                         f"got an array with shape {x.shape}")
    finite = np.isfinite(x).all(axis=0)
    kept = x[:, finite]
    if kept.shape[1] < 2:
        raise ValueError(f"pbo needs at least 2 strategies (columns) with finite returns, got "
                         f"{kept.shape[1]} of {x.shape[1]}: overfitting is about choosing among "
                         f"several candidates")
    rows = x.shape[0] // n_splits
    if rows < 2:
        raise ValueError(f"pbo needs at least 2 rows per block: {x.shape[0]} rows cut into "
                         f"n_splits={n_splits} blocks give {rows}; use fewer splits or at least "
                         f"{2 * n_splits} rows")
    return kept, int(x.shape[1] - kept.shape[1]), n_splits


def _combination_blocks(n_splits: int):
    """int64[K, S/2] in-sample and out-of-sample block indices, itertools.combinations order."""
    half = n_splits // 2
    is_blocks = np.asarray(list(itertools.combinations(range(n_splits), half)), dtype=np.int64)
    mask = np.ones((is_blocks.shape[0], n_splits), dtype=bool)
    mask[np.arange(is_blocks.shape[0])[:, None], is_blocks] = False
    oos_blocks = np.nonzero(mask)[1].reshape(is_blocks.shape[0], half)
    return is_blocks, oos_blocks


def _performance(blocks, block_mean, block_sq, block_m2, rows_per_block: int, metric: str):
    """float64[K, N]: each candidate's performance on the rows of the blocks listed in blocks.

    The mean and variance of a union of h equal-size blocks of m rows come from the blocks'
    means and centred sums of squares (Chan, Golub and LeVeque 1979, the pairwise update):
    mean = avg(mean_b) and M2 = sum(M2_b) + m * (sum(mean_b^2) - h * mean^2). Two-pass block
    statistics keep this accurate to ~1e-12 relative against the concatenated rows. Gathering
    and summing (rather than a 0/1 matrix product) keeps BLAS threads out of it.
    """
    h = blocks.shape[1]
    mean = block_mean[blocks].sum(axis=1) / h
    if metric == "mean":
        return mean
    between = block_sq[blocks].sum(axis=1) - h * mean * mean
    m2 = block_m2[blocks].sum(axis=1) + rows_per_block * np.maximum(between, 0.0)
    sd = np.sqrt(np.maximum(m2, 0.0) / (h * rows_per_block - 1))
    return safe_sharpe(mean, sd)


def _average_rank(perf, chosen_values):
    """Average rank (1 = worst) of chosen_values[k] within row k of perf, ties sharing ranks."""
    below = (perf < chosen_values[:, None]).sum(axis=1)
    tied = (perf == chosen_values[:, None]).sum(axis=1)  # includes the chosen candidate itself
    return below + (tied + 1) / 2.0


def _regression(x, y):
    """Least-squares slope and intercept of y on x; NaN slope and intercept when x is constant."""
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    if not sxx > 0.0:
        return math.nan, math.nan
    slope = float(((x - xm) * (y - ym)).sum()) / sxx
    return slope, float(ym - slope * xm)


def pbo(matrix, n_splits: int = 16, metric: str = "sharpe") -> PBOResult:
    """Probability of Backtest Overfitting of picking the best column of `matrix` (CSCV).

    matrix: T x N daily returns, one column per candidate strategy of the search (all evaluated
    on the same T days). n_splits: S, even, >= 2; C(S, S/2) combinations are scored (12,870 for
    S = 16). metric: "sharpe" (per-day Sharpe of the selected rows) or "mean" (mean return).
    The algorithm and its conventions are in the module docstring. Raises ValueError for an odd
    or too small S, fewer than 2 finite columns, or fewer than 2 rows per block.
    """
    x, n_excluded, n_splits = _validate(matrix, n_splits, metric)
    m = x.shape[0] // n_splits
    used = m * n_splits
    blocks = x[:used].reshape(n_splits, m, x.shape[1])
    block_mean = blocks.mean(axis=1)
    block_m2 = ((blocks - block_mean[:, None, :]) ** 2).sum(axis=1)

    block_sq = block_mean * block_mean
    is_blocks, oos_blocks = _combination_blocks(n_splits)
    n_comb = is_blocks.shape[0]
    n = x.shape[1]
    is_best = np.empty(n_comb)
    oos_best = np.empty(n_comb)
    rank = np.empty(n_comb)
    # Chunks of combinations keep the work arrays (chunk x S/2 x N) small enough for the cache.
    for lo in range(0, n_comb, _CHUNK):
        hi = min(lo + _CHUNK, n_comb)
        perf_is = _performance(is_blocks[lo:hi], block_mean, block_sq, block_m2, m, metric)
        perf_oos = _performance(oos_blocks[lo:hi], block_mean, block_sq, block_m2, m, metric)
        k = np.arange(hi - lo)
        best = np.argmax(perf_is, axis=1)  # first maximum: ties go to the lowest column index
        is_best[lo:hi] = perf_is[k, best]
        oos_best[lo:hi] = perf_oos[k, best]
        rank[lo:hi] = _average_rank(perf_oos, oos_best[lo:hi])
    omega = rank / (n + 1)
    logits = np.log(omega / (1.0 - omega))
    # rank <= (N + 1) / 2 is exactly lambda <= 0, without trusting log(1.0) to round to 0.
    overfit = 2.0 * rank <= n + 1
    slope, intercept = _regression(is_best, oos_best)
    return PBOResult(
        pbo=float(overfit.mean()),
        logits=logits,
        degradation_slope=slope,
        degradation_intercept=intercept,
        prob_oos_loss=float((oos_best < 0.0).mean()),
        n_combinations=int(n_comb),
        n_splits=n_splits,
        n_strategies=int(n),
        n_excluded=n_excluded,
        n_rows_used=int(used),
    )
