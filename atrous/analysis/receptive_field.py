"""Receptive-field arithmetic for a chain of convolutions and pools.

For layer ``l`` with kernel ``k``, stride ``s``, dilation ``r`` and padding ``p`` the
dilated kernel spans ``k_eff = r (k - 1) + 1`` samples of its input, so with
``jump`` the distance in input pixels between neighbouring positions of its input:

    size_l  = size_{l-1} + (k_eff - 1) * jump_{l-1}
    jump_l  = jump_{l-1} * s
    start_l = start_{l-1} + ((k_eff - 1) / 2 - p) * jump_{l-1}

with ``size_0 = 1``, ``jump_0 = 1``, ``start_0 = 0`` (pixel-index coordinates: the first
output's receptive field is centred on input pixel ``start``). This is the box that
*could* be reached; whether every pixel inside it is actually reached (gridding) is
what :func:`atrous.analysis.coverage_map` answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

_KINDS = ("conv", "pool")


@dataclass(frozen=True)
class Layer:
    """One layer of a chain: a (dilated) convolution or a pooling window.

    Attributes:
        kind: ``"conv"`` or ``"pool"`` (pools have no dilation in practice but may).
        kernel_size: taps per spatial dimension.
        stride: step between outputs.
        dilation: rate ``r``; the kernel reads every ``r``-th input sample.
        padding: zero padding on each side (moves ``start``, not ``size``).
    """

    kind: str = "conv"
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    padding: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Layer.kind must be one of {_KINDS}, got {self.kind!r}")
        for name in ("kernel_size", "stride", "dilation"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Layer.{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"Layer.padding must be an int >= 0, got {self.padding!r}")

    @property
    def effective_kernel_size(self) -> int:
        """Input samples one output reads along one dimension: ``r (k - 1) + 1``."""
        return self.dilation * (self.kernel_size - 1) + 1


@dataclass(frozen=True)
class RFRow:
    """Receptive field after one layer.

    Attributes:
        layer: the layer this row describes.
        size: receptive-field size in input pixels (one dimension).
        jump: distance in input pixels between neighbouring outputs (cumulative stride).
        start: input-pixel coordinate of the centre of the first output's receptive field.
    """

    layer: Layer
    size: int
    jump: int
    start: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view: the layer's fields flattened next to size/jump/start."""
        return {**asdict(self.layer), "size": self.size, "jump": self.jump, "start": self.start}


LayerLike = Layer | Mapping[str, Any] | Sequence[Any]


def as_layer(spec: LayerLike) -> Layer:
    """Accept a :class:`Layer`, a dict of its fields, or a tuple.

    Tuples read ``(kernel_size, stride, dilation, padding)`` with trailing fields
    optional, or the same preceded by the kind: ``("pool", 2, 2)``.
    """
    if isinstance(spec, Layer):
        return spec
    if isinstance(spec, Mapping):
        return Layer(**dict(spec))
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        values = list(spec)
        if values and isinstance(values[0], str):
            return Layer(values[0], *values[1:])
        return Layer("conv", *values)
    raise TypeError(
        f"cannot read a layer from {spec!r}; pass Layer(...), a dict or "
        "(kernel_size, stride, dilation, padding)"
    )


def receptive_field_table(layers: Iterable[LayerLike]) -> list[RFRow]:
    """Receptive field size, jump and start after every layer of a chain.

    Args:
        layers: the chain, first layer first; see :func:`as_layer` for accepted forms.

    Returns:
        One :class:`RFRow` per layer.
    """
    rows: list[RFRow] = []
    size, jump, start = 1, 1, 0.0
    for spec in layers:
        layer = as_layer(spec)
        span = layer.effective_kernel_size - 1
        size += span * jump
        start += (span / 2 - layer.padding) * jump
        jump *= layer.stride
        rows.append(RFRow(layer=layer, size=size, jump=jump, start=start))
    return rows


def chain_layers(
    rates: Sequence[int], kernel_size: int = 3, *, same_padding: bool = True
) -> list[Layer]:
    """Stride-1 convolutions with the given rates (``same`` padding by default)."""
    return [
        Layer(
            "conv",
            kernel_size,
            1,
            int(rate),
            (kernel_size - 1) * int(rate) // 2 if same_padding else 0,
        )
        for rate in rates
    ]


def context_module_layers(
    dilations: Sequence[int] = (1, 1, 2, 4, 8, 16, 1), kernel_size: int = 3
) -> list[Layer]:
    """The context module of Yu & Koltun (2016, arXiv:1511.07122) followed by its final 1x1.

    With the defaults the receptive fields are 3, 5, 9, 17, 33, 65, 67, 67.
    """
    return [*chain_layers(dilations, kernel_size), Layer("conv", 1)]
