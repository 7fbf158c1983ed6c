"""Bulk evaluation of portfolio strategies: `evaluate_many` and `autostrat bulk` equal one-by-one
`backtest_portfolio` bit for bit, whatever the chunking, and refuse what they cannot do."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

import autostrat
from autostrat.cli import main
from autostrat.config import Settings
from autostrat.data.panel_spec import load_panel
from autostrat.errors import AutostratError
from autostrat.lang.check import load as load_checked
from autostrat.lang.fmt import fmt
from autostrat.lang.parse import parse
from autostrat.resources import examples_dir
from autostrat.search.mutate import mutate
from autostrat.sim import portfolio_bulk
from autostrat.sim.portfolio_backtest import backtest_portfolio
from autostrat.sim.portfolio_bulk import evaluate_portfolios
from autostrat.sim.portfolio_metrics import PORTFOLIO_METRIC_NAMES
from autostrat.tape.portfolio_eval import evaluate_scores, evaluate_scores_many

MOMENTUM = examples_dir() / "portfolio" / "momentum_12_1.strat"
DATA = "synthetic-universe:seed=4,assets=16,bars=1500,churn=0.3"
SPLIT = {"train_end": "2003-12-31", "validation_start": "2004-01-01", "validation_end": "2004-12-31",
         "test_start": "2005-01-01"}
SPLIT_FLAGS = [x for k, v in SPLIT.items() for x in (f"--{k.replace('_', '-')}", v)]

# Hand-written programs that share expressions with each other and cover every stage of the
# score evaluation: no cross-sectional call at all, one at the top, one inside, lagged ones,
# a weight by score with a cap, a short-only book, params and constants.
HANDWRITTEN = [
    MOMENTUM.read_text(),
    'strategy "rank mix"\nm = roc(close, 20)\nr = rank(m) + rank(sma(close, 10) / close)\n'
    "hold long top 25% by r\nrebalance every 10 bars\nweight equal\n",
    'strategy "z weighted"\nm = roc(close, 20)\nz = standardize(m)\nhold long top 30% by z\n'
    "hold short bottom 20% by m\nrebalance every 5 bars\nweight by z capped at 15%\n",
    'strategy "smoothed percentile"\nparam n = 15 in 5..40\nm = roc(close, n)\n'
    "s = sma(percentile(m), 3)[2] - demean(volume) / 1000000\nhold short bottom 25% by s\nrebalance every 7 bars\n",
    'strategy "constant rank"\nm = roc(close, 20)\ns = rank(5) + m\nhold long top 50% by s\nrebalance every 21 bars\n',
]


@pytest.fixture(scope="module")
def settings() -> Settings:
    s = Settings()
    for k, v in SPLIT.items():
        s.set(f"split.{k}", v)
    return s


@pytest.fixture(scope="module")
def panel():
    return load_panel(DATA)


@pytest.fixture(scope="module")
def programs():
    """The hand-written programs and 20 seeded mutations of the momentum example."""
    parent = parse(MOMENTUM.read_text(), str(MOMENTUM))
    mutated = [fmt(mutate([parent], random.Random(seed))[0]) for seed in range(20)]
    return [load_checked(t, portfolio=True) for t in HANDWRITTEN + mutated]


def assert_same_bits(frame: pd.DataFrame, row: int, metrics: dict) -> None:
    for period, values in metrics.items():
        for m in PORTFOLIO_METRIC_NAMES:
            got, want = frame.loc[row, f"{period}.{m}"], values[m]
            assert (np.isnan(got) and np.isnan(want)) or got == want, (row, period, m, got, want)


def test_evaluate_scores_many_equals_one_program_at_a_time(programs, panel):
    together = evaluate_scores_many(programs, panel)
    for typed, scores in zip(programs, together):
        alone = evaluate_scores(typed, panel)
        assert list(scores) == list(alone)
        for name in alone:
            np.testing.assert_array_equal(scores[name], alone[name])


@pytest.mark.parametrize("chunk_size", [1, 3, 256])
def test_bulk_equals_one_by_one_whatever_the_chunks(programs, panel, settings, chunk_size):
    frame = autostrat.evaluate_many(programs, panel, settings, chunk_size=chunk_size)
    assert list(frame["name"]) == [t.name for t in programs]
    assert [c for c in frame.columns if c != "name"] == [f"{p}.{m}" for p in ("train", "validation")
                                                         for m in PORTFOLIO_METRIC_NAMES]
    for i, typed in enumerate(programs):
        assert_same_bits(frame, i, backtest_portfolio(typed, panel, settings).metrics)
    assert frame["validation.ic_periods"].min() > 0  # the periods were traded, not NaN throughout


def test_the_array_budget_cuts_chunks_and_changes_nothing(programs, panel, settings, monkeypatch):
    whole = evaluate_portfolios(programs, panel, settings)
    sizes = []
    real = portfolio_bulk.evaluate_scores_many

    def counting(typed, p):
        sizes.append(len(typed))
        return real(typed, p)

    monkeypatch.setattr(portfolio_bulk, "ARRAY_BUDGET", 3 * panel.close.size * 8 * 4)
    monkeypatch.setattr(portfolio_bulk, "evaluate_scores_many", counting)
    cut = evaluate_portfolios(programs, panel, settings)
    assert sum(sizes) == len(programs) and max(sizes) < len(programs)
    pd.testing.assert_frame_equal(cut, whole)


def test_the_sealed_test_period_is_asked_for_by_name(programs, panel, settings):
    frame = autostrat.evaluate_many(programs[:2], panel, settings, periods=("test",))
    assert [c.split(".")[0] for c in frame.columns[1:]] == ["test"] * len(PORTFOLIO_METRIC_NAMES)
    assert_same_bits(frame, 1, backtest_portfolio(programs[1], panel, settings, periods=("test",)).metrics)


def test_a_mix_of_kinds_and_an_executor_are_refused(panel, settings):
    single = (examples_dir() / "sma_cross.strat").read_text()
    with pytest.raises(AutostratError, match="single-market strategy among portfolio strategies"):
        autostrat.evaluate_many([MOMENTUM, single], panel, settings)
    with pytest.raises(AutostratError, match="evaluated in this process"):
        autostrat.evaluate_many([MOMENTUM], panel, settings, executor=object())


# --- the command -----------------------------------------------------------------------------------


def _files(tmp_path, texts) -> list[str]:
    paths = []
    for i, text in enumerate(texts):
        path = tmp_path / f"p{i}.strat"
        path.write_text(text)
        paths.append(str(path))
    return paths


def test_bulk_command_streams_one_row_per_portfolio_strategy(tmp_path, panel, settings, capsys):
    files = _files(tmp_path, HANDWRITTEN)
    out = tmp_path / "rows.csv"
    code = main(["bulk", *files, "--data", DATA, *SPLIT_FLAGS, "--out", str(out), "--chunk-size", "2",
                 "--objective", "validation.rank_ic_tstat", "--top", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(files)} rows" in printed and "best 3 by validation.rank_ic_tstat" in printed
    rows = pd.read_csv(out)
    assert list(rows["file"]) == files
    want = evaluate_portfolios([load_checked(t, portfolio=True) for t in HANDWRITTEN], panel, settings)
    for col in want.columns[1:]:  # the CSV's text round-trips every float
        np.testing.assert_array_equal(rows[col].to_numpy(), want[col].to_numpy(), err_msg=col)


def test_bulk_command_skips_or_stops_at_a_file_of_the_other_kind(tmp_path, capsys):
    files = _files(tmp_path, HANDWRITTEN[:2]) + [str(examples_dir() / "sma_cross.strat")]
    assert main(["bulk", *files, "--data", DATA, *SPLIT_FLAGS]) == 2
    assert "a single-market strategy in a bulk run of portfolio strategies" in capsys.readouterr().err
    assert main(["bulk", *files, "--data", DATA, *SPLIT_FLAGS, "--skip-invalid"]) == 1
    captured = capsys.readouterr()
    assert "skipped 1 of 3 files" in captured.err and "2 strategies on 16 assets" in captured.out


@pytest.mark.parametrize("flags, word", [(["--fill", "close"], "--fill close"), (["--across", "min"], "--across"),
                                         (["--objective", "validation.num_trades"], "ic_tstat")])
def test_bulk_command_refuses_what_a_portfolio_cannot_do(tmp_path, capsys, flags, word):
    files = _files(tmp_path, HANDWRITTEN[:1])
    assert main(["bulk", *files, "--data", DATA, *SPLIT_FLAGS, *flags]) == 2
    assert word in capsys.readouterr().err
