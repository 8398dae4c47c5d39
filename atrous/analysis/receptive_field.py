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
what ``atrous.analysis.coverage_map`` answers.

A causal layer (temporal networks) pads only on the left, ``p = r (K - 1)``, so the
first output's field ends at input sample 0: ``start = -(size - 1) / 2``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from atrous.ops.schedule import CONTEXT_MODULE, ConvGeometry, DilationSchedule


@dataclass(frozen=True)
class RFRow:
    """Receptive field after one layer.

    Attributes:
        layer: the layer this row describes.
        size: receptive-field size in input pixels (one dimension).
        jump: distance in input pixels between neighbouring outputs (cumulative stride).
        start: input-pixel coordinate of the centre of the first output's receptive field.
    """

    layer: ConvGeometry
    size: int
    jump: int
    start: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view: the layer's fields flattened next to size/jump/start."""
        return {**asdict(self.layer), "size": self.size, "jump": self.jump, "start": self.start}


LayerLike = ConvGeometry | Mapping[str, Any] | Sequence[Any]


def as_layer(spec: LayerLike) -> ConvGeometry:
    """Accept a ``ConvGeometry``, a dict of its fields, or a tuple.

    Tuples read ``(kernel_size, stride, dilation, padding)`` with trailing fields
    optional, or the same preceded by the kind: ``("pool", 2, 2)``.
    """
    if isinstance(spec, ConvGeometry):
        return spec
    if isinstance(spec, Mapping):
        return ConvGeometry(**dict(spec))
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        values = list(spec)
        if values and isinstance(values[0], str):
            return ConvGeometry(values[0], *values[1:])
        return ConvGeometry("conv", *values)
    raise TypeError(
        f"cannot read a layer from {spec!r}; pass ConvGeometry(...), a dict or "
        "(kernel_size, stride, dilation, padding)"
    )


def receptive_field_table(layers: Iterable[LayerLike] | DilationSchedule) -> list[RFRow]:
    """Receptive field size, jump and start after every layer of a chain.

    Args:
        layers: the chain, first layer first (see ``as_layer`` for accepted forms),
            or a ``DilationSchedule``, read as its
            ``layers`` (every rate in build
            order, with its kernel size and causal padding).

    Returns:
        One ``RFRow`` per layer.

    Example:
        ```python
        from atrous.analysis import chain_layers, receptive_field_table

        rows = receptive_field_table(chain_layers([1, 2, 4, 8]))
        print([row.size for row in rows])  # [3, 7, 15, 31]: doubling rates double the field
        ```
    """
    if isinstance(layers, DilationSchedule):
        layers = layers.layers()
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
    rates: Sequence[int],
    kernel_size: int = 3,
    *,
    same_padding: bool = True,
    causal: bool = False,
) -> list[ConvGeometry]:
    """Stride-1 convolutions with the given rates (``same`` padding by default).

    ``causal`` pads on the left only (``r (K - 1)``), as temporal networks do.
    """
    if same_padding:
        return [ConvGeometry.same(kernel_size, int(rate), causal=causal) for rate in rates]
    return [ConvGeometry("conv", kernel_size, 1, int(rate), 0, causal) for rate in rates]


def context_module_layers(
    dilations: Sequence[int] = CONTEXT_MODULE.flat_rates, kernel_size: int = 3
) -> list[ConvGeometry]:
    """The context module of Yu & Koltun (2016, arXiv:1511.07122) followed by its final 1x1.

    The default rates are ``atrous.ops.schedule.CONTEXT_MODULE``, the schedule the
    module in ``atrous.models.heads.context`` is built from; the receptive fields are
    3, 5, 9, 17, 33, 65, 67, 67.
    """
    return [*chain_layers(dilations, kernel_size), ConvGeometry("conv", 1)]
