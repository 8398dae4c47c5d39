"""Backbone by name, for the model builders."""

from __future__ import annotations

from atrous.models.backbones import efficientnet_lite
from atrous.models.backbones.base import Backbone
from atrous.models.backbones.efficientnet_lite import EfficientNetLite
from atrous.models.backbones.mobilenet import LAYOUT as MOBILENET_V2_LAYOUT
from atrous.models.backbones.mobilenet import MobileNetV2
from atrous.models.backbones.mobilenet_v3 import MobileNetV3Large
from atrous.models.backbones.resnet import DEPTHS, ResNet, resnet_layout
from atrous.models.backbones.timm_encoder import PREFIX as TIMM_PREFIX
from atrous.models.backbones.timm_encoder import TimmEncoder
from atrous.ops.schedule import DilationSchedule, ScheduleLike, StageLayout

BACKBONES = (*DEPTHS, "mobilenet_v2", "mobilenet_v3_large", *efficientnet_lite.VARIANTS)


def make_backbone(
    name: str, *, output_stride: int, dilation_schedule: ScheduleLike = None
) -> Backbone:
    """A ResNet (``resnet18/34/50/101``), ``mobilenet_v2``, ``mobilenet_v3_large`` or
    ``efficientnet_lite0/1/2``, or any timm encoder as ``timm:<name>`` (the timm extra).

    ``dilation_schedule`` is anything ``DilationSchedule.parse`` reads; every
    backbone resolves it against its own ``backbone_layout``.

    Raises:
        ValueError: unknown name (lists the known ones), or a schedule that does not
            fit the backbone's stages.
    """
    if name in DEPTHS:
        return ResNet(depth=name, output_stride=output_stride, dilation_schedule=dilation_schedule)
    if name == "mobilenet_v2":
        return MobileNetV2(output_stride=output_stride, dilation_schedule=dilation_schedule)
    if name.startswith(TIMM_PREFIX):
        return TimmEncoder(
            name.removeprefix(TIMM_PREFIX),
            output_stride=output_stride,
            dilation_schedule=dilation_schedule,
        )
    if name in efficientnet_lite.VARIANTS:
        return EfficientNetLite(
            variant=name, output_stride=output_stride, dilation_schedule=dilation_schedule
        )
    if name == "mobilenet_v3_large":
        schedule = DilationSchedule.parse(dilation_schedule)
        if schedule != DilationSchedule.plain():
            raise ValueError(
                f"dilation_schedule={schedule.to_config()!r} is not supported by "
                "mobilenet_v3_large yet (it builds torchvision's plain layout); use 'plain'"
            )
        return MobileNetV3Large(output_stride=output_stride)
    raise ValueError(
        f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}, or "
        "timm:<name> for a timm encoder"
    )


def backbone_layout(name: str) -> StageLayout:
    """The stage layout of backbone ``name``: what a schedule resolves against.

    Cheap (no network is built), so analysis can show a schedule's per-stage rates for
    a backbone directly.
    """
    if name in DEPTHS:
        return resnet_layout(name)
    if name == "mobilenet_v2":
        return MOBILENET_V2_LAYOUT
    if name.startswith(TIMM_PREFIX):
        raise ValueError(
            f"{name}: timm places its own dilation, so there is no layout to resolve a "
            "schedule against; analyse the built network with --model instead"
        )
    if name in efficientnet_lite.VARIANTS:
        return efficientnet_lite.layout(name)
    if name == "mobilenet_v3_large":
        raise ValueError(
            "mobilenet_v3_large has no stage layout yet (it is built at the plain layout "
            "only); analyse the built network with --model instead"
        )
    raise ValueError(
        f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}, or "
        "timm:<name> for a timm encoder"
    )
