"""The package map's arrows point one way: a sub-package imports only from layers below it.

Every ``import`` statement counts, at the top of a file or inside a function (a lazy
import is still an arrow). The map, top to bottom (also in the README):

    __main__, cli            `python -m atrous` and the `atrous` command
    demo, scale              the main job; Ray Data / Ray Serve
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
    {"ops", "constants", "device"},
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
