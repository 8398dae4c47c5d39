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
