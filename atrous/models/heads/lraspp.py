"""Lite R-ASPP head (Howard et al., 2019, arXiv:1905.02244, "Searching for MobileNetV3").

ASPP without atrous branches: a 1x1 conv on the deep map, gated per channel by a global
pool and sigmoid (squeeze-excitation-like image context), upsampled to a stride-8 map
and added to a linear classifier on that map. Keys (``cbr``, ``scale``,
``low_classifier``, ``high_classifier``) and arithmetic are torchvision's
``LRASPPHead``, so ``lraspp_mobilenet_v3_large`` weights load without renaming.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from atrous.models.gates import ChannelGate
from atrous.ops import AtrousConv2d
from atrous.ops.layers import NormSpec


class LRASPPHead(nn.Module):
    """Classifier over a low-level (stride 8) and a high-level (stride 16) map.

    Args:
        low_channels: channels of the low-level map.
        high_channels: channels of the high-level map.
        num_classes: output classes.
        channels: width of the gated 1x1 branch (128 in the paper and torchvision).
        norm: normalisation after the 1x1 conv, ``"batch"`` (torchvision) or ``"group"``.
    """

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        *,
        channels: int = 128,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        self.cbr = AtrousConv2d(high_channels, channels, 1, norm=norm)
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.gate = ChannelGate()
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        context = self.gate(self.cbr(high), self.scale(high))
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(context)
