"""dilated_net: the rate list is the only difference between schedules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atrous.models import build_model


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_same_parameter_count_for_any_rates() -> None:
    counts = {
        rates: _param_count(build_model("dilated_net", num_classes=3, rates=rates, width=8))
        for rates in [(1, 1, 1, 1), (4, 4, 4, 4), (1, 2, 5, 9)]
    }
    assert len(set(counts.values())) == 1, counts


@pytest.mark.parametrize("stem_stride", [1, 2, 4])
def test_convs_carry_the_rates_and_stride(stem_stride: int) -> None:
    model = build_model(
        "dilated_net", num_classes=3, rates=(1, 2, 5, 9), width=8, stem_stride=stem_stride
    )
    body_convs = [m for m in model.backbone.body.modules() if isinstance(m, nn.Conv2d)]
    assert [c.dilation for c in body_convs] == [(1, 1), (2, 2), (5, 5), (9, 9)]
    assert model.dilations == [1, 2, 5, 9]
    assert model.output_stride == stem_stride
    x = torch.randn(1, 3, 45, 45)
    features = model.backbone(x)
    assert features["body"].shape[-1] == -(-45 // stem_stride)
    assert model(x).shape == (1, 3, 45, 45)


def test_matches_a_hand_written_reference() -> None:
    """The body equals torch's conv with the same weights and padding r (k=3)."""
    model = build_model("dilated_net", num_classes=2, rates=(3,), width=4, norm="none").eval()
    stem_conv, body_conv = model.backbone.stem[0].conv, model.backbone.body[0].conv
    x = torch.randn(1, 3, 20, 20)
    hidden = torch.relu(nn.functional.conv2d(x, stem_conv.weight, stem_conv.bias, 2, 1))
    hidden = torch.relu(
        nn.functional.conv2d(hidden, body_conv.weight, body_conv.bias, 1, padding=3, dilation=3)
    )
    logits = nn.functional.conv2d(hidden, model.classifier.weight, model.classifier.bias)
    expected = nn.functional.interpolate(logits, size=(20, 20), mode="bilinear")
    torch.testing.assert_close(model(x), expected)


def test_bad_options_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="stem_stride=3"):
        build_model("dilated_net", num_classes=2, stem_stride=3)
    with pytest.raises(ValueError, match="rates"):
        build_model("dilated_net", num_classes=2, rates=(1, 0))
