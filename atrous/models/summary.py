"""Model size and cost: parameters and multiply-accumulates, counted without running.

Models are built on PyTorch's ``meta`` device, so counting the MACs of a ResNet-101
DeepLab at 512x512 allocates no memory and takes well under a second. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and matrix
products (2 FLOPs per multiply-accumulate); MACs = FLOPs / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from atrous.models.registry import build_model


@dataclass(frozen=True)
class ModelSummary:
    """One row of the model table."""

    name: str
    backbone: str
    params: int
    macs: int
    output_stride: int
    input_size: int | tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(
    name: str,
    *,
    num_classes: int = 21,
    input_size: int | tuple[int, int] = 512,
    count_aux: bool = False,
    **options: Any,
) -> ModelSummary:
    """Parameters and MACs of ``build_model(name, num_classes=..., **options)``.

    ``input_size`` is a square side or ``(height, width)``. ``count_aux=True`` also runs
    the auxiliary head (training cost; torchvision's published operation counts include
    it); by default only the inference path counts.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, **options).eval()
        x = torch.empty(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, return_aux=count_aux)
    backbone = model.config.get("backbone")
    if backbone is None:
        backbone = {
            "cgnet": "CGNet encoder",
            "dabnet": "DABNet encoder",
            "drn_c_26": "DRN-C-26",
            "drn_d_22": "DRN-D-22",
            "erfnet": "ERFNet encoder",
        }.get(name, "plain stack")
    return ModelSummary(
        name=name,
        backbone=str(backbone),
        params=sum(p.numel() for p in model.parameters()),
        macs=counter.get_total_flops() // 2,
        output_stride=model.output_stride,
        input_size=input_size,
    )
