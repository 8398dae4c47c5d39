"""DRN-C-26 and DRN-D-22 segmentation models with a choice of head."""

from __future__ import annotations

from torch import nn

from atrous.models.backbones.drn import DRN
from atrous.models.config import model_config
from atrous.models.heads import ContextModule, DUCHead, FCNHead
from atrous.models.segmentor import Segmentor

HEADS = ("linear", "context_basic", "context_large", "duc")


def _drn(arch: str, config: dict, *, num_classes: int, head: str, aux: bool) -> Segmentor:
    if head not in HEADS:
        raise ValueError(f"unknown DRN head {head!r}; choose one of {HEADS}")
    trunk = DRN(arch=arch)
    channels = trunk.out_channels
    classifier: nn.Module
    if head == "linear":
        classifier = nn.Conv2d(channels, num_classes, 1)
    elif head == "duc":
        classifier = DUCHead(channels, num_classes, upscale=trunk.output_stride)
    else:
        variant = head.removeprefix("context_")
        classifier = nn.Sequential(
            nn.Conv2d(channels, num_classes, 1), ContextModule(num_classes, variant=variant)
        )
    extra = {}
    if aux:
        extra = {
            "aux_classifier": FCNHead(trunk.info(trunk.aux_feature).channels, num_classes),
            "aux_input": trunk.aux_feature,
        }
    return Segmentor(
        backbone=trunk,
        classifier=classifier,
        head_inputs=("layer8",),
        num_classes=num_classes,
        config=config,
        **extra,
    )


def drn_c_26(*, num_classes: int, head: str = "linear", aux: bool = False) -> Segmentor:
    """DRN-C-26 (Yu, Koltun & Funkhouser, 2017, arXiv:1705.09914), output stride 8.

    Args:
        num_classes: output classes.
        head: ``"linear"`` (1x1 classifier, the paper's DRN segmentation model, with
            bilinear instead of learned upsampling), ``"context_basic"`` /
            ``"context_large"`` (classifier + Yu & Koltun's context module) or
            ``"duc"`` (dense upsampling convolution).
        aux: auxiliary FCN head on ``layer5``.
    """
    config = model_config("drn_c_26", {"num_classes": num_classes, "head": head, "aux": aux})
    return _drn("C", config, num_classes=num_classes, head=head, aux=aux)


def drn_d_22(*, num_classes: int, head: str = "linear", aux: bool = False) -> Segmentor:
    """DRN-D-22 (Yu, Koltun & Funkhouser, 2017, arXiv:1705.09914), output stride 8.

    Options as ``drn_c_26``.
    """
    config = model_config("drn_d_22", {"num_classes": num_classes, "head": head, "aux": aux})
    return _drn("D", config, num_classes=num_classes, head=head, aux=aux)
