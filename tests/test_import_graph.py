"""The package's imports run one way: no module imports itself back through others, the model side
(configuration, modeling, processing, data) never imports the tools built on it (training, hub, commands,
pipelines), and processing and data never import modeling.

The graph is read from the sources with ``ast`` (nothing is imported), counting every import statement,
including those inside functions: a deferred import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vlpretrain"

# subpackage -> subpackages it must never import
FORBIDDEN = {
    "configuration": ("training", "hub", "commands", "pipelines"),
    "modeling": ("training", "hub", "commands", "pipelines"),
    "processing": ("training", "hub", "commands", "pipelines", "modeling"),
    "data": ("training", "hub", "commands", "pipelines", "modeling"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute name of ``from <level dots><module> import ...`` written in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def import_graph() -> dict[str, set[str]]:
    """Module name -> the package modules it imports (``from X import name`` counts X.name when that is a module)."""
    files = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(name, is_package, node.level, node.module)
                found = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in files else source for alias in node.names]
            else:
                continue
            targets.update(target for target in found if target in files and target != name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None. Importing a package runs its
    ``__init__``, so a package's imports of its own submodules are edges too."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_relative_and_deferred_imports():
    graph = import_graph()
    # hub/convert/__init__.py imports its family modules relatively; commands/convert.py imports hub.convert
    # inside its functions.
    assert "vlpretrain.hub.convert.lxmert" in graph["vlpretrain.hub.convert"]
    assert "vlpretrain.hub.convert" in graph["vlpretrain.commands.convert"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("subpackage", sorted(FORBIDDEN))
def test_model_side_never_imports_the_tools_built_on_it(subpackage):
    prefix = f"vlpretrain.{subpackage}"
    forbidden = tuple(f"vlpretrain.{name}" for name in FORBIDDEN[subpackage])
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if module == prefix or module.startswith(prefix + ".")
        for target in targets
        if target in forbidden or target.startswith(tuple(f"{name}." for name in forbidden))
    )
    assert not offending, offending


def test_the_shared_converter_module_imports_no_family_module():
    graph = import_graph()
    families = {name for name in graph if name.startswith("vlpretrain.hub.convert.") and name != "vlpretrain.hub.convert.common"}
    assert families, "no converter family modules found"
    assert not graph["vlpretrain.hub.convert.common"] & (families | {"vlpretrain.hub.convert"})
    for family in families:
        assert "vlpretrain.hub.convert.common" in graph[family], family
