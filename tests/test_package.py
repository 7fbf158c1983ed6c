"""The wheel ships the grammar, the prompts and the example strategies inside the package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import autostrat

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_grammar_prompts_and_examples(tmp_path):
    # No build isolation: the build uses the setuptools of the dev extra and needs no download.
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("autostrat-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "autostrat/grammar/strategy.lark" in names
    assert "autostrat/grammar/LANGUAGE.md" in names
    assert "autostrat/prompts/program.md" in names
    examples = {n for n in names if n.startswith("autostrat/grammar/examples/") and n.endswith(".strat")}
    assert len(examples) >= 9 and "autostrat/grammar/examples/sma_cross.strat" in examples
    assert "autostrat/tape/vm.py" in names
    for package in sorted(p.parent.name for p in (ROOT / "engine").glob("*/__init__.py")):
        assert f"autostrat/{package}/__init__.py" in names, f"pyproject.toml does not list autostrat.{package}"
    assert not any(n.startswith(("tests/", "engine/")) for n in names)


def test_the_numba_cache_key_covers_the_jitted_modules_and_what_they_import():
    # An edit to any of these must start a fresh numba cache; an edit elsewhere must not.
    from autostrat._numba_cache import jitted_sources

    engine = Path(autostrat.__file__).parent
    names = {p.relative_to(engine).with_suffix("").as_posix() for p in jitted_sources()}
    assert {"tape/vm", "tape/kernel_table", "tape/kernels", "tape/kernels_elementwise",
            "tape/kernels_rolling", "tape/kernels_indicators", "sim/simulate", "sim/metrics",
            "sim/evaluate"} <= names
    assert {"tape/opcodes", "lang/registry"} <= names  # the registry's order numbers the opcodes the VM reads
    assert not {"sim/bulk", "data/universe", "search/loop", "report/build", "__init__"} & names
    for path in engine.rglob("*.py"):  # subfolders included: a kernel moved into one stays in the key
        if "@njit" in path.read_text(encoding="utf-8"):
            assert path.relative_to(engine).with_suffix("").as_posix() in names, path


def test_a_kernel_in_a_subfolder_is_part_of_the_numba_cache_key(tmp_path):
    # The key scans subpackages: an edit to a kernel there, or to a module it imports, starts a
    # fresh cache; an edit to a module no jitted code imports does not.
    from autostrat._numba_cache import jitted_sources, source_key

    (tmp_path / "deep" / "deeper").mkdir(parents=True)
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "deep" / "__init__.py").write_text("")
    (tmp_path / "deep" / "deeper" / "__init__.py").write_text("")
    (tmp_path / "deep" / "table.py").write_text("WIDTH = 9\n")
    (tmp_path / "deep" / "deeper" / "kern.py").write_text(
        "from numba import njit\n\nfrom autostrat.deep.table import WIDTH\n\n\n@njit(cache=True)\ndef k_nb(x):\n"
        "    return x + WIDTH\n")
    (tmp_path / "deep" / "other.py").write_text("X = 1\n")
    names = {p.relative_to(tmp_path).as_posix() for p in jitted_sources(tmp_path)}
    assert names == {"deep/deeper/kern.py", "deep/table.py"}
    key = source_key(tmp_path)
    (tmp_path / "deep" / "other.py").write_text("X = 2\n")
    assert source_key(tmp_path) == key
    (tmp_path / "deep" / "table.py").write_text("WIDTH = 10\n")
    assert source_key(tmp_path) != key
    changed = source_key(tmp_path)
    (tmp_path / "deep" / "deeper" / "kern.py").write_text(
        (tmp_path / "deep" / "deeper" / "kern.py").read_text().replace("x + WIDTH", "x - WIDTH"))
    assert source_key(tmp_path) != changed


@pytest.mark.parametrize("numba_first", [False, True])
def test_kernels_cache_in_the_keyed_folder_whichever_is_imported_first(tmp_path, numba_first):
    # A program that imports numba before autostrat must not get numba's own per-file cache next to
    # the sources, which checks a kernel against its own file only and so could run stale code.
    import os

    from autostrat._numba_cache import source_key

    code = ("import numba\n" if numba_first else "") + (
        "import autostrat\n"
        "from autostrat.sim import evaluate, simulate\n"
        "from autostrat.tape import vm\n"
        "for f in (vm.run_tape_nb, simulate.simulate_close_long_nb, evaluate._SCORERS[(True, True)][1]):\n"
        "    print(f._cache._cache_path)\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    folders = run.stdout.split()
    assert len(folders) == 3
    for folder in folders:
        assert Path(folder).is_relative_to(tmp_path / "autostrat" / "numba" / source_key()), folder


def test_a_second_process_compiles_nothing_the_first_one_compiled():
    """Every kernel a backtest, a bulk run at fill close (long and short programs, with and without
    exits) and a portfolio backtest call must load from numba's disk cache in the next process. A
    jitted closure that captures another jitted function, for one, is compiled again in every process."""
    import os

    code = ("import autostrat\n"
            "autostrat.backtest('grammar/examples/sma_cross.strat', 'synthetic')\n"
            "autostrat.evaluate_many(['grammar/examples/sma_cross.strat', 'grammar/examples/donchian_atr.strat',\n"
            "    'grammar/examples/long_short.strat'],\n"
            "    'synthetic', fill='close')\n"
            "autostrat.backtest_portfolio('grammar/examples/portfolio/momentum_12_1.strat',\n"
            "    'synthetic-universe:assets=8')\n")
    env = dict(os.environ, NUMBA_DEBUG_CACHE="1")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
            for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    saved = [line for line in runs[1].stdout.splitlines() if "data saved" in line]
    assert not saved, "compiled again in a warm process:\n" + "\n".join(saved)
