"""MobileNetV3-Large with output stride 8, 16 or 32, torchvision's keys and arithmetic.

Searching for MobileNetV3 (Howard et al., 2019, arXiv:1905.02244). The backbone's own
state-dict keys are those of torchvision's ``mobilenet_v3_large().features`` (``0`` the
stem ... ``16`` the final 1x1 conv to 960 channels) and of the ``backbone.`` part of
torchvision's ``deeplabv3_mobilenet_v3_large`` and ``lraspp_mobilenet_v3_large``, so
their weights load without renaming.

Stages follow torchvision's segmentation models, which read the map right after each
stride-2 block (its "C1 .. C5"): ``stage1`` is the stem (stride 2) and ``stage2`` ..
``stage5`` each end with a stride-2 block (strides 4, 8, 16, 32), ``stage6`` holds the
last two blocks and the 1x1 conv. LR-ASPP's low-level input and DeepLabV3's auxiliary
head read ``stage3`` (40 channels, stride 8), the first stride-8 map.

Dilation: unlike ResNet, whose first dilated block keeps the previous rate, torchvision
dilates MobileNetV3's former stride-2 block itself (stride 1, the stage rate), so every
block past the output stride runs at the stage rate: at output stride 16 the last three
blocks use rate 2. ``block_schedule`` holds that rule, in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

from atrous.models.backbones.base import (
    OUTPUT_STRIDES,
    Backbone,
    FeatureInfo,
    init_fan_out,
    main_path_convs,
)
from atrous.models.gates import SqueezeExcitation
from atrous.ops import AtrousConv2d
from atrous.ops.schedule import DilationSchedule, ScheduleLike, StageLayout, check_output_stride


class BlockSetting(NamedTuple):
    """One inverted residual of torchvision's table (paper Table 1)."""

    inputs: int
    kernel_size: int
    expanded: int
    outputs: int
    squeeze_excitation: bool
    hardswish: bool
    stride: int


_RE, _HS = False, True
# torchvision's ``_mobilenet_v3_conf("mobilenet_v3_large")`` at width 1.0.
SETTINGS = (
    BlockSetting(16, 3, 16, 16, False, _RE, 1),
    BlockSetting(16, 3, 64, 24, False, _RE, 2),
    BlockSetting(24, 3, 72, 24, False, _RE, 1),
    BlockSetting(24, 5, 72, 40, True, _RE, 2),
    BlockSetting(40, 5, 120, 40, True, _RE, 1),
    BlockSetting(40, 5, 120, 40, True, _RE, 1),
    BlockSetting(40, 3, 240, 80, False, _HS, 2),
    BlockSetting(80, 3, 200, 80, False, _HS, 1),
    BlockSetting(80, 3, 184, 80, False, _HS, 1),
    BlockSetting(80, 3, 184, 80, False, _HS, 1),
    BlockSetting(80, 3, 480, 112, True, _HS, 1),
    BlockSetting(112, 3, 672, 112, True, _HS, 1),
    BlockSetting(112, 5, 672, 160, True, _HS, 2),
    BlockSetting(160, 5, 960, 160, True, _HS, 1),
    BlockSetting(160, 5, 960, 160, True, _HS, 1),
)
STEM_CHANNELS = 16
LAST_CHANNELS = 960  # 6 x the last block's 160
# Stage -> indices into the layers (end exclusive): 0 stem, 1..15 blocks, 16 last conv.
STAGES = {
    "stage1": (0, 1),
    "stage2": (1, 3),
    "stage3": (3, 5),
    "stage4": (5, 8),
    "stage5": (8, 14),
    "stage6": (14, 17),
}


def _make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (used for the squeeze width)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # MobileNetV3's BatchNorm settings (torchvision and the paper's TensorFlow code).
    return nn.BatchNorm2d(channels, eps=0.001, momentum=0.01)


class BlockPlan(NamedTuple):
    """Stride and dilation one inverted residual is built with."""

    stride: int
    dilation: int


def _layout() -> StageLayout:
    """Blocks grouped where the stride doubles: the stages a schedule resolves against."""
    counts: list[int] = []
    strides: list[int] = []
    for setting in SETTINGS:
        if setting.stride > 1 or not counts:
            counts.append(0)
            strides.append(setting.stride)
        counts[-1] += 1
    names = tuple(f"group{index + 1}" for index in range(len(counts)))
    return StageLayout(names, tuple(counts), tuple(strides), stem_stride=2)


LAYOUT = _layout()


def block_schedule(output_stride: int) -> tuple[BlockPlan, ...]:
    """Stride and dilation of every inverted residual of ``SETTINGS`` at ``output_stride``.

    The plain schedule resolved on ``LAYOUT`` (the running-stride rule every
    backbone shares) says where the stride stops; each group's rate is the stride it
    gave up, ``nominal stride / output stride``, and applies to all its blocks, the
    former stride-2 block included, as in torchvision's MobileNetV3.
    """
    plans = DilationSchedule.plain().resolve(LAYOUT, output_stride, model="mobilenet_v3_large")
    schedule: list[BlockPlan] = []
    nominal = LAYOUT.stem_stride
    for plan, count, stride in zip(plans, LAYOUT.blocks, LAYOUT.strides, strict=True):
        nominal *= stride
        rate = nominal // plan.output_stride
        schedule.append(BlockPlan(plan.stride, rate))
        schedule += [BlockPlan(1, rate)] * (count - 1)
    return tuple(schedule)


class InvertedResidual(nn.Module):
    """1x1 expand (unless the width stays), k x k depthwise at ``dilation``, SE, linear 1x1.

    Keys and arithmetic are torchvision's MobileNetV3 ``InvertedResidual`` (``block.0``
    expand, ``block.1`` depthwise, ``block.2`` squeeze-excitation when used, then the
    projection).
    """

    def __init__(self, setting: BlockSetting, *, stride: int, dilation: int) -> None:
        super().__init__()
        activation: Callable[[], nn.Module] = nn.Hardswish if setting.hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if setting.expanded != setting.inputs:
            layers.append(
                AtrousConv2d(
                    setting.inputs,
                    setting.expanded,
                    1,
                    norm=_batch_norm,
                    activation=activation,
                )
            )
        layers.append(
            AtrousConv2d(
                setting.expanded,
                setting.expanded,
                setting.kernel_size,
                rate=dilation,
                stride=stride,
                groups=setting.expanded,
                norm=_batch_norm,
                activation=activation,
            )
        )
        if setting.squeeze_excitation:
            layers.append(
                SqueezeExcitation(setting.expanded, _make_divisible(setting.expanded // 4))
            )
        layers.append(
            AtrousConv2d(setting.expanded, setting.outputs, 1, norm=_batch_norm, activation=None)
        )
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and setting.inputs == setting.outputs
        self.out_channels = setting.outputs

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3Large(Backbone):
    """MobileNetV3-Large trunk returning ``{"stage1": ..., "stage6": ...}``.

    Args:
        output_stride: 8, 16 or 32. torchvision's segmentation models use 16 (the last
            three blocks at rate 2); 8 also dilates blocks 7-12 (rate 2, then 4).
        dilation_schedule: only the plain schedule (``None`` or ``"plain"``), resolved
            by ``block_schedule``: torchvision's weights were trained with it.

    Raises:
        ValueError: another output stride or schedule.
    """

    def __init__(self, *, output_stride: int = 16, dilation_schedule: ScheduleLike = None) -> None:
        super().__init__()
        check_output_stride(output_stride, OUTPUT_STRIDES, "mobilenet_v3_large")
        self.schedule = DilationSchedule.parse(dilation_schedule)
        if self.schedule != DilationSchedule.plain():
            raise ValueError(
                f"mobilenet_v3_large is built with the plain dilation schedule only (every "
                f"block past the output stride at the stage rate, as torchvision's); got "
                f"dilation_schedule={dilation_schedule!r}"
            )
        schedule = block_schedule(output_stride)
        layers: list[nn.Module] = [
            AtrousConv2d(3, STEM_CHANNELS, 3, stride=2, norm=_batch_norm, activation=nn.Hardswish)
        ]
        for setting, plan in zip(SETTINGS, schedule, strict=True):
            layers.append(InvertedResidual(setting, stride=plan.stride, dilation=plan.dilation))
        layers.append(
            AtrousConv2d(
                SETTINGS[-1].outputs, LAST_CHANNELS, 1, norm=_batch_norm, activation=nn.Hardswish
            )
        )
        for index, layer in enumerate(layers):
            self.add_module(str(index), layer)
        # Per-layer dilation of the stem and blocks; the final 1x1 conv has none and is
        # counted with the block before it (see stage_blocks).
        rates = [1] + [plan.dilation for plan in schedule]
        self.feature_info = []
        running_stride = 1
        for name, (start, end) in STAGES.items():
            for layer in layers[start:end]:
                running_stride *= _layer_stride(layer)
            self.feature_info.append(
                FeatureInfo(
                    name=name,
                    channels=_out_channels(layers[end - 1]),
                    stride=running_stride,
                    dilation=tuple(rates[start : min(end, len(rates))]),
                    convs=main_path_convs(nn.Sequential(*layers[start:end])),
                )
            )
        self.aux_feature = "stage3"
        self.low_level_feature = "stage2"
        init_fan_out(self)

    def layer(self, index: int) -> nn.Module:
        """Layer ``index`` of torchvision's ``features`` (0 stem, 1..15 blocks, 16 last conv)."""
        return self._modules[str(index)]  # type: ignore[return-value]

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        start, end = STAGES[name]
        blocks = [self.layer(index) for index in range(start, end)]
        if end == len(SETTINGS) + 2:
            # The final 1x1 conv has no spatial kernel: it belongs with the last block.
            blocks[-2:] = [nn.Sequential(*blocks[-2:])]
        return blocks

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = {}
        for name, (start, end) in STAGES.items():
            for index in range(start, end):
                x = self.layer(index)(x)
            features[name] = x
        return features


def _layer_stride(layer: nn.Module) -> int:
    return math.prod(int(m.stride[0]) for m in layer.modules() if isinstance(m, nn.Conv2d))


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, InvertedResidual):
        return layer.out_channels
    return int(layer[0].out_channels)  # an AtrousConv2d
