"""MobileNetV2 with output stride 8, 16 or 32: a light backbone that trains on a CPU.

Inverted residuals and linear bottlenecks (Sandler et al., 2018, arXiv:1801.04381).
Keys match torchvision's ``mobilenet_v2`` ``features.0`` .. ``features.17``; the final
1x1 conv to 1280 channels (``features.18``) and the classifier are left out because a
segmentation head reads the 320-channel map, as DeepLabv3 on MobileNetV2 does.
"""

from __future__ import annotations

from torch import Tensor, nn

from atrous.models.backbones.base import (
    OUTPUT_STRIDES,
    Backbone,
    FeatureInfo,
    init_fan_out,
    main_path_convs,
)
from atrous.ops import AtrousConv2d
from atrous.ops.schedule import DilationSchedule, ScheduleLike, StageLayout, check_output_stride

# (expansion t, channels c, repeats n, stride s), torchvision's table.
SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# Stages end where the stride next doubles: indices into ``features`` (end exclusive).
STAGE_BOUNDS = {
    "stage1": (0, 2),
    "stage2": (2, 4),
    "stage3": (4, 7),
    "stage4": (7, 14),
    "stage5": (14, 18),
}
LAYOUT = StageLayout(
    names=tuple(STAGE_BOUNDS),
    blocks=tuple(end - start for start, end in STAGE_BOUNDS.values()),
    strides=(2, 2, 2, 2, 2),
    stem_stride=1,
)
"""Stages as a schedule sees them: ``stage1`` holds the stem conv and the first block."""


def _make_divisible(value: float, divisor: int = 8) -> int:
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


class InvertedResidual(nn.Module):
    """1x1 expand (unless t = 1), 3x3 depthwise at ``dilation``, linear 1x1 project."""

    def __init__(
        self, inputs: int, outputs: int, *, stride: int, dilation: int, expansion: int
    ) -> None:
        super().__init__()
        hidden = inputs * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(AtrousConv2d(inputs, hidden, 1, activation="relu6"))
        layers += [
            AtrousConv2d(
                hidden, hidden, 3, rate=dilation, stride=stride, groups=hidden, activation="relu6"
            ),
            nn.Conv2d(hidden, outputs, 1, bias=False),
            nn.BatchNorm2d(outputs),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and inputs == outputs

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(Backbone):
    """MobileNetV2 trunk returning ``{"stage1": ..., "stage5": ...}`` (strides 2 .. 32).

    Args:
        output_stride: 8, 16 or 32; stride-2 blocks past it become dilated (the first
            block of such a stage keeps the previous rate, as in DeepLab's TensorFlow
            implementation).
        dilation_schedule: anything ``DilationSchedule.parse`` reads, resolved
            against ``LAYOUT`` (one rate per block; ``stage1``'s first entry is the
            stem conv's).
        width_mult: channel multiplier (1.0 is the published network).
    """

    def __init__(
        self,
        *,
        output_stride: int = 16,
        dilation_schedule: ScheduleLike = None,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride, OUTPUT_STRIDES, "mobilenet_v2")
        stem_channels = _make_divisible(32 * width_mult)
        specs: list[tuple[int, int, int]] = []  # (expansion, channels, nominal stride)
        for expansion, channels, repeats, stride in SETTINGS:
            for index in range(repeats):
                specs.append(
                    (expansion, _make_divisible(channels * width_mult), stride if index == 0 else 1)
                )
        self.schedule = DilationSchedule.parse(dilation_schedule)
        plans = self.schedule.resolve(LAYOUT, output_stride, model="mobilenet_v2")
        # Stage 1 holds the stem conv and block 1; the stem keeps stride 2 at every
        # output stride, so only an explicit schedule can dilate it.
        features: list[nn.Module] = [
            AtrousConv2d(
                3, stem_channels, 3, rate=plans[0].dilations[0], stride=2, activation="relu6"
            )
        ]
        inputs = stem_channels
        block_index = 1
        self.feature_info = []
        for plan, (start, end) in zip(plans, STAGE_BOUNDS.values(), strict=True):
            for position in range(max(start, 1), end):
                expansion, channels, nominal = specs[block_index - 1]
                stride = plan.stride if position == start else (1 if nominal == 1 else nominal)
                features.append(
                    InvertedResidual(
                        inputs,
                        channels,
                        stride=stride,
                        dilation=plan.dilations[position - start],
                        expansion=expansion,
                    )
                )
                inputs = channels
                block_index += 1
            self.feature_info.append(
                FeatureInfo(
                    name=plan.name,
                    channels=inputs,
                    stride=plan.output_stride,
                    dilation=plan.dilations,
                    convs=main_path_convs(nn.Sequential(*features[start:end])),
                )
            )
        self.features = nn.Sequential(*features)
        self.aux_feature = "stage4"
        self.low_level_feature = "stage2"
        init_fan_out(self)

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        start, end = STAGE_BOUNDS[name]
        return list(self.features[start:end])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        outputs = {}
        for name, (start, end) in STAGE_BOUNDS.items():
            for index in range(start, end):
                x = self.features[index](x)
            outputs[name] = x
        return outputs
