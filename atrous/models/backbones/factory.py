"""Backbone by name, for the model builders."""

from __future__ import annotations

from collections.abc import Sequence

from atrous.models.backbones.base import Backbone
from atrous.models.backbones.mobilenet import MobileNetV2
from atrous.models.backbones.resnet import DEPTHS, ResNet
from atrous.models.backbones.schedules import DilationSchedule

BACKBONES = (*DEPTHS, "mobilenet_v2")


def make_backbone(
    name: str,
    *,
    output_stride: int,
    dilation_schedule: DilationSchedule = None,
    multi_grid: Sequence[int] = (1, 2, 4),
    hdc_rates: Sequence[int] = (1, 2, 5, 9),
) -> Backbone:
    """A ResNet (``resnet18/34/50/101``) or ``mobilenet_v2`` at ``output_stride``.

    Raises:
        ValueError: unknown name (lists the known ones), or a dilation schedule on
            MobileNetV2 (its stages are plain-dilated only).
    """
    if name in DEPTHS:
        return ResNet(
            depth=name,
            output_stride=output_stride,
            dilation_schedule=dilation_schedule,
            multi_grid=multi_grid,
            hdc_rates=hdc_rates,
        )
    if name == "mobilenet_v2":
        if dilation_schedule is not None:
            raise ValueError(
                f"dilation_schedule={dilation_schedule!r} is only supported by the ResNet "
                "backbones; mobilenet_v2 takes dilation_schedule=None"
            )
        return MobileNetV2(output_stride=output_stride)
    raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
