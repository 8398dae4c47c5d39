"""FCN head: a 3x3 conv and a 1x1 classifier on the deepest map.

Fully convolutional networks (Long, Shelhamer & Darrell, 2015, arXiv:1411.4038), in
torchvision's form: also the auxiliary head of DeepLab models.
"""

from __future__ import annotations

from torch import nn

from atrous.ops import make_norm
from atrous.ops.layers import NormSpec, uses_norm


class FCNHead(nn.Sequential):
    """Indices match torchvision's ``FCNHead`` (``0`` conv, ``1`` norm, ``4`` classifier)."""

    def __init__(
        self, in_channels: int, num_classes: int, *, norm: NormSpec = "batch", dropout: float = 0.1
    ) -> None:
        inter = max(1, in_channels // 4)
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=not uses_norm(norm)),
            make_norm(norm, inter),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(inter, num_classes, 1),
        )
