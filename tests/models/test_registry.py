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
