"""Every code block of README.md and docs/ runs here, so no example goes stale.

Python blocks run in order, one namespace per page (as markdown-exec runs a page's
session while the site builds), in a scratch folder that holds a link to ``configs/``.
A block that needs CamVid or a long run is preceded by ``<!-- skip: next "why" -->``
(Sybil's skip directive) and is reported as skipped with that reason. Console blocks
are checked line by line: every ``$ atrous ...`` command must parse with the real
``atrous`` parser (its subcommand and flags exist), without running it.
"""

from __future__ import annotations

import re
import shlex
import unittest
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.evaluators.python import PythonEvaluator
from sybil.parsers.abstract import AbstractCodeBlockParser
from sybil.parsers.markdown import SkipParser
from sybil.parsers.markdown.lexers import RawFencedCodeBlockLexer

from atrous.cli import build_parser

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").rglob("*.md")],
    key=lambda path: str(path),
)


class _FenceParser(AbstractCodeBlockParser):
    """Fenced blocks whose info string starts with ``language``; markdown-exec's options
    (``exec="on" session=...``) may follow it."""

    def __init__(self, language: str, evaluator) -> None:  # type: ignore[no-untyped-def]
        lexer = RawFencedCodeBlockLexer(
            info_pattern=re.compile(rf"(?P<arguments>{language})(?:[ \t][^\n]*)?$\n", re.MULTILINE),
            mapping={"arguments": "arguments", "source": "source"},
        )
        super().__init__([lexer], language, evaluator)


def _commands(source: str) -> list[list[str]]:
    """``atrous`` argument lists of the ``$ `` lines of a console block."""
    commands = []
    for line in source.splitlines():
        if not line.startswith("$ "):
            continue
        words = shlex.split(line[2:], comments=True)
        if "atrous" not in words:
            continue
        words = words[words.index("atrous") + 1 :]
        # `...` stands for "the same flags as above" in the README's prose-like listings.
        commands.append([word for word in words if word != "..."])
    return commands


def _check_console(example) -> None:  # type: ignore[no-untyped-def]
    parser = build_parser()
    for argv in _commands(example.parsed):
        try:
            parser.parse_args(argv)
        except SystemExit as exit_:
            if exit_.code:
                raise AssertionError(
                    f"{example.path}:{example.line}: `atrous {shlex.join(argv)}` does not parse"
                ) from None


SYBIL = Sybil(
    parsers=[
        _FenceParser("python", PythonEvaluator()),
        _FenceParser("console", _check_console),
        SkipParser(),
    ],
)


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder like the repository root: ``configs/`` and ``docs/`` are there,
    outputs stay here."""
    for folder in ("configs", "docs"):  # read by the blocks, as from the repository root
        (tmp_path / folder).symlink_to(REPO_ROOT / folder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize("page", PAGES, ids=lambda path: str(path.relative_to(REPO_ROOT)))
def test_page_blocks_run(page: Path, scratch: Path) -> None:
    document = SYBIL.parse(page)
    ran, skipped = 0, []
    for example in document.examples():
        try:
            example.evaluate()
        except unittest.SkipTest as skip:
            skipped.append(f"line {example.line}: {skip}")
            continue
        ran += 1
    if skipped and not ran:
        pytest.skip("; ".join(skipped))


def test_the_parser_finds_blocks_with_markdown_exec_options(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        'Text.\n\n```python exec="on" session="a"\nx = 1\n```\n\n'
        "```python\nassert x == 1\n```\n\n"
        '<!-- skip: next "needs CamVid" -->\n\n```python\nraise RuntimeError\n```\n\n'
        "```console\n$ atrous rf --kernel 3 --rates 1,2\n$ atrous no-such-command\n```\n"
    )
    examples = list(SYBIL.parse(page).examples())
    assert len(examples) == 5  # two blocks, the skip directive, the skipped block, console
    examples[0].evaluate()
    examples[1].evaluate()
    examples[2].evaluate()
    with pytest.raises(unittest.SkipTest, match="needs CamVid"):
        examples[3].evaluate()
    with pytest.raises(AssertionError, match="no-such-command"):
        examples[4].evaluate()
