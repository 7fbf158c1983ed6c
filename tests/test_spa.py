"""The data-snooping test (autostrat.honest.spa): SPA and Reality Check against a plain-Python
reference, their behaviour on noise and on a planted winner, the block length and the benchmark."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_loop import market, small_settings, warm  # noqa: E402,F401 - fixtures

from autostrat.honest.spa import (benchmark_returns, long_run_variance, optimal_block_length,  # noqa: E402
                                  spa_test, stationary_indices)
from autostrat.sim.backtest import buy_and_hold, period_spans  # noqa: E402


def reference_spa(d: list[list[float]], idx: list[list[int]], block: float) -> dict:
    """Hansen's consistent SPA and White's Reality Check written out with loops, from the papers."""
    n, m = len(d), len(d[0])
    q = 1 / block
    cols = [[d[t][k] for t in range(n)] for k in range(m)]
    means = [sum(c) / n for c in cols]
    omegas = []
    for k, c in enumerate(cols):
        gamma = [sum((c[t] - means[k]) * (c[t + i] - means[k]) for t in range(n - i)) / n for i in range(n)]
        kappa = [(n - i) / n * (1 - q) ** i + i / n * (1 - q) ** (n - i) for i in range(n)]
        omegas.append(math.sqrt(gamma[0] + 2 * sum(kappa[i] * gamma[i] for i in range(1, n))))
    t_k = [math.sqrt(n) * means[k] / omegas[k] for k in range(m)]
    spa = max(0.0, max(t_k))
    rc = max(math.sqrt(n) * x for x in means)
    threshold = -math.sqrt(2 * math.log(math.log(n)))
    mu = [means[k] if t_k[k] < threshold else 0.0 for k in range(m)]
    spa_star, rc_star = [], []
    for row in idx:
        boot = [sum(cols[k][j] for j in row) / n for k in range(m)]
        rc_star.append(max(math.sqrt(n) * (boot[k] - means[k]) for k in range(m)))
        spa_star.append(max(0.0, max(math.sqrt(n) * (boot[k] - means[k] + mu[k]) / omegas[k] for k in range(m))))
    return {"spa": spa, "rc": rc, "omega": omegas, "spa_star": spa_star, "rc_star": rc_star,
            "spa_p": sum(x >= spa for x in spa_star) / len(idx), "rc_p": sum(x >= rc for x in rc_star) / len(idx)}


def test_spa_and_reality_check_match_a_plain_python_reference():
    rng = np.random.default_rng(3)
    n, m, reps, block = 24, 3, 200, 3.0
    d = rng.normal(0, 0.01, (n, m))
    d[:, 1] += 0.004  # one good trial
    d[:, 2] -= 0.02  # one clearly bad trial: the SPA recentring keeps it at its mean
    idx = stationary_indices(n, block, reps, np.random.default_rng(5))
    ref = reference_spa(d.tolist(), idx.tolist(), block)
    res = spa_test(d, reps=reps, block=block, indices=idx)
    assert np.allclose(np.sqrt(long_run_variance(d, block)), ref["omega"], rtol=1e-10)
    assert res.spa_statistic == pytest.approx(ref["spa"], rel=1e-10)
    assert res.rc_statistic == pytest.approx(ref["rc"], rel=1e-10)
    # the p-values count replicates at or above the statistic; allow one within rounding of it
    assert abs(res.spa_pvalue - ref["spa_p"]) <= 1 / reps and abs(res.rc_pvalue - ref["rc_p"]) <= 1 / reps
    assert 0 < ref["spa_p"] < 1 and ref["spa_p"] <= ref["rc_p"] + 0.2


def test_stationary_indices_are_blocks_of_geometric_length():
    n, block = 400, 8.0
    idx = stationary_indices(n, block, 300, np.random.default_rng(0))
    assert idx.shape == (300, n) and idx.min() >= 0 and idx.max() < n
    breaks = idx[:, 1:] != (idx[:, :-1] + 1) % n
    assert 1 / block * 0.8 < breaks.mean() < 1 / block * 1.2  # new blocks start with probability 1/8
    counts = np.bincount(idx.ravel(), minlength=n) / idx.size
    assert counts.max() < 3 / n  # every day is drawn about equally often
    again = stationary_indices(n, block, 300, np.random.default_rng(0))
    assert (again == idx).all()


def test_block_length_grows_with_dependence():
    rng = np.random.default_rng(7)
    e = rng.normal(size=2000)
    ar = np.zeros(2000)
    for t in range(1, 2000):
        ar[t] = 0.7 * ar[t - 1] + e[t]
    assert optimal_block_length(e) < 3
    assert 8 < optimal_block_length(ar) <= math.ceil(3 * math.sqrt(2000))
    assert optimal_block_length(np.ones(100)) == 1.0


@pytest.mark.parametrize("phi, n, seed, patton", [(0.3, 2000, 1, 8.972), (0.5, 500, 4, 10.795),
                                                 (0.7, 2000, 2, 17.060), (0.9, 2000, 3, 41.298)])
def test_block_length_agrees_with_pattons_reference_code(phi, n, seed, patton):
    # `patton`: the stationary-bootstrap length from Patton's opt_block_length_REV_dec07 (its Python
    # adaptation) on the same AR(1) series. It estimates autocovariances from trimmed lagged pairs,
    # autostrat from the whole series (divisor n), hence a small tolerance rather than equality.
    e = np.random.default_rng(seed).normal(size=n)
    y = np.zeros(n)
    for t in range(1, n):
        y[t] = phi * y[t - 1] + e[t]
    assert optimal_block_length(y) == pytest.approx(patton, rel=0.03)


def test_pure_noise_gives_roughly_uniform_p_values():
    # 80 searches over noise (10 trials, no edge): p-values spread over [0, 1] as a p-value should
    spa, rc = [], []
    for seed in range(80):
        d = np.random.default_rng(1000 + seed).normal(0, 0.01, (250, 10))
        res = spa_test(d, reps=200, seed=seed)
        spa.append(res.spa_pvalue)
        rc.append(res.rc_pvalue)
    for p in (np.array(spa), np.array(rc)):
        assert 0.3 < p.mean() < 0.7
        assert np.mean(p < 0.1) < 0.25 and np.mean(p > 0.5) > 0.3


def test_a_planted_winner_gets_a_small_p_value():
    d = np.random.default_rng(42).normal(0, 0.01, (750, 40))
    d[:, 17] += 0.003  # a real edge of 0.3% a day in one of 40 trials
    res = spa_test(d, reps=500, seed=0)
    assert res.spa_pvalue < 0.01 and res.rc_pvalue < 0.05 and res.best_trial == 17


def test_trials_all_worse_than_the_benchmark_give_a_large_p_value():
    d = np.random.default_rng(1).normal(-0.002, 0.01, (500, 20))
    res = spa_test(d, reps=300, seed=0)
    assert res.spa_statistic == 0.0 and res.spa_pvalue == 1.0 and res.rc_pvalue > 0.5


def test_seeded_and_checked():
    d = np.random.default_rng(2).normal(0, 0.01, (300, 5))
    assert spa_test(d, seed=4) == spa_test(d, seed=4)
    with pytest.raises(ValueError, match="at least 20 days"):
        spa_test(d[:10])
    d[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        spa_test(d)


def test_benchmark_returns_are_buy_and_hold_in_the_returns_layout(warm):
    settings = small_settings()
    bench = benchmark_returns(warm, settings)
    spans = period_spans(warm, settings)
    hold = buy_and_hold(warm, spans, settings)
    start = 0
    for period, (a, b) in spans.items():
        part = bench[start:start + b - a - 1]
        assert np.prod(1 + part) - 1 == pytest.approx(hold[period]["total_return"], rel=1e-9)
        start += b - a - 1
    assert len(bench) == start


def test_on_a_universe_the_benchmark_is_averaged_like_the_trials(warm):
    from autostrat.data.load import load_data
    from autostrat.sim.evaluator import make_evaluator

    settings = small_settings()
    universe = load_data("synthetic:seed=1..2,bars=1500", settings.data)
    layout = make_evaluator(universe, settings).returns_layout
    bench = benchmark_returns(universe, settings)
    assert len(bench) == layout["validation"][1]
    # Both synthetic markets share one calendar: the average is the plain mean, day by day.
    each = [benchmark_returns(m, settings) for m in universe]
    assert np.allclose(bench, (each[0] + each[1]) / 2, rtol=0, atol=1e-15)


def test_the_number_of_replications_is_bounded(tmp_path, warm):
    from autostrat.errors import ConfigError
    from autostrat.search.session import start_run

    for reps in (5, 50_000):
        with pytest.raises(ConfigError, match="search.spa_reps must be from 100 to 20000"):
            start_run(tmp_path / "r", "r", small_settings(proposer="mutate", spa_reps=reps))
    assert not (tmp_path / "r").exists()
