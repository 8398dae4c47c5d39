"""Dense upsampling convolution (DUC).

Understanding convolution for semantic segmentation (Wang et al., 2018,
arXiv:1702.08502): predict ``r*r`` sub-pixel score maps per class at the feature
resolution and rearrange them to full resolution, a learned upsampling instead of
bilinear interpolation, which cannot recover detail finer than the stride.
"""

from __future__ import annotations

from torch import Tensor, nn

from atrous.ops import AtrousConv2d
from atrous.ops.layers import NormSpec


class DUCHead(nn.Module):
    """3x3 conv to ``num_classes * upscale**2`` channels then pixel shuffle by ``upscale``."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        upscale: int,
        channels: int = 256,
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        self.conv = AtrousConv2d(in_channels, channels, 3, norm=norm)
        self.classifier = nn.Conv2d(channels, num_classes * upscale**2, 3, padding=1)
        self.shuffle = nn.PixelShuffle(upscale)
        self.upscale = upscale

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.classifier(self.conv(x)))
