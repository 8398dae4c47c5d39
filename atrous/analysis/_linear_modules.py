"""Stand-ins that turn a network into its path-counting linear copy (see coverage.py)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
_DROPOUT = (nn.modules.dropout._DropoutNd,)


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims


class PathConv(nn.Module):
    """All-ones convolution with the geometry of ``conv`` (see coverage.py for the scaling)."""

    def __init__(self, conv: nn.modules.conv._ConvNd, *, collapsed: bool) -> None:
        super().__init__()
        self.dims = len(conv.kernel_size)
        self.kernel_size = tuple(conv.kernel_size)
        self.stride = tuple(conv.stride)
        self.padding = conv.padding
        self.dilation = tuple(conv.dilation)
        self.groups = conv.groups
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels
        self.padding_mode = conv.padding_mode
        self.transposed = bool(conv.transposed)
        self.output_padding = tuple(getattr(conv, "output_padding", (0,) * self.dims))
        self.collapsed = collapsed
        # A convolution that pads at run time (TensorFlow "same", e.g. EfficientNet-Lite's
        # stride-2 convs) exposes ``pad_input``; the stand-in pads the same way.
        self.pad_input = getattr(conv, "pad_input", None)
        if self.pad_input is None and type(conv).__name__ == "Conv2dSame":  # timm's helper
            self.pad_input = _timm_same_padding(conv)

    def forward(self, x: Tensor) -> Tensor:
        if self.pad_input is not None:
            x = self.pad_input(x)
        padding: Any = self.padding
        if self.padding_mode != "zeros" and not isinstance(padding, str):
            pads = [p for p in reversed(_tuple(padding, self.dims)) for _ in range(2)]
            x = F.pad(x, pads, mode=self.padding_mode)
            padding = 0
        if self.collapsed:
            x = x.sum(dim=1, keepdim=True)
            weight = x.new_ones((1, 1, *self.kernel_size))
            groups = 1
        else:
            groups = self.groups
            if self.transposed:
                per_group = self.out_channels // groups
                weight = x.new_ones((self.in_channels, per_group, *self.kernel_size))
            else:
                per_group = self.out_channels // groups
                weight = x.new_ones(
                    (self.out_channels, self.in_channels // groups, *self.kernel_size)
                )
            x = x / per_group
        if self.transposed:
            return _CONV_T[self.dims](
                x,
                weight,
                None,
                self.stride,
                padding,
                self.output_padding,
                groups,
                self.dilation,
            )
        return _CONV[self.dims](x, weight, None, self.stride, padding, self.dilation, groups)


class PathLinear(nn.Module):
    """All-ones linear layer applied to ``x / out_features`` (exact, like PathConv)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features

    def forward(self, x: Tensor) -> Tensor:
        weight = x.new_ones((self.out_features, self.in_features))
        return F.linear(x / self.out_features, weight)


class SumPool(nn.Module):
    """Max-pooling replaced by a sum over the same window: each input is one path."""

    def __init__(self, pool: nn.Module, dims: int) -> None:
        super().__init__()
        self.dims = dims
        self.kernel_size = _tuple(pool.kernel_size, dims)
        self.stride = _tuple(pool.stride if pool.stride is not None else pool.kernel_size, dims)
        self.padding = _tuple(pool.padding, dims)
        self.dilation = _tuple(pool.dilation, dims)
        self.ceil_mode = bool(pool.ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        if all(d == 1 for d in self.dilation):
            if self.dims == 1:
                y = F.avg_pool2d(
                    x.unsqueeze(-2),
                    (1, *self.kernel_size),
                    (1, *self.stride),
                    (0, *self.padding),
                    self.ceil_mode,
                    True,
                    1,
                )
                return y.squeeze(-2)
            pool = F.avg_pool2d if self.dims == 2 else F.avg_pool3d
            return pool(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, True, 1)
        if self.ceil_mode:
            raise ValueError("dilated max-pooling with ceil_mode=True is not supported")
        channels = x.shape[1]
        weight = x.new_ones((channels, 1, *self.kernel_size))
        padded = F.pad(x, [p for p in reversed(self.padding) for _ in range(2)])
        return _CONV[self.dims](padded, weight, None, self.stride, 0, self.dilation, channels)


class CollapsedPixelShuffle(nn.Module):
    """Pixel shuffle of a 1-channel (collapsed) map: nearest upsampling divided by ``r^2``.

    In the full network every sub-pixel of an output reads its own input channel; the
    full-channel linearisation divides a conv's gradient by its channel count, so after
    the shuffle a pixel's count is the mean over the ``r^2`` sub-pixels. This reproduces
    that mean on one channel (holes stay exact, counts carry the ``1 / r^2`` factor).
    """

    def __init__(self, upscale_factor: int) -> None:
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x: Tensor) -> Tensor:
        r = self.upscale_factor
        return F.interpolate(x, scale_factor=r, mode="nearest") / (r * r)


class PassGated(nn.Module):
    """Stand-in for a multiplicative channel gate (``is_channel_gate``): the gated map.

    A gate (squeeze-excitation, LR-ASPP's global gate) rescales each channel by a value
    pooled over the whole image. It adds no spatial path, so for path counting it is
    the identity on the map it gates; linearising the product instead would reach every
    pixel through the pool, or (pool dropped) erase every path behind the gate.
    """

    def forward(self, features: Tensor, *gates: Tensor) -> Tensor:
        return features


class DropGlobalPool(nn.Module):
    """An adaptive pool to a single value, replaced by zeros (``global_pooling="drop"``)."""

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        dims = x.dim() - 2
        return x[(Ellipsis, *([slice(0, 1)] * dims))] * 0.0


def _is_global(output_size: Any) -> bool:
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
    return all(s == 1 for s in sizes)


def _timm_same_padding(conv: nn.modules.conv._ConvNd) -> Any:
    """timm's ``Conv2dSame`` pads at run time (TensorFlow "same"); pad the same way."""
    from timm.layers.padding import pad_same

    kernel, stride, dilation = tuple(conv.kernel_size), tuple(conv.stride), tuple(conv.dilation)
    return lambda x: pad_same(x, kernel, stride, dilation)


def linear_replacement(module: nn.Module, *, collapsed: bool, global_pooling: str) -> Any:
    """The stand-in for ``module``, or ``None`` to keep it (and recurse into it)."""
    if getattr(module, "is_channel_gate", False):
        return PassGated()
    if getattr(module, "is_input_affine", False):  # a fixed per-channel x * a + b
        return nn.Identity()
    if isinstance(module, (nn.modules.conv._ConvNd,)):
        return PathConv(module, collapsed=collapsed)
    if isinstance(module, nn.Linear):
        return PathLinear(module)
    if isinstance(module, nn.PixelShuffle) and collapsed:
        return CollapsedPixelShuffle(module.upscale_factor)
    if isinstance(module, _NORMS + _DROPOUT):
        return nn.Identity()
    if type(module).__module__ == "torch.nn.modules.activation" and not isinstance(
        module, nn.MultiheadAttention
    ):
        return nn.Identity()
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        dims = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}[type(module)]
        return SumPool(module, dims)
    adaptive_max = (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
    adaptive_avg = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
    if isinstance(module, adaptive_max + adaptive_avg):
        if global_pooling == "drop" and _is_global(module.output_size):
            return DropGlobalPool(module.output_size)
        if isinstance(module, adaptive_max):
            index = adaptive_max.index(type(module))
            return adaptive_avg[index](module.output_size)
        return None
    return None


__all__ = [
    "CollapsedPixelShuffle",
    "DropGlobalPool",
    "PassGated",
    "PathConv",
    "PathLinear",
    "SumPool",
    "linear_replacement",
]
