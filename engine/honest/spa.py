"""The data-snooping test of a whole search: does any trial beat buy and hold, all trials counted?

Null hypothesis: no strategy the search tried has a higher expected daily return than buy and
hold. With d[t, k] = r_k[t] - r_bh[t] the excess return of trial k on day t (n days, m trials),
dbar_k its mean and omega_k^2 its long-run variance:

- White's Reality Check (White 2000): V = max_k sqrt(n) dbar_k; its bootstrap replicates
  V*_b = max_k sqrt(n) (dbar*_k,b - dbar_k); p = share of b with V*_b >= V.
- Hansen's test for superior predictive ability (Hansen 2005), the consistent version:
  T = max(0, max_k sqrt(n) dbar_k / omega_k); replicates
  T*_b = max(0, max_k sqrt(n) (dbar*_k,b - dbar_k + mu_k) / omega_k), where mu_k = dbar_k for a
  trial clearly worse than the benchmark (sqrt(n) dbar_k / omega_k < -sqrt(2 ln ln n)) and 0
  otherwise, so that hopeless trials do not inflate the p-value; p = share of b with T*_b >= T
  (>=, not >: when every trial trails buy and hold, T = 0 is the least evidence there is, p = 1).
  A trial whose excess return never varies has omega 0 and counts as 0 in T and T*.

dbar* are means over the stationary bootstrap (Politis and Romano 1994): blocks of geometric
length with mean L, starting at uniform random days, wrapping around the end. L is the median over
the trials of the Politis-White (2004) optimal stationary-bootstrap block length of d, with the
correction of Patton, Politis and White (2009). omega_k^2 is Hansen's estimate consistent with
that bootstrap: gamma_0 + 2 sum_{i>=1} kappa_i gamma_i, kappa_i = (n-i)/n (1-q)^i + i/n (1-q)^(n-i),
q = 1/L, gamma_i the sample autocovariances (divisor n). docs/overfitting.md explains the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from autostrat.config import Settings
from autostrat.data.panel import Panel
from autostrat.data.universe import Universe
from autostrat.honest.run_statistics import returns_matrix, run_objective, run_settings, selection_rows
from autostrat.search.runs import RunFolder
from autostrat.search.session import SPA_REPS
from autostrat.sim.backtest import SEARCH_PERIODS, period_spans, resolve_settings
from autostrat.sim.evaluator import UniverseEvaluator
from autostrat.sim.metrics import daily_returns
from autostrat.sim.objective import Objective
from autostrat.sim.simulation import simulate

MIN_DAYS = 20  # fewer excess returns than this give no test (reason given)
_CHUNK = 256  # replications drawn and averaged at a time: bounds memory at 256 x n counts


@dataclass(frozen=True)
class SpaResult:
    """The SPA and Reality Check p-values and what they were computed from."""

    spa_pvalue: float
    rc_pvalue: float
    spa_statistic: float
    rc_statistic: float
    block_length: float
    reps: int
    n_days: int
    n_trials: int
    best_trial: int  # column with the largest studentized mean excess return


def autocovariances(x: np.ndarray) -> np.ndarray:
    """gamma_i = (1/n) sum_t (x_t - mean)(x_{t+i} - mean), i = 0..n-1, per column (via the FFT)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    c = x - x.mean(axis=0)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(c, size, axis=0)
    return np.fft.irfft(f * np.conj(f), size, axis=0)[:n] / n


def optimal_block_length(x: np.ndarray) -> float:
    """The Politis-White (2004) stationary-bootstrap block length of a series, PPW (2009) corrected.

    Autocorrelations are significant above 2 sqrt(log10(n) / n); mhat is the first lag from which
    K_N = max(5, sqrt(log10 n)) in a row are not (as in Patton's reference code), M = min(2 mhat,
    ceil(sqrt n) + K_N), and with the flat-top window lambda, g = sum lambda(k/M) gamma_k and
    G = sum lambda(k/M) |k| gamma_k over k = -M..M, b = (2 G^2 / D_SB)^(1/3) n^(1/3) with
    D_SB = 2 g^2, capped at min(3 sqrt n, n / 3) and at least 1.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    acv = autocovariances(x)
    if n < 4 or not acv[0] > 0:
        return 1.0
    kn = max(5, int(math.sqrt(math.log10(n))))
    m_max = min(int(math.ceil(math.sqrt(n))) + kn, n - 1)
    b_max = math.ceil(min(3 * math.sqrt(n), n / 3))
    rho = acv[1:m_max + 1] / acv[0]  # rho[j] is lag j + 1
    small = np.abs(rho) < 2 * math.sqrt(math.log10(n) / n)
    m_hat = None
    for start in range(0, len(rho) - kn + 1):
        if small[start:start + kn].all():
            m_hat = start + 1
            break
    if m_hat is None:
        big = np.flatnonzero(~small)
        m_hat = int(big[-1]) + 1 if len(big) else 1
    m = min(2 * m_hat, m_max)
    k = np.arange(1, m + 1)
    s = k / m
    lam = np.where(s <= 0.5, 1.0, 2 * (1 - s))
    g = acv[0] + 2 * np.sum(lam * acv[1:m + 1])
    big_g = 2 * np.sum(lam * k * acv[1:m + 1])
    if not g > 0:
        return 1.0
    b = (2 * big_g ** 2 / (2 * g ** 2)) ** (1 / 3) * n ** (1 / 3)
    return float(min(max(b, 1.0), b_max))


def stationary_indices(n: int, block: float, reps: int, rng: np.random.Generator) -> np.ndarray:
    """reps x n day indices of the stationary bootstrap: a new block starts with probability 1/block."""
    q = 1.0 / block
    new = rng.random((reps, n)) < q
    starts = rng.integers(0, n, size=(reps, n))
    idx = np.empty((reps, n), dtype=np.int64)
    idx[:, 0] = starts[:, 0]
    for t in range(1, n):
        idx[:, t] = np.where(new[:, t], starts[:, t], (idx[:, t - 1] + 1) % n)
    return idx


def long_run_variance(d: np.ndarray, block: float) -> np.ndarray:
    """Hansen's omega^2 per column: the long-run variance the stationary bootstrap implies."""
    n = d.shape[0]
    q = 1.0 / block
    acv = autocovariances(d)
    i = np.arange(1, n)
    kappa = (n - i) / n * (1 - q) ** i + i / n * (1 - q) ** (n - i)
    return np.maximum(acv[0] + 2 * (kappa[:, None] * acv[1:]).sum(axis=0), 0.0)


def spa_test(excess: np.ndarray, reps: int = 1000, seed: int = 0, block: float | None = None,
             indices: np.ndarray | None = None) -> SpaResult:
    """SPA (consistent) and Reality Check p-values of n x m daily excess returns over a benchmark.

    `block` defaults to the median optimal block length of the columns; `indices` (reps x n), when
    given, replace the seeded draw (for tests). ValueError on non-finite values or fewer than
    MIN_DAYS rows or no column.
    """
    d = np.asarray(excess, dtype=np.float64)
    if d.ndim == 1:
        d = d[:, None]
    n, m = d.shape
    if m == 0 or n < MIN_DAYS:
        raise ValueError(f"the test needs at least {MIN_DAYS} days and one trial, got {n} days and {m} trials")
    if not np.isfinite(d).all():
        raise ValueError("the excess returns hold NaN or infinite values")
    if block is None:
        block = float(np.median([optimal_block_length(d[:, k]) for k in range(m)]))
    dbar = d.mean(axis=0)
    omega = np.sqrt(long_run_variance(d, block))
    root_n = math.sqrt(n)
    varies = omega > 1e-12 * np.maximum(np.abs(d).max(axis=0), 1e-300)
    safe = np.where(varies, omega, 1.0)
    t_k = np.where(varies, root_n * dbar / safe, 0.0)
    spa_stat = max(0.0, float(t_k.max()))
    rc_stat = float(root_n * dbar.max())
    mu = np.where(t_k < -math.sqrt(2 * math.log(math.log(n))), dbar, 0.0)
    rng = np.random.default_rng(seed)
    spa_star, rc_star = [], []
    for lo in range(0, reps, _CHUNK):
        count = min(_CHUNK, reps - lo)
        idx = indices[lo:lo + count] if indices is not None else stationary_indices(n, block, count, rng)
        rows = np.arange(count)[:, None] * n
        counts = np.bincount((rows + idx).ravel(), minlength=count * n).reshape(count, n)
        centred = counts @ d / n - dbar  # dbar*_b - dbar, count x m
        rc_star.append(root_n * centred.max(axis=1))
        spa_star.append(np.maximum(0.0, np.where(varies, root_n * (centred + mu) / safe, 0.0).max(axis=1)))
    spa_all, rc_all = np.concatenate(spa_star), np.concatenate(rc_star)
    return SpaResult(spa_pvalue=float(np.mean(spa_all >= spa_stat)), rc_pvalue=float(np.mean(rc_all >= rc_stat)),
                     spa_statistic=spa_stat, rc_statistic=rc_stat, block_length=float(block), reps=int(reps),
                     n_days=int(n), n_trials=int(m), best_trial=int(np.argmax(t_k)))


def benchmark_returns(data, settings: Settings) -> np.ndarray:
    """Buy and hold's daily returns in the layout of a run's returns files (train, then validation).

    Buy and hold as everywhere in autostrat: in at the first close of each period, no costs. On a
    universe, averaged like the trials' returns: the equal-weight average of the markets' buy and
    hold over their common dates (UniverseEvaluator.average); on a portfolio run, the universe's
    equal-weight index (Panel.benchmark).
    """
    if isinstance(data, Universe):
        return UniverseEvaluator(data, settings).average([benchmark_returns(m, settings) for m in data])
    if isinstance(data, Panel):  # a portfolio run: the universe's equal-weight index, on its calendar
        data = data.benchmark()
    s = resolve_settings(settings, dict(fill="close", commission_bps=0.0, slippage_bps=0.0))
    parts = []
    for period in SEARCH_PERIODS:
        a, b = period_spans(data, settings, SEARCH_PERIODS)[period]
        sim = simulate(data, np.ones(len(data)), np.zeros(len(data)), settings=s, start=a, stop=b)
        parts.append(daily_returns(np.asarray(sim.equity, dtype=np.float64)))
    return np.concatenate(parts)


def spa_statistics(run: RunFolder, data, records: list[dict[str, Any]], objective: Objective | None = None,
                   settings: Settings | None = None) -> dict[str, Any]:
    """The run's SPA and Reality Check numbers as a flat dict for its statistics.

    Keys: spa_pvalue, rc_pvalue, spa_statistic, rc_statistic, spa_block_length, spa_reps,
    spa_days, spa_trials, spa_series (which days, and pooled on a universe), spa_best_iteration,
    spa_reason ("" or why the test could not be run; the values are then NaN).
    """
    settings = settings or run_settings(run)
    objective = objective or run_objective(run, settings)
    matrix, iterations = returns_matrix(run, records)
    layout = run.config.get("returns_layout") or {}
    rows, name = selection_rows(layout, objective, matrix.shape[0])
    pooled = isinstance(data, Universe)
    out: dict[str, Any] = {k: math.nan for k in ("spa_pvalue", "rc_pvalue", "spa_statistic", "rc_statistic",
                                                  "spa_block_length")}
    out.update(spa_reps=int(settings.search.spa_reps), spa_days=0, spa_trials=0, spa_best_iteration=None,
               spa_series=f"{name}, the equal-weight average of {len(data)} markets" if pooled else name,
               spa_reason="")
    bench = benchmark_returns(data, settings)
    if matrix.shape[1] and len(bench) != matrix.shape[0]:
        out["spa_reason"] = (f"the benchmark has {len(bench)} daily returns, the trials {matrix.shape[0]}: "
                             "the data or split no longer match the run")
        return out
    finite = np.isfinite(matrix).all(axis=0) if matrix.size else np.zeros(0, dtype=bool)
    excess = matrix[rows][:, finite] - bench[rows][:, None] if matrix.size else np.zeros((0, 0))
    kept = [it for it, ok in zip(iterations, finite) if ok]
    reps = int(settings.search.spa_reps)
    if not SPA_REPS[0] <= reps <= SPA_REPS[1]:
        out["spa_reason"] = f"search.spa_reps is {reps}; use {SPA_REPS[0]} to {SPA_REPS[1]}"
        return out
    try:
        res = spa_test(excess, reps=reps, seed=int(settings.search.seed))
    except ValueError as exc:
        out["spa_reason"] = str(exc)
        return out
    out.update(spa_pvalue=res.spa_pvalue, rc_pvalue=res.rc_pvalue, spa_statistic=res.spa_statistic,
               rc_statistic=res.rc_statistic, spa_block_length=res.block_length, spa_days=res.n_days,
               spa_trials=res.n_trials, spa_best_iteration=kept[res.best_trial])
    return out
