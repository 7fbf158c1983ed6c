"""`autostrat sealed SPEC`: every opening of a dataset's sealed test period, across runs (the ledger)."""

from __future__ import annotations

import argparse
import math

from autostrat.cli.common import add_data_options, add_split_options, load_data_from_args, settings_from_args
from autostrat.errors import EXIT_OK

_HELP = """\
List every time a run opened this data's sealed test period (autostrat.honest.ledger): when, by
which run, how many strategies, and the best test result of each look, then the counts. The ledger
is kept in the user's data folder (honest.ledger_dir, default $XDG_DATA_HOME/autostrat/sealed);
openings count when their test period shares a day with this one.

There is no --forget: a look cannot be undone. The honest way out is a later test start
(--test-start) after every day already looked at, once the data reaches past it.
"""


def register(sub) -> None:
    """Add the `sealed` subcommand."""
    p = sub.add_parser("sealed", help="list every opening of a dataset's sealed test period, across runs",
                       description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="a ticker, a CSV path, synthetic[:...] or a universe (default: data.spec, else synthetic)")
    add_data_options(p, spec=False)
    add_split_options(p)
    p.set_defaults(handler=run_sealed)


def run_sealed(args: argparse.Namespace) -> int:
    """Print the openings, one per line, then the counts and the way out."""
    from autostrat.honest.ledger import best_test, counts_line, ledger_entries, overlaps, summarize, way_out
    from autostrat.data.panel_spec import is_panel_spec, load_panel
    from autostrat.honest.sealed import sealed_data, sealed_period

    settings = settings_from_args(args, extra={"spec": "data.spec"})
    if is_panel_spec(settings.data.spec):  # a portfolio run's universe: its looks are kept under its index
        data = sealed_data(load_panel(settings.data.spec, settings.data))
    else:
        data = load_data_from_args(args, settings)
    period = sealed_period(data, settings)
    if period is None:
        print(f"data: {data.name}")
        print("test_period: none (the split has no test period, so there is nothing sealed to open)")
        return EXIT_OK
    path, entries, unreadable = ledger_entries(settings.honest.ledger_dir, data.name)
    summary = summarize(entries, period, unreadable)
    print(f"data: {data.name} (sha256 {data.sha256[:16]}...)")
    print(f"test_period: {period['first']} to {period['last']}, {period['bars']} bars")
    print(f"ledger: {path}")
    if unreadable:
        print(f"warning: {unreadable}; the next opening moves it aside and is marked count unknown")
    for e in (e for e in entries if overlaps(period, e["test_period"])):
        best = best_test(e) or {}
        ret, sharpe = best.get("total_return"), best.get("sharpe")
        result = (f"best test return {ret:.2%}, Sharpe {sharpe:.2f}" if _finite(ret) and _finite(sharpe)
                  else "no test result")
        other = "" if e.get("sha256") == data.sha256 else f", other data (sha256 {str(e.get('sha256'))[:16]}...)"
        print(f"opening: {e['opened_at']} run {e['run']} by {e['by']}, {len(e.get('strategies', []))} "
              f"strategies, test {e['test_period']['first']} to {e['test_period']['last']}{other}; {result}"
              + ("; count unknown before it" if e.get("count_unknown") else ""))
    print(f"sealed_test: {counts_line(summary)}")
    print(way_out(summary))
    return EXIT_OK


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
