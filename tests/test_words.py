"""The project's texts speak to its users: no words about how it was made.

A user has no "seed" document and cannot read the tracker's issues; dates, commits
and CPUs say when and where a figure was measured. This scans every text file git
tracks (code, docs, configs, model cards, benchmark records) for such words.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Built from parts so this file does not match itself.
FORBIDDEN = {
    "the project's seed document": r"\bthe "
    + "seed\\b(?!s)(?! \\d)(?!=)(?! spread)|"
    + "seed"
    + "'s",
    "a work period": r"\b(?:development |GPU |this |earlier |later )" + "session\\b|\\bsession \\d",
    "an issue number": r"\b" + "issue" + r"s? #?\d+",
    "how the job was framed": r"\b" + "main" + r" job\b",
    "who lent a machine": r"\b(?:" + "lent|borrowed" + r")\b",
    "a path of the machine that measured": r"(?<![.\w])/" + r"(?:work|root)/",
}
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".sh", ".html", ".js", ".css", ".toml", ".txt"}


def tracked_texts(root: Path = REPO) -> list[Path]:
    try:
        listing = subprocess.run(
            ["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    names = [root / name for name in listing if Path(name).name != Path(__file__).name]
    return [path for path in names if path.suffix in SUFFIXES or path.name == "Makefile"]


def offences(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if re.search(pattern, line, flags=re.IGNORECASE):
                    found.append(f"{path.name}:{number}: {what}: {line.strip()[:100]}")
    return found


def test_texts_speak_of_the_project() -> None:
    assert offences(tracked_texts()) == []


def test_the_word_check_finds_a_planted_line(tmp_path: Path) -> None:
    planted = tmp_path / "notes.md"
    planted.write_text(
        "Fixed in iss"
        + "ue 12.\nThe ma"
        + "in job runs.\nA GPU was "
        + "lent.\nrandom seed 3\ndata: /"
        + "work/shared/x\ndata: ../shared/x\n"
    )
    found = offences([planted])
    assert [line.split(": ")[1] for line in found] == [
        "an issue number",
        "how the job was framed",
        "who lent a machine",
        "a path of the machine that measured",
    ]


def test_docstrings_hold_no_sphinx_roles() -> None:
    """mkdocstrings renders ``:class:`X``` as raw text on the API pages; write ``X``."""
    package = REPO / "atrous"
    role = re.compile(r":(class|func|meth|data|mod|attr|exc|obj):`")
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if role.search(line)
    ]
    assert found == []
