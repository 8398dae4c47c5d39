"""Atrous spatial pyramid pooling (DeepLabv3, Chen et al., 2017, arXiv:1706.05587).

Keys match torchvision's ``ASPP`` (``convs.0`` 1x1 branch, ``convs.1..n`` rate
branches, ``convs.<last>`` image pooling, ``project``), so torchvision DeepLabV3 weights
load without renaming.

Batch size 1: torchvision's pooling branch applies BatchNorm to a 1x1 map, which has a
single value per channel at batch size 1 and raises in training. Here, when the pooled
map holds one value per channel in training, that BatchNorm normalises with its running
statistics (as in eval mode) and leaves them unchanged; its affine weights still train.
With a batch of 2 or more it is an ordinary BatchNorm, so torchvision parity holds.
Note that at batch size 1 the pooled branch is a per-image constant, which the
BatchNorm after the projection (statistics over that one image) removes again, so it
barely learns; ``norm="group"`` keeps its contribution (tests/models/test_heads.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atrous.ops import AtrousConv2d, SeparableAtrousConv2d, make_norm
from atrous.ops.layers import NormSpec, uses_norm

DEFAULT_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}


def default_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP rates for an output stride: (6, 12, 18) at 16, doubled at 8, halved at 32."""
    if output_stride not in DEFAULT_RATES:
        raise ValueError(
            f"no default ASPP rates for output_stride={output_stride}; pass aspp_rates "
            f"explicitly or use one of {sorted(DEFAULT_RATES)}"
        )
    return DEFAULT_RATES[output_stride]


class ImagePooling(nn.Sequential):
    """Global average pool, 1x1 conv, norm, ReLU, broadcast back to the input size."""

    def __init__(self, in_channels: int, out_channels: int, *, norm: NormSpec = "batch") -> None:
        norm_layer = make_norm(norm, out_channels)
        if isinstance(norm_layer, nn.GroupNorm) and norm_layer.num_groups == out_channels:
            raise ValueError(
                f"GroupNorm with one channel per group ({out_channels} groups) normalises the "
                "pooled 1x1 map to a constant; use at least 64 head channels with norm='group'"
            )
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=not uses_norm(norm)),
            norm_layer,
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = self[1](self[0](x))
        norm = self[2]
        if isinstance(norm, nn.BatchNorm2d) and self.training and pooled.shape[0] == 1:
            pooled = F.batch_norm(
                pooled,
                norm.running_mean,
                norm.running_var,
                norm.weight,
                norm.bias,
                False,
                0.0,
                norm.eps,
            )
        else:
            pooled = norm(pooled)
        pooled = self[3](pooled)
        return F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Parallel 1x1, dilated 3x3 and image-pooling branches, concatenated and projected.

    Args:
        in_channels: channels of the backbone map.
        rates: dilation rates of the 3x3 branches (see ``default_rates``).
        out_channels: channels of each branch and of the output.
        separable: depthwise-separable 3x3 branches (DeepLabV3+).
        norm: normalisation of every branch.
        dropout: dropout after the projection (0.5 in torchvision).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        rates: Sequence[int],
        out_channels: int = 256,
        separable: bool = False,
        norm: NormSpec = "batch",
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if any(not isinstance(rate, int) or rate < 1 for rate in rates):
            raise ValueError(f"ASPP rates must be ints >= 1, got {list(rates)}")
        branch = SeparableAtrousConv2d if separable else AtrousConv2d
        modules: list[nn.Module] = [AtrousConv2d(in_channels, out_channels, 1, norm=norm)]
        modules += [branch(in_channels, out_channels, 3, rate=rate, norm=norm) for rate in rates]
        modules.append(ImagePooling(in_channels, out_channels, norm=norm))
        self.convs = nn.ModuleList(modules)
        self.rates = tuple(rates)
        self.project = nn.Sequential(
            *AtrousConv2d(len(modules) * out_channels, out_channels, 1, norm=norm),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))
