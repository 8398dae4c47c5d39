"""The package map's arrows point one way: a sub-package imports only from layers below it.

Every ``import`` statement counts, at the top of a file or inside a function (a lazy
import is still an arrow). The map, top to bottom (also in the README):

    __main__, cli            `python -m atrous` and the `atrous` command
    demo, scale              the demo; Ray Data / Ray Serve
    serve, engine            HTTP service; training, evaluation, checkpoints
    infer                    predictor, export, fast CPU path, bench
    models, data             the zoo; datasets and transforms
    analysis                 receptive fields, coverage, HDC rule (works on any nn.Module)
    ops, constants, device   the dilated convolution and the schedule value; leaves

Packages on one line do not import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import atrous

ROOT = Path(atrous.__file__).parent
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"demo", "scale"},
    {"serve", "engine"},
    {"infer"},
    {"models", "data"},
    {"analysis"},
    {"ops", "constants", "device", "files"},
]
LEVEL = {package: level for level, group in enumerate(LAYERS) for package in group}


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[0]


def _targets(path: Path) -> set[str]:
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        targets.update(name.split(".")[1] for name in names if name.startswith("atrous."))
    return targets


def arrows() -> set[tuple[str, str, str]]:
    """``(file, from package, to package)`` for every import across sub-packages."""
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name == "__init__.py":
            continue  # `atrous/__init__.py` only re-exports lazily
        source = _package(path)
        for target in _targets(path) - {source}:
            found.add((str(path.relative_to(ROOT.parent)), source, target))
    return found


def test_every_sub_package_is_on_the_map() -> None:
    packages = {_package(p) for p in ROOT.rglob("*.py") if p.parent != ROOT or p.stem != "__init__"}
    assert packages <= set(LEVEL), f"put {sorted(packages - set(LEVEL))} on the map"


def test_imports_point_down_the_map() -> None:
    wrong = sorted(
        f"{file}: {source} -> {target}"
        for file, source, target in arrows()
        if target in LEVEL and LEVEL[target] <= LEVEL[source]
    )
    assert not wrong, "imports against the package map:\n" + "\n".join(wrong)


def test_the_check_catches_an_upward_arrow(tmp_path: Path) -> None:
    # The walker sees lazy imports inside functions, the way a circle usually hides.
    sample = tmp_path / "lazy.py"
    sample.write_text("def f():\n    from atrous.engine import train\n    return train\n")
    assert _targets(sample) == {"engine"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(path_root(path)).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Imports between modules of one sub-package (lazy and type-only ones included;
    a package's own ``__init__`` re-exports are left out)."""
    modules = {_module_name(p): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    candidate = f"{node.module}.{alias.name}"
                    targets.add(candidate if candidate in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        package = name.split(".")[:2]
        graph[name] = {
            t
            for t in targets
            if t in modules and t != name and t.split(".")[:2] == package and t.count(".") > 1
        }
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circles_inside_packages() -> None:
    assert circles(module_graph()) == []


def test_the_circle_check_catches_a_planted_circle(tmp_path: Path) -> None:
    package = tmp_path / "atrous" / "engine"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from atrous.engine.b import g\n")
    (package / "b.py").write_text("from atrous.engine import a\n")
    assert circles(module_graph(tmp_path / "atrous")) == [["atrous.engine.a", "atrous.engine.b"]]


def path_root(path: Path) -> Path:
    """The folder holding the ``atrous`` package that ``path`` belongs to."""
    for parent in path.parents:
        if parent.name == "atrous":
            return parent.parent
    raise ValueError(f"{path} is not inside an atrous package")
