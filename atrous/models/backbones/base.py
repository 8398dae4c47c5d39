"""The backbone contract: ``feature_info`` per stage and a dict of feature maps.

Every backbone describes its stages with ``FeatureInfo`` so heads read channel
counts (never a hard-coded 2048) and the analysis toolkit reads strides and per-block
dilations from the same lists the network was built from: one source of truth for a
dilation schedule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor, nn

from atrous.ops.schedule import ConvGeometry, DilationSchedule

OUTPUT_STRIDES = (8, 16, 32)
"""Output strides of the stride-32 trunks (ResNet, MobileNet, EfficientNet-Lite)."""


@dataclass(frozen=True)
class FeatureInfo:
    """What one backbone stage produces.

    Attributes:
        name: key of this stage's map in the dict ``backbone(x)`` returns.
        channels: channels of that map.
        stride: output stride of that map relative to the input (``ceil(H / stride)``
            is its height for every input height ``H``).
        dilation: per-block dilation rate of the block's spatial (k > 1) convolutions,
            one entry per block of the stage, in order.
        convs: every conv/pool on the main path of the stage, in order, for exact
            receptive-field arithmetic (shortcut 1x1 projections are left out).
    """

    name: str
    channels: int
    stride: int
    dilation: tuple[int, ...]
    convs: tuple[ConvGeometry, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (lists instead of tuples)."""
        data = asdict(self)
        data["dilation"] = list(self.dilation)
        data["convs"] = [dict(spec) for spec in data["convs"]]
        return data


def main_path_convs(module: nn.Module) -> tuple[ConvGeometry, ...]:
    """Convs and max-pools of ``module`` in registration order, skipping shortcut branches.

    Every block here registers its layers in execution order, and shortcut projections
    live under a child named ``downsample``, so registration order is the main path.
    Geometry is read along the first spatial axis (the blocks are square).
    """
    specs = []
    for name, child in module.named_modules():
        if "downsample" in name.split("."):
            continue
        if isinstance(child, nn.Conv2d):
            kernel, dilation = int(child.kernel_size[0]), int(child.dilation[0])
            # A convolution that pads at run time (TensorFlow "same") says where its
            # first tap lands for the analysis.
            padding = getattr(child, "analysis_padding", child.padding)
            if isinstance(padding, int):
                padding = (padding,)
            if isinstance(padding, str):  # "same" / "valid"
                padding = (dilation * (kernel - 1) // 2,) if padding == "same" else (0,)
            specs.append(
                ConvGeometry(
                    "conv",
                    kernel_size=kernel,
                    stride=int(child.stride[0]),
                    dilation=dilation,
                    padding=int(padding[0]),
                )
            )
        elif isinstance(child, nn.MaxPool2d):
            specs.append(
                ConvGeometry(
                    "pool",
                    kernel_size=_first(child.kernel_size),
                    stride=_first(child.stride),
                    dilation=_first(child.dilation),
                    padding=_first(child.padding),
                )
            )
    return tuple(specs)


def _first(value: int | tuple[int, ...]) -> int:
    return int(value if isinstance(value, int) else value[0])


class Backbone(nn.Module):
    """Base class: subclasses fill ``feature_info`` and implement ``stage_blocks``.

    ``schedule`` is the ``DilationSchedule`` the backbone was
    built from (resolved per stage into ``feature_info[i].dilation``).

    ``forward(x)`` returns ``{info.name: feature_map}`` for every entry of
    ``feature_info``. ``aux_feature`` names the stage an auxiliary head reads and
    ``low_level_feature`` the stride-4 stage a DeepLabV3+ decoder reads.
    """

    feature_info: list[FeatureInfo]
    schedule: DilationSchedule
    aux_feature: str
    low_level_feature: str
    # Attribute names of the modules ``forward`` applies first, in order, to the 3-channel
    # image and nowhere else (the stem). Deployment paths may run them apart from the
    # rest (``atrous.infer.int8``); empty when a backbone does not say.
    stem_modules: tuple[str, ...] = ()

    def stage_blocks(self, name: str) -> list[nn.Module]:
        """The blocks of stage ``name``, one per entry of its ``dilation`` list."""
        raise NotImplementedError

    def info(self, name: str) -> FeatureInfo:
        """The ``FeatureInfo`` of stage ``name``."""
        for entry in self.feature_info:
            if entry.name == name:
                return entry
        known = [entry.name for entry in self.feature_info]
        raise KeyError(f"no stage named {name!r}; stages are {known}")

    @property
    def out_channels(self) -> int:
        return self.feature_info[-1].channels

    @property
    def output_stride(self) -> int:
        return self.feature_info[-1].stride

    def forward(self, x: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def init_fan_out(module: nn.Module) -> None:
    """Kaiming normal (fan-out) convolutions with zero bias, batch norms at identity: the
    initialisation of torchvision's MobileNetV2/V3 and Google's EfficientNet, shared by
    the backbones built from them."""
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out")
            if child.bias is not None:
                nn.init.zeros_(child.bias)
        elif isinstance(child, nn.BatchNorm2d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)
