"""The imports inside atrous.infer point one way, lazy imports in function bodies included.

A circle through lazy imports (predictor -> fast -> export -> predictor once) works until
someone moves one import to the top of a file; this walks every import statement in the
source, wherever it stands, and fails on any cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import atrous

PACKAGE_ROOT = Path(atrous.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ``atrous...`` module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from atrous.infer import fast` imports the submodule atrous.infer.fast.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] == "atrous"}


def _graph(package: str) -> dict[str, set[str]]:
    folder = PACKAGE_ROOT.joinpath(*package.split(".")[1:])
    modules = {_module_name(p): p for p in sorted(folder.rglob("*.py"))}
    return {name: _imports(path) & set(modules) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_cycle_finder_finds_a_lazy_circle() -> None:
    # The shape this test exists for, as it stood at commit d3e552b.
    graph = {"predictor": {"fast"}, "fast": {"predictor", "export"}, "export": {"predictor"}}
    assert _cycle(graph) == ["export", "predictor", "fast", "export"]
    assert _cycle({"predictor": {"fast"}, "fast": {"logits"}, "export": {"logits"}}) is None


def test_walker_sees_imports_inside_functions() -> None:
    graph = _graph("atrous.infer")
    assert "atrous.infer.logits" in graph["atrous.infer.fast"]
    # cli/predict imports the fast path inside a function body only.
    assert "atrous.infer.fast" in _imports(PACKAGE_ROOT / "cli" / "predict.py")


def test_infer_has_no_import_cycle() -> None:
    graph = _graph("atrous.infer")
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph) or [])}"
    assert graph["atrous.infer.logits"] == set()


def test_lower_layers_do_not_import_infer() -> None:
    # infer reads images through atrous.data.io; data (and the device helper) must not
    # reach back up into infer, engine, serve, the CLI or the demo.
    upper = ("atrous.infer", "atrous.engine", "atrous.serve", "atrous.cli", "atrous.demo")
    for path in [*sorted((PACKAGE_ROOT / "data").rglob("*.py")), PACKAGE_ROOT / "device.py"]:
        bad = sorted(name for name in _imports(path) if name.startswith(upper))
        assert not bad, f"{path.relative_to(PACKAGE_ROOT)} imports {bad}"
    assert _imports(PACKAGE_ROOT / "device.py") == set()


def test_cli_imports_only_public_names() -> None:
    # The command line is a client of the package: it calls public functions only, so
    # a private helper can change without breaking a command (cli/adjust_prior.py once
    # imported cli.eval._guess_format and models.pretrained._resolve).
    for path in sorted((PACKAGE_ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("atrous"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
                parts = (node.module or "").split(".")
                assert not any(p.startswith("_") for p in parts), f"{path.name}: {node.module}"
