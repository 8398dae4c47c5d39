"""Dilated residual networks DRN-C-26 and DRN-D-22, output stride 8.

Dilated Residual Networks (Yu, Koltun & Funkhouser, 2017, arXiv:1705.09914): the last
two ResNet stages keep resolution and dilate by 2 and 4 instead; a max-pooling stem is
replaced by a stride-1 7x7 conv (pooling aliases high frequencies that dilated layers
then grid on), and two "degridding" levels at decreasing dilation (2, then 1) without
residual connections remove the gridding artifacts the dilation leaves.
DRN-C uses residual blocks in levels 1-2 and non-residual basic blocks in 7-8; DRN-D
replaces both with plain conv layers. Key names follow the authors' layer0..layer8.
"""

from __future__ import annotations

from torch import Tensor, nn

from atrous.models.backbones.base import Backbone, FeatureInfo, main_path_convs
from atrous.models.backbones.resnet import BasicBlock
from atrous.ops import AtrousConv2d
from atrous.ops.schedule import DilationSchedule, StageLayout

CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
STAGES = ("layer0", *(f"layer{i}" for i in range(1, 9)))
SCHEDULE = DilationSchedule.explicit(
    {
        "layer1": (1,),
        "layer2": (1,),
        "layer3": (1, 1),
        "layer4": (1, 1),
        "layer5": (2, 2),  # stride 2 given up: rate 2
        "layer6": (4, 4),  # and again: rate 4
        "layer7": (2,),  # degridding, decreasing rates without residuals
        "layer8": (1,),
    }
)
"""DRN-C-26's and DRN-D-22's rates, one per block of levels 1-8 (output stride 8)."""
LAYOUT = StageLayout(
    names=tuple(name for name, _ in SCHEDULE.stages),
    blocks=tuple(len(rates) for _, rates in SCHEDULE.stages),
    strides=(1, 2, 2, 2, 2, 2, 1, 1),
    stem_stride=1,
    convs_per_block=2,  # basic blocks; DRN-D's conv levels 1-2 and 7-8 have one
)
"""Levels 1-8 with their nominal strides; at output stride 8 levels 5-6 keep stride 1."""
OUTPUT_STRIDE = 8
BLOCKS = LAYOUT.blocks


class DRNBlock(BasicBlock):
    """ResNet's basic block (same layers and keys) whose residual connection can be
    switched off: DRN-C's degridding levels are plain two-conv blocks."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        residual: bool = True,
    ) -> None:
        downsample = None
        if residual and (stride != 1 or inplanes != planes):
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )
        super().__init__(inplanes, planes, stride=stride, dilation=dilation, downsample=downsample)
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        if self.residual:
            return super().forward(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class DRN(Backbone):
    """DRN trunk returning ``{"layer0": ..., "layer8": ...}``; ``arch`` is ``"C"`` or ``"D"``."""

    def __init__(self, *, arch: str = "D") -> None:
        super().__init__()
        if arch not in ("C", "D"):
            raise ValueError(f"unknown DRN arch {arch!r}; choose 'C' (DRN-C-26) or 'D' (DRN-D-22)")
        # Block kind per level: conv layers, or residual / non-residual basic blocks.
        first = "conv" if arch == "D" else "residual"
        degrid = "conv" if arch == "D" else "plain"
        kinds_per_level = (first, first, *("residual",) * 4, degrid, degrid)
        self.schedule = SCHEDULE
        plans = SCHEDULE.resolve(LAYOUT, OUTPUT_STRIDE, model=f"DRN-{arch}")
        self.layer0 = AtrousConv2d(3, CHANNELS[0], 7)
        self.feature_info = [
            FeatureInfo(
                name="layer0",
                channels=CHANNELS[0],
                stride=1,
                dilation=(1,),
                convs=main_path_convs(self.layer0),
            )
        ]
        inputs = CHANNELS[0]
        for plan, kind, channels in zip(plans, kinds_per_level, CHANNELS, strict=True):
            blocks: list[nn.Module] = []
            for block, rate in enumerate(plan.dilations):
                block_stride = plan.stride if block == 0 else 1
                if kind == "conv":
                    blocks.append(AtrousConv2d(inputs, channels, 3, rate=rate, stride=block_stride))
                else:
                    blocks.append(
                        DRNBlock(
                            inputs,
                            channels,
                            stride=block_stride,
                            dilation=rate,
                            residual=kind == "residual",
                        )
                    )
                inputs = channels
            layer = nn.Sequential(*blocks)
            self.add_module(plan.name, layer)
            self.feature_info.append(
                FeatureInfo(
                    name=plan.name,
                    channels=channels,
                    stride=plan.output_stride,
                    dilation=plan.dilations,
                    convs=main_path_convs(layer),
                )
            )
        self.arch = arch
        self.aux_feature = "layer5"
        self.low_level_feature = "layer3"
        for child in self.modules():
            if isinstance(child, nn.Conv2d):
                nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        return [self.layer0] if name == "layer0" else list(getattr(self, name))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = {}
        for name in STAGES:
            x = getattr(self, name)(x)
            features[name] = x
        return features
