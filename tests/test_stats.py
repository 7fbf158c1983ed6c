"""metrics_nb against values worked out by hand (in the comments) and against pandas."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from autostrat.sim.simulate import EXIT_REASONS, simulate_nb
from autostrat.sim.metrics import METRIC_NAMES, metrics, metrics_nb

END = EXIT_REASONS.index("end")
SIGNAL = EXIT_REASONS.index("signal")


@pytest.fixture(scope="session", autouse=True)
def _warm_jit():
    """Compile metrics_nb once for the session with the argument types every test passes."""
    x = np.array([1.0, 2.0])
    metrics_nb(x, np.zeros(2, dtype=np.int8), np.zeros((0, 8)), x, 0, 2, 1.0, np.empty(len(METRIC_NAMES)))


def m(equity, position, trades, close, start=0, stop=None, capital=100.0):
    equity = np.asarray(equity, dtype=float)
    stop = start + len(equity) if stop is None else stop
    return metrics(equity, np.asarray(position), np.asarray(trades, dtype=float).reshape(-1, 8),
                   np.asarray(close, dtype=float), start, stop, capital)


def test_names_and_order():
    out = m([100.0, 101.0], [0, 0], [], [1.0, 1.0])
    assert tuple(out) == METRIC_NAMES and len(METRIC_NAMES) == 15
    assert isinstance(out["num_trades"], int)


def test_buy_and_hold_by_hand():
    # Bought at the close 10 with 100, held to the close-out at 10.89: equity 100, 110, 99, 108.9.
    out = m([100, 110, 99, 108.9], [1, 1, 1, 1], [[0, 3, 10, 10.89, 1, 0.089, END, 3]],
            [10, 11, 9.9, 10.89])
    # r = 0.1, -0.1, 0.1: mean 1/30; squared deviations 4/900, 16/900, 4/900 -> var (ddof 1) 1/75
    # sharpe = (1/30) / sqrt(1/75) * sqrt(252) = sqrt(75 * 252) / 30 = 4.5825757
    assert out["sharpe"] == pytest.approx(4.5825757, rel=1e-7)
    # downside: sqrt(mean([0, 0.01, 0])) = sqrt(1/300); sortino = (1/30) * sqrt(300) * sqrt(252)
    assert out["sortino"] == pytest.approx(9.1651514, rel=1e-7)
    assert out["total_return"] == pytest.approx(0.089)
    # 4 bars = 4/252 years: cagr = 1.089 ** 63 - 1
    assert out["cagr"] == pytest.approx(1.089 ** 63 - 1)
    assert out["max_drawdown"] == pytest.approx(-0.1)  # 99 / 110 - 1
    assert out["calmar"] == pytest.approx((1.089 ** 63 - 1) / 0.1)
    assert out["num_trades"] == 1 and out["win_rate"] == 1.0
    assert math.isnan(out["profit_factor"])  # no losing trade: undefined
    assert out["avg_trade_return"] == pytest.approx(0.089)
    assert out["exposure"] == 1.0
    # notional: entry 100 + exit 100 * 10.89 / 10 = 208.9; mean equity 104.475; years 4/252
    # turnover = 208.9 / 104.475 * 63 = 125.96985
    assert out["turnover"] == pytest.approx(125.96985, rel=1e-7)
    assert out["final_equity"] == pytest.approx(108.9)
    assert out["buy_hold_return"] == pytest.approx(0.089)
    assert out["excess_return"] == pytest.approx(0.0, abs=1e-12)


def test_no_trades_flat_equity():
    out = m([100.0] * 5, [0] * 5, [], [10, 11, 12, 13, 12])
    expected = dict.fromkeys(METRIC_NAMES, 0.0)
    expected.update(final_equity=100.0, buy_hold_return=0.2, excess_return=-0.2)
    assert out == pytest.approx(expected)


def test_winners_and_losers():
    # Trade returns +20%, -10% (a short: entry 20, cover 22), +5%, -5%.
    trades = [[0, 1, 10, 12, 1, 0.2, SIGNAL, 1],
              [1, 2, 20, 22, -1, -0.1, SIGNAL, 1],
              [2, 3, 5, 5.25, 1, 0.05, SIGNAL, 1],
              [3, 4, 8, 7.6, 1, -0.05, END, 1]]
    equity = [100, 120, 108, 113.4, 107.73]
    out = m(equity, [1, -1, 1, 1, 1], trades, [1, 1, 1, 1, 1])
    assert out["num_trades"] == 4
    assert out["win_rate"] == 0.5
    assert out["profit_factor"] == pytest.approx(0.25 / 0.15)  # (0.2 + 0.05) / (0.1 + 0.05)
    assert out["avg_trade_return"] == pytest.approx(0.025)  # 0.1 / 4
    # equity before each trade: 100, 120, 108, 113.4 (cash does not change while flat)
    # notional: 100 * 2.2 + 120 * 2.1 + 108 * 2.05 + 113.4 * 1.95 = 914.53
    # mean equity 549.13 / 5 = 109.826; years 5 / 252: turnover = 914.53 / 109.826 * 50.4
    assert out["turnover"] == pytest.approx(914.53 / 109.826 * 50.4)
    assert out["total_return"] == pytest.approx(0.0773)
    assert out["max_drawdown"] == pytest.approx(107.73 / 120 - 1)


def test_only_winners_but_a_drawdown():
    out = m([100, 90, 120], [1, 1, 0], [[0, 2, 10, 12, 1, 0.2, SIGNAL, 2]], [10, 9, 12])
    assert math.isnan(out["profit_factor"]) and out["win_rate"] == 1.0
    assert out["max_drawdown"] == pytest.approx(-0.1)
    assert out["exposure"] == pytest.approx(2 / 3)


def test_single_return_has_no_sharpe():
    # one return (-5%): std needs two, so sharpe is 0; sortino = -0.05 / 0.05 * sqrt(252)
    out = m([100, 95], [1, 1], [[0, 1, 1, 0.95, 1, -0.05, END, 1]], [1, 0.95])
    assert out["sharpe"] == 0.0
    assert out["sortino"] == pytest.approx(-math.sqrt(252))
    assert out["profit_factor"] == 0.0  # losses only: 0 / 0.05


def test_single_bar_period():
    out = m([100.0], [0], [], [5.0])
    assert out["sharpe"] == out["sortino"] == out["max_drawdown"] == out["calmar"] == 0.0
    assert out["total_return"] == 0.0 and out["buy_hold_return"] == 0.0


def test_ruined_equity():
    # A liquidated short: 100 -> 50 -> 0 -> 0. Returns -0.5, -1, then 0 (nothing left to lose).
    trades = [[0, 2, 10, 20, -1, -1.0, EXIT_REASONS.index("liquidation"), 2]]
    out = m([100, 50, 0, 0], [-1, -1, 0, 0], trades, [10, 15, 20, 20])
    assert out["cagr"] == -1.0 and out["total_return"] == -1.0
    assert out["max_drawdown"] == -1.0 and out["calmar"] == -1.0
    r = np.array([-0.5, -1.0, 0.0])
    assert out["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(252))
    assert all(math.isfinite(out[k]) for k in METRIC_NAMES if k != "profit_factor")


def test_period_inside_a_longer_history():
    close = np.arange(1.0, 11.0)  # 1..10
    out = m([50, 60, 70], [1, 1, 1], [[3, 5, 4, 6, 1, 0.4, END, 2]], close, start=3, stop=6,
            capital=50.0)
    assert out["buy_hold_return"] == pytest.approx(6 / 4 - 1)  # close[5] / close[3] - 1
    assert out["total_return"] == pytest.approx(0.4)
    assert out["excess_return"] == pytest.approx(0.4 - 0.5)


def test_max_drawdown_is_the_per_bar_minimum_to_the_bit():
    """The drawdown is divided out once per stretch between peaks (at its lowest equity), yet it
    equals min(e / cummax(e) - 1) divided out at every bar, bit for bit: on random walks, curves
    with flat stretches, repeated peaks, ties at the old peak, and equity that reaches 0."""
    rng = np.random.default_rng(5)
    for case in range(400):
        n = int(rng.integers(1, 300))
        steps = rng.normal(0.0, float(rng.choice([0.001, 0.01, 0.05])), n)
        if case % 4 == 1:
            steps[rng.random(n) < 0.5] = 0.0  # flat stretches: equal equities
        equity = 100.0 * np.exp(np.cumsum(steps))
        if case % 4 == 2:
            equity = np.round(equity, 1)  # ties with the old peak and between troughs
        if case % 4 == 3 and n > 3:
            equity[int(rng.integers(1, n)):] = 0.0  # wiped out
        peak = np.maximum.accumulate(equity)
        with np.errstate(invalid="ignore", divide="ignore"):
            want = float(np.min(np.where(peak > 0, equity / peak - 1.0, 0.0), initial=0.0))
        got = m(equity, np.zeros(n, dtype=np.int8), [], np.ones(n), capital=100.0)["max_drawdown"]
        assert got == want, (case, got, want)


def test_risk_metrics_match_pandas_on_a_random_curve():
    rng = np.random.default_rng(11)
    equity = 1000 * np.exp(np.cumsum(rng.normal(0.0004, 0.01, 500)))
    out = m(equity, np.ones(500, dtype=np.int8), [], np.ones(500), capital=1000.0)
    s = pd.Series(equity)
    r = s.pct_change().dropna()
    assert out["sharpe"] == pytest.approx(r.mean() / r.std() * np.sqrt(252), rel=1e-9)
    downside = np.sqrt((np.minimum(r, 0) ** 2).mean())
    assert out["sortino"] == pytest.approx(r.mean() / downside * np.sqrt(252), rel=1e-9)
    assert out["max_drawdown"] == pytest.approx((s / s.cummax() - 1).min(), rel=1e-12)
    years = 500 / 252
    assert out["cagr"] == pytest.approx((equity[-1] / 1000) ** (1 / years) - 1, rel=1e-9)


def test_metrics_of_a_simulation():
    # End to end: a round trip at fill = close with costs; metrics agree with the trade itself.
    n = 6
    close = np.array([100, 102, 104, 103, 108, 110], dtype=float)
    le = np.array([1, 0, 0, 0, 0, 0], dtype=float)
    lx = np.array([0, 0, 0, 0, 1, 0], dtype=float)
    z = np.zeros(n)
    eq, pos, tr = simulate_nb(close, close, close, close, le, lx, z, z, 0, n, 0, True, 1e-3, 0.0,
                              np.nan, np.nan, np.nan, -1, 1000.0)
    out = metrics(eq, pos, tr, close, 0, n, 1000.0)
    # cash after: 1000 * 0.999 / 100 * 108 * 0.999
    assert out["final_equity"] == pytest.approx(1000 * 0.999 * 1.08 * 0.999)
    assert out["avg_trade_return"] == pytest.approx(0.999 * 1.08 * 0.999 - 1)
    assert out["exposure"] == pytest.approx(4 / 6)  # held at the closes of bars 0..3
    assert out["buy_hold_return"] == pytest.approx(0.10)


def test_rejects_mismatched_period():
    with pytest.raises(ValueError, match="period"):
        m([1.0, 2.0], [0, 0], [], [1.0, 1.0, 1.0], start=0, stop=3)


def test_one_metric_table_feeds_the_kernel_the_cli_the_report_and_the_prompt():
    from autostrat.cli.engine_cmds import fmt_metric
    from autostrat.report.html import fmt as report_fmt
    from autostrat.sim.metrics import FRACTION, METRIC_NAMES, METRICS, M, format_metric

    assert METRIC_NAMES == tuple(m.name for m in METRICS) == M._fields
    assert tuple(M) == tuple(range(len(METRICS)))
    assert all(m.meaning and m.better in ("higher", "lower", "") for m in METRICS)
    for m in METRICS:
        shown = fmt_metric(m.name, 0.1234)
        assert shown == format_metric(m.name, 0.1234)
        assert shown.endswith("%") == (m.unit == FRACTION) == report_fmt(m.name, 0.1234).endswith("%")
    assert fmt_metric("sharpe", float("nan")) == "n/a" and fmt_metric("num_trades", 7.0) == "7"
    assert fmt_metric("final_equity", 12345.678) == "12,345.68" and fmt_metric("cagr", 0.05) == "5.00%"
    assert report_fmt("cagr", 0.05) == "5.0%"
