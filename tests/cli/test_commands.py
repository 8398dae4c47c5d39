"""The command table: every listed subcommand exists, and commands share helpers only
through ``atrous.cli.common``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import atrous.cli
from atrous.cli import SUBCOMMANDS, build_parser

CLI = Path(atrous.cli.__file__).parent
COMMAND_MODULES = {name.replace("-", "_") for name in SUBCOMMANDS}


def test_every_subcommand_is_registered() -> None:
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert set(choices) == set(SUBCOMMANDS)


def test_a_missing_subcommand_module_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atrous.cli, "SUBCOMMANDS", (*SUBCOMMANDS, "no-such-command"))
    with pytest.raises(RuntimeError, match=r"no-such-command.*atrous\.cli\.no_such_command"):
        atrous.cli.build_parser()


def _sibling_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("atrous.cli.")
        ):
            found.add(node.module.removeprefix("atrous.cli."))
    return found & COMMAND_MODULES


def test_commands_import_no_sibling_command() -> None:
    offenders = {
        path.name: sorted(_sibling_imports(path))
        for path in CLI.glob("*.py")
        if _sibling_imports(path)
    }
    assert offenders == {}


def test_the_sibling_check_can_fail(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("from atrous.cli.rf import build_from_args\n")
    assert _sibling_imports(planted) == {"rf"}
