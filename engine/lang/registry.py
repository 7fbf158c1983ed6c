"""The built-in registry: the one table of the language's functions.

Each entry gives the name, the argument kinds, the result type, the lookback rule (leading NaN
bars for NaN-free input, as a function of the window arguments) and a one-line doc. The checker,
the compiler, grammar/LANGUAGE.md and the prompts' language reference are all generated from it.

Argument kinds:
  x  a number series (any number expression)
  c  a boolean series (a condition)
  n  a window: an integer literal or an integer param, 1..max_lookback
  k  a number constant: a literal or a param
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

NUM = "number"
CROSS_SECTIONAL = "cross-sectional"
BOOL = "boolean"
SERIES = ("open", "high", "low", "close", "volume")
MAX_LOOKBACK = 2520  # ten years of daily bars


@dataclass(frozen=True)
class Builtin:
    """One built-in function of the language."""

    name: str
    params: tuple[str, ...]  # argument names as documented, e.g. ("x", "n")
    kinds: tuple[str, ...]  # x c n k, one per argument
    result: str  # NUM or BOOL
    warmup: str  # leading NaN bars for NaN-free input, a formula in the window names ("n-1")
    group: str
    doc: str

    @property
    def signature(self) -> str:
        return f"{self.name}({', '.join(self.params)})"

    @property
    def cross_sectional(self) -> bool:
        """Computed across a universe's assets at each bar (portfolio strategies only), not along time."""
        return self.group == CROSS_SECTIONAL

    @property
    def windows(self) -> tuple[int, ...]:
        """Positions of window arguments."""
        return tuple(i for i, k in enumerate(self.kinds) if k == "n")


def _kinds(params: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for p in params:
        if p in ("x", "y", "lo", "hi"):
            out.append("x")
        elif p == "c":
            out.append("c")
        elif p == "k":
            out.append("k")
        else:  # n, m, fast, slow, signal
            out.append("n")
    return tuple(out)


_TABLE: list[tuple[str, str, str, str, str]] = [
    # group, signature, result, warm-up formula, doc
    ("averages", "sma(x, n)", NUM, "n-1", "simple moving average of the last n values"),
    ("averages", "ema(x, n)", NUM, "n-1", "exponential moving average, alpha 2/(n+1), seeded with the SMA of the first n values"),
    ("averages", "wma(x, n)", NUM, "n-1", "linearly weighted moving average, weights 1..n with the newest weighted n"),
    ("averages", "rma(x, n)", NUM, "n-1", "Wilder's moving average, alpha 1/n, seeded with the SMA of the first n values"),
    ("statistics", "stdev(x, n)", NUM, "n-1", "population standard deviation (ddof 0) of the last n values"),
    ("statistics", "zscore(x, n)", NUM, "n-1", "(x - sma(x, n)) / stdev(x, n); NaN when the deviation is 0"),
    ("statistics", "highest(x, n)", NUM, "n-1", "highest of the last n values, the current bar included"),
    ("statistics", "lowest(x, n)", NUM, "n-1", "lowest of the last n values, the current bar included"),
    ("statistics", "sum(x, n)", NUM, "n-1", "sum of the last n values"),
    ("statistics", "percent_rank(x, n)", NUM, "n", "100 x the share of the previous n values that are <= x (0..100)"),
    ("statistics", "slope(x, n)", NUM, "n-1", "least-squares slope of the last n values per bar"),
    ("statistics", "corr(x, y, n)", NUM, "n-1", "Pearson correlation of x and y over the last n bars; NaN when either is constant there"),
    ("statistics", "bars_since_high(x, n)", NUM, "n-1", "bars since the highest of the last n values (0: this bar; ties: the latest)"),
    ("statistics", "bars_since_low(x, n)", NUM, "n-1", "bars since the lowest of the last n values (0: this bar; ties: the latest)"),
    ("change", "change(x, n)", NUM, "n", "x - x[n]"),
    ("change", "roc(x, n)", NUM, "n", "x / x[n] - 1, a fraction (0.05 is +5%); NaN when x[n] is 0"),
    ("oscillators", "rsi(x, n)", NUM, "n", "Wilder's RSI: 100 - 100 / (1 + rma(gains, n) / rma(losses, n)); 100 with no losses, 50 when flat"),
    ("oscillators", "stoch_k(n)", NUM, "n-1", "stochastic %K: 100 (close - lowest low) / (highest high - lowest low) over n bars; NaN for a zero range"),
    ("oscillators", "stoch_d(n, m)", NUM, "n+m-2", "stochastic %D: sma(stoch_k(n), m)"),
    ("oscillators", "williams_r(n)", NUM, "n-1", "Williams %R: -100 (highest high - close) / (highest high - lowest low), -100..0; NaN for a zero range"),
    ("oscillators", "cci(n)", NUM, "n-1", "(tp - sma(tp, n)) / (0.015 mean |tp - sma(tp, n)|), tp = (high + low + close) / 3; NaN when the deviation is 0"),
    ("oscillators", "mfi(n)", NUM, "n", "money flow index: 100 - 100 / (1 + positive / negative flow) over n bars, flow = tp x volume on bars where tp rose / fell; 100 with no negative flow, 50 with neither"),
    ("oscillators", "macd(x, fast, slow)", NUM, "max(fast,slow)-1", "ema(x, fast) - ema(x, slow)"),
    ("oscillators", "macd_signal(x, fast, slow, signal)", NUM, "max(fast,slow)+signal-2", "ema(macd(x, fast, slow), signal)"),
    ("oscillators", "macd_hist(x, fast, slow, signal)", NUM, "max(fast,slow)+signal-2", "macd - macd_signal"),
    ("volatility", "tr()", NUM, "1", "true range: max(high - low, |high - close[1]|, |low - close[1]|); NaN on the first bar"),
    ("volatility", "atr(n)", NUM, "n", "average true range: rma(tr(), n)"),
    ("volatility", "bb_upper(x, n, k)", NUM, "n-1", "upper Bollinger band: sma(x, n) + k stdev(x, n)"),
    ("volatility", "bb_lower(x, n, k)", NUM, "n-1", "lower Bollinger band: sma(x, n) - k stdev(x, n)"),
    ("volatility", "keltner_upper(n, k)", NUM, "n", "upper Keltner channel: ema(close, n) + k atr(n)"),
    ("volatility", "keltner_lower(n, k)", NUM, "n", "lower Keltner channel: ema(close, n) - k atr(n)"),
    ("volume", "obv()", NUM, "0", "on-balance volume: running sum of volume signed by the close's change, from 0"),
    ("volume", "vwap(n)", NUM, "n-1", "sum(tp * volume, n) / sum(volume, n), tp = (high + low + close) / 3; NaN when the volume sum is 0"),
    ("trend", "adx(n)", NUM, "2*n-1", "Wilder's ADX: rma(100 |+DI - -DI| / (+DI + -DI), n) (dx is 0 when both DIs are), 0..100"),
    ("trend", "plus_di(n)", NUM, "n", "Wilder's +DI: 100 rma(+DM, n) / rma(tr(), n), 0..100"),
    ("trend", "minus_di(n)", NUM, "n", "Wilder's -DI: 100 rma(-DM, n) / rma(tr(), n), 0..100"),
    ("math", "abs(x)", NUM, "0", "absolute value"),
    ("math", "log(x)", NUM, "0", "natural logarithm; NaN for x <= 0"),
    ("math", "sqrt(x)", NUM, "0", "square root; NaN for x < 0"),
    ("math", "exp(x)", NUM, "0", "e to the x"),
    ("math", "sign(x)", NUM, "0", "-1, 0 or 1 by the sign of x"),
    ("math", "min(x, y)", NUM, "0", "the smaller of x and y, bar by bar; NaN when either is NaN"),
    ("math", "max(x, y)", NUM, "0", "the larger of x and y, bar by bar; NaN when either is NaN"),
    ("math", "clip(x, lo, hi)", NUM, "0", "min(max(x, lo), hi)"),
    ("math", "if_else(c, x, y)", NUM, "0", "x where the condition c holds, else y"),
    ("events", "cross_above(x, y)", BOOL, "1", "x > y on this bar and x[1] <= y[1]; false when any of the four is NaN"),
    ("events", "cross_below(x, y)", BOOL, "1", "x < y on this bar and x[1] >= y[1]; false when any of the four is NaN"),
    ("events", "bars_since(c)", NUM, "0", "bars since c was last true (0 on a bar where it is); NaN before it first is"),
    # Across the assets that have a value at this bar (NaN: not in the universe that bar, or warming up).
    (CROSS_SECTIONAL, "rank(x)", NUM, "0", "rank of x among the assets at this bar, 1 = lowest, ties share their mean rank"),
    (CROSS_SECTIONAL, "percentile(x)", NUM, "0", "rank(x) / the number of assets with a value at this bar (0..1]"),
    (CROSS_SECTIONAL, "demean(x)", NUM, "0", "x - the mean of x over the assets at this bar"),
    (CROSS_SECTIONAL, "standardize(x)", NUM, "0", "demean(x) / the population deviation (ddof 0) of x over the assets at this bar; NaN when it is 0"),
]


def _build() -> dict[str, Builtin]:
    table = {}
    for group, sig, result, warmup, doc in _TABLE:
        name, _, rest = sig.partition("(")
        params = tuple(p.strip() for p in rest.rstrip(")").split(",") if p.strip())
        table[name] = Builtin(name, params, _kinds(params), result, warmup, group, doc)
    return table


BUILTINS: dict[str, Builtin] = _build()
GROUPS = ("averages", "statistics", "change", "oscillators", "volatility", "volume", "trend", "math", "events",
          CROSS_SECTIONAL)

# Words a strategy may not bind as names.
KEYWORDS = frozenset(
    "strategy param in when and or not true false buy sell short cover "
    "stop_loss take_profit trailing_stop max_hold".split()
)


def lookback(builtin: Builtin, windows: dict[str, float], maximum=max):
    """Leading NaN bars a call adds, given its window argument values by name.

    With int64 arrays of window values and `maximum=np.maximum`, an array: one per variant.
    """
    # The formulas are this module's own constants (+ - * max and window names), never user text.
    if maximum is max:
        windows = {k: int(v) for k, v in windows.items()}
    return eval(_formula(builtin.warmup), {"__builtins__": {}, "max": maximum}, windows)


@functools.lru_cache(maxsize=None)
def _formula(text: str):
    """A warm-up formula compiled once: compiling it on every call cost a sweep's checks half their time."""
    return compile(text, "<warmup>", "eval")


def is_reserved(name: str) -> bool:
    """Keywords, price series and built-in function names cannot be bound."""
    return name in KEYWORDS or name in SERIES or name in BUILTINS
