"""build_model / list_models: the registry and its errors."""

from __future__ import annotations

import pytest

import atrous
from atrous.models import build_model, list_models


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(ValueError, match="dilated_net"):
        build_model("no_such_model", num_classes=2)


def test_unknown_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="dilated_net"):
        build_model("dilated_net", num_classes=2, no_such_option=1)


def test_top_level_exports() -> None:
    assert atrous.list_models() == list_models()
    assert "dilated_net" in list_models()


@pytest.mark.parametrize("name", list_models())
def test_config_names_every_builder_argument(name: str) -> None:
    """Each builder records exactly its signature's arguments (written out, not taken
    from ``locals()``), so ``build_model(**model.config)`` rebuilds it."""
    import inspect

    import torch

    from atrous.models.registry import MODELS

    with torch.device("meta"):
        model = build_model(name, num_classes=3)
    expected = set(inspect.signature(MODELS[name]).parameters)
    assert set(model.config) - {"name"} == expected
    assert model.config["name"] == name and model.config["num_classes"] == 3


def test_no_builder_reads_locals() -> None:
    from pathlib import Path

    models = Path(atrous.__file__).parent / "models"
    offenders = [
        str(path)
        for path in models.rglob("*.py")
        if "locals()" in path.read_text().replace("``locals()``", "")
    ]
    assert offenders == []


def test_the_package_map_names_real_files() -> None:
    """Every path in atrous.models' docstring map exists (a moved file fails here)."""
    import re
    from pathlib import Path

    import atrous.models

    root = Path(atrous.models.__file__).parent
    doc = atrous.models.__doc__ or ""
    named = re.findall(r"models/([\w/]+\.py|[\w]+/)", doc)
    assert len(named) >= 10
    for entry in named:
        assert (root / entry).exists(), entry
    for folder in ("builders/", "backbones/", "heads/"):
        files = re.findall(rf"{folder}\s+.*?(?=\n    models/|\Z)", doc, flags=re.S)
        listed = set(re.findall(r"(\w+)\.py", files[0]))
        actual = {p.stem for p in (root / folder).glob("*.py") if p.stem != "__init__"}
        assert actual <= listed, (folder, actual - listed)
