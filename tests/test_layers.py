"""The package's import structure: no import cycles between modules, and arrows only go down
the layers (ops/cpu <- models, metrics, data <- train <- results, entry points). Read from the
source (every import statement, also those inside functions), so nothing is imported here."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "jaxclf"

# Leaf modules any layer may use (they import nothing from jaxclf): the config schema's types.
LEAVES = {"jaxclf.schema"}
# What each package may import from jaxclf besides itself and the leaves.
ALLOWED = {
    "jaxclf.ops": set(),
    "jaxclf.cpu": set(),
    "jaxclf.models": {"jaxclf.ops"},
    "jaxclf.metrics": {"jaxclf.ops"},
    "jaxclf.data": {"jaxclf.ops"},
}
ENTRY_POINTS = {"jaxclf.main", "jaxclf.run", "jaxclf.results", "jaxclf.sweep", "jaxclf.launch", "jaxclf.predict",
                "jaxclf.cli", "jaxclf.summary", "jaxclf.convert"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the jaxclf modules it imports (a name imported from a package counts as the
    package's ``__init__`` unless it is a submodule)."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target.startswith("jaxclf") and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on_stack.discard(component[-1])
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_checker_finds_a_cycle_and_an_upward_arrow():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "jaxclf.ops.conv" in graph["jaxclf.ops.pool"]  # a from-import of a submodule's names
    assert "jaxclf.models.layers" in graph["jaxclf.models.resnet"]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_layers_import_nothing_above_them(package):
    wrong = {f"{m} -> {d}" for m, deps in import_graph().items() if _package(m) == package
             for d in deps if _package(d) not in ALLOWED[package] | LEAVES | {package}}
    assert not wrong, sorted(wrong)


def test_leaves_import_nothing_from_jaxclf():
    graph = import_graph()
    assert {leaf: graph[leaf] for leaf in LEAVES} == {leaf: set() for leaf in LEAVES}


def test_training_does_not_import_the_entry_points():
    wrong = {f"{m} -> {d}" for m, deps in import_graph().items() if _package(m) == "jaxclf.train"
             for d in deps if d in ENTRY_POINTS}
    assert not wrong, sorted(wrong)
