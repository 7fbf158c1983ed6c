"""A strategy card: what a strategy does, in plain English, generated from its AST.

The card is written by these rules, not by a language model, so it says exactly what the file
says: its rules, its named series, its params, its exits, its warm-up, and how often it trades
(from its backtest metrics, when given). Calls of a built-in with plain arguments read as a
phrase ("the 20-bar simple moving average of the close"); arithmetic stays a formula, since a
formula is clearer than its paraphrase.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autostrat.lang import nodes as N
from autostrat.lang.check import TypedProgram
from autostrat.lang.fmt import expr as formula
from autostrat.lang.fmt import number
from autostrat.lang.registry import BUILTINS, SERIES
from autostrat.sim.metrics import TRADING_DAYS

# One phrase per built-in; {name} is the argument of that name in the registry's signature.
PHRASES = {
    "sma": "the {n}-bar simple moving average of {x}",
    "ema": "the {n}-bar exponential moving average of {x}",
    "wma": "the {n}-bar weighted moving average of {x}",
    "rma": "the {n}-bar Wilder moving average of {x}",
    "stdev": "the {n}-bar standard deviation of {x}",
    "zscore": "the {n}-bar z-score of {x}",
    "highest": "the highest value of {x} over the last {n} bars",
    "lowest": "the lowest value of {x} over the last {n} bars",
    "sum": "the sum of {x} over the last {n} bars",
    "percent_rank": "the percent rank (0-100) of {x} among the previous {n} bars",
    "slope": "the {n}-bar regression slope of {x}",
    "corr": "the {n}-bar correlation of {x} with {y}",
    "bars_since_high": "the bars since the {n}-bar high of {x}",
    "bars_since_low": "the bars since the {n}-bar low of {x}",
    "change": "the {n}-bar change of {x}",
    "roc": "the {n}-bar rate of change of {x}",
    "rsi": "the {n}-bar RSI of {x}",
    "stoch_k": "the {n}-bar stochastic %K",
    "stoch_d": "the {n}-bar stochastic %D smoothed over {m} bars",
    "williams_r": "the {n}-bar Williams %R",
    "cci": "the {n}-bar commodity channel index",
    "mfi": "the {n}-bar money flow index",
    "macd": "the MACD ({fast}/{slow}) of {x}",
    "macd_signal": "the MACD signal line ({fast}/{slow}/{signal}) of {x}",
    "macd_hist": "the MACD histogram ({fast}/{slow}/{signal}) of {x}",
    "tr": "the true range",
    "atr": "the {n}-bar average true range",
    "bb_upper": "the upper Bollinger band of {x} ({n} bars, {k} deviations)",
    "bb_lower": "the lower Bollinger band of {x} ({n} bars, {k} deviations)",
    "keltner_upper": "the upper Keltner channel ({n} bars, {k} ATRs)",
    "keltner_lower": "the lower Keltner channel ({n} bars, {k} ATRs)",
    "obv": "the on-balance volume",
    "vwap": "the {n}-bar volume-weighted average price",
    "adx": "the {n}-bar ADX",
    "plus_di": "the {n}-bar +DI",
    "minus_di": "the {n}-bar -DI",
    "abs": "the absolute value of {x}",
    "log": "the natural logarithm of {x}",
    "sqrt": "the square root of {x}",
    "exp": "e to the power of {x}",
    "sign": "the sign of {x}",
    "min": "the smaller of {x} and {y}",
    "max": "the larger of {x} and {y}",
    "clip": "{x} clipped to between {lo} and {hi}",
    "if_else": "{x} where {c}, else {y}",
    "cross_above": "{x} crosses above {y}",
    "cross_below": "{x} crosses below {y}",
    "bars_since": "the bars since {c} was last true",
    "rank": "the rank of {x} among the universe's assets",
    "percentile": "the percentile of {x} among the universe's assets",
    "demean": "{x} less its mean over the universe's assets",
    "standardize": "{x} standardized across the universe's assets",
}
COMPARE = {">": "is above", "<": "is below", ">=": "is at or above", "<=": "is at or below",
           "==": "equals", "!=": "differs from"}
RULE_LABELS = {"buy": "Enter long when", "sell": "Exit long when", "short": "Enter short when",
               "cover": "Exit short when"}


@dataclass
class Card:
    """A strategy card's content; `card_text` and the HTML report render it."""

    name: str
    hypothesis: str
    direction: str
    rules: list[tuple[str, str]] = field(default_factory=list)  # (label, text)
    definitions: list[tuple[str, str]] = field(default_factory=list)  # (name, text)
    parameters: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, value, range, used by
    exits: list[str] = field(default_factory=list)
    warmup: str = ""
    activity: list[str] = field(default_factory=list)


class _Speaker:
    def __init__(self, typed: TypedProgram):
        self.params = typed.params

    def simple(self, e: N.Expr) -> bool:
        """True when an expression reads well as a phrase (no arithmetic inside)."""
        if isinstance(e, (N.Num, N.Bool, N.Name)):
            return True
        if isinstance(e, N.Lag):
            return self.simple(e.expr)
        if isinstance(e, N.Unary):
            return e.op == "-" and isinstance(e.operand, (N.Num, N.Name))
        if isinstance(e, N.Call):
            return all(self.simple(a) for a in e.args) and e.func in PHRASES
        if isinstance(e, N.Binary):
            return e.op not in ("+", "-", "*", "/") and self.simple(e.left) and self.simple(e.right)
        return False

    def value(self, e: N.Expr) -> str:
        """A number series or a condition as words (or as a formula when it holds arithmetic)."""
        if not self.simple(e):
            return f"`{formula(e)}`"
        if isinstance(e, N.Num):
            return number(e)
        if isinstance(e, N.Bool):
            return "always" if e.value else "never"
        if isinstance(e, N.Name):
            if e.id in SERIES:
                return f"the {e.id}"
            if e.id in self.params:
                return f"{e.id} ({number(self.params[e.id].value)})"
            return e.id
        if isinstance(e, N.Lag):
            inner = self.value(e.expr)
            return inner if e.n == 0 else f"{inner}, as of {e.n} bar{'s' if e.n != 1 else ''} ago"
        if isinstance(e, N.Unary):
            return f"-{self.value(e.operand)}"
        if isinstance(e, N.Call):
            spec = BUILTINS[e.func]
            words = {p: self.arg(a, kind) for p, a, kind in zip(spec.params, e.args, spec.kinds)}
            return PHRASES[e.func].format(**words)
        return self.condition(e)  # a comparison or logic without arithmetic

    def arg(self, e: N.Expr, kind: str) -> str:
        if kind in ("n", "k") and isinstance(e, N.Name) and e.id in self.params:
            return number(self.params[e.id].value)  # the param is named in the parameters table
        return self.value(e)

    def condition(self, e: N.Expr) -> str:
        """A boolean expression as words: comparisons read "is above", logic joins with and / or."""
        if isinstance(e, N.Binary) and e.op in ("and", "or"):
            parts = []
            for side in (e.left, e.right):
                text = self.condition(side)
                if isinstance(side, N.Binary) and side.op in ("and", "or") and side.op != e.op:
                    text = f"({text})"
                parts.append(text)
            return f" {e.op} ".join(parts)
        if isinstance(e, N.Unary) and e.op == "not":
            return f"not ({self.condition(e.operand)})"
        if isinstance(e, N.Binary) and e.op in COMPARE:
            return f"{self.value(e.left)} {COMPARE[e.op]} {self.value(e.right)}"
        if isinstance(e, N.Name) and e.id not in SERIES and e.id not in self.params:
            return e.id
        return self.value(e)


def _uses(e: N.Expr, name: str) -> bool:
    return any(isinstance(n, N.Name) and n.id == name for n in N.walk(e))


def _exit_text(kind: str, value: float, short: bool) -> str:
    side = " (for a short, the mirror image)" if short else ""
    if kind == "stop_loss":
        return f"Stop loss: exit when the price falls {value * 100:.4g}% below the entry price{side}."
    if kind == "take_profit":
        return f"Take profit: exit when the price rises {value * 100:.4g}% above the entry price{side}."
    if kind == "trailing_stop":
        return (f"Trailing stop: exit when the price falls {value * 100:.4g}% below the highest high since "
                f"the entry{side}.")
    return f"Time exit: close the position {int(value)} bars after the entry."


def card(typed: TypedProgram, metrics: dict[str, dict[str, float]] | None = None,
         bars: dict[str, int] | None = None,
         by_market: dict[str, dict[str, dict[str, float]]] | None = None) -> Card:
    """The card of a checked strategy; `metrics` ({period: {...}}) and `bars` ({period: n}) add its activity.

    On a universe `by_market` ({market: {period: metrics}}) gives every market's trades and `bars`
    the bars summed over the markets: activity is then counted in market-years.
    """
    p = typed.program
    speak = _Speaker(typed)
    comments = [c.lstrip("#").strip() for c in p.header_comments if c.strip()]
    said = [c.partition(":")[2].strip() for c in comments if c.lower().startswith("hypothesis:")]
    hypothesis = " ".join(said or [c for c in comments if not c.lower().startswith("learned:")])
    short = "short" in typed.rules
    c = Card(name=p.name or "(unnamed strategy)", hypothesis=hypothesis,
             direction="long and short" if short else "long only (never short)")
    for kind in ("buy", "sell", "short", "cover"):
        if kind in typed.rules:
            c.rules.append((RULE_LABELS[kind], speak.condition(typed.rules[kind])))
    for name, e in typed.bindings.items():
        c.definitions.append((name, speak.condition(e) if typed.types.get(name) == "boolean" else speak.value(e)))
    for name, param in typed.params.items():
        rng = f"{number(param.lo)}..{number(param.hi)}" if param.lo is not None and param.hi is not None else ""
        users = [n for n, e in typed.bindings.items() if _uses(e, name)]
        users += [f"the {k} rule" for k, e in typed.rules.items() if _uses(e, name)]
        users += [s.kind for s in p.statements if isinstance(s, N.Exit) and isinstance(s.value, N.Name)
                  and s.value.id == name]
        c.parameters.append((name, number(param.value), rng, ", ".join(users) or "(unused)"))
    for kind in ("stop_loss", "take_profit", "trailing_stop", "max_hold"):
        if kind in typed.exits:
            c.exits.append(_exit_text(kind, typed.exits[kind], short))
    c.exits.append("At the end of each period an open position is closed at the last close.")
    years = typed.warmup / TRADING_DAYS
    c.warmup = (f"{typed.warmup} bars (about {years:.1f} years): no rule can fire before every indicator "
                "has a value." if typed.warmup else "none: the rules can fire from the first bar.")
    if by_market and bars:
        c.activity = _universe_activity(by_market, bars)
    elif metrics and bars:
        total_trades = total_years = 0.0
        for period in ("train", "validation", "test"):
            if period in metrics and bars.get(period):
                y = bars[period] / TRADING_DAYS
                m = metrics[period]
                total_trades += m["num_trades"]
                total_years += y
                c.activity.append(f"{period}: {m['num_trades']:.0f} trades, {m['num_trades'] / y:.1f} a year, "
                                  f"in the market {m['exposure']:.0%} of the days")
        if total_years:
            c.activity.insert(0, f"{total_trades / total_years:.1f} trades a year over "
                                 f"{total_years:.1f} years")
    return c


def _universe_activity(by_market: dict[str, dict[str, dict[str, float]]], bars: dict[str, int]) -> list[str]:
    """Trades summed over the markets, per market-year (a market traded for a year): five markets of 27
    years are 135 market-years, not a 135-year record."""
    lines, total_trades, total_years = [], 0.0, 0.0
    for period in ("train", "validation", "test"):
        rows = [m[period] for m in by_market.values() if period in m]
        if not rows or not bars.get(period):
            continue
        trades, years = sum(m["num_trades"] for m in rows), bars[period] / TRADING_DAYS
        total_trades, total_years = total_trades + trades, total_years + years
        exposure = sum(m["exposure"] for m in rows) / len(rows)
        lines.append(f"{period}: {trades:.0f} trades over {len(rows)} markets, {trades / years:.1f} a year per "
                     f"market, in the market {exposure:.0%} of the days (mean over the markets)")
    if total_years:
        lines.insert(0, f"{total_trades / total_years:.1f} trades a year per market over {total_years:.1f} "
                        f"market-years ({len(by_market)} markets)")
    return lines


def rules_heading(c: Card) -> str:
    """What the card's rules are: a single market's rules, or a portfolio's statements."""
    if any(label.startswith("hold") for label, _ in c.rules):
        return "Portfolio (ranked at each rebalance close, traded at the next open)"
    return "Rules (checked at each close)"


def card_text(c: Card) -> str:
    """The card as plain text."""
    lines = [f"Strategy: {c.name}"]
    if c.hypothesis:
        lines.append(f"Hypothesis: {c.hypothesis}")
    lines.append(f"Direction: {c.direction}")
    lines += ["", f"{rules_heading(c)}:"] + [f"  {label} {text}." for label, text in c.rules]
    if c.definitions:
        lines += ["", "Where:"] + [f"  {name} = {text}" for name, text in c.definitions]
    if c.parameters:
        lines += ["", "Parameters:"] + [f"  {n} = {v}" + (f" (range {r})" if r else "") + f", used by {u}"
                                        for n, v, r, u in c.parameters]
    lines += ["", "Exits:"] + [f"  {e}" for e in c.exits]
    lines += ["", f"Warm-up: {c.warmup}"]
    if c.activity:
        lines += ["", "Activity:"] + [f"  {a}" for a in c.activity]
    return "\n".join(lines) + "\n"
