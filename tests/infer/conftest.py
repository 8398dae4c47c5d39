"""Tiny models for the inference tests: small, fast, and shaped like a DeepLab head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atrous.constants import voc_palette


class TinyASPPNet(nn.Module):
    """A DeepLab-shaped toy: strided stem, dilated conv, ASPP with an image-pooling branch
    (adaptive pool to 1x1 then upsample to a dynamic size), classifier, upsample to input.

    It has the same export hazards as the real model (dynamic interpolate sizes, pooling
    to 1x1, BatchNorm to fold) at a few thousand parameters.
    """

    def __init__(self, num_classes: int = 5, width: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.dilated = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.pool_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(width, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(2 * width, num_classes, 1)
        self.num_classes = num_classes
        self.class_names = [f"class{i}" for i in range(num_classes)]
        self.palette = voc_palette(num_classes)
        # Non-trivial BatchNorm statistics so that folding them is really tested.
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                nn.init.uniform_(module.weight, 0.5, 1.5)
                nn.init.uniform_(module.bias, -0.2, 0.2)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = self.dilated(self.stem(x))
        pooled = self.pool_branch(features)
        pooled = F.interpolate(
            pooled, size=features.shape[-2:], mode="bilinear", align_corners=False
        )
        logits = self.classifier(torch.cat([features, pooled], dim=1))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class PointwiseNet(nn.Module):
    """Per-pixel model (1x1 convs only): its output at a pixel depends on that pixel alone,
    so sliding-window and whole-image inference must agree exactly, and it is
    flip-equivariant."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Conv2d(6, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def tiny_model() -> TinyASPPNet:
    return TinyASPPNet().eval()


@pytest.fixture
def rgb_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
