"""DABNet: depth-wise asymmetric bottlenecks at rates 2 and 4..16, 0.76M parameters.

Depth-wise Asymmetric Bottleneck network (Li, Zhao & Liu, 2019, BMVC, "DABNet:
Depth-wise Asymmetric Bottleneck for Real-time Semantic Segmentation",
arXiv:1907.11357). A DAB module halves the channels with a 3x3 conv, then runs two
depth-wise factorised branches side by side, 3x1 + 1x3 at rate 1 (local) and at the
module's rate (context), adds them, and projects back with a 1x1 conv inside a
residual. Block 1 (1/4) has three modules at rate 2, block 2 (1/8) six at 4, 4, 8, 8,
16, 16. Every stage output concatenates the image average-pooled to its resolution;
the 1x1 classifier works at 1/8 and its logits are upsampled bilinearly.

Because the halving 3x3 conv is undilated and comes before the dilated branch, every
module fills the 5x5 .. 33x33 lattice it reads: the stages leave no holes (see
``tests/models/test_dabnet.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from atrous.models.backbones.base import Backbone, FeatureInfo, main_path_convs
from atrous.models.config import model_config
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

SCHEDULE = DilationSchedule.explicit(
    {"stem": (1, 1, 1), "stage1": (1, 2, 2, 2), "stage2": (1, 4, 4, 8, 8, 16, 16)}
)
"""DABNet's rates: the stem's three convs, then per stage the stride-2 downsampler
(rate 1) and one rate per DAB module (the paper's block 1 and block 2)."""

STAGE_CHANNELS = {"stage1": 64, "stage2": 128}
"""Channels of the DAB modules of each stage (a stage's output adds its downsampler's
map and the 3-channel image: 131 and 259)."""


class DABModule(nn.Module):
    """Residual depth-wise asymmetric bottleneck at ``rate``.

    BN-PReLU -> 3x3 conv to C/2 -> [dw 3x1, dw 1x3] + [dw 3x1 (rate), dw 1x3 (rate)]
    -> BN-PReLU -> 1x1 conv to C, plus the input. Every conv but the last is followed
    by BN-PReLU.
    """

    def __init__(self, channels: int, *, rate: int) -> None:
        super().__init__()
        half = channels // 2
        self.bn_act_in = BNPReLU(channels)
        self.reduce = ConvBNPReLU(channels, half, 3)
        self.local_3x1 = ConvBNPReLU(half, half, (3, 1), groups=half)
        self.local_1x3 = ConvBNPReLU(half, half, (1, 3), groups=half)
        self.context_3x1 = ConvBNPReLU(half, half, (3, 1), dilation=(rate, 1), groups=half)
        self.context_1x3 = ConvBNPReLU(half, half, (1, 3), dilation=(1, rate), groups=half)
        self.bn_act_out = BNPReLU(half)
        self.project = nn.Conv2d(half, channels, 1, bias=False)
        self.rate = rate

    def main_path(self) -> list[nn.Module]:
        """The convs of the wider (context) branch, in order, for receptive-field arithmetic."""
        return [self.reduce, self.context_3x1, self.context_1x3, self.project]

    def forward(self, x: Tensor) -> Tensor:
        out = self.reduce(self.bn_act_in(x))
        local = self.local_1x3(self.local_3x1(out))
        context = self.context_1x3(self.context_3x1(out))
        return self.project(self.bn_act_out(local + context)) + x


class Downsampler(nn.Module):
    """3x3 stride-2 conv, concatenated with a 2x2 max-pool when it adds channels.

    Block 1's downsampler (35 -> 64) convolves to 29 channels and keeps the 35 pooled
    ones; block 2's (131 -> 128) has fewer outputs than inputs and is the conv alone, as
    in the authors' network. ``ceil_mode`` pooling keeps both branches ``ceil(H / 2)``
    rows on odd inputs (the authors' floor-mode pool fails to concatenate there).
    """

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            inputs, outputs - inputs if inputs < outputs else outputs, 3, 2, 1, bias=False
        )
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True) if inputs < outputs else None
        self.bn_act = BNPReLU(outputs)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.pool is not None:
            out = torch.cat([out, self.pool(x)], dim=1)
        return self.bn_act(out)


class DABStage(nn.Module):
    """Downsampler, DAB modules, then BN-PReLU of ``cat([modules, downsampler, image])``."""

    def __init__(self, inputs: int, channels: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.reduction = Downsampler(inputs, channels)
        self.blocks = nn.Sequential(*(DABModule(channels, rate=rate) for rate in rates))
        self.bn_act = BNPReLU(2 * channels + 3)

    @property
    def out_channels(self) -> int:
        return self.bn_act.bn.num_features

    def main_path(self) -> nn.Sequential:
        """Strided conv and each module's context branch (the widest path), in order."""
        convs: list[nn.Module] = [self.reduction.conv]
        for block in self.blocks:
            convs += block.main_path()
        return nn.Sequential(*convs)

    def forward(self, x: Tensor, image: Tensor) -> Tensor:
        first = self.reduction(x)
        return self.bn_act(torch.cat([self.blocks(first), first, image], dim=1))


class DABNetEncoder(Backbone):
    """Stages ``stem`` (1/2, 35 ch), ``stage1`` (1/4, 131 ch), ``stage2`` (1/8, 259 ch).

    Args:
        schedule: the rates: ``stem`` (three convs, the first strided at rate 1),
            ``stage1`` and ``stage2`` (the downsampler at rate 1, then one rate per DAB
            module).
    """

    def __init__(self, *, schedule: DilationSchedule = SCHEDULE) -> None:
        super().__init__()
        rates = schedule.stage_rates
        if set(rates) != {"stem", "stage1", "stage2"}:
            raise ValueError(
                f"a DABNet schedule names the stages stem, stage1, stage2; got {sorted(rates)}"
            )
        self.image_pool = image_pool()
        self.stem = InjectedStem(rates["stem"])
        self.feature_info = [
            FeatureInfo(
                name="stem",
                channels=self.stem.out_channels,
                stride=2,
                dilation=rates["stem"],
                convs=main_path_convs(self.stem.convs),
            )
        ]
        inputs, stride = self.stem.out_channels, 2
        for name, channels in STAGE_CHANNELS.items():
            stage_rates = rates[name]
            if stage_rates[0] != 1:
                raise ValueError(f"{name}: the first entry is the stride-2 downsampler (rate 1)")
            stage = DABStage(inputs, channels, stage_rates[1:])
            self.add_module(name, stage)
            inputs, stride = stage.out_channels, stride * 2
            self.feature_info.append(
                FeatureInfo(
                    name=name,
                    channels=inputs,
                    stride=stride,
                    dilation=stage_rates,
                    convs=main_path_convs(stage.main_path()),
                )
            )
        self.schedule = schedule
        self.aux_feature = "stage1"
        self.low_level_feature = "stage1"

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        if name == "stem":
            return list(self.stem.convs)
        stage = getattr(self, name)
        return [stage.reduction, *stage.blocks]

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        half = self.image_pool(x)
        quarter = self.image_pool(half)
        stem = self.stem(x, half)
        stage1 = self.stage1(stem, quarter)
        return {
            "stem": stem,
            "stage1": stage1,
            "stage2": self.stage2(stage1, self.image_pool(quarter)),
        }


def dabnet(
    *, num_classes: int, dilation_schedule: DilationSchedule | dict | str | None = None
) -> Segmentor:
    """DABNet (Li, Zhao & Liu, 2019, BMVC): 0.76M parameters, output stride 8.

    Args:
        num_classes: output classes (a bias-free 1x1 conv on the 259-channel 1/8 map).
        dilation_schedule: the rates (default ``SCHEDULE``). A mapping changes only
            the stages it names, with one rate per block, the downsampler (rate 1)
            first: ``{"stage2": [1, 1, 2, 5, 9, 2, 5]}`` is an HDC-style block 2.
    """
    config = model_config(
        "dabnet", {"num_classes": num_classes, "dilation_schedule": dilation_schedule}
    )
    schedule = override_stages(
        SCHEDULE, dilation_schedule, model="DABNet", example="{'stage2': [1, 1, 2, 5, 9, 2, 5]}"
    )
    return assemble(
        DABNetEncoder(schedule=schedule),
        config=config,
        schedule=schedule,
        num_classes=num_classes,
        head_input="stage2",
    )
