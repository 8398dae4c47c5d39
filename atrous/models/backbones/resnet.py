"""ResNet-18/34/50/101 with output stride and per-block dilation applied while building.

Deep residual learning (He et al., 2016, arXiv:1512.03385). State-dict keys are exactly
torchvision's ``resnet*`` keys (``conv1``, ``bn1``, ``layer1.0.conv2`` ...), without
``fc``, so torchvision ImageNet weights load without renaming. Unlike torchvision's
BasicBlock, ours accepts dilation, so ResNet-18/34 can be dilated too.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from atrous.models.backbones.base import OUTPUT_STRIDES, Backbone, FeatureInfo, main_path_convs
from atrous.ops.schedule import DilationSchedule, ScheduleLike, StageLayout, check_output_stride

STAGES = ("layer1", "layer2", "layer3", "layer4")


def _conv3x3(inputs: int, outputs: int, *, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(
        inputs, outputs, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs, both at ``dilation``; stride on the first."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride=stride, dilation=dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 at ``dilation`` carrying the stride (ResNet v1.5), 1x1 expand."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride=stride, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


DEPTHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
}


def resnet_layout(depth: str) -> StageLayout:
    """The stages of ResNet ``depth`` before a schedule is applied (stem stride 4).

    Analysis resolves a schedule against it without building the network.
    """
    if depth not in DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth!r}; choose one of {sorted(DEPTHS)}")
    block, blocks = DEPTHS[depth]
    return StageLayout(
        STAGES, blocks, (1, 2, 2, 2), stem_stride=4, convs_per_block=2 if block is BasicBlock else 1
    )


class ResNet(Backbone):
    """A ResNet trunk returning ``{"layer1": ..., "layer4": ...}`` (strides 4, 8, ...).

    Args:
        depth: ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` or ``"resnet101"``.
        output_stride: 8, 16 or 32.
        dilation_schedule: anything ``DilationSchedule.parse`` reads: ``None`` or
            ``"plain"`` (torchvision's layout), ``"multigrid"`` / ``"multigrid:1,2"``,
            ``"hdc"`` / ``"hdc:1,2,5"``, a mapping stage -> per-block rates, or a
            ``DilationSchedule``.
        width: channels of the stem (64 in every published ResNet); smaller values make
            tiny test networks.
    """

    def __init__(
        self,
        *,
        depth: str = "resnet50",
        output_stride: int = 32,
        dilation_schedule: ScheduleLike = None,
        width: int = 64,
    ) -> None:
        super().__init__()
        layout = resnet_layout(depth)
        check_output_stride(output_stride, OUTPUT_STRIDES, depth)
        block, _ = DEPTHS[depth]
        self.schedule = DilationSchedule.parse(dilation_schedule)
        plans = self.schedule.resolve(layout, output_stride, model=depth)
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = width
        self.feature_info = []
        for index, plan in enumerate(plans):
            planes = width * 2**index
            layer, inplanes = _make_layer(block, inplanes, planes, plan.stride, plan.dilations)
            self.add_module(plan.name, layer)
            convs = main_path_convs(layer)
            if index == 0:
                convs = main_path_convs(nn.Sequential(self.conv1, self.maxpool)) + convs
            self.feature_info.append(
                FeatureInfo(
                    name=plan.name,
                    channels=inplanes,
                    stride=plan.output_stride,
                    dilation=plan.dilations,
                    convs=convs,
                )
            )
        self.aux_feature = "layer3"
        self.low_level_feature = "layer1"
        _init_weights(self)

    stem_modules = ("conv1", "bn1", "relu")

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        return list(getattr(self, name))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for name in STAGES:
            x = getattr(self, name)(x)
            features[name] = x
        return features


def _make_layer(
    block: type[BasicBlock] | type[Bottleneck],
    inplanes: int,
    planes: int,
    stride: int,
    dilations: Sequence[int],
) -> tuple[nn.Sequential, int]:
    outplanes = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != outplanes:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False),
            nn.BatchNorm2d(outplanes),
        )
    layers = [block(inplanes, planes, stride=stride, dilation=dilations[0], downsample=downsample)]
    layers += [block(outplanes, planes, dilation=rate) for rate in dilations[1:]]
    return nn.Sequential(*layers), outplanes


def _init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (Kaiming normal, fan-out; BN at identity)."""
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(child, nn.BatchNorm2d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
