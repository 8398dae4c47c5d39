"""Parity with torchvision's segmentation models: same weights, same outputs."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.segmentation import deeplabv3_resnet50, fcn_resnet50

from atrous.models import build_model, from_torchvision


@pytest.fixture(scope="module")
def torchvision_deeplabv3() -> torch.nn.Module:
    torch.manual_seed(1)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True, num_classes=5)
    # Non-trivial BatchNorm statistics, so eval mode is not the identity normalisation.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


def test_deeplabv3_resnet50_matches_torchvision(torchvision_deeplabv3: torch.nn.Module) -> None:
    """build_model("deeplabv3", resnet50, OS8, aux) takes torchvision's state dict strictly."""
    ours = build_model("deeplabv3", num_classes=5, backbone="resnet50", output_stride=8, aux=True)
    ours.load_state_dict(torchvision_deeplabv3.state_dict(), strict=True)
    ours.eval()
    for size in [(65, 65), (63, 97), (32, 48)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = torchvision_deeplabv3(x)
            actual = ours(x, return_aux=True)
        assert actual["out"].shape == (1, 5, *size)
        assert (actual["out"] - expected["out"]).abs().max() <= 1e-5, size
        assert (actual["aux"] - expected["aux"]).abs().max() <= 1e-5, size
    converted = from_torchvision("deeplabv3_resnet50", torchvision_deeplabv3.state_dict())
    assert converted.num_classes == 5
    assert converted.aux_classifier is not None
    assert converted.config == ours.config
    assert not converted.training
    with pytest.raises(ValueError, match="supported: deeplabv3_resnet50"):
        from_torchvision("fcn_mobilenet_v3_large", {})


def test_fcn_resnet50_matches_torchvision() -> None:
    reference = fcn_resnet50(weights=None, weights_backbone=None, num_classes=4).eval()
    ours = from_torchvision("fcn_resnet50", reference.state_dict())
    assert ours.aux_classifier is None
    x = torch.randn(1, 3, 35, 37)
    with torch.no_grad():
        assert (ours(x) - reference(x)["out"]).abs().max() <= 1e-5
