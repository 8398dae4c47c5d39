"""Multiplicative channel gates: squeeze-and-excitation and LR-ASPP's global gate.

A gate rescales every channel of a map by a value computed from the whole image. That
is one multiplication per channel, not a spatial operation, so the gate is its own
module, ``ChannelGate``, marked ``is_channel_gate``: the coverage analysis
(``atrous.analysis``, duck-typed) passes the gated map through unchanged instead of
linearising a product, which would either reach every pixel through the global pool or
(with image pooling dropped) erase every path behind the gate.
"""

from __future__ import annotations

from torch import Tensor, nn


class ChannelGate(nn.Module):
    """``features * gate``: the gate (N, C, 1, 1) broadcast over the map (no parameters)."""

    is_channel_gate = True

    def forward(self, features: Tensor, gate: Tensor) -> Tensor:
        return gate * features


class SqueezeExcitation(nn.Module):
    """Global pool, 1x1 squeeze with ReLU, 1x1 excite with hard sigmoid, channel gate.

    Squeeze-and-excitation (Hu et al., 2018, arXiv:1709.01507) as MobileNetV3 uses it
    (Howard et al., 2019, arXiv:1905.02244): hard sigmoid instead of sigmoid. Keys
    (``fc1``, ``fc2``) and arithmetic are torchvision's ``SqueezeExcitation`` with
    ``scale_activation=nn.Hardsigmoid``, so its weights give the same outputs.

    Args:
        channels: channels of the gated map.
        squeeze_channels: width of the bottleneck.
    """

    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()
        self.gate = ChannelGate()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.gate(x, self.scale_activation(scale))
