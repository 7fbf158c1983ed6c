"""Differential tests of the numba kernels against the pandas/numpy references.

Every kernel runs on a realistic random-walk market, on signed series with zeros, on series with
NaN stretches, with windows 1, 2, 250 and longer than the series; NaN positions must be identical
and values equal to rtol 1e-9. The documented warm-up of every kernel is checked, a few
definitions are pinned by hand-computed values, and hypothesis explores a subset on random arrays.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference_kernels as ref
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from autostrat.tape.kernels import KERNELS, PARAM_KINDS, kernel_params, warm_up_all

BARS = 3000
DEFAULT_WINDOWS = {"n": 14, "m": 3, "fast": 12, "slow": 26, "signal": 9}
NAN_X = [*range(0, 25), *range(1500, 1540), 2200]  # a leading stretch, a middle one, a single
NAN_Y = [*range(0, 10), *range(1700, 1706)]

# Leading NaN on NaN-free input, by the windows the kernel was called with (0 when absent).
WARMUP = {
    "lag": lambda w: w["n"],
    **dict.fromkeys(
        ["sma", "ema", "wma", "rma", "stdev", "zscore", "highest", "lowest", "sum", "slope",
         "corr", "bars_since_high", "bars_since_low", "stoch_k", "williams_r", "cci", "bb_upper",
         "bb_lower", "vwap"],
        lambda w: w["n"] - 1,
    ),
    **dict.fromkeys(
        ["percent_rank", "change", "roc", "rsi", "mfi", "atr", "keltner_upper", "keltner_lower",
         "plus_di", "minus_di"],
        lambda w: w["n"],
    ),
    "stoch_d": lambda w: w["n"] + w["m"] - 2,
    "macd": lambda w: max(w["fast"], w["slow"]) - 1,
    "macd_signal": lambda w: max(w["fast"], w["slow"]) + w["signal"] - 2,
    "macd_hist": lambda w: max(w["fast"], w["slow"]) + w["signal"] - 2,
    "tr": lambda w: 1,
    "adx": lambda w: 2 * w["n"] - 1,
}


@pytest.fixture(scope="session", autouse=True)
def compiled() -> None:
    warm_up_all()


def make_market(bars: int, seed: int) -> dict[str, np.ndarray]:
    """Random-walk OHLCV around 100, in cents so that ties occur, with a few zero-volume bars."""
    rng = np.random.default_rng(seed)
    close = np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, bars))), 2)
    open_ = np.round(np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0, 0.004, bars)), 2)
    high = np.round(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.008, bars))), 2)
    low = np.round(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.008, bars))), 2)
    volume = np.round(rng.lognormal(13.0, 0.5, bars))
    volume[rng.random(bars) < 0.01] = 0.0
    assert (high >= np.maximum(open_, close)).all() and (low <= np.minimum(open_, close)).all()
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def make_inputs(scenario: str, bars: int = BARS, seed: int = 7) -> dict[str, np.ndarray]:
    """The series each kernel parameter name receives in `scenario`."""
    rng = np.random.default_rng(seed + 1)
    market = make_market(bars, seed)
    x = market["close"]
    # y equals x on ~10% of bars so that ties exercise ==, != and the crosses.
    y = np.where(rng.random(bars) < 0.1, x, market["open"])
    if scenario == "signed":
        x = np.round(np.diff(x, prepend=x[0]), 2)  # around 0, with exact zeros
        y = np.round(rng.normal(0.0, 0.5, bars), 1)
    if scenario == "nan":
        x = x.copy()
        y = y.copy()
        x[NAN_X] = np.nan
        y[NAN_Y] = np.nan
    spread = np.abs(rng.normal(1.0, 0.5, bars))
    return {
        **market,
        "x": x,
        "y": y,
        "lo": x - spread,
        "hi": x + spread * rng.random(bars) * 0.5,
        "c": (rng.random(bars) < 0.2).astype(np.float64),
        "a": (rng.random(bars) < 0.5).astype(np.float64),
        "b": (rng.random(bars) < 0.5).astype(np.float64),
    }


def call_both(name: str, inputs: dict, windows: dict, k: float = 2.0):
    """Run the kernel and its reference on the same arguments; also check inputs are untouched."""
    args = []
    for param in kernel_params(name):
        kind = PARAM_KINDS[param]
        if kind in ("number", "boolean"):
            args.append(inputs[param])
        elif kind == "window":
            args.append(windows[param])
        else:
            args.append(k if param == "k" else 3.5)
    size = len(inputs["close"])
    before = [a.copy() for a in args if isinstance(a, np.ndarray)]
    out = np.full(size, -12345.0)  # a stale value left anywhere shows up as a mismatch
    KERNELS[name](*args, out)
    after = [a for a in args if isinstance(a, np.ndarray)]
    assert all(np.array_equal(b, a, equal_nan=True) for b, a in zip(before, after)), name
    want = ref.fill(3.5, size) if name == "fill" else ref.REFERENCE[name](*args)
    return out, np.asarray(want, dtype=np.float64), args


def assert_matches(got: np.ndarray, want: np.ndarray, args: list, label: str) -> None:
    """Same NaN positions; values equal to rtol 1e-9, atol 1e-9 times the data's scale."""
    got_nan = np.isnan(got)
    diff = np.flatnonzero(got_nan != np.isnan(want))
    assert diff.size == 0, (
        f"{label}: NaN positions differ at {diff[:8]}: got {got[diff[:4]]}, want {want[diff[:4]]}"
    )
    values = [np.abs(want[~got_nan])] + [np.abs(a) for a in args if np.ndim(a)]
    scale = max([1.0] + [v[np.isfinite(v)].max() for v in values if np.isfinite(v).any()])
    np.testing.assert_allclose(
        got[~got_nan], want[~got_nan], rtol=1e-9, atol=1e-9 * scale, err_msg=label
    )


def windowed(name: str) -> bool:
    return any(PARAM_KINDS[p] == "window" for p in kernel_params(name)) and name != "lag"


def has_series(name: str) -> bool:
    return any(p in ("x", "y") for p in kernel_params(name))


CASES = (
    [(name, "market", None) for name in KERNELS]
    + [(name, "signed", None) for name in KERNELS if has_series(name)]
    + [(name, "nan", None) for name in KERNELS if has_series(name)]
    + [(name, "market", w) for name in KERNELS if windowed(name) for w in (1, 2, 250)]
    + [(name, "nan", w) for name in KERNELS if windowed(name) and has_series(name) for w in (1, 2)]
)


@pytest.mark.parametrize(("name", "scenario", "window"), CASES)
def test_kernel_matches_reference(name: str, scenario: str, window: int | None) -> None:
    windows = DEFAULT_WINDOWS if window is None else dict.fromkeys(DEFAULT_WINDOWS, window)
    if name == "lag":
        windows = {"n": 3}
    got, want, args = call_both(name, make_inputs(scenario), windows)
    assert_matches(got, want, args, f"{name} {scenario} windows={windows}")


@pytest.mark.parametrize("name", [name for name in KERNELS if windowed(name) or name == "lag"])
@pytest.mark.parametrize("window", [60, 2520])
def test_window_longer_than_series_is_all_nan(name: str, window: int) -> None:
    inputs = {key: value[:50] for key, value in make_inputs("market").items()}
    got, want, _ = call_both(name, inputs, dict.fromkeys(DEFAULT_WINDOWS, window))
    assert np.isnan(got).all() and np.isnan(want).all()


@pytest.mark.parametrize("name", ["sma", "sum", "wma", "stdev", "zscore", "slope", "corr",
                                  "highest", "percent_rank", "cci", "vwap", "ema", "bb_upper"])
def test_longest_window_on_long_history(name: str) -> None:
    inputs = make_inputs("market", bars=7000, seed=3)
    got, want, args = call_both(name, inputs, dict.fromkeys(DEFAULT_WINDOWS, 2520))
    assert_matches(got, want, args, f"{name} window 2520")


@pytest.mark.parametrize("name", list(KERNELS))
def test_documented_warm_up(name: str) -> None:
    inputs = make_inputs("market")
    windows = {"n": 10, "m": 4, "fast": 5, "slow": 13, "signal": 6}
    got, _, _ = call_both(name, inputs, windows)
    if name == "bars_since":
        expected = int(np.flatnonzero(inputs["c"])[0])
    else:
        expected = WARMUP.get(name, lambda w: 0)(windows)
    assert np.isnan(got[:expected]).all(), f"{name}: a value before bar {expected}"
    assert not np.isnan(got[expected:]).any(), f"{name}: NaN at or after bar {expected}"


@pytest.mark.parametrize("name", list(KERNELS))
def test_empty_series(name: str) -> None:
    kinds = [PARAM_KINDS[p] for p in kernel_params(name)]
    args = [3 if kind == "window" else 1.5 if kind == "float" else np.empty(0) for kind in kinds]
    KERNELS[name](*args, np.empty(0))


def test_lag_zero_copies() -> None:
    x = np.array([1.0, np.nan, 3.0])
    out = np.empty(3)
    KERNELS["lag"](x, 0, out)
    np.testing.assert_array_equal(out, x)


# ---------------------------------------------------------------- hand-computed definitions


def run(name: str, *args) -> np.ndarray:
    arrays_ = [np.asarray(a, dtype=np.float64) if isinstance(a, list) else a for a in args]
    size = next(len(a) for a in arrays_ if isinstance(a, np.ndarray))
    out = np.empty(size)
    KERNELS[name](*arrays_, out)
    return out


NAN = np.nan


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("ema", ([1, 2, 3, 4, 5], 3), [NAN, NAN, 2.0, 3.0, 4.0]),
        ("ema", ([1, 2, NAN, 3, 4, 5], 2), [NAN, 1.5, NAN, NAN, 3.5, 4.5]),
        ("rma", ([2, 4, 6, 10], 2), [NAN, 3.0, 4.5, 7.25]),
        ("wma", ([1, 2, 3], 2), [NAN, 5 / 3, 8 / 3]),
        ("stdev", ([1, 3, 3], 2), [NAN, 1.0, 0.0]),
        ("stdev", ([5, NAN, 7], 1), [0.0, NAN, 0.0]),
        ("zscore", ([1, 3, 3, 3], 2), [NAN, 1.0, NAN, NAN]),
        ("percent_rank", ([1, 2, 3, 2], 3), [NAN, NAN, NAN, 200 / 3]),
        ("bars_since_high", ([5, 1, 5, 2], 4), [NAN, NAN, NAN, 1.0]),
        ("bars_since_low", ([1, 1, 3, 2], 3), [NAN, NAN, 1.0, 2.0]),
        ("slope", ([1, 3, 5, 4], 3), [NAN, NAN, 2.0, 0.5]),
        ("slope", ([1, 9], 1), [0.0, 0.0]),
        ("corr", ([1, 2, 3, 4], [2, 4, 6, 6], 3), [NAN, NAN, 1.0, np.sqrt(0.75)]),
        ("change", ([1, 4, 9], 1), [NAN, 3.0, 5.0]),
        ("roc", ([0, 4, 6], 1), [NAN, NAN, 0.5]),
        ("rsi", ([1, 2, 3, 4], 2), [NAN, NAN, 100.0, 100.0]),
        ("rsi", ([5, 5, 5, 5], 2), [NAN, NAN, 50.0, 50.0]),
        ("rsi", ([1, 3, 2, 2], 2), [NAN, NAN, 100 - 100 / 3, 100 - 100 / 3]),
        ("div", ([1, 0, 6], [0, 0, 3]), [NAN, NAN, 2.0]),
        ("ne", ([1, NAN, 2], [1, 1, 3]), [0.0, 0.0, 1.0]),
        ("sign", ([-2, 0, NAN, 3], ), [-1.0, 0.0, NAN, 1.0]),
        ("log", ([0, -1, np.e], ), [NAN, NAN, 1.0]),
        ("cross_above", ([1, 2, 3, 1, 3], [2, 2, 2, NAN, 2]), [0, 0, 1, 0, 0]),
        ("cross_below", ([3, 2, 1], [2, 2, 2]), [0, 0, 1]),
        ("bars_since", ([0, 1, 0, 0, 1], ), [NAN, 0, 1, 2, 0]),
        ("obv", ([1, 2, 2, 1], [5, 7, 9, 3]), [0.0, 7.0, 7.0, 4.0]),
        ("tr", ([10, 12], [9, 11], [9.5, 11.5]), [NAN, 2.5]),
        ("vwap", ([3, 6, 6], [3, 6, 6], [3, 6, 6], [1, 0, 0], 2), [NAN, 3.0, NAN]),
        ("mfi", ([1, 2, 2, 2], [1, 2, 2, 2], [1, 2, 2, 2], [1, 1, 0, 0], 2), [NAN, NAN, 100, 50]),
        ("stoch_k", ([4, 5, 5], [2, 3, 5], [3, 4, 5], 2), [NAN, 200 / 3, 100.0]),
        ("williams_r", ([4, 5, 5], [2, 3, 5], [3, 4, 5], 2), [NAN, -100 / 3, 0.0]),
    ],
)
def test_hand_computed(name: str, args: tuple, expected: list) -> None:
    np.testing.assert_allclose(run(name, *args), expected, rtol=1e-12, atol=1e-12)


def test_cci_of_constant_typical_price_is_nan() -> None:
    flat = [5.0, 5.0, 5.0, 6.0]
    np.testing.assert_array_equal(np.isnan(run("cci", flat, flat, flat, 3)), [1, 1, 1, 0])


def _window_sums(x, n, exact):
    """Every full window of x summed directly: exactly (math.fsum) or in order (inf-safe)."""
    import math

    out = np.full(len(x), np.nan)
    for t in range(n - 1, len(x)):
        w = x[t - n + 1 : t + 1]
        if not np.isnan(w).any():
            with np.errstate(all="ignore"):
                out[t] = math.fsum(w) if exact else sum(w.tolist())
    return out


@settings(max_examples=60, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 300), elements=st.one_of(
           st.floats(-1e15, 1e15), st.floats(-1.0, 1.0), st.sampled_from([0.0, -0.0, 1e-300, np.nan]))),
       n=st.integers(1, 40))
def test_rolling_sum_is_as_accurate_as_the_exact_window_sum(x: np.ndarray, n: int) -> None:
    # Huge values entering and leaving beside tiny ones: a plain running sum keeps their rounding.
    # Every window is within RECOMPUTE_AT (1e-12) of its exact sum (math.fsum), relative to the
    # window's magnitudes, whatever left the window before; a window of zeros is exactly 0.0.
    got, want = run("sum", x, n), _window_sums(x, n, exact=True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    mag = np.array([np.abs(x[t - n + 1 : t + 1]).sum() if ok[t] else 0.0 for t in range(len(x))])
    assert np.all(np.abs(got[ok] - want[ok]) <= 1e-12 * mag[ok] + 4 * np.finfo(float).eps * np.abs(want[ok]))
    zeros = ok & (mag == 0.0)
    assert np.all((got[zeros] == 0.0) & ~np.signbit(got[zeros]))
    for cut in (len(x) // 3, len(x) // 2, len(x) - 1):  # causal, bit for bit, whichever way a window went
        np.testing.assert_array_equal(run("sum", x[:cut], n), got[:cut])


def test_rolling_sum_with_infinite_values_sums_each_window() -> None:
    # inf cannot be subtracted back out of a running sum: windows after it are finite again.
    x = np.array([1.0, 2, 3, np.inf, 4, 5, 6, 7, 8, -np.inf, 1, 2, np.nan, 3, 4, 5, 1e308, 1e308, 1, 2, 3, 4])
    want = _window_sums(x, 3, exact=False)
    assert np.isinf(want).any() and np.isfinite(want[[6, 7, 8, 21]]).all()
    np.testing.assert_array_equal(run("sum", x, 3), want)
    np.testing.assert_array_equal(run("sma", x, 3), want / 3)


# ---------------------------------------------------------------- property tests

values = st.one_of(st.floats(1.0, 1000.0), st.sampled_from([1.0, 2.0, np.nan]))
series = arrays(np.float64, st.integers(0, 60), elements=values)
FEW = settings(max_examples=30, deadline=None)


@FEW
@given(x=series, n=st.integers(1, 12), 
       name=st.sampled_from(["sma", "ema", "highest", "stdev", "rsi"]))
def test_window_kernels_on_random_arrays(x: np.ndarray, n: int, name: str) -> None:
    want = np.asarray(ref.REFERENCE[name](x, n), dtype=np.float64)
    assert_matches(run(name, x, n), want, [x], f"{name} n={n}")


@FEW
@given(data=st.data(), size=st.integers(1, 40))
def test_cross_above_on_random_arrays(data: st.DataObject, size: int) -> None:
    ties = arrays(np.float64, size, elements=st.sampled_from([1.0, 2.0, 3.0, np.nan]))
    x, y = data.draw(ties), data.draw(ties)
    np.testing.assert_array_equal(run("cross_above", x, y), ref.cross_above(x, y))


@FEW
@given(c=arrays(np.float64, st.integers(1, 40), elements=st.sampled_from([0.0, 1.0])))
def test_bars_since_on_random_arrays(c: np.ndarray) -> None:
    np.testing.assert_array_equal(run("bars_since", c), ref.bars_since(c))


@settings(max_examples=80, deadline=None)
@given(x=arrays(np.float64, st.integers(1, 300), elements=st.one_of(
           st.floats(-1e15, 1e15), st.floats(-1e-3, 1e-3), st.sampled_from([0.0, -0.0, 1.0, 1e-300, np.nan]))),
       n=st.integers(1, 40))
def test_single_series_moments_are_the_two_series_loop_bit_for_bit(x: np.ndarray, n: int) -> None:
    """stdev's one-series loop must take every recomputation decision the co-moment loop takes."""
    from autostrat.tape.kernels_rolling import _rolling_m2_nb, _rolling_moments_nb

    want = np.empty_like(x)
    _rolling_moments_nb(x, x, n, want, np.empty_like(x), np.empty_like(x))
    got = np.empty_like(x)
    _rolling_m2_nb(x, n, got)
    np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))  # bits, signed zeros and NaNs too
