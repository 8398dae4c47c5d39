"""A plain stack of dilated convolutions for comparing dilation schedules.

The network for the dilation experiments (Yu & Koltun, 2016; Wang et al., 2018): a short stem, then one ``AtrousConv2d`` per
entry of ``rates``, a 1x1 classifier and bilinear upsampling. The parameter count does
not depend on ``rates``, so ``(1, 1, 1, 1)`` (no dilation), ``(4, 4, 4, 4)`` (gridding)
and ``(1, 2, 5, 9)`` (hybrid dilated convolution, Wang et al., 2018,
arXiv:1702.08502) differ only in where their kernels look.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from atrous.models.backbones.base import Backbone, FeatureInfo, main_path_convs
from atrous.models.config import model_config
from atrous.models.heads.aspp import ASPP
from atrous.models.segmentor import Segmentor
from atrous.ops import AtrousConv2d
from atrous.ops.layers import NormSpec
from atrous.ops.schedule import HDC_RATES, DilationSchedule

_STEM_STRIDES = (1, 2, 4)


class DilatedStack(Backbone):
    """Stem reaching ``stem_stride`` then one dilated conv per rate, all ``width`` wide.

    Stages: ``"stem"`` (one 3x3 conv per factor of 2 of ``stem_stride``, or one stride-1
    conv) and ``"body"`` (the dilated layers, built from ``schedule``: an explicit
    schedule with one stage, ``"body"``, whose rates and kernel size it gives).
    """

    def __init__(
        self,
        *,
        schedule: DilationSchedule,
        width: int,
        stem_stride: int,
        norm: NormSpec,
        in_channels: int,
    ) -> None:
        super().__init__()
        if stem_stride not in _STEM_STRIDES:
            raise ValueError(
                f"stem_stride={stem_stride} is not supported; choose one of {_STEM_STRIDES}"
            )
        if schedule.rule != "explicit" or set(schedule.stage_rates) != {"body"}:
            raise ValueError(
                f"a DilatedStack is built from an explicit schedule with one stage 'body', "
                f"got {schedule}; use body_schedule(rates)"
            )
        rates = schedule.stage_rates["body"]
        if not rates:
            raise ValueError("rates must be a non-empty sequence of ints >= 1, got ()")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        stem_layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(max(1, stem_stride.bit_length() - 1)):
            stem_layers.append(
                AtrousConv2d(channels, width, 3, stride=2 if stem_stride > 1 else 1, norm=norm)
            )
            channels = width
        self.stem = nn.Sequential(*stem_layers)
        self.body = nn.Sequential(
            *(
                AtrousConv2d(width, width, schedule.kernel_size, rate=rate, norm=norm)
                for rate in rates
            )
        )
        self.schedule = schedule
        self.dilations = list(rates)
        self.feature_info = [
            FeatureInfo(
                name="stem",
                channels=width,
                stride=stem_stride,
                dilation=tuple(1 for _ in stem_layers),
                convs=main_path_convs(self.stem),
            ),
            FeatureInfo(
                name="body",
                channels=width,
                stride=stem_stride,
                dilation=tuple(self.dilations),
                convs=main_path_convs(self.body),
            ),
        ]
        self.aux_feature = "stem"
        self.low_level_feature = "stem"

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        return list(self.stem if name == "stem" else self.body)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        stem = self.stem(x)
        return {"stem": stem, "body": self.body(stem)}


def body_schedule(rates: Sequence[int], kernel_size: int = 3) -> DilationSchedule:
    """The schedule of a ``DilatedStack`` body: ``rates`` as the one stage ``"body"``.

    Raises:
        ValueError: rates that are not ints >= 1 (the message shows them).
    """
    if isinstance(rates, str) or not all(
        isinstance(rate, int) and not isinstance(rate, bool) for rate in rates
    ):
        raise ValueError(f"rates must be a non-empty sequence of ints >= 1, got {rates!r}")
    return DilationSchedule.explicit({"body": rates}, kernel_size=kernel_size)


class DilatedNet(Segmentor):
    """``Segmentor`` over a ``DilatedStack``; ``dilations`` is its rate list."""

    @property
    def dilations(self) -> list[int]:
        return list(self.backbone.dilations)  # type: ignore[arg-type]


def dilated_net(
    *,
    num_classes: int,
    rates: Sequence[int] = HDC_RATES,
    width: int = 32,
    stem_stride: int = 2,
    kernel_size: int = 3,
    norm: NormSpec = "batch",
    in_channels: int = 3,
    aspp_rates: Sequence[int] | None = None,
) -> DilatedNet:
    """Build the plain dilated stack (Yu & Koltun, 2016, arXiv:1511.07122, in miniature).

    Args:
        num_classes: output classes.
        rates: dilation rate of each body layer; one layer per entry (default: the
            HDC sawtooth ``HDC_RATES``).
        width: channels of every layer, so ``rates`` changes no parameter count.
        stem_stride: 1, 2 or 4; the resolution the dilated layers work at.
        kernel_size: odd kernel size of the body layers.
        norm: ``"batch"``, ``"group"`` or ``"none"``.
        in_channels: input channels (3 for RGB).
        aspp_rates: with rates, the 1x1 classifier reads an ASPP head (Chen et al.,
            2017) of ``width`` channels: a 1x1 branch, one 3x3 branch per rate and image
            pooling. The same body with and without it isolates what ASPP's multi-scale
            context adds (the demo's fourth comparison).
    """
    config = model_config(
        "dilated_net",
        {
            "num_classes": num_classes,
            "rates": rates,
            "width": width,
            "stem_stride": stem_stride,
            "kernel_size": kernel_size,
            "norm": norm,
            "in_channels": in_channels,
            "aspp_rates": aspp_rates,
        },
    )
    backbone = DilatedStack(
        schedule=body_schedule(rates, kernel_size),
        width=width,
        stem_stride=stem_stride,
        norm=norm,
        in_channels=in_channels,
    )
    classifier: nn.Module = nn.Conv2d(width, num_classes, 1)
    if aspp_rates is not None:
        aspp = ASPP(width, rates=tuple(aspp_rates), out_channels=width, norm=norm, dropout=0.1)
        classifier = nn.Sequential(aspp, classifier)
    return DilatedNet(
        backbone=backbone,
        classifier=classifier,
        head_inputs=("body",),
        num_classes=num_classes,
        config=config,
    )
