"""PSR, DSR, MinTRL and PBO against independent references.

The references: closed forms written out with statistics.NormalDist (the standard library's own
normal CDF and inverse) and moments from plain Python loops; the Deflated Sharpe Ratio paper's
worked example; a brute-force CSCV with loops over itertools.combinations and statistics.stdev.
"""

from __future__ import annotations

import itertools
import math
import statistics
import warnings
from statistics import NormalDist

import numpy as np
import pytest

from autostrat.honest.deflated_sharpe import (
    dsr, expected_max_sharpe, min_track_record_length, norm_cdf, norm_ppf, pbo, psr,
    psr_from_moments, sharpe_ratio, summary, trial_sharpe_variance,
)
from work import python_calls

ND = NormalDist()
GAMMA = 0.5772156649015329  # Euler-Mascheroni


# ---------------------------------------------------------------- references (plain Python)

def ref_moments(r):
    """(T, Sharpe ddof=1, skewness, raw kurtosis) by loops; biased moments for g3 and g4."""
    r = [float(v) for v in r]
    t = len(r)
    mean = sum(r) / t
    m2 = sum((v - mean) ** 2 for v in r) / t
    m3 = sum((v - mean) ** 3 for v in r) / t
    m4 = sum((v - mean) ** 4 for v in r) / t
    sd = math.sqrt(m2 * t / (t - 1))
    return t, mean / sd, m3 / m2 ** 1.5, m4 / m2 ** 2


def ref_psr(r, sr_star):
    t, sr, g3, g4 = ref_moments(r)
    spread = math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr ** 2)
    return ND.cdf((sr - sr_star) * math.sqrt(t - 1) / spread)


def ref_emax(n, v):
    z1, z2 = ND.inv_cdf(1 - 1 / n), ND.inv_cdf(1 - 1 / (n * math.e))
    return math.sqrt(v) * ((1 - GAMMA) * z1 + GAMMA * z2)


def ref_mintrl(r, sr_star, prob):
    t, sr, g3, g4 = ref_moments(r)
    return 1 + (1 - g3 * sr + (g4 - 1) / 4 * sr ** 2) * (ND.inv_cdf(prob) / (sr - sr_star)) ** 2


def ref_sharpe(rows):
    sd = statistics.stdev(rows)
    return 0.0 if sd == 0 else statistics.fmean(rows) / sd


def ref_cscv(matrix, s, metric="sharpe"):
    """CSCV written from the paper with loops: (pbo, logits, slope, intercept, prob_oos_loss)."""
    t, n = len(matrix), len(matrix[0])
    m = t // s
    blocks = [list(range(b * m, (b + 1) * m)) for b in range(s)]
    perf = ref_sharpe if metric == "sharpe" else statistics.fmean
    logits, xs, ys = [], [], []
    for combo in itertools.combinations(range(s), s // 2):
        is_rows = [i for b in combo for i in blocks[b]]
        oos_rows = [i for b in range(s) if b not in combo for i in blocks[b]]
        is_perf = [perf([matrix[i][j] for i in is_rows]) for j in range(n)]
        oos_perf = [perf([matrix[i][j] for i in oos_rows]) for j in range(n)]
        best = 0
        for j in range(1, n):
            if is_perf[j] > is_perf[best]:
                best = j
        v = oos_perf[best]
        below = sum(1 for j in range(n) if oos_perf[j] < v)
        tied = sum(1 for j in range(n) if oos_perf[j] == v)
        rank = below + (tied + 1) / 2  # average rank of a tie group, 1 = worst
        omega = rank / (n + 1)
        logits.append(math.log(omega / (1 - omega)))
        xs.append(is_perf[best])
        ys.append(v)
    k = len(logits)
    xm, ym = sum(xs) / k, sum(ys) / k
    slope = sum((a - xm) * (b - ym) for a, b in zip(xs, ys)) / sum((a - xm) ** 2 for a in xs)
    return (sum(1 for lam in logits if lam <= 0) / k, logits, slope, ym - slope * xm,
            sum(1 for y in ys if y < 0) / k)


def noise_search(seed, t=1000, n=200):
    """Daily returns of n random-signal strategies on one random-walk market (no real edge)."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0, 0.01, t)
    return np.sign(rng.standard_normal((t, n))) * market[:, None]


SKEWED = np.random.default_rng(7).lognormal(0.0, 0.6, 300) * 0.01 - 0.0105
HAND = np.array([0.01, -0.02, 0.015, 0.003, -0.007, 0.02, 0.001, -0.004, 0.012, -0.001])


# ---------------------------------------------------------------- normal distribution

def test_norm_ppf_matches_statistics_normaldist():
    ps = np.concatenate([np.linspace(1e-6, 1 - 1e-6, 4001), np.logspace(-300, -1, 600)])
    ps = np.concatenate([ps, 1.0 - ps[ps < 0.5]])
    for p in ps[(ps > 0.0) & (ps < 1.0)]:
        p = float(p)
        assert norm_ppf(p) == pytest.approx(ND.inv_cdf(p), abs=1e-9, rel=1e-12), p


def test_norm_ppf_ends_and_cdf():
    assert norm_ppf(0.0) == -math.inf and norm_ppf(1.0) == math.inf
    assert math.isnan(norm_ppf(1.5)) and math.isnan(norm_ppf(-0.1))
    # NormalDist.cdf uses 1 + erf, which loses the lower tail to cancellation: compare in
    # absolute terms there, and check the far tail against a tabulated value instead.
    for x in np.linspace(-9, 9, 3601):
        assert norm_cdf(float(x)) == pytest.approx(ND.cdf(float(x)), rel=1e-12, abs=1e-15)
    # Phi(-10) = erfc(10 / sqrt(2)) / 2 by Laplace's continued fraction in 50-digit decimals.
    assert norm_cdf(-10.0) == pytest.approx(7.619853024160526e-24, rel=1e-12)


# ---------------------------------------------------------------- PSR, DSR, MinTRL

@pytest.mark.parametrize("r", [HAND, SKEWED], ids=["hand", "skewed"])
@pytest.mark.parametrize("sr_star", [0.0, 0.05, -0.1])
def test_psr_against_longhand(r, sr_star):
    assert sharpe_ratio(r) == pytest.approx(ref_moments(r)[1], rel=1e-12)
    assert psr(r, sr_star) == pytest.approx(ref_psr(r, sr_star), rel=1e-10, abs=1e-12)


def test_skewed_sample_really_is_non_normal():
    _, _, g3, g4 = ref_moments(SKEWED)
    assert g3 > 1.0 and g4 > 4.0  # so the moment terms of PSR are exercised


@pytest.mark.parametrize("n,v", [(2, 0.01), (10, 0.002), (100, 0.002), (1000, 1e-4), (7.5, 0.3)])
def test_expected_max_sharpe_against_longhand(n, v):
    assert expected_max_sharpe(n, v) == pytest.approx(ref_emax(n, v), rel=1e-10)


def test_dsr_and_min_track_record_against_longhand():
    n, v = 50, 0.004
    star = ref_emax(n, v)
    assert dsr(SKEWED, n, v) == pytest.approx(ref_psr(SKEWED, star), rel=1e-10)
    for r in (HAND, SKEWED):
        for s, prob in [(0.0, 0.95), (0.01, 0.99), (-0.2, 0.9)]:
            got = min_track_record_length(r, s, prob)
            assert got == pytest.approx(ref_mintrl(r, s, prob), rel=1e-10)


def test_min_track_record_is_where_psr_reaches_prob():
    t, sr, g3, g4 = ref_moments(SKEWED)
    mintrl = min_track_record_length(SKEWED, 0.02, 0.95)
    assert psr_from_moments(sr, mintrl, g3, g4, 0.02) == pytest.approx(0.95, abs=1e-9)
    assert min_track_record_length(SKEWED, sr + 0.01) == math.inf
    assert min_track_record_length(SKEWED, sharpe_ratio(SKEWED)) == math.inf


def test_deflated_sharpe_paper_example():
    # Bailey and Lopez de Prado (2014), "The Deflated Sharpe Ratio", numerical example: 100
    # independent trials whose annualised Sharpe ratios have variance 1/2; the best has
    # annualised SR 2.5 over 5 years of daily returns (T = 1250), skewness -3, raw kurtosis 10.
    # The paper annualises with 250 days a year: daily V = 0.5 / 250, daily SR = 2.5 / sqrt(250).
    # It reports SR* ~ 0.1132 (daily) and DSR ~ 0.9004.
    star = expected_max_sharpe(100, 0.5 / 250)
    assert star == pytest.approx(0.1132, abs=5e-5)
    got = psr_from_moments(2.5 / math.sqrt(250), 1250, -3.0, 10.0, star)
    assert got == pytest.approx(0.9004, abs=5e-5)


def test_trial_sharpe_variance_against_loops():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0005, 0.01, (120, 6))
    x[:, 2] = 0.0  # a constant trial: Sharpe 0
    x[5, 4] = np.nan  # a failed trial: left out
    sharpes = [ref_sharpe(list(x[:, j])) for j in (0, 1, 2, 3, 5)]
    assert trial_sharpe_variance(x) == pytest.approx(statistics.variance(sharpes), rel=1e-10)
    assert math.isnan(trial_sharpe_variance(x[:, :1]))


def test_moment_inputs_checked():
    with pytest.raises(ValueError, match="excess kurtosis"):
        psr_from_moments(0.1, 100, 1.0, 0.5)  # excess kurtosis given where raw is expected
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="variance"):
        expected_max_sharpe(10, -0.1)
    with pytest.raises(ValueError, match="prob"):
        min_track_record_length(HAND, 0.0, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        psr([0.01, np.nan, 0.02])
    with pytest.raises(ValueError, match="1-D"):
        sharpe_ratio(np.zeros((3, 2)))
    assert expected_max_sharpe(1, 0.3) == 0.0 and expected_max_sharpe(1, math.nan) == 0.0


def test_constant_and_short_series_give_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for const in (np.zeros(50), np.full(50, 0.001)):
            assert sharpe_ratio(const) == 0.0
            assert math.isnan(psr(const)) and math.isnan(dsr(const, 10, 0.01))
            assert math.isnan(min_track_record_length(const))
        for short in ([], [0.01]):
            assert math.isnan(sharpe_ratio(short)) and math.isnan(psr(short))
            assert math.isnan(min_track_record_length(short))
        out = summary(np.zeros(50), np.zeros((50, 1)))
        assert out["sharpe_daily"] == 0.0 and math.isnan(out["psr"]) and math.isnan(out["dsr"])
        assert math.isnan(out["pbo"]) and "at least 2 strategies" in out["pbo_reason"]
        out = summary([0.01], np.full((1, 3), 0.01))
        assert math.isnan(out["sharpe_daily"]) and out["track_record"] == 1
        assert math.isnan(out["pbo"]) and "rows per block" in out["pbo_reason"]


# ---------------------------------------------------------------- PBO

@pytest.mark.parametrize("s,n,t,seed", [(4, 3, 41, 0), (6, 5, 62, 1), (8, 7, 83, 2), (8, 2, 40, 3)])
def test_pbo_matches_brute_force(s, n, t, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0002, 0.01, (t, n))
    want = ref_cscv(x.tolist(), s)
    got = pbo(x, n_splits=s)
    assert got.pbo == want[0]
    np.testing.assert_allclose(got.logits, want[1], rtol=0, atol=1e-12)
    assert got.degradation_slope == pytest.approx(want[2], rel=1e-9)
    assert got.degradation_intercept == pytest.approx(want[3], rel=1e-9, abs=1e-15)
    assert got.prob_oos_loss == want[4]
    assert (got.n_combinations, got.n_splits, got.n_strategies) == (math.comb(s, s // 2), s, n)
    assert got.n_rows_used == (t // s) * s


def test_pbo_ties_match_brute_force_and_ignore_column_order():
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 0.01, (48, 6))
    x[:, 3] = x[:, 1]  # a duplicate: exact ties in and out of sample
    x[:, 4] = 0.0  # a constant: Sharpe 0 everywhere
    x[:, 5] = 0.0
    want = ref_cscv(x.tolist(), 6)
    got = pbo(x, n_splits=6)
    assert got.pbo == want[0]
    np.testing.assert_allclose(got.logits, want[1], rtol=0, atol=1e-12)
    # Reordering columns moves no IS maximum (only exact duplicates tie, and they agree out of
    # sample too) and average OOS ranks do not depend on order.
    again = pbo(x[:, [5, 3, 0, 4, 2, 1]], n_splits=6)
    assert again.pbo == got.pbo
    np.testing.assert_allclose(again.logits, got.logits, rtol=0, atol=1e-12)


def test_pbo_mean_metric_matches_brute_force():
    x = np.random.default_rng(6).normal(0.0, 0.01, (36, 4))
    want = ref_cscv(x.tolist(), 6, metric="mean")
    got = pbo(x, n_splits=6, metric="mean")
    assert got.pbo == want[0]
    np.testing.assert_allclose(got.logits, want[1], rtol=0, atol=1e-12)


def test_pbo_leaves_out_non_finite_columns():
    x = np.random.default_rng(8).normal(0.0, 0.01, (64, 5))
    dirty = np.insert(x, 2, np.nan, axis=1)
    dirty[10, 4] = np.inf
    clean = pbo(np.delete(x, 3, axis=1), n_splits=8)
    got = pbo(dirty, n_splits=8)
    assert got.n_excluded == 2 and got.n_strategies == 4
    assert got.pbo == clean.pbo
    np.testing.assert_array_equal(got.logits, clean.logits)


def test_pbo_input_errors():
    x = np.random.default_rng(9).normal(0.0, 0.01, (64, 3))
    with pytest.raises(ValueError, match="at least 2 strategies"):
        pbo(x[:, :1])
    with pytest.raises(ValueError, match="at least 2 strategies"):
        pbo(np.column_stack([x[:, 0], np.full(64, np.nan)]), n_splits=4)
    with pytest.raises(ValueError, match="even"):
        pbo(x, n_splits=5)
    with pytest.raises(ValueError, match="even"):
        pbo(x, n_splits=0)
    with pytest.raises(ValueError, match="rows per block"):
        pbo(x[:31], n_splits=16)
    with pytest.raises(ValueError, match="2-D"):
        pbo(x[:, 0])
    with pytest.raises(ValueError, match="sharpe"):
        pbo(x, metric="sortino")


# ---------------------------------------------------------------- what a search looks like

def test_best_of_pure_noise_is_not_significant():
    x = noise_search(11)
    best = x[:, int(np.argmax(x.mean(axis=0) / x.std(axis=0, ddof=1)))]
    out = summary(best, x)
    assert out["psr"] > 0.95  # the naive test is fooled by the selection ...
    assert out["dsr"] < 0.8  # ... the deflated one is not
    assert 0.3 <= out["pbo"] <= 0.7
    assert out["n_trials"] == 200 and out["pbo_n_strategies"] == 200 and out["pbo_reason"] == ""
    assert out["min_track_record_deflated"] > out["track_record"]


def test_real_edge_has_pbo_near_zero():
    rng = np.random.default_rng(12)
    x = noise_search(12, t=1600, n=50)
    x[:, 17] = rng.normal(0.003, 0.01, 1600)  # daily Sharpe 0.3 in every block
    out = summary(x[:, 17], x)
    assert out["pbo"] <= 0.05 and out["prob_oos_loss"] == 0.0
    assert out["dsr"] > 0.99
    assert out["min_track_record_deflated"] < out["track_record"]


@pytest.mark.slow
def test_pbo_full_size_is_vectorised():
    # 12,870 combinations are ranked in numpy, not in a Python loop per combination: the work,
    # counted in Python calls (tests/work.py), stays far below one call per combination.
    x = noise_search(13, t=5000, n=200)
    res, calls = python_calls(pbo, x, n_splits=16)
    assert res.n_combinations == 12870 and res.n_rows_used == 4992 and res.logits.shape == (12870,)
    assert calls < 12870, calls


def test_too_many_pbo_splits_are_refused_before_any_work():
    x = noise_search(14, t=400, n=5)
    with pytest.raises(ValueError, match=r"n_splits=64 gives 1,832,624,140,942,590,534 combinations; the limit is 20"):
        pbo(x, n_splits=64)
