"""Engine commands: backtest, bulk, sweep."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from autostrat.cli.common import (add_data_options, add_split_options, load_data_from_args, output_path,
                                  settings_from_args, write_output)
from autostrat.cli.portfolio_cmd import backtest_portfolio_cmd
from autostrat.data.universe import ACROSS, Universe
from autostrat.errors import EXIT_FINDINGS, EXIT_OK, AutostratError, StrategyError
from autostrat.sim.backtest import ALL_PERIODS, SEARCH_PERIODS, backtest, buy_and_hold, load_strategy
from autostrat.sim.bulk import (MAX_SWEEP_POINTS, across_assets_frame, evaluate_many, outside_ranges, parse_grid,
                                sweep)
from autostrat.sim.metrics import METRIC_NAMES, format_metric

_SHOWN = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "num_trades",
          "win_rate", "profit_factor", "avg_trade_return", "exposure", "turnover", "final_equity")


def fmt_metric(name: str, value) -> str:
    """A metric for a table, as the metric table says (autostrat.sim.metrics.format_metric)."""
    return format_metric(name, value)


def _json_safe(obj):
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _add_backtest_options(p) -> None:
    p.add_argument("--fill", choices=("next_open", "close"), help="order fill: next bar's open (default) or this bar's close")
    p.add_argument("--commission-bps", type=float, help="commission per side in basis points (default 1)")
    p.add_argument("--slippage-bps", type=float, help="slippage per side in basis points (default 1)")
    p.add_argument("--capital", type=float, dest="initial_capital", help="initial capital (default 10000)")
    p.add_argument("--indicators", choices=("history", "period"), help="compute indicators over every earlier "
                   "bar (history, the default) or over each period's bars alone (period)")


def _settings(args):
    s = settings_from_args(args)
    s.override(backtest__fill=args.fill, backtest__commission_bps=args.commission_bps,
               backtest__slippage_bps=args.slippage_bps, backtest__initial_capital=args.initial_capital,
               backtest__indicators=args.indicators)
    return s


def cmd_backtest(args) -> int:
    s = _settings(args)
    output_path(args.plot, "--plot")
    periods = ALL_PERIODS if args.test else SEARCH_PERIODS
    typed = load_strategy(Path(args.file), portfolio=True)
    if typed.portfolio is not None:
        return backtest_portfolio_cmd(args, s, typed, periods)
    market = load_data_from_args(args, s)
    if isinstance(market, Universe):
        return _backtest_universe(args, s, market, periods)
    result = backtest(Path(args.file), market, s, periods=periods)
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    hold = buy_and_hold(market, result.spans, s)
    if args.plot:
        _plot(result, args.plot)
    if args.json:
        print(json.dumps(_json_safe(result.metrics), indent=2))
        return EXIT_OK
    bt = s.backtest
    print(f"{result.name or args.file}")
    print(f"data: {market.name} ({len(market)} bars, {market.dates[0]} .. {market.dates[-1]}); fill {bt.fill}; "
          f"costs {bt.commission_bps:g} + {bt.slippage_bps:g} bps per side; warm-up {result.typed.warmup} bars")
    header = f"{'':<18}" + "".join(f"{(p + ' (sealed)' if p == 'test' else p):>26}" for p in result.spans)
    sub = f"{'':<18}" + "".join(f"{'strategy':>14}{'buy&hold':>12}" for _ in result.spans)
    print(header)
    print(sub)
    for m in _SHOWN:
        row = f"{m:<18}"
        for p in result.spans:
            row += f"{fmt_metric(m, result.metrics[p][m]):>14}{fmt_metric(m, hold[p][m]):>12}"
        print(row)
    if not args.test:
        print("(the test period is sealed: add --test to show it, and know that every look spends it)")
    return EXIT_OK


_UNIVERSE_COLS = (("return", "total_return"), ("buy&hold", "buy_hold_return"), ("sharpe", "sharpe"),
                  ("max_dd", "max_drawdown"), ("trades", "num_trades"))


def _backtest_universe(args, s, universe: Universe, periods) -> int:
    """One row per market and period block, then the mean, median and min and the share beating buy and hold."""
    if args.plot:
        raise AutostratError("--plot draws one market; on a universe, backtest the market you want to see")
    result = backtest(Path(args.file), universe, s, periods=periods)
    summary = result.summary
    if args.json:
        print(json.dumps(_json_safe({"assets": result.metrics, "aggregate": summary}), indent=2))
        return EXIT_OK
    bt = s.backtest
    first = next(iter(result.results.values()))
    print(first.name or args.file)
    print(f"data: {len(universe)} markets; fill {bt.fill}; costs {bt.commission_bps:g} + {bt.slippage_bps:g} bps "
          f"per side; warm-up {first.typed.warmup} bars; each market traded on its own dates")
    shown = [p for p in periods if any(p in m for m in result.metrics.values())]
    width = max([len(n) for n in universe.names] + [14])
    block = 10 * len(_UNIVERSE_COLS)
    print(f"{'':<{width}}" + "".join(f"{(p + ' (sealed)' if p == 'test' else p):>{block + 2}}" for p in shown))
    print(f"{'market':<{width}}" + "".join("  " + "".join(f"{c:>10}" for c, _ in _UNIVERSE_COLS) for _ in shown))

    def line(label: str, metrics_of) -> str:
        out = f"{label:<{width}}"
        for p in shown:
            m = metrics_of(p)
            out += "  " + "".join(f"{(fmt_metric(k, m[k]) if m else '-'):>10}" for _, k in _UNIVERSE_COLS)
        return out

    for name, metrics in result.metrics.items():
        print(line(name, lambda p, metrics=metrics: metrics.get(p)))
    print("-" * (width + len(shown) * (block + 2)))
    for how in ACROSS:
        print(line(how, lambda p, how=how: summary[how].get(p)))
    beats = "".join(f"{_share(summary['beats_buy_hold'].get(p), len(universe)):>{block + 2}}" for p in shown)
    print(f"{'beats buy&hold':<{width}}{beats}")
    if not args.test:
        print("(the test period is sealed: add --test to show it, and know that every look spends it)")
    return EXIT_OK


def _share(value, n: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{round(value * n)}/{n} markets ({value:.0%})"


def _plot(result, path: str) -> None:
    """Equity against buy and hold with the drawdown, periods shaded, as a PNG."""
    from autostrat.report.plots import equity_png, result_curves

    if not str(path).lower().endswith(".png"):
        raise AutostratError(f"--plot {path}: the chart is a PNG image; give a file name ending in .png")
    title = f"{result.name or 'strategy'} on {result.market.name} against buy and hold"
    write_output(Path(path), equity_png(result_curves(result), title), "--plot")
    print(f"plot: {path}", file=sys.stderr)


def _objective(args, s) -> str:
    obj = args.objective or s.search.objective
    period, _, metric = obj.partition(".")
    if period not in ("train", "validation") or metric not in METRIC_NAMES:
        raise AutostratError(f"objective {obj!r}: write PERIOD.METRIC with PERIOD train or validation and "
                             f"METRIC one of {', '.join(METRIC_NAMES)}")
    return obj


def _print_ranked(frame, objective: str, top: int, first_cols: list[str]) -> None:
    metric = objective.split(".")[1]
    ranked = frame.sort_values(objective, ascending=False, na_position="last").head(top)
    cols = list(dict.fromkeys(first_cols + [
        f"train.{metric}", f"validation.{metric}", "train.total_return", "validation.total_return",
        "validation.sharpe", "validation.max_drawdown", "validation.num_trades", "validation.buy_hold_return"]))
    if "validation.beats_buy_hold" in frame.columns:
        cols.append("validation.beats_buy_hold")

    def cell(col, value) -> str:
        if isinstance(value, str):
            return value
        if col in first_cols:
            return f"{value:g}"
        if col.endswith(".beats_buy_hold"):
            return "n/a" if math.isnan(value) else f"{value:.0%}"
        if col.endswith(".num_trades") and value != int(value):
            return f"{value:.1f}"
        return fmt_metric(col.split(".")[-1], value)

    rows = [[cell(c, row[c]) for c in cols] for _, row in ranked.iterrows()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    print("rank  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    for rank, r in enumerate(rows, 1):
        print(f"{rank:>4}  " + "  ".join(f"{v:>{w}}" for v, w in zip(r, widths)))


def _progress(label: str):
    """A chunks-done callback: one updating line on a terminal, else a line per tenth of the work."""
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        if tty:
            print(f"\r{label}: chunks {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif done == total or done % max(1, total // 10) == 0:
            print(f"{label}: chunks {done}/{total}", file=sys.stderr, flush=True)

    return report


def _run_bulk(args, s, work, keys: list[str]):
    """Run `work(data, executor, progress)` here or on the --scheduler; on a universe, write the
    per-asset rows (--per-asset) and return one row per strategy aggregated with --across."""
    output_path(args.out, "--out")
    output_path(args.per_asset, "--per-asset")
    data = load_data_from_args(args, s)
    universe = isinstance(data, Universe)
    if args.per_asset and not universe:
        raise AutostratError("--per-asset writes one row per market of a universe; --data names one market")
    if args.scheduler:
        from autostrat.sim.cluster import open_executor

        with open_executor(args.scheduler) as executor:
            frame = work(data, executor, _progress(args.command))
    else:
        frame = work(data, None, _progress(args.command) if universe else None)
    if not universe:
        return frame, data.name
    if args.per_asset:
        write_output(Path(args.per_asset), frame.to_csv(index=False), "--per-asset")
        print(f"wrote {len(frame)} rows (strategy x market) to {args.per_asset}")
    across = args.across or s.search.across
    label = f"{len(data)} markets, {across} across them"
    return across_assets_frame(frame, across, keys=keys), label


def cmd_bulk(args) -> int:
    s = _settings(args)
    objective = _objective(args, s)
    files, programs, skipped = [], [], 0
    for f in args.files:  # every file is read and checked before any data is loaded
        try:
            programs.append(load_strategy(Path(f)))
        except AutostratError as exc:
            if not args.skip_invalid:
                raise
            skipped += 1
            text = exc.format() if isinstance(exc, StrategyError) else str(exc)
            print(f"skipped: {text}", file=sys.stderr)
            continue
        files.append(str(f))
    if skipped:
        print(f"skipped {skipped} of {len(args.files)} files that do not check (listed above)", file=sys.stderr)
    if not programs:
        raise AutostratError("no strategy file checks; nothing to rank")

    def work(data, executor, progress):
        frame = evaluate_many(programs, data, s, chunk_size=args.chunk_size, executor=executor, progress=progress)
        per = len(frame) // len(files)
        frame.insert(0, "file", [f for f in files for _ in range(per)])
        return frame

    frame, label = _run_bulk(args, s, work, ["file", "name"])
    if args.out:
        write_output(Path(args.out), frame.to_csv(index=False), "--out")
        print(f"wrote {len(frame)} rows to {args.out}")
    print(f"{len(frame)} strategies on {label}; best {min(args.top, len(frame))} by {objective}:")
    _print_ranked(frame, objective, args.top, ["file"])
    return EXIT_FINDINGS if skipped else EXIT_OK


def cmd_sweep(args) -> int:
    s = _settings(args)
    objective = _objective(args, s)
    grid = parse_grid(args.param, args.max_points)
    for line in outside_ranges(Path(args.file), grid):
        print(f"warning: {line}", file=sys.stderr)

    def work(data, executor, progress):
        return sweep(Path(args.file), grid, data, s, chunk_size=args.chunk_size, executor=executor, progress=progress)

    frame, label = _run_bulk(args, s, work, list(grid))
    if args.out:
        write_output(Path(args.out), frame.to_csv(index=False), "--out")
        print(f"wrote {len(frame)} rows to {args.out}")
    print(f"{len(frame)} combinations of {', '.join(grid)} on {label}; best {min(args.top, len(frame))} by {objective}:")
    _print_ranked(frame, objective, args.top, list(grid))
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("backtest", help="backtest one strategy, period by period, against buy and hold",
                       description="Backtest a strategy on train and validation (and the sealed test "
                       "period with --test). Prints a table per period, strategy beside buy and hold, "
                       "or the metrics as JSON.")
    p.add_argument("file", metavar="FILE", help="strategy file (.strat)")
    add_data_options(p)
    add_split_options(p)
    _add_backtest_options(p)
    p.add_argument("--test", action="store_true", help="also show the sealed test period")
    p.add_argument("--json", action="store_true", help="print the metrics per period as JSON")
    p.add_argument("--plot", metavar="PNG", help="also draw equity against buy and hold, with the drawdown, to a PNG")
    p.set_defaults(handler=cmd_backtest)

    for name, helptext in (("bulk", "evaluate many strategy files at once and rank them"),
                           ("sweep", "evaluate a grid of a strategy's params in bulk")):
        p = sub.add_parser(name, help=helptext, description=helptext.capitalize() + ". Identical "
                           "sub-expressions are computed once for the whole batch and strategies are "
                           "simulated in parallel on all cores.")
        if name == "bulk":
            p.add_argument("files", nargs="+", metavar="FILE", help="strategy files (.strat)")
            p.add_argument("--skip-invalid", action="store_true", help="list every file that does not check "
                           "with its error, rank the rest, and exit 1 (default: stop at the first)")
        else:
            p.add_argument("file", metavar="FILE", help="strategy file with params")
            p.add_argument("--param", action="append", required=True, metavar="NAME=START:STOP:STEP",
                           help="a param's values: START:STOP:STEP (inclusive) or V1,V2,...; repeat per param")
            p.add_argument("--max-points", type=int, default=MAX_SWEEP_POINTS, metavar="N",
                           help=f"refuse a grid of more than N combinations (default {MAX_SWEEP_POINTS:,})")
        add_data_options(p)
        add_split_options(p)
        _add_backtest_options(p)
        p.add_argument("--objective", help="rank by PERIOD.METRIC (default search.objective, validation.total_return)")
        p.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
        p.add_argument("--out", metavar="CSV", help="write every row to a CSV file")
        p.add_argument("--chunk-size", type=int, default=256, help="programs per compiled batch (bounds memory)")
        p.add_argument("--across", choices=ACROSS, help="on a universe: rank by the mean (default search.across), "
                       "median or min of the objective over the markets")
        p.add_argument("--per-asset", metavar="CSV", help="on a universe: also write one row per strategy and market")
        p.add_argument("--scheduler", metavar="ADDRESS", help="run the chunks on a Dask cluster: a scheduler address "
                       "(tcp://HOST:8786) or local:N for N worker processes here (needs the dask extra)")
        p.set_defaults(handler=cmd_bulk if name == "bulk" else cmd_sweep)
