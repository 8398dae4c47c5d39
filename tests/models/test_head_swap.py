"""Fine-tuning to another class count: ``load_pretrained(path, num_classes=N)``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.models import build_model, load_pretrained, save_pretrained
from atrous.models.pretrained import class_dependent_keys


def _saved(tmp_path: Path, name: str, **options: object) -> tuple[Path, torch.nn.Module]:
    model = build_model(name, num_classes=5, **options).eval()
    directory = tmp_path / name
    save_pretrained(model, directory, class_names=[f"c{i}" for i in range(5)])
    return directory, model


@pytest.mark.parametrize(
    ("name", "options", "classifier"),
    [
        ("dilated_net", {"width": 8}, {"classifier.weight", "classifier.bias"}),
        (
            "deeplabv3",
            {"backbone": "resnet18", "aux": True},
            {
                "classifier.4.weight",
                "classifier.4.bias",
                "aux_classifier.4.weight",
                "aux_classifier.4.bias",
            },
        ),
    ],
)
def test_head_swap_keeps_every_weight_but_the_class_convs(
    tmp_path: Path, name: str, options: dict, classifier: set[str]
) -> None:
    directory, original = _saved(tmp_path, name, **options)
    swapped = load_pretrained(directory, num_classes=3)
    assert swapped.num_classes == 3
    assert swapped.class_names is None and swapped.palette is None
    assert swapped.metadata["fine_tuned_from"] == {"model": str(directory), "num_classes": 5}
    before, after = original.state_dict(), swapped.state_dict()
    changed = {key for key in before if before[key].shape != after[key].shape}
    assert changed == classifier
    for key in before.keys() - changed:
        assert torch.equal(before[key], after[key]), key
    logits = swapped(torch.randn(1, 3, 45, 45))
    assert logits.shape == (1, 3, 45, 45)


def test_same_class_count_loads_as_saved(tmp_path: Path) -> None:
    directory, original = _saved(tmp_path, "dilated_net", width=8)
    again = load_pretrained(directory, num_classes=5)
    assert again.class_names == [f"c{i}" for i in range(5)]
    for key, tensor in original.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[key])


def test_class_dependent_keys_of_duc_include_the_upsampling_conv() -> None:
    config = {"name": "duc_hdc", "num_classes": 5, "backbone": "resnet18"}
    keys = class_dependent_keys(config, 7)
    assert keys and all(key.startswith(("classifier", "aux_classifier")) for key in keys)


def test_bad_class_count_is_one_clear_error(tmp_path: Path) -> None:
    directory, _ = _saved(tmp_path, "dilated_net", width=8)
    with pytest.raises(ValueError, match="num_classes=0"):
        load_pretrained(directory, num_classes=0)
