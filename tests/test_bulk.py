"""Bulk evaluation and sweeps: the same numbers as one-by-one backtests, exactly."""

from __future__ import annotations

import re

import numpy as np
import pytest

from autostrat.sim.backtest import backtest
from autostrat.sim.bulk import evaluate_many, sweep
from autostrat.sim.grid import parse_grid, points_frame, sweep_points
from autostrat.errors import AutostratError
from autostrat.resources import examples_dir, example_path
from autostrat.sim.metrics import METRIC_NAMES
from autostrat.data.synthetic import synthetic_market

EXAMPLES = sorted(examples_dir().glob("*.strat"))


@pytest.fixture(scope="module")
def market():
    return synthetic_market(seed=5, bars=6750)


def _assert_same(row, metrics):
    for period, values in metrics.items():
        for m in METRIC_NAMES:
            a, b = row[f"{period}.{m}"], values[m]
            assert (np.isnan(a) and np.isnan(b)) or a == b, (period, m, a, b)


def test_bulk_equals_one_by_one_exactly(market):
    frame = evaluate_many(EXAMPLES, market, chunk_size=3)
    assert len(frame) == len(EXAMPLES)
    for path, (_, row) in zip(EXAMPLES, frame.iterrows()):
        _assert_same(row, backtest(path, market).metrics)


def test_chunk_size_does_not_change_results(market):
    a = evaluate_many(EXAMPLES, market, chunk_size=1)
    b = evaluate_many(EXAMPLES, market, chunk_size=256)
    assert a.equals(b)


def test_sweep_rows_equal_single_backtests(market):
    grid = {"fast": [10, 20, 30], "slow": [50, 100]}
    frame = sweep(example_path("sma_cross"), grid, market)
    assert len(frame) == 6
    text = example_path("sma_cross").read_text()
    for _, row in frame.iterrows():
        variant = text.replace("param fast = 20", f"param fast = {int(row['fast'])}").replace(
            "param slow = 50", f"param slow = {int(row['slow'])}")
        _assert_same(row, backtest(variant, market).metrics)


def test_sweep_shares_subexpressions():
    from autostrat.tape.compile import compile_many

    from autostrat.tape.opcodes import CODE

    fast, slow = list(range(5, 55, 5)), [50, 100, 150]
    typed = sweep_points(example_path("sma_cross"), {"fast": fast, "slow": slow})
    tape = compile_many(typed)
    sma_count = sum(1 for row in tape.code if row[0] == CODE["sma"])
    assert len(typed) == 30
    assert sma_count == len(set(fast) | set(slow))  # one per distinct window (50 is shared), not per strategy


def test_parse_grid():
    assert parse_grid(["fast=5:20:5"]) == {"fast": [5, 10, 15, 20]}
    assert parse_grid(["k=1,2.5,3"]) == {"k": [1, 2.5, 3]}
    assert parse_grid(["stop=2%:4%:1%"])["stop"] == pytest.approx([0.02, 0.03, 0.04])
    assert parse_grid(["n=7"]) == {"n": [7]}
    for bad in ["fast", "fast=", "fast=5:1:1", "fast=1:5:0", "fast=a:b"]:
        with pytest.raises(AutostratError, match="NAME="):
            parse_grid([bad])


def test_sweep_errors(market):
    with pytest.raises(AutostratError, match="no param 'nope'.*fast, slow"):
        sweep(example_path("sma_cross"), {"nope": [1]}, market)
    with pytest.raises(AutostratError, match="no valid parameter combination"):
        sweep(example_path("sma_cross"), {"fast": [0]}, market)


def test_sweep_widens_ranges_and_skips_invalid():
    typed = sweep_points(example_path("sma_cross"), {"fast": [0, 3, 300]})
    assert points_frame(typed, {"fast": [0, 3, 300]})["fast"].tolist() == [3, 300]  # a window of 0 is not a strategy
    assert typed[1].param_values["fast"] == 300


@pytest.mark.parametrize("spec, message", [
    ("fast=1:inf:1", "finite numbers"),
    ("fast=nan", "finite numbers"),
    ("fast=1,inf", "finite numbers"),
    ("fast=1:2:1e-12", "more than the limit of 100,000,000; use a larger step"),
    ("fast=1:1000000000:1", "the grid has 1,000,000,000 points"),
    ("fast=1:2000000:1", "2,000,000 values, more than the limit of 1,000,000 per param"),
    ("fast=" + ",".join(["1"] * 1_000_001), "1,000,001 values, more than the limit of 1,000,000 per param"),
])
def test_grids_that_cannot_be_built_are_refused_before_building(spec, message):
    with pytest.raises(AutostratError, match=re.escape(message)):
        parse_grid([spec])


def test_the_grid_cap_counts_every_param_and_can_be_raised():
    with pytest.raises(AutostratError, match="2,000,000 points"):
        parse_grid(["a=1:2000:1", "b=1:1000:1"], max_points=1_000_000)
    assert len(parse_grid(["a=1:2000:1", "b=1:1000:1"], max_points=2_000_000)["b"]) == 1000
    with pytest.raises(AutostratError, match="200,000,000 points, more than the limit of 100,000,000"):
        parse_grid(["a=1:2000:1", "b=1:100000:1"])  # the default: streamed, so time, not memory, limits it
    with pytest.raises(AutostratError, match="given twice"):
        parse_grid(["a=1", "a=2"])


def test_a_sweep_warns_about_values_outside_the_declared_range_and_prints_whole_numbers(tmp_path, capsys):
    from autostrat.cli import main

    path = tmp_path / "s.strat"
    path.write_text("param fast = 10 in 5..50\nbuy when close > sma(close, fast)\nsell when close < sma(close, fast)\n")
    assert main(["sweep", str(path), "--param", "fast=2:8:3", "--data", "synthetic:seed=3"]) == 0
    out, err = capsys.readouterr()
    assert "warning: fast: 1 of 3 values lie outside its declared range 5..50 (for example 2)" in err
    assert " 5.0 " not in out and " 8.0 " not in out


def test_a_chunk_whose_registers_pass_the_budget_is_cut_and_scores_the_same(market, monkeypatch, tmp_path):
    """programs_per_chunk sizes chunks from the first program; later, bigger programs are cut into
    tapes that fit (budget_tapes), and the rows do not change, in memory, on a universe, streamed."""
    from autostrat.cli import main
    from autostrat.data.load import load_universe
    from autostrat.lang.check import TypedProgram
    from autostrat.sim import bulk
    from autostrat.sim.backtest import load_strategy
    from autostrat.tape.opcodes import FIRST_FREE_REG
    from autostrat.tape.template import compile_batch

    tiny = tmp_path / "tiny.strat"  # no register of its own: the first program says "small"
    tiny.write_text('strategy "tiny"\nbuy when close > open\nsell when close < open\n')
    files = [tiny, *EXAMPLES]
    typed = [load_strategy(p) for p in files]
    universe = load_universe("synthetic:seed=1..2,bars=1500,start=2015-01-01")
    expected = evaluate_many(files, market), evaluate_many(files, universe)
    plain = tmp_path / "plain.csv"
    assert main(["bulk", *map(str, files), "--data", "synthetic:seed=5,bars=6750", "--out", str(plain)]) == 0

    row = len(market) * 8
    monkeypatch.setattr(bulk, "REGISTER_BUDGET", row * 30)
    own = compile_batch(typed[:1]).n_regs - FIRST_FREE_REG
    assert bulk.programs_per_chunk(typed[0], (market,)) == (30 - FIRST_FREE_REG) // own >= len(typed)
    assert compile_batch(typed).n_regs > 30  # but the batch outgrows the budget
    parts = bulk.budget_tapes(typed, len(market))
    assert len(parts) > 1  # the examples after sma_cross need more
    assert [i for part, _ in parts for i in range(part.start, part.stop)] == list(range(len(typed)))
    for part, tape in parts:
        assert tape.n_regs * row <= bulk.REGISTER_BUDGET or part.stop - part.start == 1
    assert all(isinstance(t, TypedProgram) for t in typed)

    assert evaluate_many(files, market).equals(expected[0])
    assert evaluate_many(files, universe).equals(expected[1])
    cut = tmp_path / "cut.csv"
    assert main(["bulk", *map(str, files), "--data", "synthetic:seed=5,bars=6750", "--out", str(cut)]) == 0
    assert cut.read_text() == plain.read_text()


def test_a_universe_run_reports_progress_once_per_planned_chunk(monkeypatch, tmp_path):
    from autostrat.data.load import load_universe
    from autostrat.sim import bulk

    universe = load_universe("synthetic:seed=1..3,bars=1500,start=2015-01-01")
    tiny = 'strategy "tiny"\nbuy when close > open\nsell when close < open\n'
    typed = [bulk.load_strategy(p) for p in (tiny, *EXAMPLES[:3])]
    settings = bulk.resolve_settings(None, {})
    expected, _ = bulk.universe_array(typed, universe, settings)
    monkeypatch.setattr(bulk, "REGISTER_BUDGET", 1500 * 8 * 10)  # the first says 2 programs fit; they do not
    cuts, budget_tapes = [], bulk.budget_tapes
    monkeypatch.setattr(bulk, "budget_tapes", lambda *a: cuts.append(budget_tapes(*a)) or cuts[-1])
    seen = []
    values, _ = bulk.universe_array(typed, universe, settings, chunk_size=2, assets_per_chunk=2,
                                    progress=lambda done, total: seen.append((done, total)))
    assert [len(parts) for parts in cuts if parts[-1][0].stop == 2] == [2, 2]  # each slice of 2 cut in two
    assert seen == [(i, 4) for i in range(1, 5)]  # 2 program slices x 2 asset slices
    np.testing.assert_array_equal(values, expected)
