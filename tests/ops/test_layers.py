from __future__ import annotations

import pytest
import torch
from torch import nn

from atrous.ops import (
    AtrousConv2d,
    SeparableAtrousConv2d,
    conv_output_size,
    effective_kernel_size,
    same_padding,
)


@pytest.mark.parametrize(
    ("k", "r", "span"), [(3, 1, 3), (3, 2, 5), (3, 4, 9), (5, 3, 13), (1, 7, 1)]
)
def test_effective_kernel_size(k: int, r: int, span: int) -> None:
    assert effective_kernel_size(k, r) == span


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("r", [1, 2, 3, 6, 12])
def test_same_padding_keeps_size_against_torch(k: int, r: int) -> None:
    size = 40
    conv = nn.Conv2d(1, 1, k, padding=same_padding(k, r), dilation=r)
    assert conv(torch.randn(1, 1, size, size)).shape[-2:] == (size, size)
    assert conv_output_size(size, k, 1, same_padding(k, r), r) == size


def test_conv_output_size_matches_torch() -> None:
    for n, k, s, p, r in [(17, 3, 2, 1, 1), (33, 3, 2, 2, 2), (10, 5, 3, 0, 2), (7, 3, 1, 0, 3)]:
        conv = nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=r)
        assert conv(torch.randn(1, 1, n)).shape[-1] == conv_output_size(n, k, s, p, r)


def test_even_kernel_same_padding_error() -> None:
    with pytest.raises(ValueError, match="kernel_size=4 is even"):
        same_padding(4, 2)
    with pytest.raises(ValueError, match="rate must be >= 1"):
        effective_kernel_size(3, 0)


@pytest.mark.parametrize("norm", ["batch", "group", "none", None])
@pytest.mark.parametrize("rate", [1, 2, 6])
def test_atrous_conv_keeps_size(norm: str | None, rate: int) -> None:
    layer = AtrousConv2d(8, 16, rate=rate, norm=norm)
    assert layer.conv.dilation == (rate, rate)
    assert layer(torch.randn(1, 8, 21, 30)).shape == (1, 16, 21, 30)
    assert (layer.conv.bias is None) == (norm not in (None, "none"))


def test_atrous_conv_keys_match_torchvision_aspp_conv() -> None:
    from torchvision.models.segmentation.deeplabv3 import ASPPConv

    ours = AtrousConv2d(8, 16, rate=12)
    theirs = ASPPConv(8, 16, 12)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    theirs.eval()
    x = torch.randn(2, 8, 15, 15)
    torch.testing.assert_close(ours(x), theirs(x))


def test_separable_is_depthwise_then_pointwise() -> None:
    layer = SeparableAtrousConv2d(8, 16, rate=3, norm="group")
    assert layer.depthwise.conv.groups == 8
    assert layer.depthwise.conv.dilation == (3, 3)
    assert layer.pointwise.conv.kernel_size == (1, 1)
    assert layer(torch.randn(1, 8, 13, 17)).shape == (1, 16, 13, 17)
    dense = AtrousConv2d(8, 16, rate=3)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(layer) < count(dense)


def test_unknown_norm_lists_choices() -> None:
    with pytest.raises(ValueError, match="batch"):
        AtrousConv2d(4, 4, norm="layer")
