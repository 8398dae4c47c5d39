"""CGNet: context-guided blocks, a local 3x3 beside a dilated 3x3, 0.5M parameters.

Context Guided Network (Wu, Tang, Liu, Zhang & Zhang, 2020, IEEE TIP 30,
"CGNet: A Light-weight Context Guided Network for Semantic Segmentation",
arXiv:1811.08201), the M=3, N=21 model. A context-guided (CG) block reads a map with a
depth-wise 3x3 conv (the local feature) and, beside it, a depth-wise 3x3 conv at rate
2 (stage 2) or 4 (stage 3) (the surrounding context), concatenates the two, and
rescales the channels of the joint feature with a gate pooled over the whole image
(the global context, squeeze-excitation-like). Stage 2 (1/4) has 3 blocks, stage 3
(1/8) 21, the first of each stride 2. The image, average-pooled, is concatenated into
the outputs of stages 1 and 2; a 1x1 classifier works at 1/8.

The local and surrounding convs run side by side, not one after the other, so a
block's reach is the 3x3 square *or* the rate-r lattice, never their sum: the corners
of a stage's receptive field are a lattice with holes (see
``tests/models/test_cgnet.py``). The global gate is a
``ChannelGate``, so coverage analysis passes the gated map
through instead of linearising a product.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from atrous.models.backbones.base import Backbone, FeatureInfo, main_path_convs
from atrous.models.config import model_config
from atrous.models.gates import ChannelGate
from atrous.models.realtime.common import (
    BNPReLU,
    ConvBNPReLU,
    InjectedStem,
    assemble,
    image_pool,
    override_stages,
)
from atrous.models.segmentor import Segmentor
from atrous.ops.schedule import DilationSchedule

SCHEDULE = DilationSchedule.explicit({"stage1": (1, 1, 1), "stage2": (2,) * 3, "stage3": (4,) * 21})
"""CGNet_M3N21's rates: stage 1's three convs; one surrounding-context rate per CG
block of stages 2 (M = 3) and 3 (N = 21), the stride-2 block first."""

STAGES = {"stage2": (64, 8), "stage3": (128, 16)}
"""Channels and global-context reduction of each stage's CG blocks."""


class GlobalContext(nn.Module):
    """Squeeze-excitation-like gate: pool, 1x1 to C/r, ReLU, 1x1 to C, sigmoid, scale.

    The paper's two fully-connected layers as 1x1 convs (same weights and parameter
    count): the coverage analysis treats ``nn.Linear`` as mixing space and channels and
    would fall back to its slow full-channel run.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1)
        self.activation = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1)
        self.scale_activation = nn.Sigmoid()
        self.gate = ChannelGate()

    def forward(self, x: Tensor) -> Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.gate(x, self.scale_activation(scale))


class ContextGuidedBlock(nn.Module):
    """CG block: 1x1 (or stride-2 3x3) conv, [local dw 3x3, surround dw 3x3 at ``rate``].

    Residual block (``stride=1``): 1x1 conv to C/2 -> local and surround, concatenated
    to C -> BN-PReLU -> global gate -> plus the input. Down block (``stride=2``): 3x3
    stride-2 conv to C -> local and surround, concatenated to 2C -> BN-PReLU -> 1x1
    conv to C -> global gate; no residual.

    Args:
        inputs: input channels.
        channels: output channels.
        rate: the surrounding context's rate.
        reduction: the global gate's squeeze ratio.
        stride: 2 for the first block of a stage.
    """

    def __init__(
        self, inputs: int, channels: int, *, rate: int, reduction: int, stride: int = 1
    ) -> None:
        super().__init__()
        if stride == 1 and inputs != channels:
            raise ValueError(f"a residual CG block keeps its channels, got {inputs} -> {channels}")
        width = channels if stride == 2 else channels // 2
        self.conv = (
            ConvBNPReLU(inputs, width, 3, stride=2)
            if stride == 2
            else ConvBNPReLU(inputs, width, 1)
        )
        self.local = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.surround = nn.Conv2d(
            width, width, 3, padding=rate, dilation=rate, groups=width, bias=False
        )
        self.bn_act = BNPReLU(2 * width)
        self.reduce = nn.Conv2d(2 * width, channels, 1, bias=False) if stride == 2 else None
        self.context = GlobalContext(channels, reduction)
        self.residual = stride == 1
        self.rate = rate

    def main_path(self) -> list[nn.Module]:
        """The convs of the wider (surrounding) branch, in order."""
        return [m for m in (self.conv, self.surround, self.reduce) if m is not None]

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        out = self.bn_act(torch.cat([self.local(out), self.surround(out)], dim=1))
        if self.reduce is not None:
            out = self.reduce(out)
        out = self.context(out)
        return out + x if self.residual else out


class CGStage(nn.Module):
    """A stride-2 CG block, residual CG blocks, BN-PReLU of ``cat([blocks, first(, image)])``.

    Args:
        inputs: input channels.
        channels: the blocks' channels.
        rates: one surrounding-context rate per block, the stride-2 block first.
        reduction: the global gates' squeeze ratio.
        inject: concatenate the image at this stage's resolution (stage 2; stage 3
            does not).
    """

    def __init__(
        self,
        inputs: int,
        channels: int,
        rates: tuple[int, ...],
        *,
        reduction: int,
        inject: bool,
    ) -> None:
        super().__init__()
        self.first = ContextGuidedBlock(
            inputs, channels, rate=rates[0], reduction=reduction, stride=2
        )
        self.blocks = nn.Sequential(
            *(
                ContextGuidedBlock(channels, channels, rate=rate, reduction=reduction)
                for rate in rates[1:]
            )
        )
        self.inject = inject
        self.bn_act = BNPReLU(2 * channels + (3 if inject else 0))

    @property
    def out_channels(self) -> int:
        return self.bn_act.bn.num_features

    def main_path(self) -> nn.Sequential:
        return nn.Sequential(
            *(m for block in (self.first, *self.blocks) for m in block.main_path())
        )

    def forward(self, x: Tensor, image: Tensor | None = None) -> Tensor:
        first = self.first(x)
        parts = [self.blocks(first), first]
        if self.inject:
            if image is None:
                raise ValueError("this stage concatenates the image; pass it")
            parts.append(image)
        return self.bn_act(torch.cat(parts, dim=1))


class CGNetEncoder(Backbone):
    """Stages ``stage1`` (1/2, 35 ch), ``stage2`` (1/4, 131 ch), ``stage3`` (1/8, 256 ch).

    Args:
        schedule: the rates: ``stage1`` (three convs, the first strided at rate 1),
            ``stage2`` and ``stage3`` (each CG block's surrounding-context rate).
    """

    def __init__(self, *, schedule: DilationSchedule = SCHEDULE) -> None:
        super().__init__()
        rates = schedule.stage_rates
        if set(rates) != {"stage1", "stage2", "stage3"}:
            raise ValueError(
                f"a CGNet schedule names the stages stage1, stage2, stage3; got {sorted(rates)}"
            )
        self.image_pool = image_pool()
        self.stage1 = InjectedStem(rates["stage1"])
        self.feature_info = [
            FeatureInfo(
                name="stage1",
                channels=self.stage1.out_channels,
                stride=2,
                dilation=rates["stage1"],
                convs=main_path_convs(self.stage1.convs),
            )
        ]
        inputs, stride = self.stage1.out_channels, 2
        for name, (channels, reduction) in STAGES.items():
            stage = CGStage(
                inputs,
                channels,
                rates[name],
                reduction=reduction,
                inject=name == "stage2",
            )
            self.add_module(name, stage)
            inputs, stride = stage.out_channels, stride * 2
            self.feature_info.append(
                FeatureInfo(
                    name=name,
                    channels=inputs,
                    stride=stride,
                    dilation=rates[name],
                    convs=main_path_convs(stage.main_path()),
                )
            )
        self.schedule = schedule
        self.aux_feature = "stage2"
        self.low_level_feature = "stage2"

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        if name == "stage1":
            return list(self.stage1.convs)
        stage = getattr(self, name)
        return [stage.first, *stage.blocks]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        half = self.image_pool(x)
        stage1 = self.stage1(x, half)
        stage2 = self.stage2(stage1, self.image_pool(half))
        return {"stage1": stage1, "stage2": stage2, "stage3": self.stage3(stage2)}


def cgnet(
    *, num_classes: int, dilation_schedule: DilationSchedule | dict | str | None = None
) -> Segmentor:
    """CGNet_M3N21 (Wu et al., 2020, IEEE TIP 30): 0.5M parameters, output stride 8.

    Args:
        num_classes: output classes (a bias-free 1x1 conv on the 256-channel 1/8 map).
        dilation_schedule: the rates (default ``SCHEDULE``). A mapping changes only
            the stages it names, one surrounding-context rate per CG block:
            ``{"stage3": [1, 2, 5] * 7}`` cycles HDC rates through stage 3.
    """
    config = model_config(
        "cgnet", {"num_classes": num_classes, "dilation_schedule": dilation_schedule}
    )
    schedule = override_stages(
        SCHEDULE, dilation_schedule, model="CGNet", example="{'stage3': [1, 2, 5] * 7}"
    )
    return assemble(
        CGNetEncoder(schedule=schedule),
        config=config,
        schedule=schedule,
        num_classes=num_classes,
        head_input="stage3",
    )
