"""`autostrat report RUN`: the run's honest-evaluation report as one self-contained HTML file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autostrat.cli.common import add_config_option
from autostrat.config import Settings
from autostrat.errors import EXIT_OK, AutostratError
from autostrat.honest.backtest_overfitting import MAX_SPLITS

_HELP = """\
Write runs/RUN/report.html: the search's progress, the best strategy's equity against buy and hold
(the sealed test period included: it is evaluated here for the final top strategies if the run's
end did not do it yet, and the opening is logged in sealed.json), metrics per period, PSR, DSR,
PBO and the minimum track record with what each means for this run, red flags, the null run (if
`evolve --null` made one), the robustness of the best strategy, its strategy card and the lineage
of the kept strategies. Also writes report.json and prints the numbers as key: value lines.
"""


def register(sub) -> None:
    """Add the `report` subcommand."""
    p = sub.add_parser("report", help="write a run's report (report.html): statistics, plots, red flags",
                       description=_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="a run name under the runs folder, or a run folder's path")
    p.add_argument("--runs-dir", metavar="DIR", help="folder of run folders (default: search.runs_dir, else runs)")
    p.add_argument("--pbo-splits", type=int, metavar="S", help="blocks of PBO's CSCV, even (default search.pbo_splits, 16)")
    p.add_argument("--no-robustness", action="store_true", help="skip the jitter, cost and fill checks")
    add_config_option(p)
    p.set_defaults(handler=run_report)


def find_run(name: str, runs_dir: str | Path) -> Path:
    """The folder of run `name`: a path to a run folder, or a name under runs_dir."""
    direct = Path(name)
    if (direct / "config.json").is_file():
        return direct
    under = Path(runs_dir) / name
    if (under / "config.json").is_file():
        return under
    raise AutostratError(f"no run {name!r}: neither {direct} nor {under} holds a config.json; "
                         "give a run name under --runs-dir or the path of a run folder")


def run_report(args: argparse.Namespace) -> int:
    """Write the report; print its numbers and its path."""
    from autostrat.report.build import summary_lines, write_report

    settings = Settings.load(getattr(args, "config", None))
    path = find_run(args.run, args.runs_dir or settings.search.runs_dir)
    if args.pbo_splits is not None and not (2 <= args.pbo_splits <= MAX_SPLITS and args.pbo_splits % 2 == 0):
        raise AutostratError(f"--pbo-splits {args.pbo_splits}: use an even number from 2 to {MAX_SPLITS} (e.g. 16)")
    html_path, report = write_report(path, by="report", with_robustness=not args.no_robustness,
                                     n_splits=args.pbo_splits)
    for notice in report.get("notices", []):
        print(f"warning: {notice}", file=sys.stderr)
    for line in summary_lines(report):
        print(line)
    print(f"report: {html_path}", flush=True)
    return EXIT_OK
