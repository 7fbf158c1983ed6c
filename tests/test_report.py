"""The run's statistics from its folder (the right inputs), a pure-noise search, the HTML report, the
`report` command, red flags and the lineage."""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from autostrat.honest import run_statistics as runstats
from autostrat.sim.backtest import backtest
from autostrat.cli import main
from autostrat.config import Settings
from autostrat.lang.fmt import fmt
from autostrat.search.loop import MutateProposer, Proposal, Search
from autostrat.sim.evaluator import Evaluator
from autostrat.sim.objective import Objective
from autostrat.honest.deflated_sharpe import dsr, pbo, psr
from autostrat.report.plots import png_size
from autostrat.honest.red_flags import red_flags
from autostrat.report.build import lineage
from autostrat.report.html import SECTIONS
from autostrat.resources import example_path
from autostrat.search.runs import RunFolder
from autostrat.honest.run_statistics import run_statistics

sys.path.insert(0, str(Path(__file__).parent))
from test_loop import DATA, SPLIT_FLAGS, small_settings  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - fixtures


class Mixed:
    """Mutations, with an invalid answer and a duplicate of the parent in every five iterations."""

    name, uses_prompt = "mixed", False

    def propose(self, ctx):
        if ctx.iteration % 5 == 3:
            return Proposal(None, "buy when", status="invalid", error="x.strat:1:9: error: expected an expression")
        if ctx.iteration % 5 == 4:
            return Proposal(ctx.parents[0], fmt(ctx.parents[0]), description="the parent again")
        return MutateProposer().propose(ctx)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, warm):
    settings = small_settings(iterations=16, max_fails=16, objective="validation.sharpe")
    folder = tmp_path_factory.mktemp("mixed") / "m"
    ev = Evaluator(warm, settings)
    run = RunFolder.create(folder, {"settings": settings.to_dict(), "returns_layout": ev.returns_layout})
    out = Search(run, settings, Objective.parse("validation.sharpe"), ev, Mixed(),
                 example_path("sma_cross").read_text(), out=lambda line: None).run()
    return RunFolder.open(folder), out.records, ev


def test_statistics_count_exactly_the_evaluated_candidates(mixed_run, warm, monkeypatch):
    run, records, ev = mixed_run
    status = [r["status"] for r in records]
    assert status.count("invalid") >= 3 and status.count("duplicate") >= 2  # the run has both kinds
    seen = {}
    real = runstats.pbo
    monkeypatch.setattr(runstats, "pbo", lambda m, n_splits: seen.setdefault("m", (m, n_splits)) and real(m, n_splits))
    stats = run_statistics(run)
    evaluated = [r for r in records if r["status"] in ("keep", "discard")]
    assert stats["n_trials"] == len(evaluated) == status.count("keep") + status.count("discard")
    assert (stats["n_invalid"], stats["n_duplicate"]) == (status.count("invalid"), status.count("duplicate"))
    (a0, a1), (b0, b1) = ev.spans["train"], ev.spans["validation"]
    matrix, splits = seen["m"]
    assert splits == 16 and matrix.shape == ((a1 - a0 - 1) + (b1 - b0 - 1), len(evaluated))
    assert stats["pbo_rows"] == matrix.shape[0]
    # every column is that candidate's train then validation returns: nothing of the test period
    settings = small_settings()
    for j, r in enumerate(evaluated[:3]):
        result = backtest(run.read_strategy(r["iteration"]), warm, settings)
        want = np.concatenate([result.daily_returns("train"), result.daily_returns("validation")])
        np.testing.assert_allclose(matrix[:, j], want, atol=1e-7)
    independent = np.column_stack([np.load(run.path / r["returns"]).astype(float) for r in evaluated])
    assert stats["pbo"] == pbo(independent, 16).pbo
    # PSR, DSR on the validation rows the objective selected on; V from those rows of every trial
    lo, hi = ev.returns_layout["validation"]
    val = independent[lo:hi]
    sd = val.std(axis=0, ddof=1)
    sharpes = np.divide(val.mean(axis=0), sd, out=np.zeros(sd.shape), where=sd > 0)  # no trades: Sharpe 0
    best = max((r for r in records if r["status"] == "keep"), key=lambda r: (r["objective"], -r["iteration"]))
    col = val[:, [r["iteration"] for r in evaluated].index(best["iteration"])]
    assert stats["best_iteration"] == best["iteration"] and stats["selection"] == "validation"
    assert stats["track_record"] == hi - lo
    assert stats["var_trials"] == pytest.approx(sharpes.var(ddof=1), rel=1e-9)
    assert stats["psr"] == pytest.approx(psr(col), rel=1e-12)
    assert stats["dsr"] == pytest.approx(dsr(col, len(evaluated), sharpes.var(ddof=1)), rel=1e-9)
    assert run_statistics(run, n_splits=8)["pbo_n_combinations"] == 70


def _noise_run(folder: Path, n: int = 200, t_train: int = 800, t_val: int = 500, seed: int = 11) -> RunFolder:
    """A run folder holding n random-signal strategies on a random walk, the best kept."""
    rng = np.random.default_rng(seed)
    market = rng.normal(0.0, 0.01, t_train + t_val)
    signals = rng.integers(0, 2, size=(t_train + t_val, n))
    returns = signals * market[:, None]
    settings = Settings()
    settings.search.objective = "validation.sharpe"
    run = RunFolder.create(folder, {"settings": settings.to_dict(),
                                    "returns_layout": {"train": [0, t_train], "validation": [t_train, t_train + t_val]}})
    val = returns[t_train:]
    annual = val.mean(axis=0) / val.std(axis=0, ddof=1) * math.sqrt(252)
    best = int(np.argmax(annual))
    for i in range(n):
        record = {"iteration": i, "status": "keep" if i == best else "discard", "parent": None,
                  "objective": float(annual[i]), "metrics": {}}
        run.commit(record, "", returns[:, i])
    return run


def test_pure_noise_has_a_low_dsr_and_a_coin_toss_pbo(tmp_path):
    stats = run_statistics(_noise_run(tmp_path / "noise"))
    assert stats["n_trials"] == 200
    assert stats["psr"] > 0.95  # the best of 200 looks significant on its own ...
    assert stats["dsr"] < 0.8  # ... and not once the 200 tries are counted
    assert 0.35 < stats["pbo"] < 0.65


class Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.h2, self._in_h2 = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = False if tag == "h2" else self._in_h2

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, warm):
    root = tmp_path_factory.mktemp("cli")
    args = ["evolve", "--data", DATA, *SPLIT_FLAGS, "--runs-dir", str(root), "--run", "r", "--proposer", "mutate",
            "--iterations", "8", "--max-fails", "8", "--folds", "2", "--null"]
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0
    return root / "r", buf.getvalue()


def test_report_is_self_contained_and_names_every_section(cli_run):
    path, out = cli_run
    text = (path / "report.html").read_text()
    parser = Tags()
    parser.feed(text)
    parser.close()
    tags = [t for t, _ in parser.tags]
    assert tags[:2] == ["html", "head"] and "body" in tags
    assert not {"script", "link", "iframe", "object", "embed"} & set(tags)
    assert "url(" not in text and "@import" not in text
    images = [a for t, a in parser.tags if t == "img"]
    assert len(images) == 2
    sizes = set()
    for a in images:
        assert a["src"].startswith("data:image/png;base64,")
        sizes.add(png_size(base64.b64decode(a["src"].split(",", 1)[1])))
    assert sizes == {(1100, 380), (1100, 600)}
    for _, attrs in parser.tags:
        for key in ("src", "href"):
            assert not str(attrs.get(key, "")).startswith(("http:", "https:", "//", "file:"))
    # every section, folds and null included; the markets table is for universe runs only, the IC and
    # holdings for portfolio runs
    shown = [v for k, v in SECTIONS.items() if k not in ("markets", "portfolio", "iterations")]
    assert [h.strip() for h in parser.h2] == shown
    assert "test (sealed)" in text and "buy and hold" in text
    report = json.loads((path / "report.json").read_text())
    assert report["stats"]["n_trials"] >= 1 and report["null"]["run"] == "r-null"
    assert f"report: {path / 'report.html'}" in out
    for key in ("trials", "psr", "dsr", "pbo", "prob_oos_loss", "degradation_slope", "min_track_record_days",
                "test_total_return", "null_best_objective", "red_flags"):
        assert re.search(rf"^{key}: \S+", out, re.M), key


def test_report_command(cli_run, capsys):
    path, _ = cli_run
    before = json.loads((path / "sealed.json").read_text())
    assert main(["report", path.name, "--runs-dir", str(path.parent), "--no-robustness", "--pbo-splits", "8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pbo: \d\.\d{4}$", out, re.M) and f"report: {path / 'report.html'}" in out
    assert "report written with --no-robustness" in (path / "report.html").read_text()
    assert json.loads((path / "report.json").read_text())["stats"]["pbo_n_splits"] == 8
    assert json.loads((path / "sealed.json").read_text()) == before  # same records: not opened again
    assert main(["report", str(path)]) == 0  # a path works too
    capsys.readouterr()
    assert main(["report", "nope", "--runs-dir", str(path.parent)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["report", str(path), "--pbo-splits", "7"]) == 2


def _report(dsr_=0.99, pbo_=0.1, trades=40, val_sharpe=1.0, test_sharpe=0.9, excess=0.1, mtrl=100.0, null=None):
    stats = {"dsr": dsr_, "pbo": pbo_, "n_trials": 30, "selection": "validation", "min_track_record": mtrl,
             "track_record": 500, "best_objective": 1.0}
    metrics = {"validation": {"num_trades": trades, "sharpe": val_sharpe, "excess_return": excess},
               "test": {"sharpe": test_sharpe, "excess_return": excess}}
    return {"stats": stats, "best": {"metrics": metrics}, "folds": 0, "null": null, "robustness": None,
            "objective": "validation.sharpe"}


def test_red_flags():
    assert red_flags(_report()) == []
    flags = red_flags(_report(dsr_=0.5, pbo_=0.7, trades=12, test_sharpe=0.2, excess=-0.01, mtrl=900.0,
                              null={"best_objective": 1.5, "best_validation_excess": 0.0}))
    text = "\n".join(flags)
    for needle in ("DSR 0.50 is below 0.95", "PBO 0.70 is above 0.5", "Only 12 trades", "far below validation",
                   "No edge over buy and hold after costs on validation and test", "too short: 500 days",
                   "On pure noise"):
        assert needle in text, needle
    assert len(flags) == 7


def test_lineage_puts_each_kept_strategy_under_its_parent():
    records = [{"iteration": 0, "status": "keep", "parent": None}, {"iteration": 1, "status": "keep", "parent": 0},
               {"iteration": 2, "status": "discard", "parent": 1}, {"iteration": 3, "status": "keep", "parent": 1},
               {"iteration": 4, "status": "keep", "parent": 0}, {"iteration": 5, "status": "invalid", "parent": 3}]
    roots = lineage(records, {3, 4})
    assert [r["iteration"] for r in roots] == [0]
    assert [c["iteration"] for c in roots[0]["children"]] == [1, 4]
    one = roots[0]["children"][0]
    assert one["tried"] == 2 and [c["iteration"] for c in one["children"]] == [3]
    assert one["children"][0]["in_top"] and not one["in_top"] and one["children"][0]["tried"] == 1


def test_red_flag_thresholds_are_settings():
    from autostrat.config import Settings

    s = Settings()
    assert (s.honest.flag_dsr_below, s.honest.flag_pbo_above, s.honest.flag_min_trades) == (0.95, 0.5, 20)
    report = _report(dsr_=0.9, pbo_=0.4, trades=12)
    assert len(red_flags(report)) == 2  # DSR below 0.95, 12 trades
    report["thresholds"] = {"flag_dsr_below": 0.8, "flag_pbo_above": 0.3, "flag_min_trades": 10}
    flags = red_flags(report)
    assert flags == ["PBO 0.40 is above 0.3: the candidate that looks best in one half of the data is usually "
                     "below the median in the other half."]
