"""The package's import graph: no cycle between modules, and nothing imports back up its layers.

Every ``import`` of a gnnddm module counts, at module level or inside a function (a function-level import
hides a cycle; it does not remove it). The layers, from the bottom: the foundations (errors, config,
outputs, schema) -> data, graph, models, distributed, partition -> tasks, algorithms, assimilation ->
the training run -> the commands and the report. ``gnnddm.testing`` (support for tests) may import
anything; nothing in the package imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import gnnddm

ROOT = Path(gnnddm.__file__).parent

#: the layer of each top-level module or subpackage (lower imports nothing of a higher one)
LAYERS = {
    "gnnddm": 0, "gnnddm.__main__": 6, "gnnddm.errors": 0, "gnnddm.config": 0, "gnnddm.outputs": 0,
    "gnnddm.schema": 0,
    "gnnddm.data": 1, "gnnddm.graph": 1, "gnnddm.models": 1, "gnnddm.distributed": 1, "gnnddm.partition": 1,
    "gnnddm.tasks": 2,
    "gnnddm.ddm": 2, "gnnddm.bundle": 2, "gnnddm.assimilation": 3,
    "gnnddm.training": 4,
    "gnnddm.report": 5, "gnnddm.commands": 5, "gnnddm.cli": 6, "gnnddm.testing": 7,
}
#: imports allowed across the layers, each with its reason
EXCEPTIONS = {
    # the report reads what runs logged through the same MLflow client and defines skill once with them
    ("gnnddm.report", "gnnddm.training"): "tracking and scores are torch-free modules of the run",
    # a model file records the git commit the run's tags record
    ("gnnddm.bundle", "gnnddm.training"): "git_commit of the run's tracking",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The gnnddm modules ``name`` imports anywhere in its file (``from a import b`` counts ``a.b`` when
    that is a module, else ``a``)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> tuple[str, int]:
    top = ".".join(module.split(".")[:2])
    assert top in LAYERS, f"{top}: a new top-level module or package needs its layer in tests/test_imports.py"
    return top, LAYERS[top]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back_through_others():
    assert _cycles(_graph()) == []


def test_nothing_imports_up_its_layers():
    wrong = []
    for module, imported in sorted(_graph().items()):
        top, layer = _layer(module)
        for other in sorted(imported):
            other_top, other_layer = _layer(other)
            if other_layer > layer and (top, other_top) not in EXCEPTIONS:
                wrong.append(f"{module} imports {other} (layer {layer} < {other_layer})")
    assert wrong == []


def test_the_core_does_not_import_the_report_commands_or_testing():
    above = ("gnnddm.report", "gnnddm.commands", "gnnddm.cli", "gnnddm.testing")
    wrong = [f"{m} imports {o}" for m, imported in sorted(_graph().items()) for o in sorted(imported)
             if o.startswith(above) and not m.startswith(above + ("gnnddm.__main__",))]
    assert wrong == []


def test_the_checks_see_a_cycle_and_an_upward_import():
    """The checks themselves: a planted cycle is found, and an import from below the run into it is."""
    planted = {"gnnddm.data.a": {"gnnddm.data.b"}, "gnnddm.data.b": {"gnnddm.data.a"}, "gnnddm.data.c": set()}
    assert _cycles(planted) == [["gnnddm.data.a", "gnnddm.data.b"]]
    assert _layer("gnnddm.data.grid")[1] < _layer("gnnddm.training.trainer")[1]
