"""Settings: one dataclass holds everything resolved from defaults, autostrat.toml and flags.

Precedence, lowest first: the defaults below, `autostrat.toml` in the working directory (sections
[data], [split], [backtest], [search], [honest], [llm]), then command-line flags.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autostrat.errors import ConfigError

CONFIG_FILE = "autostrat.toml"


@dataclass
class DataSettings:
    spec: str = "synthetic"  # a ticker, a CSV path, or synthetic[:seed=N,bars=N,start=DATE]
    data_dir: str = "data"  # where prepared tickers are read from and cached to
    start: str = "2000-01-01"  # first date requested when a ticker is downloaded
    min_bars: int = 100  # fewer bars than this is a data error


@dataclass
class SplitSettings:
    train_end: str = "2018-12-31"  # the last day of the training period
    validation_start: str = "2019-01-01"  # validation: what the search selects on
    validation_end: str = "2022-12-31"  # the last day of validation
    test_start: str = "2023-01-01"  # the sealed test period starts here; never seen by the search
    two_way: bool = False  # the seed's split: train ..train_end, validation validation_start..end


@dataclass
class BacktestSettings:
    fill: str = "next_open"  # next_open | close (with zero costs and indicators = "period": the seed harness)
    commission_bps: float = 1.0  # per side
    slippage_bps: float = 1.0  # per side
    initial_capital: float = 10_000.0  # the equity a backtest starts with
    indicators: str = "history"  # history: over every earlier bar | period: each period's bars alone


@dataclass
class SearchSettings:
    proposer: str = ""  # llm | mutate; empty: llm when one is configured, else mutate
    objective: str = "validation.total_return"  # PERIOD.METRIC the search maximises
    iterations: int = 50  # the budget, the baseline (iteration 0) included
    population: int = 3  # the best kept strategies, parents of the next ones
    max_fails: int = 5  # stop after this many iterations in a row without a keep
    seed: int = 0  # seeds parent choice and mutation: a rerun draws the same
    repair_attempts: int = 2  # times an unusable answer goes back to the model with its error
    max_total_tokens: int = 0  # 0: no limit
    learnings_budget_chars: int = 6000  # a longer learnings log is summarised for the prompt
    runs_dir: str = "runs"  # where run folders are made
    prompts_dir: str = ""  # a folder whose program.md, iteration.md, repair.md, compact.md replace the shipped ones
    folds: int = 0  # walk-forward folds of train+validation for the objective; 0: off
    fold_mode: str = "rolling"  # rolling (equal consecutive windows) | anchored (windows grow from the start)
    fold_agg: str = "mean"  # mean | min of the metric over the folds
    pbo_splits: int = 16  # S of PBO's CSCV in the run's report (even, 2 to 20)
    across: str = "mean"  # on a universe: mean | median | min of each metric over the markets
    bar: str = ""  # the pass bar, registered before the search (docs/overfitting.md); empty: none
    spa_reps: int = 1000  # stationary-bootstrap replications of the SPA / Reality Check test (100 to 20000)
    parallel: int = 1  # candidates proposed at once per step, from parents drawn by the usual rule
    dedupe: str = "behaviour"  # behaviour: same signals on train and validation is a duplicate | text: same canonical text only
    min_trades: int = 0  # a candidate with fewer trades in train or validation is discarded; 0: off
    max_drawdown: float = 0.0  # a candidate falling deeper than this fraction in train or validation is discarded; 0: off
    tune: int = 0  # variants of each candidate's ranged params evaluated in bulk (each a trial); 0: off
    tune_pick: str = "best"  # best: the best variant | robust: the best median over its grid neighbours
    niches: bool = False  # after a failure, draw parents from the top-K and the best per exposure x trades cell


@dataclass
class HonestSettings:
    ledger_dir: str = ""  # where every opening of a sealed test is recorded; empty: $XDG_DATA_HOME/autostrat/sealed
    flag_earlier_runs: int = 1  # red flag when this many other runs opened the test period before; 0: never
    flag_strategies: int = 10  # red flag when this many distinct strategies were looked at on it; 0: never
    flag_dsr_below: float = 0.95  # red flag when the Deflated Sharpe Ratio is below this
    flag_pbo_above: float = 0.5  # red flag when the Probability of Backtest Overfitting is above this
    flag_min_trades: int = 20  # red flag when the best strategy made fewer trades where it was selected


@dataclass
class LlmSettings:
    model: str = ""  # empty: OPENAI_MODEL, else gpt-4o-mini
    base_url: str = ""  # empty: OPENAI_BASE_URL
    temperature: float = 0.7  # sampling temperature sent with each request
    max_tokens: int = 2048  # the longest answer; a longer one is cut off and judged invalid
    timeout: float = 120.0  # seconds to wait for one answer
    max_retries: int = 5  # retries of a failed call (429, 5xx, timeout, dropped connection)
    retry_backoff: float = 1.0  # seconds before the first retry; doubles on each further retry
    retry_backoff_max: float = 60.0  # the longest wait between retries (Retry-After included)
    max_answer_chars: int = 400_000  # a longer answer is cut to this many characters before it is read
    constrain: str = ""  # auto|typed|gbnf|vllm|openai|off; empty: auto on localhost, else off (docs/models.md)


@dataclass
class Settings:
    """All resolved settings. `Settings.load()` reads autostrat.toml; `override()` applies flags."""

    data: DataSettings = field(default_factory=DataSettings)
    split: SplitSettings = field(default_factory=SplitSettings)
    backtest: BacktestSettings = field(default_factory=BacktestSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    honest: HonestSettings = field(default_factory=HonestSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Settings":
        """Defaults, overlaid with autostrat.toml (or `path`) when it exists."""
        settings = cls()
        file = Path(path) if path else Path.cwd() / CONFIG_FILE
        if path and not file.is_file():
            raise ConfigError(f"{file}: config file not found")
        if file.is_file():
            try:
                raw = tomllib.loads(file.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{file}: not valid TOML: {exc}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{file}: cannot read the config file ({exc})") from None
            settings.apply(raw, source=str(file))
        return settings

    def apply(self, raw: dict[str, Any], source: str = "settings") -> None:
        """Overlay a {section: {key: value}} mapping, checking names and types."""
        sections = [f.name for f in dataclasses.fields(self)]
        for section, values in raw.items():
            if section not in sections:
                raise ConfigError(f"{source}: unknown section [{section}]{_suggest(section, sections)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: [{section}] must be a table of settings")
            for key, value in values.items():
                self.set(f"{section}.{key}", value, source=source)

    def set(self, dotted: str, value: Any, source: str = "flag") -> None:
        """Set one setting by `section.key`, converting to the field's type."""
        section, _, key = dotted.partition(".")
        sections = [f.name for f in dataclasses.fields(self)]
        if section not in sections:  # not getattr alone: "__class__.x" would reach the class itself
            raise ConfigError(f"{source}: unknown setting {dotted}{_suggest(section, sections)}")
        target = getattr(self, section)
        names = {f.name: f for f in dataclasses.fields(target)}
        if key not in names:
            raise ConfigError(f"{source}: unknown setting {section}.{key}{_suggest(key, names)}")
        setattr(target, key, _convert(value, type(getattr(target, key)), f"{source}: {section}.{key}"))

    def override(self, **dotted_values: Any) -> "Settings":
        """Apply command-line flags given as section__key=value; None means "not given"."""
        for name, value in dotted_values.items():
            if value is not None:
                self.set(name.replace("__", "."), value)
        return self

    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict, for config.json in a run folder."""
        return dataclasses.asdict(self)


def reference_toml() -> str:
    """Every setting with its default and the comment beside its field above, as autostrat.toml text.

    The README's Configuration section shows this text (tests/test_config.py keeps the two equal),
    so a new setting is documented where it is declared, once.
    """
    import inspect

    out = []
    for section in dataclasses.fields(Settings):
        cls = type(getattr(Settings(), section.name))
        comments = {}
        for line in inspect.getsource(cls).splitlines():
            name, sep, rest = line.strip().partition(":")
            if sep and name.isidentifier() and "#" in rest:
                comments[name] = rest.split("#", 1)[1].strip()
        out.append(f"[{section.name}]")
        for f in dataclasses.fields(cls):
            line = f"{f.name} = {_toml_value(getattr(cls(), f.name))}"
            out.append(f"{line:<30} # {comments[f.name]}" if f.name in comments else line)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _convert(value: Any, kind: type, where: str) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if kind is str:
        # TOML reads an unquoted 2018-12-31 as a date; the settings keep dates as ISO text.
        if isinstance(value, (datetime.date, datetime.time)):
            return value.isoformat()
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text (a quoted string), got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        # bool is an int in Python: without this, `iterations = true` would quietly become 1.
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    try:
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}") from None


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
