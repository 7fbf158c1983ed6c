"""Engine commands: backtest, bulk, sweep."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import sys
from pathlib import Path

from autostrat.cli.common import (add_data_options, add_split_options, load_data_from_args, output_path,
                                  settings_from_args, streamed_output, write_output)
from autostrat.cli.portfolio_cmd import backtest_portfolio_cmd
from autostrat.data.universe import ACROSS, Universe
from autostrat.errors import EXIT_FINDINGS, EXIT_OK, AutostratError, StrategyError
from autostrat.sim.backtest import ALL_PERIODS, SEARCH_PERIODS, backtest, buy_and_hold, load_strategy
from autostrat.resources import read_text
from autostrat.sim.bulk import DEFAULT_CHUNK, REGISTER_BUDGET
from autostrat.sim.grid import MAX_SWEEP_POINTS, grid_size, outside_ranges, parse_grid
from autostrat.sim.metrics import METRIC_NAMES, format_metric
from autostrat.sim.portfolio_bulk import MAX_CHUNK
from autostrat.sim.portfolio_metrics import PORTFOLIO_METRIC_NAMES

MAX_FILE_LIST_BYTES = 256 << 20  # --files-from: millions of paths; a larger list is not a list of strategies

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


def _objective(args, s, names=METRIC_NAMES) -> str:
    obj = args.objective or s.search.objective
    period, _, metric = obj.partition(".")
    if period not in ("train", "validation") or metric not in names:
        raise AutostratError(f"objective {obj!r}: write PERIOD.METRIC with PERIOD train or validation and "
                             f"METRIC one of {', '.join(names)}")
    return obj


def _print_ranked(best, objective: str, first_cols: list[str]) -> None:
    """The best rows (already ranked by `autostrat.sim.stream.TopRows`) as a table."""
    metric = objective.split(".")[1]
    cols = list(dict.fromkeys(first_cols + [
        f"train.{metric}", f"validation.{metric}", "train.total_return", "validation.total_return",
        "validation.sharpe", "validation.max_drawdown", "validation.num_trades", "validation.rank_ic_tstat",
        "validation.buy_hold_return"]))
    cols = [c for c in cols if c in best.columns]  # portfolio rows have no trade count, others no IC
    if "validation.beats_buy_hold" in best.columns:
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

    rows = [[cell(c, row[c]) for c in cols] for _, row in best.iterrows()]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    print("rank  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    for rank, r in enumerate(rows, 1):
        print(f"{rank:>4}  " + "  ".join(f"{v:>{w}}" for v, w in zip(r, widths)))


def _progress(label: str, unit: str, total: int):
    """A callback per finished batch: one updating line on a terminal, else a line per tenth of the work."""
    tty = sys.stderr.isatty()
    shown = [0]

    def report(batch) -> None:
        done = batch.done
        if tty:  # the line ends at the last batch, though invalid points after it are never reported
            print(f"\r{label}: {done:,}/{total:,} {unit}", end="\n" if done == total or batch.last else "",
                  file=sys.stderr, flush=True)
        elif done == total or done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            print(f"{label}: {done:,}/{total:,} {unit}", file=sys.stderr, flush=True)

    return report


def _stream(args, s, objective: str, make_batches, *, keys: list[str], named: bool, total: int, unit: str):
    """Evaluate `make_batches(data)` here or on the --scheduler, streaming every row to --out (and,
    on a universe, every strategy x market row to --per-asset); the best --top rows are kept.

    On a universe a row is one strategy, each metric aggregated over the markets with --across.
    Returns the `Streamed` result and a label for the data.
    """
    from autostrat.sim.stream import stream_rows

    output_path(args.out, "--out")
    output_path(args.per_asset, "--per-asset")
    data = load_data_from_args(args, s)
    universe = isinstance(data, Universe)
    if args.per_asset and not universe:
        raise AutostratError("--per-asset writes one row per market of a universe; --data names one market")
    across = args.across or s.search.across
    # progress when it helps: many markets, a cluster, or more than a few chunks of work
    show = universe or args.scheduler or total > 10 * _chunk_size(args)
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(streamed_output(args.out, "--out"))
        per_asset = stack.enter_context(streamed_output(args.per_asset, "--per-asset"))
        executor = None
        if args.scheduler:
            from autostrat.sim.cluster import open_executor

            executor = stack.enter_context(open_executor(args.scheduler))
        result = stream_rows(make_batches(data), data, s, objective=objective, top=args.top, named=named, keys=keys,
                             out=out, per_asset=per_asset, across=across, executor=executor,
                             progress=_progress(args.command, unit, total) if show else None)
        if not result.rows:  # raised inside: no output file is left behind
            raise AutostratError("no strategy file checks; nothing to rank" if args.command == "bulk"
                                 else "no valid parameter combination in the grid")
    if args.per_asset:
        print(f"wrote {result.per_asset_rows} rows (strategy x market) to {args.per_asset}")
    if args.out:
        print(f"wrote {result.rows} rows to {args.out}")
    elif result.rows > args.top:
        print(f"note: only the best {args.top} of {result.rows:,} rows are kept; add --out CSV to keep every row",
              file=sys.stderr)
    label = f"{len(data)} markets, {across} across them" if universe else data.name
    return result, label


def _strategy_files(args) -> list[str]:
    """The FILE arguments, then the lines of --files-from (blank lines skipped)."""
    files = [str(f) for f in args.files]
    if args.files_from:
        text = read_text(args.files_from, "file list", max_bytes=MAX_FILE_LIST_BYTES)
        files += [line.strip() for line in text.splitlines() if line.strip()]
    if not files:
        raise AutostratError("no strategy files: give FILE arguments or --files-from LIST")
    return files


def cmd_bulk(args) -> int:
    from autostrat.sim.stream import file_batches

    s = _settings(args)
    files = _strategy_files(args)
    skipped = 0
    kind: list[bool] = []  # the first checked file's: a portfolio strategy or not

    def checked():
        """Each file read and checked as its chunk is reached; a bad one stops the run or is listed."""
        nonlocal skipped
        for i, f in enumerate(files, 1):
            try:
                typed = load_strategy(Path(f), portfolio=True)
                _same_kind(f, typed.portfolio is not None, kind)
            except AutostratError as exc:
                if not args.skip_invalid:
                    raise
                skipped += 1
                text = exc.format() if isinstance(exc, StrategyError) else str(exc)
                print(f"skipped: {text}", file=sys.stderr)
                continue
            yield i, typed, f

    items = checked()
    first = next(items, None)  # its kind decides the run's
    items = itertools.chain([first] if first else [], items)
    if kind and kind[0]:
        objective = _objective(args, s, PORTFOLIO_METRIC_NAMES)
        result, label = _bulk_portfolios(args, s, objective, items, len(files))
    else:
        objective = _objective(args, s)
        result, label = _stream(args, s, objective, lambda data: file_batches(items, _universe(data), _chunk_size(args)),
                                keys=["file", "name"], named=True, total=len(files), unit="files")
    if skipped:
        print(f"skipped {skipped} of {len(files)} files that do not check (listed above)", file=sys.stderr)
    print(f"{result.rows} strategies on {label}; best {len(result.best)} by {objective}:")
    _print_ranked(result.best, objective, ["file"])
    return EXIT_FINDINGS if skipped else EXIT_OK


def _same_kind(path: str, portfolio: bool, kind: list[bool]) -> None:
    """Refuse a file of the other kind than the first one checked (kept in `kind`)."""
    if not kind:
        kind.append(portfolio)
    elif portfolio != kind[0]:
        this, first = ("portfolio", "single-market") if portfolio else ("single-market", "portfolio")
        raise AutostratError(f"{path}: error: a {this} strategy in a bulk run of {first} strategies; "
                             f"evaluate the two kinds in separate runs")


def _bulk_portfolios(args, s, objective: str, items, total: int):
    """Rank portfolio strategies on the universe --data names: one row per strategy, streamed to --out."""
    from types import SimpleNamespace

    from autostrat.sim.portfolio_backtest import as_panel
    from autostrat.sim.portfolio_bulk import evaluate_chunks, portfolio_frame
    from autostrat.sim.stream import TopRows, write_csv

    for flag, given in (("--per-asset", args.per_asset), ("--across", args.across), ("--scheduler", args.scheduler),
                        ("--fill close", args.fill == "close"), ("--indicators period", args.indicators == "period")):
        if given:
            raise AutostratError(f"{flag}: portfolio strategies are ranked on the whole universe, in this process, "
                                 f"filling at the next open with indicators over the whole history; drop {flag}")
    output_path(args.out, "--out")
    panel = as_panel(s.data.spec, s)
    kept, rows = TopRows(objective, args.top), 0
    size = MAX_CHUNK if args.chunk_size is None else args.chunk_size
    progress = _progress("bulk", "files", total) if total > 10 * size else None
    with streamed_output(args.out, "--out") as out:
        for chunk, periods in evaluate_chunks(((t, (i, f)) for i, t, f in items), panel, s, SEARCH_PERIODS, size):
            frame = portfolio_frame(chunk.values, periods, [t.name for t in chunk.typed])
            frame.insert(0, "file", [f for _, f in chunk.records])
            if out is not None:
                write_csv(out, frame, rows == 0)
            rows += len(frame)
            kept.add(frame)
            if progress:
                progress(SimpleNamespace(done=chunk.records[-1][0], last=False))
        if not rows:  # raised inside: no output file is left behind
            raise AutostratError("no strategy file checks; nothing to rank")
    if args.out:
        print(f"wrote {rows} rows to {args.out}")
    elif rows > args.top:
        print(f"note: only the best {args.top} of {rows:,} rows are kept; add --out CSV to keep every row",
              file=sys.stderr)
    return SimpleNamespace(rows=rows, best=kept.best), f"{panel.n_assets} assets, as portfolios"


def _chunk_size(args) -> int:
    return DEFAULT_CHUNK if args.chunk_size is None else args.chunk_size


def _universe(data) -> Universe:
    return data if isinstance(data, Universe) else Universe((data,), data.name)


def cmd_sweep(args) -> int:
    from autostrat.sim.stream import sweep_batches

    s = _settings(args)
    objective = _objective(args, s)
    grid = parse_grid(args.param, args.max_points)
    for line in outside_ranges(Path(args.file), grid):
        print(f"warning: {line}", file=sys.stderr)
    result, label = _stream(args, s, objective,
                            lambda data: sweep_batches(Path(args.file), grid, _universe(data), _chunk_size(args)),
                            keys=list(grid), named=False, total=grid_size(grid), unit="grid points")
    print(f"{result.rows} combinations of {', '.join(grid)} on {label}; best {len(result.best)} by {objective}:")
    _print_ranked(result.best, objective, list(grid))
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
        extra = (" Portfolio strategies (every file a portfolio strategy, --data a universe) are ranked "
                 "one row each, with the portfolio metrics." if name == "bulk" else "")
        p = sub.add_parser(name, help=helptext, description=helptext.capitalize() + ". Identical "
                           "sub-expressions are computed once for the whole batch and strategies are "
                           "simulated in parallel on all cores." + extra)
        if name == "bulk":
            p.add_argument("files", nargs="*", metavar="FILE", help="strategy files (.strat)")
            p.add_argument("--files-from", metavar="LIST", help="also the files named in LIST, one path a line "
                           "('-' reads standard input): for more files than a command line holds")
            p.add_argument("--skip-invalid", action="store_true", help="list every file that does not check "
                           "with its error, rank the rest, and exit 1 (default: stop at the first)")
        else:
            p.add_argument("file", metavar="FILE", help="strategy file with params")
            p.add_argument("--param", action="append", required=True, metavar="NAME=START:STOP:STEP",
                           help="a param's values: START:STOP:STEP (inclusive) or V1,V2,...; repeat per param")
            p.add_argument("--max-points", type=int, default=MAX_SWEEP_POINTS, metavar="N",
                           help=f"refuse a grid of more than N combinations (default {MAX_SWEEP_POINTS:,}; rows are "
                           "streamed, so the limit is time, not memory)")
        add_data_options(p)
        add_split_options(p)
        _add_backtest_options(p)
        p.add_argument("--objective", help="rank by PERIOD.METRIC (default search.objective, validation.total_return)")
        p.add_argument("--top", type=int, default=10, help="rows to print (default 10)")
        p.add_argument("--out", metavar="CSV", help="write every row to a CSV file, as chunks finish (renamed into "
                       "place at the end; without it only the best --top rows are kept)")
        p.add_argument("--chunk-size", type=int, metavar="N",
                       help=f"programs per compiled batch (default {DEFAULT_CHUNK}, {MAX_CHUNK} for portfolio "
                       f"strategies; lowered where a batch's registers would pass {REGISTER_BUDGET >> 20} MiB a "
                       "market). Bigger batches compute the "
                       "sub-expressions their programs share once; smaller ones balance a cluster's workers")
        p.add_argument("--across", choices=ACROSS, help="on a universe: rank by the mean (default search.across), "
                       "median or min of the objective over the markets")
        p.add_argument("--per-asset", metavar="CSV", help="on a universe: also write one row per strategy and market")
        p.add_argument("--scheduler", metavar="ADDRESS", help="run the chunks on a Dask cluster: a scheduler address "
                       "(tcp://HOST:8786) or local:N for N worker processes here (needs the dask extra)")
        p.set_defaults(handler=cmd_bulk if name == "bulk" else cmd_sweep)
