"""Streamed bulk and sweep: the rows written chunk by chunk are the in-memory frame's CSV, byte for byte."""

from __future__ import annotations

import os


from autostrat.cli import main
from autostrat.data.load import load_data
from autostrat.resources import example_path, examples_dir
from autostrat.sim.bulk import across_assets_frame, evaluate_many, sweep
from autostrat.sim.grid import parse_grid
from autostrat.sim.stream import rank, sweep_batches
from autostrat.data.universe import Universe

SMA = str(example_path("sma_cross"))
KELTNER = str(example_path("keltner_params"))
DATA = "synthetic:seed=3"
UNIVERSE = "synthetic:seed=1..3,bars=1500,start=2015-01-01"
EXAMPLES = [str(p) for p in sorted(examples_dir().glob("*.strat"))]


def _sweep_cli(tmp_path, *extra):
    out = tmp_path / "sweep.csv"
    args = ["sweep", KELTNER, "--param", "n=0:30:10", "--param", "k=0.5:2:0.75", "--param", "stop=1%,5%",
            "--chunk-size", "5", "--out", str(out), *extra]
    return main(args), out


def test_a_streamed_sweep_writes_the_in_memory_frame_byte_for_byte(tmp_path, capsys):
    code, out = _sweep_cli(tmp_path, "--data", DATA, "--top", "4")
    assert code == 0
    grid = parse_grid(["n=0:30:10", "k=0.5:2:0.75", "stop=1%,5%"])
    frame = sweep(KELTNER, grid, DATA)  # n=0 is no window: those points are skipped
    assert len(frame) == 3 * 3 * 2
    assert out.read_text() == frame.to_csv(index=False)
    printed = capsys.readouterr().out
    best = rank(frame, "validation.total_return").head(4)
    assert "18 combinations of n, k, stop" in printed
    # the best rows, in order, though no chunk held them all
    table = printed.split("rank ", 1)[1].splitlines()[1:]
    lines = [line.split() for line in table]
    assert [(float(w[1]), float(w[2])) for w in lines] == [(r["n"], r["k"]) for _, r in best.iterrows()]


def test_a_streamed_sweep_on_a_universe_writes_both_files_as_in_memory(tmp_path, capsys):
    per = tmp_path / "per.csv"
    code, out = _sweep_cli(tmp_path, "--data", UNIVERSE, "--per-asset", str(per), "--across", "median")
    assert code == 0
    grid = parse_grid(["n=0:30:10", "k=0.5:2:0.75", "stop=1%,5%"])
    frame = sweep(KELTNER, grid, UNIVERSE)
    assert per.read_text() == frame.to_csv(index=False)
    assert out.read_text() == across_assets_frame(frame, "median", keys=list(grid)).to_csv(index=False)
    assert "3 markets, median across them" in capsys.readouterr().out


def test_streamed_bulk_with_bad_files_between_chunks(tmp_path, capsys):
    bad = tmp_path / "bad.strat"
    bad.write_text("buy when close >> open\nsell when close < open\n")
    files = EXAMPLES[:3] + [str(bad)] + EXAMPLES[3:]
    listed = tmp_path / "list.txt"
    listed.write_text("\n".join(files[2:]) + "\n\n")
    out = tmp_path / "bulk.csv"
    code = main(["bulk", *files[:2], "--files-from", str(listed), "--skip-invalid", "--data", DATA,
                 "--chunk-size", "2", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("skipped: ") == 1 and "bad.strat:1:" in err and f"skipped 1 of {len(files)} files" in err
    frame = evaluate_many(EXAMPLES, DATA)
    frame.insert(0, "file", EXAMPLES)
    assert out.read_text() == frame.to_csv(index=False)


def test_bulk_on_a_universe_keeps_one_row_per_file_given(tmp_path):
    out = tmp_path / "bulk.csv"
    rsi = str(example_path("rsi_reversion"))
    assert main(["bulk", SMA, SMA, rsi, "--data", UNIVERSE, "--chunk-size", "1", "--out", str(out)]) == 0
    frame = evaluate_many([SMA, rsi], UNIVERSE)
    frame.insert(0, "file", [SMA] * 3 + [rsi] * 3)
    rows = across_assets_frame(frame, "mean", keys=["file", "name"]).to_csv(index=False).splitlines()
    assert out.read_text().splitlines() == [rows[0], rows[1], rows[1], rows[2]]  # the same file twice: two rows


def test_a_failed_run_leaves_the_old_file_and_no_temporary_one(tmp_path, capsys):
    bad = tmp_path / "bad.strat"
    bad.write_text("buy when close > open\n")
    out = tmp_path / "bulk.csv"
    out.write_text("the previous results\n")
    # the bad file comes after two chunks were evaluated and written (under the temporary name)
    code = main(["bulk", *EXAMPLES[:4], str(bad), "--data", DATA, "--chunk-size", "2", "--out", str(out)])
    assert code == 1 and "missing `sell when` rule" in capsys.readouterr().err
    assert out.read_text() == "the previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["bad.strat", "bulk.csv"]


def test_nothing_valid_writes_nothing(tmp_path, capsys):
    out = tmp_path / "sweep.csv"
    assert main(["sweep", SMA, "--param", "fast=0,-1", "--data", DATA, "--out", str(out)]) == 2
    assert "no valid parameter combination" in capsys.readouterr().err
    assert not out.exists() and os.listdir(tmp_path) == []


def test_without_out_only_the_best_rows_are_kept_and_it_says_so(capsys):
    assert main(["sweep", SMA, "--param", "fast=5:20:5", "--data", DATA, "--top", "2"]) == 0
    out, err = capsys.readouterr()
    assert "4 combinations" in out and "best 2 by" in out
    assert "only the best 2 of 4 rows are kept; add --out CSV to keep every row" in err


def test_bulk_needs_files():
    assert main(["bulk", "--data", DATA]) == 2


def test_a_huge_grid_is_walked_lazily():
    # 10^8 points: the first chunk comes without the grid (or its programs) being built
    market = load_data(DATA)
    batches = sweep_batches(SMA, {"fast": [float(v) for v in range(1, 10_001)],
                                  "slow": [float(v) for v in range(1, 10_001)]}, Universe((market,), "m"), 64)
    first = next(batches)
    assert len(first.typed) == 64 and first.done == 64 and not first.last
    small = list(sweep_batches(SMA, {"fast": [0.0, 5.0, 10.0, 15.0, 0.0]}, Universe((market,), "m"), 3))
    assert [(len(b.typed), b.done, b.last) for b in small] == [(3, 4, True)]  # invalid points skipped
    two = list(sweep_batches(SMA, {"fast": [5.0, 10.0, 15.0, 20.0]}, Universe((market,), "m"), 3))
    assert [(len(b.typed), b.done, b.last) for b in two] == [(3, 3, False), (1, 4, True)]
    assert list(first.lead["slow"][:3]) == [1, 2, 3] and set(first.lead["fast"]) == {1}
