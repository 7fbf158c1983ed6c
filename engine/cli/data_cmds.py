"""`autostrat prepare` (download a ticker or import a CSV) and `autostrat data` (describe a market)."""

from __future__ import annotations

import argparse
import json
import sys

from autostrat.cli.common import add_data_options, add_split_options, load_data_from_args, settings_from_args
from autostrat.data.prepare import meta_path, prepare_csv, prepare_ticker
from autostrat.data.splits import describe
from autostrat.data.universe import Universe
from autostrat.errors import EXIT_USAGE, AutostratError, ConfigError

_PREPARE_HELP = """\
Store market data in the data folder, validated and in one format (Date,Open,High,Low,Close,Volume),
with NAME.meta.json beside it (source, rows, dates, sha256, fetch time).

  autostrat prepare --ticker SPY                  download adjusted daily bars from Yahoo Finance
  autostrat prepare --tickers SPY,QQQ,IWM         download several; one failure does not stop the rest
  autostrat prepare --csv prices.csv --name gold  import your own OHLCV file

Afterwards use the name as a data spec: --data SPY, --data gold, or a universe --data SPY,QQQ,IWM.
"""

_DATA_HELP = """\
Load a market and print its rows, date range, source, sha256 and the train / validation / test
periods the split settings give it (dates and bar counts), as `key: value` lines, and how often
runs have opened that test period (`autostrat sealed SPEC` lists the openings).
"""


def register(sub) -> None:
    """Add the `prepare` and `data` subcommands."""
    prepare = sub.add_parser(
        "prepare",
        help="download a ticker or import a CSV into the data folder",
        description=_PREPARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = prepare.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--ticker", metavar="SYMBOL", help="Yahoo Finance symbol to download, e.g. SPY (needs the network)"
    )
    source.add_argument(
        "--tickers", metavar="LIST", help="several symbols, comma-separated (SPY,QQQ,IWM), or universe:FILE"
    )
    source.add_argument("--csv", metavar="PATH", help="an OHLCV CSV file to validate and import (needs --name)")
    prepare.add_argument("--name", metavar="NAME", help="name to store a --csv file under: <data-dir>/NAME.csv")
    prepare.add_argument(
        "--start", metavar="DATE", help="first date to download (default: data.start, else 2000-01-01)"
    )
    prepare.add_argument("--end", metavar="DATE", help="download up to this date, not included (default: today)")
    add_data_options(prepare, spec=False)
    prepare.set_defaults(handler=run_prepare)

    data = sub.add_parser(
        "data",
        help="show a market's rows, dates, split periods and hash",
        description=_DATA_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data.add_argument(
        "spec",
        nargs="?",
        metavar="SPEC",
        help="a ticker (SPY), a CSV path, synthetic[:seed=N,bars=N,start=DATE], or a universe "
        "(SPY,QQQ or universe:FILE) (default: data.spec, else synthetic)",
    )
    add_data_options(data, spec=False)
    add_split_options(data)
    data.set_defaults(handler=run_data)


def run_prepare(args: argparse.Namespace) -> int:
    """Write <data-dir>/NAME.csv and NAME.meta.json; print where and the metadata."""
    settings = settings_from_args(args)
    data_dir = settings.data.data_dir
    if args.csv is not None:
        if not args.name:
            raise ConfigError(f"prepare --csv needs --name NAME (the file is stored as {data_dir}/NAME.csv)")
        if args.start or args.end:
            raise ConfigError("prepare: --start and --end apply to --ticker only")
        path = prepare_csv(args.csv, args.name, data_dir=data_dir)
    else:
        if args.name:
            raise ConfigError(f"prepare: --name applies to --csv only; a ticker is stored as {data_dir}/TICKER.csv")
        start = _date(args.start or settings.data.start, "--start")
        end = _date(args.end, "--end") if args.end else None
        if args.tickers is not None:
            return _prepare_many(args.tickers, start, end, data_dir)
        path = prepare_ticker(args.ticker, start=start, end=end, data_dir=data_dir)
    meta_file = meta_path(path)
    print(f"wrote: {path}")
    print(f"meta: {meta_file}")
    for key, value in json.loads(meta_file.read_text(encoding="utf-8")).items():
        if value is not None:
            print(f"{key}: {value}")
    return 0


def _prepare_many(text: str, start: str, end: str | None, data_dir: str) -> int:
    """Download each ticker in turn with a progress line; a summary of what failed and why at the end."""
    from autostrat.data.universe import universe_specs

    tickers = list(dict.fromkeys(t.upper() for t in universe_specs(text)))
    if not tickers:
        raise ConfigError("prepare --tickers: list at least one symbol, e.g. --tickers SPY,QQQ,IWM")
    done, failed = [], []
    tty = sys.stderr.isatty()
    for i, ticker in enumerate(tickers, 1):
        try:
            path = prepare_ticker(ticker, start=start, end=end, data_dir=data_dir)
            done.append(ticker)
            state = f"ok ({path})"
        except AutostratError as exc:
            failed.append((ticker, str(exc)))
            state = "FAILED"
        bar = "#" * (20 * i // len(tickers))
        line = f"[{bar:<20}] {i}/{len(tickers)} {ticker}: {state}"
        print(("\r" + line.ljust(100)) if tty else line, end="" if tty and i < len(tickers) else "\n",
              file=sys.stderr, flush=True)
    print(f"prepared {len(done)} of {len(tickers)} into {data_dir}/" + (f": {','.join(done)}" if done else ""))
    for ticker, why in failed:
        print(f"failed {ticker}: {why}")
    if done:
        print(f"use them as: --data {','.join(done)}")
    return EXIT_USAGE if failed else 0


def run_data(args: argparse.Namespace) -> int:
    """Print the `describe` report of the market (or of each market of the universe) the spec names."""
    settings = settings_from_args(args, extra={"spec": "data.spec"})
    data = load_data_from_args(args, settings)
    if isinstance(data, Universe):
        print(f"universe: {len(data)} markets")
        for market in data:
            print()
            print(describe(market, settings.split))
        print()
    else:
        print(describe(data, settings.split))
    print(sealed_line(data, settings))
    return 0


def sealed_line(data, settings) -> str:
    """`sealed_test: ...`: how often runs opened the data's test period (the ledger)."""
    from autostrat.honest.ledger import counts_line, lookup
    from autostrat.honest.sealed import sealed_period

    period = sealed_period(data, settings)
    if period is None:
        return "sealed_test: none (no test period)"
    return f"sealed_test: {counts_line(lookup(settings.honest.ledger_dir, data.name, period))}"


def _date(value: str, flag: str) -> str:
    import pandas as pd
    try:
        return str(pd.Timestamp(str(value).strip()).date())
    except (ValueError, TypeError):
        raise ConfigError(f"{flag}: {value!r} is not a date; write YYYY-MM-DD") from None
