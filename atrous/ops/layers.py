"""Dilated convolution layers: conv + norm + activation with 'same' padding for rate r.

Both layers are ``nn.Sequential`` so their state-dict keys are ``0.weight`` (conv),
``1.weight`` (norm), the layout torchvision's ASPP uses; weights move between the two
without renaming.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from atrous.ops.sizes import same_padding

NormSpec = str | None | Callable[[int], nn.Module]
ActivationSpec = str | None | Callable[[], nn.Module]

_NORMS = ("batch", "group", "none")
_ACTIVATIONS = ("relu", "relu6", "gelu", "silu", "none")


def _group_count(channels: int, preferred: int = 32) -> int:
    """Largest group count <= ``preferred`` that divides ``channels``."""
    for groups in range(min(preferred, channels), 0, -1):
        if channels % groups == 0:
            return groups
    return 1


def uses_norm(norm: NormSpec) -> bool:
    """Whether ``norm`` builds a normalisation layer (a callable counts as one).

    A convolution followed by normalisation needs no bias: the norm subtracts the
    channel mean and adds its own shift, so a conv bias would be dead weight.
    """
    return not (norm is None or norm == "none")


def make_norm(norm: NormSpec, channels: int) -> nn.Module:
    """Build a normalisation layer by name: ``"batch"``, ``"group"`` or ``"none"``/``None``.

    ``"group"`` uses 32 groups or the largest count below that divides ``channels``;
    GroupNorm does not depend on the batch, so it trains with batch size 1. A callable is
    called with the channel count.
    """
    if callable(norm):
        return norm(channels)
    if norm is None or norm == "none":
        return nn.Identity()
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(_group_count(channels), channels)
    raise ValueError(f"unknown norm {norm!r}; choose one of {_NORMS} or pass a callable")


def make_activation(activation: ActivationSpec) -> nn.Module:
    """Build an activation by name: relu, relu6, gelu, silu or none/None."""
    if callable(activation):
        return activation()
    if activation is None or activation == "none":
        return nn.Identity()
    table: dict[str, Callable[[], nn.Module]] = {
        "relu": lambda: nn.ReLU(inplace=True),
        "relu6": lambda: nn.ReLU6(inplace=True),
        "gelu": nn.GELU,
        "silu": lambda: nn.SiLU(inplace=True),
    }
    if activation not in table:
        raise ValueError(f"unknown activation {activation!r}; choose one of {_ACTIVATIONS}")
    return table[activation]()


class AtrousConv2d(nn.Sequential):
    """Dilated 3x3 (or k x k) convolution, normalisation and activation, size-preserving.

    Padding is ``same_padding(kernel_size, rate)``, so at stride 1 the output has the
    input's size for every rate: dilation grows the receptive field, not the map.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: odd kernel size.
        rate: dilation rate r >= 1.
        stride: convolution stride.
        groups: channel groups (``in_channels`` gives a depthwise conv).
        norm: ``"batch"``, ``"group"``, ``"none"``/``None`` or a callable taking channels.
        activation: ``"relu"`` (default), ``"relu6"``, ``"gelu"``, ``"silu"``, ``None``.
        bias: conv bias; by default only when there is no normalisation after it.

    Example:
        ```python
        import torch

        from atrous.ops import AtrousConv2d

        layer = AtrousConv2d(16, 32, 3, rate=6)  # conv (padding 6 keeps the size), BN, ReLU
        assert layer(torch.randn(2, 16, 33, 33)).shape == (2, 32, 33, 33)
        ```
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        rate: int = 1,
        stride: int = 1,
        groups: int = 1,
        norm: NormSpec = "batch",
        activation: ActivationSpec = "relu",
        bias: bool | None = None,
    ) -> None:
        padding = same_padding(kernel_size, rate)
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=rate,
            groups=groups,
            bias=(not uses_norm(norm)) if bias is None else bias,
        )
        super().__init__(conv, make_norm(norm, out_channels), make_activation(activation))
        self.rate = rate

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]  # type: ignore[return-value]

    @property
    def norm(self) -> nn.Module:
        return self[1]


class SeparableAtrousConv2d(nn.Sequential):
    """Depthwise dilated conv then pointwise 1x1 conv, each with norm and activation.

    The factorisation DeepLabV3+ (Chen et al., 2018) uses in ASPP and the decoder: about
    ``k*k + C_out`` weights per input channel instead of ``k*k*C_out``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        rate: int = 1,
        stride: int = 1,
        norm: NormSpec = "batch",
        activation: ActivationSpec = "relu",
    ) -> None:
        super().__init__(
            AtrousConv2d(
                in_channels,
                in_channels,
                kernel_size,
                rate=rate,
                stride=stride,
                groups=in_channels,
                norm=norm,
                activation=activation,
            ),
            AtrousConv2d(in_channels, out_channels, 1, norm=norm, activation=activation),
        )
        self.rate = rate

    @property
    def depthwise(self) -> AtrousConv2d:
        return self[0]  # type: ignore[return-value]

    @property
    def pointwise(self) -> AtrousConv2d:
        return self[1]  # type: ignore[return-value]
