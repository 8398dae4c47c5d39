"""The examples on the API reference pages run, and the main entry points have one.

The reference pages (``docs/reference/*.md``) render each module's public names with
mkdocstrings; a docstring's ``Example:`` section holds a fenced ``python`` block. Each
block runs here on its own, in a scratch folder that holds a link to ``configs/``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(
    name
    for page in (REPO_ROOT / "docs" / "reference").glob("*.md")
    for name in re.findall(r"^::: ([\w.]+)$", page.read_text(), flags=re.M)
)
# What a reader reaches for first on each reference page.
MAIN_ENTRY_POINTS = {
    "atrous.ops": ["dilated_conv1d", "dilated_conv2d", "AtrousConv2d", "DilationSchedule"],
    "atrous.analysis": [
        "chain_coverage",
        "coverage_map",
        "effective_receptive_field",
        "hdc_check",
        "design_schedules",
        "receptive_field_table",
        "plot_schedules",
    ],
    "atrous.models": [
        "build_model",
        "list_models",
        "load_pretrained",
        "save_pretrained",
        "from_torchvision",
    ],
    "atrous.data": ["build_dataset", "check_dataset", "train_transforms"],
    "atrous.engine": ["load_config", "train", "evaluate", "ConfusionMatrix"],
    "atrous.infer": ["Predictor", "colorize"],
    "atrous.infer.runtime": ["choose"],
}
EXAMPLE = re.compile(r"^Examples?:\n((?:[ \t]+.*\n|\n)+)", flags=re.M)
FENCE = re.compile(r"```python\n(.*?)```", flags=re.S)


def examples(docstring: str) -> list[str]:
    """The fenced python blocks of a docstring's Example(s) sections, dedented."""
    blocks = []
    for section in EXAMPLE.findall(docstring + "\n"):
        lines = section.splitlines()
        indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
        text = "\n".join(line[indent:] for line in lines) + "\n"
        blocks += FENCE.findall(text)
    return blocks


def documented_examples() -> list[tuple[str, str]]:
    found = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            docstring = inspect.getdoc(getattr(module, name)) or ""
            found += [
                (f"{module_name}.{name}[{i}]", code) for i, code in enumerate(examples(docstring))
            ]
    return found


EXAMPLES = documented_examples()


@pytest.mark.parametrize("code", [code for _, code in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").symlink_to(REPO_ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})


def test_every_main_entry_point_has_an_example() -> None:
    assert set(MAIN_ENTRY_POINTS) <= set(MODULES)
    with_examples = {name.rsplit("[", 1)[0] for name, _ in EXAMPLES}
    missing = [
        f"{module}.{name}"
        for module, names in MAIN_ENTRY_POINTS.items()
        for name in names
        if f"{module}.{name}" not in with_examples
    ]
    assert not missing, f"no Example: section with a python block: {missing}"


def test_the_example_finder_reads_google_sections() -> None:
    docstring = "Do it.\n\nArgs:\n    x: a value.\n\nExample:\n    ```python\n    y = 1\n    ```\n"
    assert examples(docstring) == ["y = 1\n"]
