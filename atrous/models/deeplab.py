"""DeepLabv3, DeepLabV3+, FCN and ResNet-DUC-HDC builders over dilated backbones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from atrous.models.backbones.factory import make_backbone
from atrous.models.config import model_config
from atrous.models.heads import DeepLabHead, DeepLabV3PlusHead, DUCHead, FCNHead, default_rates
from atrous.models.segmentor import Segmentor
from atrous.ops.layers import NormSpec

Schedule = str | Mapping[str, Sequence[int]] | None


def _aux(backbone, num_classes: int, aux: bool, norm: NormSpec) -> dict:
    if not aux:
        return {}
    name = backbone.aux_feature
    return {
        "aux_classifier": FCNHead(backbone.info(name).channels, num_classes, norm=norm),
        "aux_input": name,
    }


def deeplabv3(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 16,
    dilation_schedule: Schedule = None,
    multi_grid: Sequence[int] = (1, 2, 4),
    hdc_rates: Sequence[int] = (1, 2, 5, 9),
    aspp_rates: Sequence[int] | None = None,
    separable: bool = False,
    head_channels: int = 256,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """DeepLabv3: dilated backbone + ASPP head (Chen et al., 2017, arXiv:1706.05587).

    With ``backbone="resnet50", output_stride=8`` the state dict is torchvision's
    ``deeplabv3_resnet50`` (``aux=True`` adds its ``aux_classifier``).

    Args:
        num_classes: output classes.
        backbone: ``resnet18``, ``resnet34``, ``resnet50``, ``resnet101`` or ``mobilenet_v2``.
        output_stride: 8, 16 or 32.
        dilation_schedule: ``None``, ``"multigrid"``, ``"hdc"`` or ``{stage: [rates]}``.
        multi_grid: unit rates of the last stage for ``"multigrid"``.
        hdc_rates: sawtooth cycle for ``"hdc"``.
        aspp_rates: ASPP rates; default (6, 12, 18) at stride 16, (12, 24, 36) at 8.
        separable: depthwise-separable ASPP branches.
        head_channels: ASPP/head width.
        norm: head normalisation, ``"batch"`` or ``"group"``.
        aux: add torchvision's auxiliary FCN head on the stride-16 stage.
    """
    config = model_config("deeplabv3", locals())
    trunk = make_backbone(
        backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        multi_grid=multi_grid,
        hdc_rates=hdc_rates,
    )
    rates = tuple(aspp_rates) if aspp_rates is not None else default_rates(output_stride)
    head = DeepLabHead(
        trunk.out_channels,
        num_classes,
        rates=rates,
        channels=head_channels,
        separable=separable,
        norm=norm,
    )
    last = trunk.feature_info[-1].name
    return Segmentor(
        backbone=trunk,
        classifier=head,
        head_inputs=(last,),
        num_classes=num_classes,
        config=config,
        **_aux(trunk, num_classes, aux, norm),
    )


def deeplabv3plus(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 16,
    dilation_schedule: Schedule = None,
    multi_grid: Sequence[int] = (1, 2, 4),
    hdc_rates: Sequence[int] = (1, 2, 5, 9),
    aspp_rates: Sequence[int] | None = None,
    separable: bool = True,
    head_channels: int = 256,
    low_level_projection: int = 48,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """DeepLabV3+: ASPP encoder, decoder fusing stride-4 features (Chen et al., 2018, arXiv:1802.02611).

    Options as :func:`deeplabv3`; ``low_level_projection`` is the width the stride-4
    features are projected to (48 in the paper).
    """
    config = model_config("deeplabv3plus", locals())
    trunk = make_backbone(
        backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        multi_grid=multi_grid,
        hdc_rates=hdc_rates,
    )
    rates = tuple(aspp_rates) if aspp_rates is not None else default_rates(output_stride)
    low = trunk.low_level_feature
    head = DeepLabV3PlusHead(
        trunk.out_channels,
        trunk.info(low).channels,
        num_classes,
        rates=rates,
        channels=head_channels,
        low_level_projection=low_level_projection,
        separable=separable,
        norm=norm,
    )
    last = trunk.feature_info[-1].name
    return Segmentor(
        backbone=trunk,
        classifier=head,
        head_inputs=(last, low),
        num_classes=num_classes,
        config=config,
        **_aux(trunk, num_classes, aux, norm),
    )


def fcn(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 8,
    dilation_schedule: Schedule = None,
    multi_grid: Sequence[int] = (1, 2, 4),
    hdc_rates: Sequence[int] = (1, 2, 5, 9),
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """FCN head on a dilated backbone (Long et al., 2015, arXiv:1411.4038), the baseline.

    With ``backbone="resnet50", output_stride=8`` the state dict is torchvision's
    ``fcn_resnet50``.
    """
    config = model_config("fcn", locals())
    trunk = make_backbone(
        backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        multi_grid=multi_grid,
        hdc_rates=hdc_rates,
    )
    last = trunk.feature_info[-1].name
    return Segmentor(
        backbone=trunk,
        classifier=FCNHead(trunk.out_channels, num_classes, norm=norm),
        head_inputs=(last,),
        num_classes=num_classes,
        config=config,
        **_aux(trunk, num_classes, aux, norm),
    )


def duc_hdc(
    *,
    num_classes: int,
    backbone: str = "resnet50",
    output_stride: int = 8,
    dilation_schedule: Schedule = "hdc",
    multi_grid: Sequence[int] = (1, 2, 4),
    hdc_rates: Sequence[int] = (1, 2, 5, 9),
    head_channels: int = 256,
    norm: NormSpec = "batch",
    aux: bool = False,
) -> Segmentor:
    """ResNet-DUC-HDC (Wang et al., 2018, arXiv:1702.08502): HDC backbone, DUC upsampling."""
    config = model_config("duc_hdc", locals())
    trunk = make_backbone(
        backbone,
        output_stride=output_stride,
        dilation_schedule=dilation_schedule,
        multi_grid=multi_grid,
        hdc_rates=hdc_rates,
    )
    last = trunk.feature_info[-1].name
    head = DUCHead(
        trunk.out_channels, num_classes, upscale=output_stride, channels=head_channels, norm=norm
    )
    return Segmentor(
        backbone=trunk,
        classifier=head,
        head_inputs=(last,),
        num_classes=num_classes,
        config=config,
        **_aux(trunk, num_classes, aux, norm),
    )
