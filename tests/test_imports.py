"""The import rules of the package, checked on every module.

- every module imports on its own, in a fresh interpreter state for the package;
- no import cycle between the package's modules (module-level imports; imports inside
  functions too, which only hide a cycle);
- the OpenMM-side modules (platforms, integrators, systems, observables, data, video,
  catalog, the reporters' OpenMM half) never load torch; ``models`` never loads openmm;
- the wings (md, learn, evaluate, couple, video) are namespaces whose ``__init__`` imports
  nothing; the OpenMM wing (md) and the networks (models) import no other wing;
- nothing imports the command line (``openmm_closure.cli``, ``openmm_closure.commands``):
  it sits on top and only dispatches.

The graph is read from the source (``ast``), so imports inside functions count as well;
the "never loads" rules are checked by importing each module in a subprocess and looking
at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package name it is installed as
SOURCES = {ROOT / "openmm_closure": "openmm_closure", ROOT / "reporters": "openmm_closure.reporters",
           ROOT / "forcefields": "openmm_closure.forcefields"}
CLI = ("openmm_closure.cli", "openmm_closure.commands")
#: modules that must never load torch (prefix match)
TORCH_FREE = ("openmm_closure.md.platforms", "openmm_closure.md.integrators", "openmm_closure.systems",
              "openmm_closure.md.observables", "openmm_closure.data", "openmm_closure.video.frames",
              "openmm_closure.catalog", "openmm_closure.fileio", "openmm_closure.evaluate.metrics",
              "openmm_closure.md.simulate", "openmm_closure.md.simulate_batch", "openmm_closure.video.pixel_dataset",
              "openmm_closure.forcefields", "openmm_closure.reporters.macro",
              "openmm_closure.reporters.dataset", "openmm_closure.commands.simulate",
              "openmm_closure.cluster", "openmm_closure.commands._scheduler")
#: modules that must never load openmm (prefix match)
OPENMM_FREE = ("openmm_closure.models", "openmm_closure.catalog", "openmm_closure.evaluate.metrics", "openmm_closure.cluster",
               "openmm_closure.learn.distributed")
#: cycles through imports inside functions that are known and being removed (sorted pairs)
ALLOWED_LAZY_CYCLES: set = set()


def _modules() -> dict[str, Path]:
    out = {}
    for base, package in SOURCES.items():
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path, inside_functions: bool) -> set[str]:
    """The package modules that ``name`` imports (the module itself when a name is one)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            in_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if top or inside_functions:
                if isinstance(child, ast.Import):
                    found.update(a.name for a in child.names)
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = package.split(".")[: len(package.split(".")) - child.level + 1]
                        module = ".".join(base + ([child.module] if child.module else []))
                    else:
                        module = child.module or ""
                    for a in child.names:
                        full = f"{module}.{a.name}"
                        found.add(full if full in MODULES else module)
            visit(child, top and not in_function)

    visit(ast.parse(path.read_text()), True)
    return {m for m in found if m in MODULES and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def dfs(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                dfs(v, stack)
        stack.pop()
        state[u] = 2

    for node in sorted(graph):
        if node not in state:
            dfs(node, [])
    return cycles


def test_the_graph_sees_known_edges():
    # the reader must find real edges, or every check below passes vacuously
    graph = {n: _imports(n, p, True) for n, p in MODULES.items()}
    assert "openmm_closure.data" in graph["openmm_closure.md.simulate"]
    assert "openmm_closure.commands.simulate" in MODULES
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_cycle_at_module_level():
    graph = {n: _imports(n, p, False) for n, p in MODULES.items()}
    assert _cycles(graph) == []


def test_no_import_cycle_inside_functions():
    graph = {n: _imports(n, p, True) for n, p in MODULES.items()}
    bad = [c for c in _cycles(graph) if tuple(sorted(set(c))) not in ALLOWED_LAZY_CYCLES]
    assert bad == []


def test_nothing_imports_the_command_line():
    offenders = {}
    for name, path in MODULES.items():
        if name.startswith(CLI):
            continue
        hits = sorted(m for m in _imports(name, path, True) if m.startswith(CLI))
        if hits:
            offenders[name] = hits
    assert offenders == {}


def test_every_package_is_installed():
    # a wheel holds only the packages pyproject lists: a new subpackage must be listed there
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {n for n, p in MODULES.items() if p.name == "__init__.py"}
    assert packages - listed == set()


_PROBE = r"""
import importlib, json, sys
names = json.loads(sys.argv[1])
report = {}
for name in names:
    for key in [k for k in sys.modules if k == "openmm_closure" or k.startswith("openmm_closure.")]:
        del sys.modules[key]                       # the package afresh: each module in isolation
    before = set(sys.modules)
    try:
        importlib.import_module(name)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    loaded = set(sys.modules)
    report[name] = {"error": error,
                    "torch": "torch" in loaded, "openmm": "openmm" in loaded}
print(json.dumps(report))
"""


def _probe(names: list[str]) -> dict:
    res = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(names)], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_module_imports_on_its_own():
    report = _probe(sorted(MODULES))
    assert {n: r["error"] for n, r in report.items() if r["error"]} == {}


@pytest.mark.parametrize("rule", ["torch", "openmm"])
def test_import_rules(rule):
    # one fresh interpreter per rule, so that the forbidden library is not loaded yet; a
    # module that loads it taints the modules probed after it, so they are probed in a
    # single process only as long as the rule holds (a failure names the first offender)
    prefixes = TORCH_FREE if rule == "torch" else OPENMM_FREE
    names = sorted(n for n in MODULES if n.startswith(prefixes))
    assert len(names) >= (15 if rule == "torch" else 5)
    report = _probe(names)
    offenders = [n for n in names if report[n][rule]]
    assert offenders == [], f"{offenders[0]} loads {rule}"


def _python(code: str) -> str:
    """stdout of ``code`` run in a fresh interpreter (which must exit 0)."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_public_api_is_imported_lazily_from_the_package_top():
    code = ("import sys, openmm_closure\n"
            "before = [m for m in ('torch', 'openmm') if m in sys.modules]\n"
            "from openmm_closure import ClosureSimulation, SurrogateIntegrator, load_model\n"
            "print(before, ClosureSimulation.__module__, SurrogateIntegrator.__module__, load_model.__name__)\n")
    assert _python(code).split() == ["[]", "openmm_closure.couple.handover", "openmm_closure.couple.surrogate",
                                     "load_model"]


#: the wings: namespaces that group the modules by the map (README, docs/layout.md)
WINGS = ("openmm_closure.md", "openmm_closure.learn", "openmm_closure.evaluate", "openmm_closure.couple",
         "openmm_closure.video")
#: wing -> the wings and packages its modules never import (module level or inside functions)
NEVER_IMPORTS = {
    "openmm_closure.md": ("openmm_closure.learn", "openmm_closure.evaluate", "openmm_closure.couple",
                          "openmm_closure.hosts", "openmm_closure.models", "openmm_closure.video"),
    "openmm_closure.models": ("openmm_closure.md", "openmm_closure.learn", "openmm_closure.evaluate",
                              "openmm_closure.couple", "openmm_closure.hosts", "openmm_closure.video"),
}


def test_wings_are_namespaces():
    # a wing's __init__ imports nothing: importing one module of a wing loads none of the others
    for wing in WINGS:
        path = MODULES[wing]
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))], wing
        assert ast.get_docstring(tree), f"{wing}: say what the wing holds"


def test_wings_import_one_way():
    offenders = {}
    for name, path in MODULES.items():
        for wing, banned in NEVER_IMPORTS.items():
            if name == wing or name.startswith(wing + "."):
                hits = sorted(m for m in _imports(name, path, True) if m.startswith(banned))
                if hits:
                    offenders[name] = hits
    assert offenders == {}


def test_entry_point_groups_keep_their_names():
    # plugins register under these groups: moving a module into a wing never renames one
    from openmm_closure.evaluate.metric_kinds import METRIC_KINDS
    from openmm_closure.learn.objectives import OBJECTIVES

    assert (OBJECTIVES.group, METRIC_KINDS.group) == ("openmm_closure" + ".objectives", "openmm_closure" + ".metrics")


def test_moved_modules_answer_to_their_old_names():
    # an old name (built here, so that no rewrite of the names touches it) gives the moved module
    code = ("import importlib, warnings, openmm_closure, openmm_closure.couple.surrogate as new\n"
            "from openmm_closure.md import observables\n"
            "warnings.simplefilter('error')\n"  # an old name is a plain alias: no warning
            "old = importlib.import_module('openmm_closure' + '.surrogate')\n"
            "obs = importlib.import_module('openmm_closure' + '.observables')\n"
            "print(old is new, getattr(openmm_closure, 'surrogate') is new, old.__spec__.name, obs is observables)\n")
    assert _python(code).split() == ["True", "True", "openmm_closure.couple.surrogate", "True"]
