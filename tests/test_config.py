"""Settings: defaults, autostrat.toml, type checks, did-you-mean, and flags on top (autostrat.config)."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

from autostrat.cli.common import add_data_options, add_split_options, settings_from_args
from autostrat.config import Settings
from autostrat.errors import ConfigError

TOML = """\
[data]
spec = "SPY"
min_bars = 250

[split]
train_end = 2015-12-31          # a TOML date, kept as ISO text
validation_start = "2016-01-01"
two_way = true

[backtest]
commission_bps = 2              # an integer is fine where a float is expected

[search]
iterations = 20
objective = "validation.sharpe"
"""


def load_text(tmp_path, text: str) -> Settings:
    path = tmp_path / "autostrat.toml"
    path.write_text(text, encoding="utf-8")
    return Settings.load(path)


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert settings.data.spec == "synthetic" and settings.split.train_end == "2018-12-31"
    assert settings.search.iterations == 50 and settings.split.two_way is False


def test_toml_in_the_working_directory_is_read(tmp_path, monkeypatch):
    (tmp_path / "autostrat.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert settings.data.spec == "SPY" and settings.data.min_bars == 250
    assert settings.split.train_end == "2015-12-31" and settings.split.validation_start == "2016-01-01"
    assert settings.split.two_way is True
    assert settings.backtest.commission_bps == 2.0 and isinstance(settings.backtest.commission_bps, float)
    assert settings.search.iterations == 20 and settings.search.objective == "validation.sharpe"
    assert settings.to_dict()["split"]["train_end"] == "2015-12-31"


def test_explicit_path_and_missing_file(tmp_path):
    settings = load_text(tmp_path, "[search]\nseed = 3\n")
    assert settings.search.seed == 3
    with pytest.raises(ConfigError, match="config file not found"):
        Settings.load(tmp_path / "other.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        Settings.load(tmp_path)  # a folder is not a config file


def test_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_text(tmp_path, "[search\niterations = 3\n")


def test_unknown_section_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[splt\] \(did you mean 'split'\?\)"):
        load_text(tmp_path, "[splt]\ntrain_end = '2010-01-01'\n")


def test_unknown_key_suggests_the_right_one(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, "[search]\niteration = 10\n")
    assert "autostrat.toml: unknown setting search.iteration (did you mean 'iterations'?)" in str(info.value)


def test_unknown_key_without_a_near_name(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, "[search]\nzzz = 10\n")
    assert str(info.value).endswith("unknown setting search.zzz")


@pytest.mark.parametrize(
    "text, message",
    [
        ("[search]\niterations = 'many'", "search.iterations must be int, got 'many'"),
        ("[search]\niterations = 2.5", "search.iterations must be int, got 2.5"),
        ("[search]\niterations = true", "search.iterations must be int, got True"),
        ("[backtest]\nslippage_bps = [1, 2]", "backtest.slippage_bps must be float, got [1, 2]"),
        ("[split]\ntwo_way = 'maybe'", "split.two_way must be true or false, got 'maybe'"),
        ("[data]\nspec = 5", "data.spec must be text (a quoted string), got 5"),
        ("search = 3", "[search] must be a table of settings"),
    ],
)
def test_type_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text + "\n")
    assert message in str(info.value)


def test_whole_float_is_an_int_and_text_numbers_convert():
    settings = Settings()
    settings.set("search.iterations", 30.0)
    settings.set("search.population", "4")
    settings.set("split.two_way", "yes")
    assert settings.search.iterations == 30 and settings.search.population == 4 and settings.split.two_way is True


def test_set_rejects_names_outside_the_sections():
    settings = Settings()
    with pytest.raises(ConfigError, match="unknown setting __class__.data"):
        settings.set("__class__.data", 1)
    with pytest.raises(ConfigError, match="did you mean 'search'"):
        settings.set("serch.seed", 1)
    assert Settings().data.spec == "synthetic"


def test_override_skips_none():
    settings = Settings().override(search__iterations=7, data__spec=None)
    assert settings.search.iterations == 7 and settings.data.spec == "synthetic"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_data_options(p)
    add_split_options(p)
    p.add_argument("--iterations", type=int)
    return p


def test_flags_override_the_file(tmp_path, monkeypatch):
    (tmp_path / "autostrat.toml").write_text(TOML)
    monkeypatch.chdir(tmp_path)
    args = parser().parse_args(["--data", "synthetic:seed=3", "--train-end", "2014-12-31", "--iterations", "9"])
    settings = settings_from_args(args, extra={"iterations": "search.iterations"})
    assert settings.data.spec == "synthetic:seed=3" and settings.split.train_end == "2014-12-31"
    assert settings.search.iterations == 9
    # Flags not given leave the file's values alone.
    assert settings.data.min_bars == 250 and settings.split.two_way is True
    assert settings.split.validation_start == "2016-01-01"


def test_flags_absent_from_a_parser_are_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = settings_from_args(argparse.Namespace(two_way=True))
    assert settings.split.two_way is True and settings.data.spec == "synthetic"


def test_config_flag_reads_another_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other.toml").write_text("[data]\ndata_dir = 'elsewhere'\n")
    settings = settings_from_args(parser().parse_args(["--config", "other.toml", "--two-way"]))
    assert settings.data.data_dir == "elsewhere" and settings.split.two_way is True
    with pytest.raises(ConfigError, match="missing.toml: config file not found"):
        settings_from_args(parser().parse_args(["--config", "missing.toml"]))


def test_the_readme_lists_every_setting_with_its_default():
    # The README's settings block is generated from the dataclasses: a new or changed setting
    # fails here until the README is regenerated with `reference_toml()`.
    from autostrat.config import reference_toml

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```toml\n", 1)[1].split("```\n", 1)[0]
    assert block == reference_toml(), "regenerate the README's settings block from autostrat.config.reference_toml()"
    assert tomllib.loads(block) == Settings().to_dict()
