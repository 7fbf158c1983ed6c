"""Charts as PNG bytes (matplotlib, Agg backend): the search's progress, equity against buy and hold.

Figures have a fixed pixel size (inches x dpi, no tight bounding box), so a report's layout
does not depend on the data. Every function returns the PNG's bytes; the caller writes them.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


PROGRESS_SIZE = (11.0, 3.8)  # inches; x DPI = 1100 x 380 pixels
EQUITY_SIZE = (11.0, 6.0)  # 1100 x 600 pixels
DPI = 100
PERIOD_COLORS = {"train": "#eef3fb", "validation": "#fdf3e3", "test": "#f3e9f7"}
STATUS_TICKS = {"invalid": "#d62728", "duplicate": "#ff7f0e", "error": "#7b3294"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, and no GUI toolkit is ever imported
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    _pyplot().close(fig)
    return buf.getvalue()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR header."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


# --- the search's progress ---------------------------------------------------------------------

def progress_png(records: list[dict[str, Any]], objective: str, buy_hold: float | None = None,
                 null_best: float | None = None) -> bytes:
    """Every iteration's objective: kept and discarded points, the best so far, failures as ticks.

    Invalid, duplicate and error iterations have no objective; they are ticks along the bottom.
    `buy_hold` and `null_best` (the best objective of the null run) are drawn as reference lines.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=PROGRESS_SIZE)
    fig.subplots_adjust(left=0.07, right=0.80, top=0.9, bottom=0.14)
    xs = {s: [] for s in ("keep", "discard")}
    ys = {s: [] for s in ("keep", "discard")}
    ticks: dict[str, list[int]] = {s: [] for s in STATUS_TICKS}
    best_x, best_y, best = [], [], -math.inf
    for r in records:
        v = r.get("objective")
        v = math.nan if v is None else float(v)
        status = r["status"]
        if status in xs and not math.isnan(v):
            xs[status].append(r["iteration"])
            ys[status].append(v)
            if status == "keep" and v > best:
                best = v
        else:
            ticks.setdefault(status if status in STATUS_TICKS else "error", []).append(r["iteration"])
        if best > -math.inf:
            best_x.append(r["iteration"])
            best_y.append(best)
    ax.scatter(xs["discard"], ys["discard"], s=22, facecolors="none", edgecolors="#8c8c8c", label="discarded", zorder=3)
    ax.scatter(xs["keep"], ys["keep"], s=30, color="#2ca02c", label="kept", zorder=4)
    if best_x:
        ax.step(best_x, best_y, where="post", color="#1f4e9c", lw=1.8, label="best so far", zorder=2)
    if buy_hold is not None and not math.isnan(buy_hold):
        ax.axhline(buy_hold, color="#555555", ls="--", lw=1, label="buy and hold")
    if null_best is not None and not math.isnan(null_best):
        ax.axhline(null_best, color="#b22222", ls=":", lw=1.5, label="best on noise (null run)")
    bottom = ax.get_xaxis_transform()  # x in data units, y in axes units
    for status, its in ticks.items():
        if its:
            ax.scatter(its, [0.03] * len(its), marker="|", s=120, color=STATUS_TICKS.get(status, "#7b3294"),
                       transform=bottom, label=f"{status} ({len(its)})", zorder=5, clip_on=False)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
    ax.set_ylabel(objective if len(objective) < 28 else "objective", parse_math=False)
    ax.set_title(f"Search progress: {objective}", fontsize=11, loc="left", parse_math=False)
    ax.grid(alpha=0.3)
    n = len(records)
    ax.set_xlim(-0.5, max(n - 0.5, 1))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _png(fig)


# --- equity against buy and hold ---------------------------------------------------------------

@dataclass
class PeriodCurve:
    """One period's equity (strategy and buy and hold), traded on its own from the initial capital."""

    name: str
    dates: np.ndarray
    equity: np.ndarray
    hold: np.ndarray
    sealed: bool = False


def hold_equity(close: np.ndarray, start: int, stop: int, capital: float) -> np.ndarray:
    """Buy and hold over [start, stop): in at the first close, marked at every close, no costs."""
    return capital * close[start:stop] / close[start]


def result_curves(result, sealed: tuple[str, ...] = ("test",)) -> list[PeriodCurve]:
    """The period curves of a backtest Result (autostrat.backtest), buy and hold beside each."""
    market, capital = result.market, result.settings.backtest.initial_capital
    out = []
    for period, (a, b) in result.spans.items():
        out.append(PeriodCurve(period, market.dates[a:b], np.asarray(result.simulation(period).equity, float),
                               hold_equity(market.close, a, b, capital), period in sealed))
    return out


def _chained(curves: list[PeriodCurve], attr: str) -> list[np.ndarray]:
    """Each period's curve as growth of 1, continued from where the previous period ended."""
    level, out = 1.0, []
    for c in curves:
        x = getattr(c, attr)
        g = level * x / x[0] if len(x) and x[0] > 0 else np.full(len(x), np.nan)
        out.append(g)
        if len(g) and np.isfinite(g[-1]):
            level = g[-1]
    return out


def _log_axis(ax, ratio: float) -> None:
    """A log scale labelled with plain numbers (0.5, 1, 2, 5), not powers of ten."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))
    if ratio < 30:  # within about a decade and a half the minor ticks 2, 3 and 5 get labels too
        def minor(y, _):
            mantissa = y / 10 ** math.floor(math.log10(y))
            return f"{y:g}" if round(mantissa) in (2, 3, 5) and abs(mantissa - round(mantissa)) < 1e-6 else ""
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _drawdown(x: np.ndarray) -> np.ndarray:
    peak = np.maximum.accumulate(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, x / peak - 1.0, 0.0)


def equity_png(curves: list[PeriodCurve], title: str = "") -> bytes:
    """Equity against buy and hold, periods shaded and chained, with the drawdown underneath.

    Each period is traded from flat with the initial capital; the chart chains them (growth of 1,
    each period continuing from the previous one's end) so the line is continuous. Drawdowns are
    measured within each period, as the metrics are.
    """
    plt = _pyplot()
    fig, (ax, dd) = plt.subplots(2, 1, figsize=EQUITY_SIZE, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.08, hspace=0.06)
    strat, hold = _chained(curves, "equity"), _chained(curves, "hold")
    for i, c in enumerate(curves):
        if not len(c.dates):
            continue
        d = c.dates.astype("datetime64[D]").astype("O")
        first, last = d[0], d[-1]
        for a in (ax, dd):
            a.axvspan(first, last, color=PERIOD_COLORS.get(c.name, "#f0f0f0"), zorder=0)
        label = f"{c.name} (sealed)" if c.sealed else c.name
        ax.text(first, 1.01, f" {label}", transform=ax.get_xaxis_transform(), fontsize=9, va="bottom",
                color="#7b3294" if c.sealed else "#333333")
        ax.plot(d, hold[i], color="#8c8c8c", lw=1.1, label="buy and hold" if i == 0 else None, zorder=2)
        ax.plot(d, strat[i], color="#1f4e9c", lw=1.4, label="strategy" if i == 0 else None, zorder=3)
        dd.fill_between(d, _drawdown(c.equity) * 100, 0, color="#c0392b", alpha=0.5, lw=0,
                        label="strategy" if i == 0 else None)
        dd.plot(d, _drawdown(c.hold) * 100, color="#8c8c8c", lw=0.8, label="buy and hold" if i == 0 else None)
    values = np.concatenate([x[np.isfinite(x)] for x in strat + hold]) if curves else np.array([1.0])
    if len(values) and values.min() > 0 and values.max() / values.min() > 4:
        _log_axis(ax, values.max() / values.min())
    ax.set_ylabel("growth of 1")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    if title:
        # Names are the user's or the model's text: drawn as plain text, never as mathtext ($...$).
        ax.set_title(title, fontsize=11, loc="left", pad=16, parse_math=False)
    dd.set_ylabel("drawdown %")
    dd.grid(alpha=0.3)
    return _png(fig)


# --- a portfolio's score and holdings ------------------------------------------------------------

@dataclass
class ScoreCurve:
    """One period of a portfolio: the IC and rank IC at each rebalance, the holdings at each close."""

    name: str
    rebalance_dates: np.ndarray
    ic: np.ndarray
    rank_ic: np.ndarray
    dates: np.ndarray
    holdings: np.ndarray
    sealed: bool = False


def portfolio_png(curves: list[ScoreCurve], title: str = "") -> bytes:
    """The score's IC and rank IC at every rebalance (bars, with their running mean), and the
    number of assets held at every close underneath; periods shaded as on the equity chart."""
    plt = _pyplot()
    fig, (ax, held) = plt.subplots(2, 1, figsize=EQUITY_SIZE, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.08, hspace=0.06)
    for i, c in enumerate(curves):
        if not len(c.dates):
            continue
        d = c.dates.astype("datetime64[D]").astype("O")
        for a in (ax, held):
            a.axvspan(d[0], d[-1], color=PERIOD_COLORS.get(c.name, "#f0f0f0"), zorder=0)
        ax.text(d[0], 1.01, f" {c.name} (sealed)" if c.sealed else f" {c.name}", transform=ax.get_xaxis_transform(),
                fontsize=9, va="bottom", color="#7b3294" if c.sealed else "#333333")
        if len(c.rebalance_dates):
            r = c.rebalance_dates.astype("datetime64[D]").astype("O")
            ax.vlines(r, 0, np.nan_to_num(c.ic), color="#1f4e9c", lw=1.2, label="IC" if i == 0 else None, zorder=2)
            ax.plot(r, c.rank_ic, ".", color="#e67e22", ms=3, label="rank IC" if i == 0 else None, zorder=3)
            finite = np.isfinite(c.ic)
            if finite.any():  # the running mean: what ic_mean reads at the period's end
                running = np.cumsum(np.where(finite, c.ic, 0.0)) / np.maximum(np.cumsum(finite), 1)
                ax.plot(r, np.where(np.cumsum(finite) > 0, running, np.nan), color="#c0392b", lw=1.4,
                        label="IC, mean so far" if i == 0 else None, zorder=4)
        held.step(d, c.holdings, where="post", color="#1f4e9c", lw=1.0)
    ax.axhline(0, color="#555555", lw=0.8)
    ax.set_ylabel("IC at each rebalance")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    if title:
        ax.set_title(title, fontsize=11, loc="left", pad=16, parse_math=False)
    held.set_ylabel("assets held")
    held.grid(alpha=0.3)
    return _png(fig)
