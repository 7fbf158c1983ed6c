"""The package's shape: subpackages in pipeline order, imports going one way, numba kept apart.

Every module of engine/ is read with `ast`, its module-level imports and the ones inside functions
alike. The allowed direction (docs/architecture.md draws it):

    core  <  lang  <  data  <  tape  <  sim  <  search  <  honest  <  report  <  cli

- core is the handful of flat modules at the top of engine/ (errors, config, resources, files,
  _numba_cache); they import only each other.
- A module may import its own subpackage, any lower layer, and core; never a higher layer.
- No import cycle between modules, whatever the layers say.
- The package facade (autostrat/__init__.py, __main__.py) re-exports from every layer; a module
  inside the layers may read only `__version__` from it.
- A module that imports numba imports no autostrat module except other numba modules and the two
  tables jitted code reads as constants: autostrat.tape.opcodes and autostrat.lang.registry. Not
  even autostrat._numba_cache: the facade configures the cache before any of them is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import autostrat

ENGINE = Path(autostrat.__file__).parent
LAYERS = ("core", "lang", "data", "tape", "sim", "search", "honest", "report", "cli")
CORE = {"errors", "config", "resources", "files", "_numba_cache"}
FACADE = {"autostrat", "autostrat.__main__"}
NUMBA_TABLES = {"autostrat.tape.opcodes", "autostrat.lang.registry"}
MAX_FLAT = 8


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ENGINE.rglob("*.py")):
        parts = path.relative_to(ENGINE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("autostrat",) + parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every `import autostrat...` / `from autostrat... import` in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "autostrat"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "autostrat":
            out.append((node.module, [a.name for a in node.names], node.lineno))
    return out


def _targets(module: str, names: list[str]) -> set[str]:
    """The modules an import statement loads: the module itself, or the submodules it names."""
    subs = {f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES}
    return subs or {module}


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for target, names, _ in _imports(path):
            graph[mod] |= {t for t in _targets(target, names) if t != mod}
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in CORE:
        return 0
    if len(parts) >= 2 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    raise AssertionError(f"{module} is in no layer: add it to a subpackage, or to CORE")


def test_every_module_is_in_a_layer_and_few_stay_flat():
    flat = [m for m in MODULES if m.count(".") == 1 and m not in FACADE and MODULES[m].name != "__init__.py"]
    assert len(flat) + 2 <= MAX_FLAT, flat  # + __init__ and __main__
    for m in MODULES:
        if m not in FACADE:
            layer(m)


def test_imports_go_down_the_layers():
    wrong = []
    for mod, path in MODULES.items():
        if mod in FACADE:
            continue
        for target, names, line in _imports(path):
            if target == "autostrat":
                if set(names) - {"__version__"}:  # `import autostrat` reads autostrat.__version__
                    wrong.append(f"{path}:{line}: imports {names} from the package facade")
                continue
            for t in _targets(target, names):
                if t in FACADE or layer(t) > layer(mod):
                    wrong.append(f"{path}:{line}: {mod} ({LAYERS[layer(mod)]}) imports {t} "
                                 f"({LAYERS[layer(t)] if t not in FACADE else 'facade'})")
    assert not wrong, "imports must go " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = {m: {t for t in ts if t not in FACADE} for m, ts in edges().items() if m not in FACADE}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"modules that import each other: {cycles}"


def _uses_numba(path: Path) -> bool:
    return any(m.split(".")[0] == "numba" for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               for m in ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else []))


def test_numba_modules_import_only_numba_modules_and_the_tables():
    jitted = {m for m, p in MODULES.items() if _uses_numba(p)}
    assert {"autostrat.tape.vm", "autostrat.sim.simulate"} <= jitted
    wrong = []
    for mod in sorted(jitted):
        for target, names, line in _imports(MODULES[mod]):
            for t in _targets(target, names):
                if t not in jitted and t not in NUMBA_TABLES:
                    wrong.append(f"{MODULES[mod]}:{line}: {mod} imports {t}")
    assert not wrong, "jitted modules import only other jitted modules and the opcode and registry " \
                      "tables:\n" + "\n".join(wrong)


def test_every_subpackage_says_what_it_owns_and_may_import():
    for package in LAYERS[1:]:
        doc = ast.get_docstring(ast.parse((ENGINE / package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "imports:" in doc.lower(), f"engine/{package}/__init__.py needs a docstring: what it owns, what it imports"
