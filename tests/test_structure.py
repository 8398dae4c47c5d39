"""The package stays readable: no function anywhere in atrous/ longer than a screen."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "atrous"
MAX_LINES = 80


def long_functions(folder: Path, root: Path = PACKAGE) -> list[str]:
    """``file:line name (n lines)`` (file relative to ``root``) for every function under
    ``folder`` over MAX_LINES."""
    long = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_LINES:
                    name = path.relative_to(root).as_posix()
                    long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    return long


def test_no_function_is_longer_than_a_screen() -> None:
    long = long_functions(PACKAGE)
    assert not long, f"split these into parts that fit on a screen: {long}"


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "long.py").write_text(f"def too_long():\n{body}\n\n\ndef short():\n    pass\n")
    found = long_functions(tmp_path, root=tmp_path)
    assert found == [f"long.py:1 too_long ({MAX_LINES + 1} lines)"]
