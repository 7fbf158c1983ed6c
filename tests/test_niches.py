"""Niches (search.niches): the descriptor grid, the elites, the parent pool, resume (autostrat.search.niches)."""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from autostrat.cli import main  # noqa: E402
from autostrat.data.load import load_market  # noqa: E402
from autostrat.search.niches import Niches, cell  # noqa: E402
from autostrat.search.population import Member  # noqa: E402
from autostrat.search.runs import RunFolder  # noqa: E402
from autostrat.sim.evaluator import Evaluator  # noqa: E402
from search_runs import mutate_records, settings, strip  # noqa: E402
from test_loop import DATA, SPLIT_FLAGS, check_folder_consistent, kill_and_resume  # noqa: E402
from test_loop import market, warm  # noqa: E402,F401 - session fixtures


def m(exposure, trades, period="validation"):
    return {period: {"exposure": exposure, "num_trades": trades}}


def test_cells_have_the_documented_edges():
    # two years: trades per year is half the count
    assert cell(m(0.0, 0), "validation", 2.0) == [0, 0]
    assert cell(m(0.2499, 3), "validation", 2.0) == [0, 0]  # 1.5 a year
    assert cell(m(0.25, 4), "validation", 2.0) == [1, 1]  # 2 a year starts the second bin
    assert cell(m(0.5, 12), "validation", 2.0) == [2, 2]  # 6 a year
    assert cell(m(0.75, 29), "validation", 2.0) == [3, 2]  # 14.5 a year
    assert cell(m(1.0, 30), "validation", 2.0) == [3, 3]  # 15 a year
    assert cell(m(0.3, 5, "train"), "train", 1.0) == [1, 1]
    assert cell(m(math.nan, 5), "validation", 1.0) is None and cell({}, "validation", 1.0) is None


def test_elites_keep_the_best_per_cell_and_join_the_population_in_the_pool():
    niches = Niches()
    a, b, c, d = (Member(i, v, {}, f"t{i}") for i, v in ((1, 0.1), (2, 0.3), (3, 0.3), (4, math.nan)))
    niches.add(a, [0, 1])
    niches.add(b, [0, 1])  # better: replaces a
    niches.add(c, [0, 1])  # a tie: the earlier stays
    niches.add(d, [2, 0])  # NaN is still the best of an empty cell
    assert {k: e.iteration for k, e in niches.elites.items()} == {(0, 1): 2, (2, 0): 4}
    assert [x.iteration for x in niches.pool([c, b])] == [3, 2, 4]  # the population first, no member twice
    assert niches.table()["cells"] == [{"cell": [0, 1], "iteration": 2, "objective": 0.3},
                                       {"cell": [2, 0], "iteration": 4, "objective": math.nan}]


def replay_by_hand(records, bars, k=3):
    """Each record's parent pool (population + elites) rebuilt with plain loops, and the final elites."""
    years = bars / 252
    population, elites, pools = [], {}, {}
    for r in records:
        pools[r["iteration"]] = [p[1] for p in population] + [e[1] for _, e in sorted(elites.items())]
        value = r.get("objective")
        key = (-(value if value is not None else -math.inf), r["iteration"])
        if r["status"] in ("keep", "discard") and not r.get("constraint"):
            v = r["metrics"]["validation"]
            exposure_bin = sum(v["exposure"] >= e for e in (0.25, 0.5, 0.75))
            trades_bin = sum(v["num_trades"] / years >= e for e in (2, 6, 15))
            assert r["niche"] == [exposure_bin, trades_bin]
            held = elites.get((exposure_bin, trades_bin))
            if held is None or key < held[0]:
                elites[(exposure_bin, trades_bin)] = (key, r["iteration"])
        else:
            assert "niche" not in r
        if r["status"] == "keep":
            population = sorted(population + [(key, r["iteration"])])[:k]
    return pools, elites


def test_a_niches_run_draws_parents_from_the_top_k_and_the_elites(tmp_path, warm):
    records = mutate_records(tmp_path / "n", niches=True)
    bars = Evaluator(load_market(DATA), settings()).period_dates()["validation"]["bars"]
    pools, elites = replay_by_hand(records, bars)
    for prev, r in zip(records, records[1:]):
        if prev["status"] == "keep":
            assert r["parent"] == prev["iteration"]
        else:
            assert r["parent"] in {i for i in pools[r["iteration"]]}
    table = json.loads((tmp_path / "n" / "niches.json").read_text())
    assert {tuple(c["cell"]): c["iteration"] for c in table["cells"]} == {c: e[1] for c, e in elites.items()}
    assert table["exposure_edges"] == [0.25, 0.5, 0.75] and table["trades_per_year_edges"] == [2.0, 6.0, 15.0]
    assert len(elites) >= 2  # the grid holds more than one kind of strategy
    plain = mutate_records(tmp_path / "p")
    assert all("niche" not in r for r in plain) and not (tmp_path / "p" / "niches.json").exists()


def test_niches_resume_in_process_equals_an_uninterrupted_run(tmp_path, warm):
    ref = mutate_records(tmp_path / "ref", niches=True, parallel=3)
    part = tmp_path / "part"
    shutil.copytree(tmp_path / "ref", part)
    for i in range(12, 30):
        for f in part.rglob(f"iter_{i:04d}.*"):
            f.unlink()
    assert mutate_records(part, niches=True, parallel=3) == ref


def test_kill_then_resume_with_niches_equals_an_uninterrupted_run(clean_env, warm):
    n = 22
    common = ["--data", DATA, *SPLIT_FLAGS, "--iterations", str(n), "--max-fails", str(n), "--seed", "4",
              "--proposer", "mutate", "--runs-dir", "runs", "--niches", "--parallel", "2"]
    assert main(["evolve", *common, "--run", "ref", "--no-report"]) == 0
    kill_and_resume(clean_env, [*common, "--run", "k", "--no-report"], None, n, random.Random(3))
    assert main(["evolve", *common, "--run", "k", "--no-report"]) == 0
    ref, got = clean_env / "runs" / "ref", clean_env / "runs" / "k"
    assert strip(RunFolder.open(got).load_records()) == strip(RunFolder.open(ref).load_records())
    assert (got / "niches.json").read_text() == (ref / "niches.json").read_text()
    check_folder_consistent(got)
