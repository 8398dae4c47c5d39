"""LR-ASPP builder: a light segmentation model for CPUs and phones."""

from __future__ import annotations

from atrous.models.backbones.factory import make_backbone
from atrous.models.config import model_config
from atrous.models.heads import LRASPPHead
from atrous.models.segmentor import Segmentor
from atrous.ops.layers import NormSpec

LOW_STRIDE = 8


def lraspp(
    *,
    num_classes: int,
    backbone: str = "mobilenet_v3_large",
    output_stride: int = 16,
    head_channels: int = 128,
    norm: NormSpec = "batch",
) -> Segmentor:
    """Lite R-ASPP (Howard et al., 2019, arXiv:1905.02244) on a dilated backbone.

    The head reads the first stride-8 map (low level) and the deepest map. With the
    defaults the state dict is torchvision's ``lraspp_mobilenet_v3_large``.

    Args:
        num_classes: output classes.
        backbone: ``mobilenet_v3_large`` (the paper's), ``mobilenet_v2`` or a ResNet.
        output_stride: 8, 16 (torchvision's) or 32.
        head_channels: width of the gated 1x1 branch (128 in the paper).
        norm: head normalisation, ``"batch"`` or ``"group"``.

    Raises:
        ValueError: a backbone without a stride-8 stage at this output stride.
    """
    config = model_config(
        "lraspp",
        {
            "num_classes": num_classes,
            "backbone": backbone,
            "output_stride": output_stride,
            "head_channels": head_channels,
            "norm": norm,
        },
    )
    trunk = make_backbone(backbone, output_stride=output_stride)
    low = next((info for info in trunk.feature_info if info.stride == LOW_STRIDE), None)
    if low is None:
        strides = [info.stride for info in trunk.feature_info]
        raise ValueError(
            f"lraspp needs a stride-{LOW_STRIDE} stage for its low-level branch; {backbone} "
            f"at output_stride={output_stride} has stage strides {strides}"
        )
    high = trunk.feature_info[-1]
    head = LRASPPHead(low.channels, high.channels, num_classes, channels=head_channels, norm=norm)
    return Segmentor(
        backbone=trunk,
        classifier=head,
        head_inputs=(low.name, high.name),
        num_classes=num_classes,
        config=config,
    )
