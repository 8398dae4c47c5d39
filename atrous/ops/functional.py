"""Reference dilated convolution, written directly from the definition.

For one spatial dimension, kernel taps ``k = 0..K-1``, rate ``r`` and stride ``s``:

    y[n, o, i] = b[o] + sum_{c in group(o)} sum_k xpad[n, c, s*i + r*k] * w[o, c, k]

which is the textbook ``y[i] = sum_{k=1..K} x[i + r(k-1)] w[k]`` with batch, channels,
groups, stride, zero padding and bias added. The N-d version takes the product of taps
over every spatial dimension. The code loops over kernel taps and gathers the strided
slice of the padded input each tap reads: index arithmetic only, no call into
``torch.nn.functional.conv*``. It is here to be read and to check the fast path (torch's
own convolution) against, so clarity wins over speed. It is differentiable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

from atrous.ops.sizes import conv_output_size

IntOrSeq = int | Sequence[int]


def _expand(value: IntOrSeq, dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        values = (value,) * dims
    else:
        values = tuple(value)
        if len(values) != dims:
            raise ValueError(
                f"{name} needs {dims} value(s) for a {dims}-d convolution, got {values}"
            )
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must hold ints, got {values!r}")
    return values


def _check_arguments(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride: IntOrSeq,
    padding: IntOrSeq,
    dilation: IntOrSeq,
    groups: int,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Validate ``dilated_conv``'s arguments; return per-dimension strides, paddings, rates.

    Every shape and value is checked before any work, so a bad call fails with a message
    naming the argument instead of an indexing error deep inside the tap loop.
    """
    dims = weight.dim() - 2
    if dims < 1:
        raise ValueError(
            f"weight must have shape (C_out, C_in/groups, *kernel), got {tuple(weight.shape)}"
        )
    if x.dim() != dims + 2:
        raise ValueError(
            f"input must have shape (N, C_in, *spatial) with {dims} spatial dim(s) to match the "
            f"weight, got {tuple(x.shape)}"
        )
    strides = _expand(stride, dims, "stride")
    paddings = _expand(padding, dims, "padding")
    rates = _expand(dilation, dims, "dilation")
    for r in rates:
        if r < 1:
            raise ValueError(
                f"dilation (rate) must be >= 1, got {rates}: rate 1 is an ordinary convolution"
            )
    for s in strides:
        if s < 1:
            raise ValueError(f"stride must be >= 1, got {strides}")
    for p in paddings:
        if p < 0:
            raise ValueError(f"padding must be >= 0, got {paddings}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    c_in = x.shape[1]
    c_out, c_in_per_group = weight.shape[:2]
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both input channels ({c_in}) and output channels ({c_out})"
        )
    if c_in_per_group * groups != c_in:
        raise ValueError(
            f"weight expects {c_in_per_group * groups} input channels ({c_in_per_group} per group x "
            f"{groups} groups) but the input has {c_in}"
        )
    if bias is not None and bias.shape != (c_out,):
        raise ValueError(f"bias must have shape ({c_out},), got {tuple(bias.shape)}")
    return strides, paddings, rates


def _zero_pad(x: Tensor, paddings: Sequence[int]) -> Tensor:
    """``x`` with ``paddings[d]`` zeros on both sides of spatial dimension ``d``.

    The input is written into a zero tensor rather than padded with
    ``torch.nn.functional.pad`` so the reference stays free of torch's conv helpers;
    the assignment is differentiable.
    """
    n, c_in = x.shape[:2]
    spatial = tuple(x.shape[2:])
    padded = x.new_zeros(
        (n, c_in, *(size + 2 * p for size, p in zip(spatial, paddings, strict=True)))
    )
    interior = tuple(slice(p, p + size) for size, p in zip(spatial, paddings, strict=True))
    padded[(slice(None), slice(None), *interior)] = x
    return padded


def dilated_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """N-d dilated convolution from the definition (see the module docstring).

    Args:
        x: input of shape ``(N, C_in, *spatial)``.
        weight: kernel of shape ``(C_out, C_in / groups, *kernel)``.
        bias: optional ``(C_out,)``.
        stride, padding, dilation: one int for every dimension or one per dimension.
            ``dilation`` is the rate ``r``.
        groups: channels are split into this many independent groups.

    Returns:
        ``(N, C_out, *out)`` with ``out = floor((n + 2p - r(K-1) - 1) / s) + 1``.
    """
    dims = weight.dim() - 2
    strides, paddings, rates = _check_arguments(x, weight, bias, stride, padding, dilation, groups)
    n, c_in = x.shape[:2]
    c_out = weight.shape[0]
    kernel = tuple(weight.shape[2:])
    spatial = tuple(x.shape[2:])
    out = tuple(
        conv_output_size(size, k, s, p, r)
        for size, k, s, p, r in zip(spatial, kernel, strides, paddings, rates, strict=True)
    )

    padded = _zero_pad(x, paddings)

    g = groups
    xg = padded.reshape(n, g, c_in // g, *padded.shape[2:])
    wg = weight.reshape(g, c_out // g, c_in // g, *kernel)
    y = x.new_zeros((n, g, c_out // g, *out))
    for tap in itertools.product(*(range(k) for k in kernel)):
        # Tap k of dimension d reads padded positions s*i + r*k for i = 0..out-1.
        reads = tuple(
            slice(r * k, r * k + s * (o - 1) + 1, s)
            for k, r, s, o in zip(tap, rates, strides, out, strict=True)
        )
        patch = xg[(slice(None), slice(None), slice(None), *reads)]  # (N, G, C_in/G, *out)
        w_tap = wg[(slice(None), slice(None), slice(None), *tap)]  # (G, C_out/G, C_in/G)
        y = y + torch.einsum("ngc...,goc->ngo...", patch, w_tap)
    y = y.reshape(n, c_out, *out)
    if bias is not None:
        y = y + bias.reshape(1, c_out, *([1] * dims))
    return y


def dilated_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """1-d reference dilated convolution; same contract as ``F.conv1d``.

    Example:
        ```python
        import torch

        from atrous.ops import dilated_conv1d

        x = torch.zeros(1, 1, 9)
        x[0, 0, 4] = 1.0  # an impulse
        w = torch.tensor([[[1.0, 2.0, 3.0]]])
        y = dilated_conv1d(x, w, dilation=2, padding=2)  # the taps land 2 apart
        print(y[0, 0].tolist())  # [0.0, 0.0, 3.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0]
        ```
    """
    if weight.dim() != 3:
        raise ValueError(
            f"dilated_conv1d needs a weight of shape (C_out, C_in/groups, K), got {tuple(weight.shape)}"
        )
    return dilated_conv(x, weight, bias, stride, padding, dilation, groups)


def dilated_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """2-d reference dilated convolution; same contract as ``F.conv2d``.

    Example:
        ```python
        import torch
        import torch.nn.functional as F

        from atrous.ops import dilated_conv2d

        x, w = torch.randn(1, 3, 17, 17), torch.randn(8, 3, 3, 3)
        y = dilated_conv2d(x, w, dilation=4, padding=4)  # a 3x3 kernel spanning 9x9 pixels
        assert y.shape == (1, 8, 17, 17)
        assert torch.allclose(y, F.conv2d(x, w, dilation=4, padding=4), atol=1e-5)
        ```
    """
    if weight.dim() != 4:
        raise ValueError(
            f"dilated_conv2d needs a weight of shape (C_out, C_in/groups, KH, KW), got {tuple(weight.shape)}"
        )
    return dilated_conv(x, weight, bias, stride, padding, dilation, groups)


def dilated_conv3d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    groups: int = 1,
) -> Tensor:
    """3-d reference dilated convolution; same contract as ``F.conv3d``."""
    if weight.dim() != 5:
        raise ValueError(
            f"dilated_conv3d needs a weight of shape (C_out, C_in/groups, KD, KH, KW), got {tuple(weight.shape)}"
        )
    return dilated_conv(x, weight, bias, stride, padding, dilation, groups)
