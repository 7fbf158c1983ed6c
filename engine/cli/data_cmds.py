"""`autostrat prepare` (download a ticker or import a CSV) and `autostrat data` (describe a market)."""

from __future__ import annotations

import argparse
import json

import pandas as pd

from autostrat.cli.common import add_data_options, add_split_options, load_market_from_args, settings_from_args
from autostrat.data import describe, meta_path, prepare_csv, prepare_ticker
from autostrat.errors import ConfigError

_PREPARE_HELP = """\
Store market data in the data folder, validated and in one format (Date,Open,High,Low,Close,Volume),
with NAME.meta.json beside it (source, rows, dates, sha256, fetch time).

  autostrat prepare --ticker SPY                  download adjusted daily bars from Yahoo Finance
  autostrat prepare --csv prices.csv --name gold  import your own OHLCV file

Afterwards use the name as a data spec: --data SPY, --data gold.
"""

_DATA_HELP = """\
Load a market and print its rows, date range, source, sha256 and the train / validation / test
periods the split settings give it (dates and bar counts), as `key: value` lines.
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
        help="a ticker (SPY), a CSV path, or synthetic[:seed=N,bars=N,start=DATE] (default: data.spec, else synthetic)",
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
        path = prepare_ticker(args.ticker, start=start, end=end, data_dir=data_dir)
    meta_file = meta_path(path)
    print(f"wrote: {path}")
    print(f"meta: {meta_file}")
    for key, value in json.loads(meta_file.read_text(encoding="utf-8")).items():
        if value is not None:
            print(f"{key}: {value}")
    return 0


def run_data(args: argparse.Namespace) -> int:
    """Print the `describe` report of the market the spec (or the settings) names."""
    settings = settings_from_args(args, extra={"spec": "data.spec"})
    market = load_market_from_args(args, settings)
    print(describe(market, settings.split))
    return 0


def _date(value: str, flag: str) -> str:
    try:
        return str(pd.Timestamp(str(value).strip()).date())
    except (ValueError, TypeError):
        raise ConfigError(f"{flag}: {value!r} is not a date; write YYYY-MM-DD") from None
