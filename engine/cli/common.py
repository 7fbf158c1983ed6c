"""Options and set-up that many commands share: where the data comes from, the split, the settings.

Settings resolve in one order everywhere: defaults, then autostrat.toml (or --config FILE), then
the flags given on the command line. A flag that was not given is None and changes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from autostrat.config import Settings
from autostrat.data.load import load_data, load_market
from autostrat.data.market import Market
from autostrat.data.universe import Universe
from autostrat.errors import AutostratError

# argparse destination -> the setting it overrides. Commands may pass more with `extra`.
FLAG_SETTINGS = {
    "data": "data.spec",
    "data_dir": "data.data_dir",
    "train_end": "split.train_end",
    "validation_start": "split.validation_start",
    "validation_end": "split.validation_end",
    "test_start": "split.test_start",
    "two_way": "split.two_way",
}


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """--config FILE: the settings file to read instead of ./autostrat.toml."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file to read (default: autostrat.toml in the working directory, if any)",
    )


def add_data_options(parser: argparse.ArgumentParser, spec: bool = True) -> None:
    """--data SPEC, --data-dir DIR and --config FILE (`spec=False` leaves out --data)."""
    group = parser.add_argument_group("data")
    if spec:
        group.add_argument(
            "--data",
            metavar="SPEC",
            help="market to use: a ticker (SPY, read from the data folder or downloaded), a CSV path, "
            "or synthetic[:seed=N,bars=N,start=DATE]; a universe of several: SPY,QQQ,IWM, "
            "synthetic:seed=1..20 or universe:FILE (default: data.spec, else synthetic)",
        )
    group.add_argument(
        "--data-dir", metavar="DIR", help="folder of prepared data files (default: data.data_dir, else data)"
    )
    add_config_option(group)


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """--train-end, --validation-start, --validation-end, --test-start (dates) and --two-way."""
    group = parser.add_argument_group("split (dates YYYY-MM-DD, inclusive)")
    group.add_argument("--train-end", metavar="DATE", help="last day of the train period (default 2018-12-31)")
    group.add_argument("--validation-start", metavar="DATE", help="first day of validation (default 2019-01-01)")
    group.add_argument("--validation-end", metavar="DATE", help="last day of validation (default 2022-12-31)")
    group.add_argument("--test-start", metavar="DATE", help="first day of the sealed test period (default 2023-01-01)")
    group.add_argument(
        "--two-way",
        action="store_true",
        default=None,
        help="train and validation only: validation runs from --validation-start to the end of the data",
    )


def settings_from_args(args: argparse.Namespace, extra: Mapping[str, str] | None = None) -> Settings:
    """Settings.load(args.config), then every flag that was given (not None) on top.

    `extra` maps more argparse destinations to settings, e.g. {"iterations": "search.iterations"}.
    Flags a parser does not define are skipped.
    """
    settings = Settings.load(getattr(args, "config", None))
    for dest, dotted in {**FLAG_SETTINGS, **(extra or {})}.items():
        value = getattr(args, dest, None)
        if value is not None:
            settings.set(dotted, value, source=f"--{dest.replace('_', '-')}")
    return settings


def load_market_from_args(args: argparse.Namespace, settings: Settings) -> Market:
    """The market the resolved settings name (data.spec, data.data_dir, data.min_bars)."""
    return load_market(settings.data.spec, settings.data)


def load_data_from_args(args: argparse.Namespace, settings: Settings) -> Market | Universe:
    """The market, or the universe of markets, the resolved settings name."""
    return load_data(settings.data.spec, settings.data)


def output_path(path: str | None, flag: str) -> Path | None:
    """`path` checked before any work is done: not a folder, and its folder can be made and written.

    A missing folder is created when the file is written (as run folders are).
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise AutostratError(f"{flag} {path}: error: this is a folder; give a file name inside it")
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise AutostratError(f"{flag} {path}: error: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AutostratError(f"{flag} {path}: error: cannot write in {parent} (permission denied); choose "
                             "another place")
    return p


def write_output(path: Path, data: str | bytes, flag: str) -> None:
    """Write an output file atomically; one clear error if the system refuses."""
    from autostrat.files import atomic_write

    try:
        atomic_write(path, data)
    except OSError as exc:
        raise _cannot_write(path, flag, exc) from None


def _cannot_write(path, flag: str, exc: OSError) -> AutostratError:
    return AutostratError(f"{flag} {path}: error: cannot write it ({exc.strerror or exc})")


class _OutputFile:
    """A streamed output's handle whose write errors (a full disk) say which file and flag."""

    def __init__(self, handle, path, flag: str):
        self.handle, self.path, self.flag = handle, path, flag

    def write(self, data: bytes) -> None:
        try:
            self.handle.write(data)
        except OSError as exc:
            raise _cannot_write(self.path, self.flag, exc) from None

    def flush(self) -> None:
        try:
            self.handle.flush()
        except OSError as exc:
            raise _cannot_write(self.path, self.flag, exc) from None


@contextlib.contextmanager
def streamed_output(path: Path | None, flag: str):
    """A binary file written piece by piece and renamed into place when the block ends without
    error (`autostrat.files.atomic_open`); None for no path. A run that fails or is interrupted
    leaves no file, and never a truncated one, under `path`."""
    if path is None:
        yield None
        return
    from autostrat.files import atomic_open

    opener = atomic_open(Path(path))
    try:
        handle = opener.__enter__()
    except OSError as exc:
        raise _cannot_write(path, flag, exc) from None
    try:
        yield _OutputFile(handle, path, flag)
    except BaseException:
        opener.__exit__(*sys.exc_info())
        raise
    try:
        opener.__exit__(None, None, None)
    except OSError as exc:
        raise _cannot_write(path, flag, exc) from None
