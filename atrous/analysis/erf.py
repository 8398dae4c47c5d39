"""Effective receptive field (Luo et al., 2016, "Understanding the Effective Receptive
Field in Deep Convolutional Neural Networks", arXiv:1701.04128).

The theoretical receptive field says which pixels *can* influence an output; the
effective one measures how much they do in the real network, activations and weights
included: the absolute input gradient of one output location, averaged over inputs.
It is usually a small Gaussian-like blob inside a much larger theoretical field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atrous.analysis.coverage import _select_output


@dataclass(frozen=True)
class ERF:
    """Effective receptive field of one output location.

    Attributes:
        map: ``H x W`` float64, non-negative, sums to 1 (mean ``|d out / d input|``
            over the samples, summed over input channels, then normalised).
        location: the analysed output location (output coordinates).
        centre: that location in input pixel coordinates (``(y, x)``, may be fractional
            when the output is smaller than the input).
        samples: how many random inputs were averaged.
    """

    map: np.ndarray
    location: tuple[int, ...]
    centre: tuple[float, ...]
    samples: int

    def radius(self, fraction: float = 0.95) -> float:
        """Smallest radius (pixels, Euclidean, around ``centre``) holding ``fraction`` of the mass."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        grids = np.meshgrid(*(np.arange(n) for n in self.map.shape), indexing="ij")
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, self.centre)))
        order = np.argsort(distance, axis=None, kind="stable")
        cumulative = np.cumsum(self.map.ravel()[order])
        index = int(np.searchsorted(cumulative, fraction * cumulative[-1] - 1e-12))
        index = min(index, cumulative.size - 1)
        return float(distance.ravel()[order][index])

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": list(self.location),
            "centre": list(self.centre),
            "samples": self.samples,
            "radius_50": self.radius(0.5),
            "radius_95": self.radius(0.95),
        }


def effective_receptive_field(
    model: Any,
    input_size: int | Sequence[int] = (257, 257),
    *,
    samples: int = 8,
    location: Sequence[int] | None = None,
    seed: int = 0,
    in_channels: int = 3,
    output_index: Any = None,
) -> ERF:
    """Mean absolute input gradient of one output location over random inputs.

    The model is used as it is (its weights and activations), in eval mode, on
    standard-normal inputs drawn from a generator seeded with ``seed``; the gradient
    of the chosen location summed over output channels is backpropagated, as in
    Luo et al. (2016).

    Args:
        model: a module or callable returning a tensor, a dict (``"out"`` or
            ``output_index``) or a tuple.
        input_size: ``(H, W)``.
        samples: random inputs to average over.
        location: output location (default: centre of the output).
        seed: random seed of the inputs.
        in_channels: input channels.
        output_index: which output of a dict/tuple.

    Example:
        ```python
        import atrous
        from atrous.analysis import effective_receptive_field

        model = atrous.build_model("dilated_net", num_classes=3, width=8)
        erf = effective_receptive_field(model, input_size=(65, 65), samples=2)
        print(f"half of the gradient mass within {erf.radius(0.5):.1f} px of the centre")
        ```
    """
    import torch

    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    size = tuple(int(s) for s in input_size)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    was_training = getattr(model, "training", None)
    if hasattr(model, "eval"):
        model.eval()
    generator = torch.Generator().manual_seed(seed)
    try:
        dtype = next(iter(model.parameters())).dtype if hasattr(model, "parameters") else None
    except StopIteration:
        dtype = None
    dtype = dtype or torch.float32
    total = np.zeros(size, dtype=np.float64)
    loc: tuple[int, ...] | None = None if location is None else tuple(int(v) for v in location)
    out_shape: tuple[int, ...] = size
    try:
        with torch.enable_grad():
            for _ in range(samples):
                x = torch.randn((1, in_channels, *size), generator=generator, dtype=dtype)
                x.requires_grad_(True)
                out = _select_output(model(x), output_index)
                out_shape = tuple(out.shape[2:])
                if loc is None:
                    loc = tuple(s // 2 for s in out_shape)
                (grad,) = torch.autograd.grad(out[(0, slice(None), *loc)].sum(), x)
                total += grad[0].abs().sum(dim=0).double().numpy()
    finally:
        if was_training:
            model.train()
    assert loc is not None
    mass = total.sum()
    erf_map = total / mass if mass > 0 else total
    centre = tuple((v + 0.5) * n / m - 0.5 for v, n, m in zip(loc, size, out_shape))
    return ERF(map=erf_map, location=loc, centre=centre, samples=samples)
