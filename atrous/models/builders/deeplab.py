"""DeepLabv3, DeepLabV3+, FCN and ResNet-DUC-HDC builders over dilated backbones.

The four builders differ only in their head: each records its config, then
``_assemble`` builds the backbone from the one ``dilation_schedule`` value, the
head from the backbone's ``feature_info``, and the optional auxiliary FCN head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from atrous.models.backbones.base import Backbone
from atrous.models.backbones.factory import make_backbone
from atrous.models.config import model_config
from atrous.models.heads import DeepLabHead, DeepLabV3PlusHead, DUCHead, FCNHead, default_rates
from atrous.models.segmentor import Segmentor
from atrous.ops.layers import NormSpec
from atrous.ops.schedule import DilationSchedule, ScheduleLike


def _assemble(
    config: dict[str, Any],
    make_head: Callable[[Backbone], nn.Module],
    *,
    low_level: bool = False,
) -> Segmentor:
    """Backbone from ``config``, head from ``make_head(backbone)``, aux head if asked.

    ``config`` is the builder's recorded config; its ``backbone``, ``output_stride``,
    ``dilation_schedule``, ``num_classes``, ``norm`` and ``aux`` entries are read.
    """
    trunk = make_backbone(
        config["backbone"],
        output_stride=config["output_stride"],
        dilation_schedule=config["dilation_schedule"],
    )
    head_inputs = (trunk.feature_info[-1].name,)
    if low_level:
        head_inputs += (trunk.low_level_feature,)
    num_classes, norm = config["num_classes"], config["norm"]
    head = make_head(trunk)  # before the aux head: seeded builds keep their weights
    extra: dict[str, Any] = {}
    if config["aux"]:
        name = trunk.aux_feature
        extra = {
            "aux_classifier": FCNHead(trunk.info(name).channels, num_classes, norm=norm),
            "aux_input": name,
        }
    return Segmentor(
        backbone=trunk,
        classifier=head,
        head_inputs=head_inputs,
        num_classes=num_classes,
        config=config,
        **extra,
    )


def _aspp_rates(rates: Sequence[int] | None, output_stride: int) -> tuple[int, ...]:
    """``rates`` or the defaults that follow the output stride (read after the backbone
    has checked the output stride, so a bad one is reported as the backbone's error)."""
    return tuple(rates) if rates is not None else default_rates(output_stride)


def _config(name: str, **arguments: Any) -> dict[str, Any]:
    """The builder's config, every argument named (a renamed local cannot change a saved
    config), with the schedule parsed once and stored in its JSON form."""
    schedule = DilationSchedule.parse(arguments["dilation_schedule"])
    return model_config(name, {**arguments, "dilation_schedule": schedule.to_config()})


def deeplabv3(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 16,
    dilation_schedule: ScheduleLike = None,
    aspp_rates: Sequence[int] | None = None,
    separable: bool = False,
    head_channels: int = 256,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """DeepLabv3: dilated backbone + ASPP head (Chen et al., 2017, arXiv:1706.05587).

    With ``backbone="resnet50", output_stride=8`` the state dict is torchvision's
    ``deeplabv3_resnet50`` (``aux=True`` adds its ``aux_classifier``); with
    ``backbone="mobilenet_v3_large", output_stride=16, aspp_rates=(12, 24, 36)`` it is
    ``deeplabv3_mobilenet_v3_large`` (torchvision keeps the stride-8 rates at stride 16).

    Args:
        num_classes: output classes.
        backbone: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101``, ``mobilenet_v2``
            or ``mobilenet_v3_large``.
        output_stride: 8, 16 or 32.
        dilation_schedule: one ``DilationSchedule`` or
            anything its ``parse`` reads: ``None``/``"plain"``, ``"multigrid"``,
            ``"multigrid:1,2,4"``, ``"hdc"``, ``"hdc:1,2,5"``, ``{stage: [rates]}``.
            ``model.config`` stores its JSON form.
        aspp_rates: ASPP rates; default (6, 12, 18) at stride 16, (12, 24, 36) at 8.
        separable: depthwise-separable ASPP branches.
        head_channels: ASPP/head width.
        norm: head normalisation, ``"batch"`` or ``"group"``.
        aux: add torchvision's auxiliary FCN head on the stride-16 stage.
    """
    config = _config(
        "deeplabv3",
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        aspp_rates=aspp_rates,
        separable=separable,
        head_channels=head_channels,
        norm=norm,
        aux=aux,
    )
    return _assemble(
        config,
        lambda trunk: DeepLabHead(
            trunk.out_channels,
            num_classes,
            rates=_aspp_rates(aspp_rates, output_stride),
            channels=head_channels,
            separable=separable,
            norm=norm,
        ),
    )


def deeplabv3plus(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 16,
    dilation_schedule: ScheduleLike = None,
    aspp_rates: Sequence[int] | None = None,
    separable: bool = True,
    head_channels: int = 256,
    low_level_projection: int = 48,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """DeepLabV3+: ASPP encoder, decoder fusing stride-4 features (Chen et al., 2018, arXiv:1802.02611).

    Options as ``deeplabv3``; ``low_level_projection`` is the width the stride-4
    features are projected to (48 in the paper).
    """
    config = _config(
        "deeplabv3plus",
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        aspp_rates=aspp_rates,
        separable=separable,
        head_channels=head_channels,
        low_level_projection=low_level_projection,
        norm=norm,
        aux=aux,
    )
    return _assemble(
        config,
        lambda trunk: DeepLabV3PlusHead(
            trunk.out_channels,
            trunk.info(trunk.low_level_feature).channels,
            num_classes,
            rates=_aspp_rates(aspp_rates, output_stride),
            channels=head_channels,
            low_level_projection=low_level_projection,
            separable=separable,
            norm=norm,
        ),
        low_level=True,
    )


def fcn(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 8,
    dilation_schedule: ScheduleLike = None,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """FCN head on a dilated backbone (Long et al., 2015, arXiv:1411.4038), the baseline.

    With ``backbone="resnet50", output_stride=8`` the state dict is torchvision's
    ``fcn_resnet50``.
    """
    config = _config(
        "fcn",
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        norm=norm,
        aux=aux,
    )
    return _assemble(config, lambda trunk: FCNHead(trunk.out_channels, num_classes, norm=norm))


def duc_hdc(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 8,
    dilation_schedule: ScheduleLike = "hdc",
    head_channels: int = 256,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """ResNet-DUC-HDC (Wang et al., 2018, arXiv:1702.08502): HDC backbone, DUC upsampling."""
    config = _config(
        "duc_hdc",
        num_classes=num_classes,
        backbone=backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        head_channels=head_channels,
        norm=norm,
        aux=aux,
    )
    return _assemble(
        config,
        lambda trunk: DUCHead(
            trunk.out_channels,
            num_classes,
            upscale=output_stride,
            channels=head_channels,
            norm=norm,
        ),
    )
