"""Starting and resuming a run from Python, as a notebook does (autostrat.search.session)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_loop import market, small_settings, warm  # noqa: E402,F401 - fixtures

from autostrat.errors import ConfigError  # noqa: E402
from autostrat.search.loop import Search  # noqa: E402
from autostrat.search.session import load_run_data, make_proposer, resume_run, start_run  # noqa: E402
from autostrat.sim.evaluator import make_evaluator  # noqa: E402
from autostrat.sim.objective import Objective  # noqa: E402


def test_a_run_starts_searches_and_resumes_without_the_cli(tmp_path, warm):
    settings = small_settings(iterations=3, proposer="mutate")
    run, market = start_run(tmp_path / "nb", "nb", settings)
    config = json.loads((tmp_path / "nb" / "config.json").read_text())
    assert config["run"] == "nb" and config["data"]["sha256"] == market.sha256
    assert {"periods", "returns_layout", "grammar_sha256", "baseline", "settings"} <= set(config)
    objective = Objective.from_settings(settings.search)
    evaluator = make_evaluator(market, settings)
    proposer = make_proposer(settings, objective, evaluator, market.name, out=lambda line: None)
    outcome = Search(run, settings, objective, evaluator, proposer, config["baseline"]["text"],
                     out=lambda line: None).run()
    assert len(outcome.records) == 3
    run.unlock()  # a run stays locked for its process until then (RunFolder.lock)

    run2, settings2, market2 = resume_run(tmp_path / "nb", settings, [("search.iterations", 5, "notebook")])
    assert settings2.search.iterations == 5 and market2.sha256 == market.sha256
    assert len(run2.config["resumed"]) == 1
    run2.unlock()
    with pytest.raises(ConfigError, match="cannot resume with different settings"):
        resume_run(tmp_path / "nb", settings, [("search.seed", 9, "notebook")])


def test_other_data_is_refused_with_what_it_would_do(tmp_path, warm):
    settings = small_settings(iterations=1, proposer="mutate")
    run, _ = start_run(tmp_path / "d", "d", settings)
    run.write_config(dict(run.config, data=dict(run.config["data"], sha256="0" * 64)))
    with pytest.raises(ConfigError, match="the data changed since this run started.*; it would mislead"):
        load_run_data(run, settings, "; it would mislead")
