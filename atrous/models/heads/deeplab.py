"""DeepLabV3 head and DeepLabV3+ decoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atrous.models.heads.aspp import ASPP
from atrous.ops import AtrousConv2d, SeparableAtrousConv2d, make_norm
from atrous.ops.layers import NormSpec, uses_norm


class DeepLabHead(nn.Sequential):
    """ASPP, a 3x3 conv and a 1x1 classifier (DeepLabv3, Chen et al., 2017, arXiv:1706.05587).

    Indices match torchvision's ``DeepLabHead`` (``0`` ASPP, ``1`` conv, ``2`` norm,
    ``3`` ReLU, ``4`` classifier).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        rates: Sequence[int],
        channels: int = 256,
        separable: bool = False,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__(
            ASPP(in_channels, rates=rates, out_channels=channels, separable=separable, norm=norm),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not uses_norm(norm)),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_classes, 1),
        )


class DeepLabV3PlusHead(nn.Module):
    """ASPP on the deep map, upsampled and fused with stride-4 features projected to 48 channels.

    Encoder-decoder with atrous separable convolution (DeepLabV3+, Chen et al., 2018,
    arXiv:1802.02611). Few low-level channels keep the fine features from outweighing
    the semantic ones.
    """

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        *,
        rates: Sequence[int],
        channels: int = 256,
        low_level_projection: int = 48,
        separable: bool = True,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        self.aspp = ASPP(
            in_channels,
            rates=rates,
            out_channels=channels,
            separable=separable,
            norm=norm,
            dropout=0.1,
        )
        self.low_level = AtrousConv2d(low_level_channels, low_level_projection, 1, norm=norm)
        conv = SeparableAtrousConv2d if separable else AtrousConv2d
        self.fuse = nn.Sequential(
            conv(channels + low_level_projection, channels, 3, norm=norm),
            conv(channels, channels, 3, norm=norm),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, high: Tensor, low: Tensor) -> Tensor:
        context = self.aspp(high)
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        fused = self.fuse(torch.cat([context, self.low_level(low)], dim=1))
        return self.classifier(fused)
