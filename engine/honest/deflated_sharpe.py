"""How much of a search's best backtest is real: PSR, DSR, minimum track record, PBO.

A search that tries many strategies and keeps the best one reports a Sharpe ratio inflated by the
choice itself. These statistics, by Bailey and Lopez de Prado, say how much of it survives:

- `psr`: probability that the true Sharpe ratio exceeds a benchmark, given the sample length and
  the skewness and kurtosis of the returns (Bailey and Lopez de Prado 2012).
- `expected_max_sharpe`, `dsr`: the benchmark a strategy must beat once N trials were run, and the
  PSR against it, the Deflated Sharpe Ratio (Bailey and Lopez de Prado 2014).
- `min_track_record_length`: how many observations the PSR needs to reach a confidence.
- `pbo` (in autostrat.honest.backtest_overfitting): the Probability of Backtest Overfitting by CSCV.
- `summary`: all of it for the best strategy and the matrix of every candidate's returns.

Conventions (docs/overfitting.md explains them in plain words):

- Sharpe ratios here are per observation (daily), mean / std(ddof=1), risk-free rate 0, not
  annualised; `summary` also gives sharpe_annual = daily * sqrt(252) (autostrat.sim.metrics).
- Skewness g3 = m3 / m2^1.5 and raw (non-excess, normal = 3) kurtosis g4 = m4 / m2^2 use the
  biased sample moments m_k = mean((r - mean)^k), as in the papers. These satisfy Pearson's
  inequality g4 >= 1 + g3^2, which keeps 1 - g3 SR + (g4 - 1) / 4 SR^2 >= (1 - g3 SR / 2)^2 >= 0.
- Constant returns (std 0): Sharpe 0, as autostrat.sim.metrics; PSR, DSR and the minimum track record
  are NaN, because with no variation there is no sampling distribution to take a probability of.
- Fewer than 2 returns: Sharpe, PSR, DSR and the minimum track record are NaN (no exception).
- Returns must be finite: NaN or infinite values raise ValueError.
"""

from __future__ import annotations

import math

import numpy as np

from autostrat.honest.backtest_overfitting import ZERO_SD_RTOL, PBOResult, pbo, safe_sharpe
from autostrat.sim.metrics import TRADING_DAYS

__all__ = [
    "PBOResult", "dsr", "expected_max_sharpe", "min_track_record_length", "norm_cdf", "norm_ppf",
    "pbo", "psr", "psr_from_moments", "sharpe_ratio", "summary", "trial_sharpe_variance",
]

EULER_GAMMA = 0.5772156649015329

# Acklam (2003), "An algorithm for computing the inverse normal cumulative distribution
# function": rational approximations with relative error below 1.15e-9, central region
# p_low <= p <= 1 - p_low, tails beyond.
_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
      1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
      6.680131188771972e01, -1.328068155288572e01)
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
      -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
      3.754408661907416e00)
_P_LOW = 0.02425


def norm_cdf(x: float) -> float:
    """Standard normal CDF Phi(x) = erfc(-x / sqrt(2)) / 2 (Abramowitz and Stegun 7.1.2, 26.2.29).

    erfc rather than 1 + erf keeps full relative precision in the lower tail.
    """
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _tail_ppf(q: float) -> float:
    """Acklam's lower-tail approximation of Phi^-1(q) for 0 < q < p_low."""
    t = math.sqrt(-2.0 * math.log(q))
    c, d = _C, _D
    num = ((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]
    return num / ((((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1.0)


def norm_ppf(p: float) -> float:
    """Inverse standard normal CDF Phi^-1(p); -inf at 0, +inf at 1, NaN outside [0, 1].

    Acklam's (2003) rational approximation, then one Halley step on Phi(x) - p, as Acklam
    recommends, which brings it to about double precision. The step works on the smaller of p
    and 1 - p (exact for p >= 0.5 by Sterbenz's lemma) so the upper tail keeps its precision.
    """
    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    upper = p > 0.5
    q = 1.0 - p if upper else p  # lower-tail probability, x below is Phi^-1(q) <= 0
    if q < _P_LOW:
        x = _tail_ppf(q)
    else:
        u = q - 0.5
        r = u * u
        a, b = _A, _B
        num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * u
        x = num / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    # Halley's method on f(x) = Phi(x) - q: f' = phi(x), f''/f' = -x.
    e = norm_cdf(x) - q
    step = e * math.sqrt(2.0 * math.pi) * math.exp(0.5 * x * x)
    x = x - step / (1.0 + 0.5 * x * step)
    return -x if upper else x


def _as_returns(returns) -> np.ndarray:
    """returns as a finite 1-D float64 array, or ValueError saying what is wrong."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"returns must be a 1-D series of per-period returns, got an array with "
                         f"shape {r.shape}")
    if not np.isfinite(r).all():
        bad = int((~np.isfinite(r)).sum())
        raise ValueError(f"returns hold {bad} NaN or infinite values: drop or fill them first "
                         f"(e.g. r[np.isfinite(r)])")
    return r


def _moments(r: np.ndarray):
    """(T, Sharpe, skewness, raw kurtosis) of a finite 1-D series with T >= 2; two-pass moments.

    Skewness and kurtosis are NaN when the series is constant.
    """
    t = r.shape[0]
    mean = float(r.mean())
    dev = r - mean
    m2 = float((dev * dev).mean())
    sd = math.sqrt(m2 * t / (t - 1))
    if sd <= ZERO_SD_RTOL * abs(mean):  # constant, up to rounding (see autostrat.honest.backtest_overfitting)
        return t, 0.0, math.nan, math.nan
    sr = mean / sd
    skew = float((dev ** 3).mean()) / m2 ** 1.5
    kurt = float((dev ** 4).mean()) / (m2 * m2)
    return t, sr, skew, kurt


def sharpe_ratio(returns) -> float:
    """Per-period (daily) Sharpe ratio mean / std(ddof=1), not annualised (Sharpe 1994).

    0.0 for a constant series, NaN for fewer than 2 returns.
    """
    r = _as_returns(returns)
    if r.shape[0] < 2:
        return math.nan
    return _moments(r)[1]


def _variance_term(sr: float, skewness: float, kurtosis: float) -> float:
    """1 - g3 SR + (g4 - 1) / 4 SR^2: T times the variance of the Sharpe estimate under
    non-normal IID returns (Mertens 2002, as used by Bailey and Lopez de Prado 2012)."""
    return 1.0 - skewness * sr + (kurtosis - 1.0) / 4.0 * sr * sr


def psr_from_moments(sr: float, n_obs: int, skewness: float, kurtosis: float,
                     benchmark_sr: float = 0.0) -> float:
    """PSR from summary statistics: sr per period, n_obs returns, skewness, RAW kurtosis.

    PSR = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )
    (Bailey and Lopez de Prado 2012, "The Sharpe Ratio Efficient Frontier"). When the
    variance term is 0 (a two-point distribution) the estimate has no spread: 1 above the
    benchmark, 0 below, 0.5 on it.
    """
    if n_obs < 2:
        raise ValueError(f"PSR needs at least 2 observations, got n_obs={n_obs}")
    if kurtosis < 1.0 + skewness * skewness - 1e-9:
        raise ValueError(f"inconsistent moments: raw kurtosis {kurtosis} is below 1 + skewness^2 "
                         f"= {1.0 + skewness * skewness}; pass raw (normal = 3) kurtosis, not "
                         f"excess kurtosis")
    if any(math.isnan(v) for v in (sr, skewness, kurtosis, benchmark_sr)):
        return math.nan
    var = max(_variance_term(sr, skewness, kurtosis), 0.0)
    diff = sr - benchmark_sr
    if var == 0.0:
        return 1.0 if diff > 0 else (0.0 if diff < 0 else 0.5)
    return norm_cdf(diff * math.sqrt(n_obs - 1) / math.sqrt(var))


def psr(returns, benchmark_sr: float = 0.0) -> float:
    """Probabilistic Sharpe Ratio: P(true Sharpe > benchmark_sr), per-period Sharpe units.

    Bailey and Lopez de Prado (2012), with the series' own skewness and raw kurtosis
    (formula in `psr_from_moments`). NaN for a constant series or fewer than 2 returns.
    """
    r = _as_returns(returns)
    if r.shape[0] < 2:
        return math.nan
    t, sr, skew, kurt = _moments(r)
    if math.isnan(skew):
        return math.nan
    return psr_from_moments(sr, t, skew, kurt, benchmark_sr)


def expected_max_sharpe(n_trials: float, var_trials: float) -> float:
    """Expected maximum Sharpe ratio of n_trials strategies with no skill (true Sharpe 0).

    E[max SR] ~ sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e))), gamma the
    Euler-Mascheroni constant, V the variance of the trials' Sharpe ratios (Bailey and Lopez de
    Prado 2014, "The Deflated Sharpe Ratio"; derived in Bailey, Borwein, Lopez
    de Prado and Zhu 2014, "Pseudo-Mathematics and Financial Charlatanism"). Same units as V's Sharpe ratios.
    One trial involves no selection: 0.0 (the formula's limit would be -inf). n_trials may be
    fractional (an effective number of independent trials) but must be >= 1.
    """
    if isinstance(n_trials, bool) or not n_trials >= 1:
        raise ValueError(f"n_trials must be >= 1 (the number of strategies tried), got "
                         f"{n_trials!r}")
    if var_trials < 0:
        raise ValueError(f"var_trials is a variance and cannot be negative, got {var_trials}")
    if n_trials == 1:
        return 0.0
    if math.isnan(var_trials):
        return math.nan
    z1 = norm_ppf(1.0 - 1.0 / n_trials)
    z2 = norm_ppf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(var_trials) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def dsr(returns, n_trials: float, var_trials: float) -> float:
    """Deflated Sharpe Ratio: PSR against SR* = expected_max_sharpe(n_trials, var_trials).

    Bailey and Lopez de Prado (2014). var_trials in per-period Sharpe units (the same
    as `trial_sharpe_variance`). NaN when PSR is NaN or var_trials is NaN with n_trials > 1.
    """
    return psr(returns, expected_max_sharpe(n_trials, var_trials))


def min_track_record_length(returns, benchmark_sr: float = 0.0, prob: float = 0.95) -> float:
    """Minimum track record length, in observations, for PSR(benchmark_sr) to reach prob.

    MinTRL = 1 + (1 - g3 SR + (g4 - 1) / 4 SR^2) (Phi^-1(prob) / (SR - SR*))^2 (Bailey and Lopez
    de Prado 2012). inf when SR <= SR* (no length of this record is enough); NaN for a
    constant series or fewer than 2 returns. Compare it with len(returns).
    """
    if not 0.5 <= prob < 1.0:
        raise ValueError(f"prob is the confidence to reach and must be in [0.5, 1), got {prob}")
    r = _as_returns(returns)
    if r.shape[0] < 2:
        return math.nan
    _, sr, skew, kurt = _moments(r)
    if math.isnan(skew) or math.isnan(benchmark_sr):
        return math.nan
    if sr <= benchmark_sr:
        return math.inf
    var = max(_variance_term(sr, skew, kurt), 0.0)
    return 1.0 + var * (norm_ppf(prob) / (sr - benchmark_sr)) ** 2


def _column_sharpes(returns_matrix) -> np.ndarray:
    """Per-column daily Sharpe ratios of the finite columns of a 2-D returns matrix."""
    x = np.asarray(returns_matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"the returns matrix must be 2-D (rows = days, columns = trials), got "
                         f"an array with shape {x.shape}")
    x = x[:, np.isfinite(x).all(axis=0)]
    if x.shape[0] < 2 or x.shape[1] == 0:
        return np.zeros(0)
    mean = x.mean(axis=0)
    sd = np.sqrt(((x - mean) ** 2).sum(axis=0) / (x.shape[0] - 1))
    return safe_sharpe(mean, sd)


def trial_sharpe_variance(returns_matrix) -> float:
    """Sample variance (ddof=1) across trials (columns) of their daily Sharpe ratios.

    The V of `expected_max_sharpe`. Columns with NaN or infinite values are left out; NaN when
    fewer than 2 columns with at least 2 rows remain.
    """
    sharpes = _column_sharpes(returns_matrix)
    if sharpes.shape[0] < 2:
        return math.nan
    return float(sharpes.var(ddof=1))


def summary(best_returns, all_returns_matrix, n_trials=None, n_splits: int = 16,
            prob: float = 0.95) -> dict:
    """Everything above for the search's best strategy, as a flat dict.

    best_returns: the chosen strategy's daily returns. all_returns_matrix: T x N daily returns
    of every candidate tried (the best among them), used for V and for PBO. n_trials: trials to
    deflate for; defaults to the matrix's column count (failed columns included: they were
    tried). Keys (Sharpe ratios per day unless the key says annual; track records in
    observations):
    sharpe_daily, sharpe_annual, skewness, kurtosis (raw), track_record (len(best_returns)),
    psr (vs 0), n_trials, var_trials, expected_max_sharpe, expected_max_sharpe_annual, dsr,
    min_track_record (for PSR vs 0 to reach prob), min_track_record_deflated (vs the expected
    maximum), pbo, prob_oos_loss, degradation_slope, degradation_intercept, pbo_n_splits,
    pbo_n_strategies, pbo_n_combinations, pbo_reason ("" when PBO was computed, else why not:
    its values are then NaN). Never raises for short or constant series: the values are NaN.
    """
    r = _as_returns(best_returns)
    matrix = np.asarray(all_returns_matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"all_returns_matrix must be 2-D (rows = days, columns = trials), got "
                         f"an array with shape {matrix.shape}")
    n = matrix.shape[1] if n_trials is None else n_trials
    with np.errstate(all="ignore"):
        t = r.shape[0]
        if t >= 2:
            _, sr, skew, kurt = _moments(r)
        else:
            sr, skew, kurt = math.nan, math.nan, math.nan
        var_trials = trial_sharpe_variance(matrix)
        sr_star = expected_max_sharpe(n, var_trials)
        out = {
            "sharpe_daily": sr,
            "sharpe_annual": sr * math.sqrt(TRADING_DAYS),
            "skewness": skew,
            "kurtosis": kurt,
            "track_record": t,
            "psr": psr(r),
            "n_trials": n,
            "var_trials": var_trials,
            "expected_max_sharpe": sr_star,
            "expected_max_sharpe_annual": sr_star * math.sqrt(TRADING_DAYS),
            "dsr": psr(r, sr_star),
            "min_track_record": min_track_record_length(r, 0.0, prob),
            "min_track_record_deflated": min_track_record_length(r, sr_star, prob),
        }
        try:
            res = pbo(matrix, n_splits=n_splits)
            reason = ""
        except ValueError as exc:
            res, reason = None, str(exc)
    out.update({
        "pbo": res.pbo if res else math.nan,
        "prob_oos_loss": res.prob_oos_loss if res else math.nan,
        "degradation_slope": res.degradation_slope if res else math.nan,
        "degradation_intercept": res.degradation_intercept if res else math.nan,
        "pbo_n_splits": n_splits,
        "pbo_n_strategies": res.n_strategies if res else 0,
        "pbo_n_combinations": res.n_combinations if res else 0,
        "pbo_reason": reason,
    })
    return out
