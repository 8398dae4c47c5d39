"""Context module: exponentially dilated 3x3 layers on class score maps.

Multi-scale context aggregation by dilated convolutions (Yu & Koltun, 2016,
arXiv:1511.07122). Seven 3x3 layers at dilation 1, 1, 2, 4, 8, 16, 1 and a 1x1 layer
grow the receptive field to 67x67 at full coverage without losing resolution. Identity
initialisation matters: with random init the module did not train in the paper, so at
init it passes its input through (basic) or nearly so (large).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from atrous.ops.schedule import CONTEXT_MODULE

SCHEDULE = CONTEXT_MODULE
"""The module's schedule (one stage, ``"context"``); analysis reads the same value."""
DILATIONS = SCHEDULE.stage_rates["context"]
LARGE_MULTIPLIERS = (2, 2, 4, 8, 16, 32, 32)


class ContextModule(nn.Module):
    """The basic (C channels throughout) or large (up to 32C) context module.

    Args:
        channels: C, the number of classes of the score maps it refines.
        variant: ``"basic"`` or ``"large"``.
        noise: std of the noise added to the large module's identity init (the paper's
            epsilon, much smaller than the init values); 0 makes it deterministic.
    """

    def __init__(self, channels: int, *, variant: str = "basic", noise: float = 1e-3) -> None:
        super().__init__()
        if variant not in ("basic", "large"):
            raise ValueError(f"unknown context variant {variant!r}; choose 'basic' or 'large'")
        widths = [channels] * 7 if variant == "basic" else [m * channels for m in LARGE_MULTIPLIERS]
        layers: list[nn.Module] = []
        inputs = channels
        kernel = SCHEDULE.kernel_size
        for width, rate in zip(widths, DILATIONS, strict=True):
            layers += [
                nn.Conv2d(inputs, width, kernel, padding=rate * (kernel - 1) // 2, dilation=rate),
                nn.ReLU(inplace=True),
            ]
            inputs = width
        layers.append(nn.Conv2d(inputs, channels, 1))
        self.layers = nn.Sequential(*layers)
        self.variant = variant
        self.schedule = SCHEDULE
        self.dilations = DILATIONS
        self.reset_parameters(noise=noise)

    @torch.no_grad()
    def reset_parameters(self, *, noise: float = 1e-3) -> None:
        """Identity init: weight[b, a, centre] = C / c_out when floor(aC/c_in) == floor(bC/c_out)."""
        channels = self.layers[-1].out_channels
        for conv in self.layers:
            if not isinstance(conv, nn.Conv2d):
                continue
            c_out, c_in, k, _ = conv.weight.shape
            conv.weight.zero_()
            conv.bias.zero_()
            out_group = torch.arange(c_out) * channels // c_out
            in_group = torch.arange(c_in) * channels // c_in
            match = (out_group[:, None] == in_group[None, :]).float()
            conv.weight[:, :, k // 2, k // 2] = match * channels / c_out
            if self.variant == "large" and noise > 0:
                conv.weight.add_(torch.randn_like(conv.weight) * noise)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
