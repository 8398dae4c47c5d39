"""Any timm encoder as a dilated backbone: ``backbone="timm:<name>"`` in every builder.

timm (Wightman, PyTorch Image Models) already knows how to trade stride for dilation
(``output_stride``) and how to describe its feature maps (``feature_info``); atrous
asks it for both, checks that the strides it reports honour the output stride asked
for, and describes each stage with atrous's ``FeatureInfo`` (channels, stride,
per-block dilation read off the built convolutions), so the DeepLab and LR-ASPP heads,
``atrous rf`` and the hole analysis work on it as on atrous's own backbones.

timm is an extra (``pip install 'atrous[timm]'``). ImageNet weights come through timm:
``model.backbone_weights: timm`` downloads them as timm does; a file path is read by
atrous (safetensors, or a tensors-only ``torch.load``) and handed to timm's own loader,
which maps a classifier's keys onto the feature extractor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from atrous.models.backbones.base import OUTPUT_STRIDES, Backbone, FeatureInfo, main_path_convs
from atrous.ops.schedule import DilationSchedule, ScheduleLike, check_output_stride

PREFIX = "timm:"
TIMM_MISSING = "timm encoders need timm: pip install 'atrous[timm]'"


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ImportError(TIMM_MISSING) from None
    return timm


def create_features(
    name: str, output_stride: int, *, state_dict: Mapping[str, Tensor] | None = None
) -> nn.Module:
    """``timm.create_model(name, features_only=True, output_stride=...)``, with weights
    from ``state_dict`` (a classifier's keys are fine: timm maps them) when given.

    Raises:
        ValueError: timm does not know ``name`` or cannot build it as a feature extractor.
    """
    timm = _timm()
    if not timm.is_model(name):
        raise ValueError(f"timm has no model {name!r} (see timm.list_models())")
    options: dict[str, Any] = {"features_only": True, "output_stride": output_stride}
    if state_dict is not None:
        options |= {"pretrained": True, "pretrained_cfg_overlay": {"state_dict": dict(state_dict)}}
    try:
        return timm.create_model(name, **options)
    except (RuntimeError, TypeError, ValueError, AssertionError) as error:
        raise ValueError(f"timm cannot build {name!r} as a feature extractor: {error}") from error


def _stage_name(body: nn.Module, module_name: str) -> str:
    """The name of the module timm reports for a feature, in ``body`` (its wrapper may
    flatten ``stages.0`` to ``stages_0``)."""
    for candidate in (module_name, module_name.replace(".", "_")):
        try:
            body.get_submodule(candidate)
        except AttributeError:
            continue
        return candidate
    raise ValueError(f"cannot find timm's feature module {module_name!r}")


def _leaves_by_stage(body: nn.Module, names: list[str]) -> list[list[nn.Module]]:
    """Convolutions and pools of ``body`` per feature stage, in registration order: a
    layer inside stage k's module is stage k's; one between two stage modules (the stem
    before the first, ResNet's max-pool after ``act1``) belongs to the stage after it.
    Shortcut projections (``downsample`` under a block) are left out, as for atrous's
    own backbones."""
    found: list[list[nn.Module]] = [[] for _ in names]
    last = -1
    for qualified, module in body.named_modules():
        inside = next(
            (i for i, n in enumerate(names) if qualified == n or qualified.startswith(n + ".")),
            None,
        )
        if inside is not None:
            last = inside
        stage = inside if inside is not None else min(last + 1, len(names) - 1)
        if not isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            continue
        if "downsample" in qualified.split(".")[len(names[stage].split(".")) + 1 :]:
            continue
        found[stage].append(module)
    return found


def _spatial_dilation(module: nn.Module) -> int:
    rates = [
        int(m.dilation[0])
        for m in module.modules()
        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1
    ]
    return max(rates, default=1)


def _blocks(stage: nn.Module) -> list[nn.Module]:
    """The stage's blocks: its ``blocks`` sequence (ConvNeXt), else its children that
    hold convolutions (ResNet, RegNet, EfficientNet), else the stage itself."""
    inner = getattr(stage, "blocks", None)
    if isinstance(inner, nn.Sequential):
        return list(inner)
    children = [
        child
        for child in stage.children()
        if any(isinstance(m, nn.Conv2d) for m in child.modules())
    ]
    return children or [stage]


class TimmEncoder(Backbone):
    """A timm feature extractor returning ``{"stage1": ..., "stageN": ...}``.

    Args:
        name: a timm model name (``resnet50``, ``efficientnet_b0``, ``convnext_tiny``...).
        output_stride: 8, 16 or 32, handed to timm; the built strides are checked.
        dilation_schedule: only ``plain``: timm decides where dilation goes.
    """

    def __init__(
        self,
        name: str,
        *,
        output_stride: int = 16,
        dilation_schedule: ScheduleLike = None,
        state_dict: Mapping[str, Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride, OUTPUT_STRIDES, f"timm:{name}")
        self.schedule = DilationSchedule.parse(dilation_schedule)
        if self.schedule != DilationSchedule.plain():
            raise ValueError(
                f"timm:{name} takes dilation_schedule 'plain' only: timm places the "
                "dilation for an output stride itself"
            )
        self.timm_name, self.variant = name, f"timm:{name}"
        self.body = create_features(name, output_stride, state_dict=state_dict)
        info = self.body.feature_info
        strides = [int(r) for r in info.reduction()]
        if max(strides) != output_stride or any(s > output_stride for s in strides):
            raise ValueError(
                f"timm:{name} does not honour output_stride={output_stride}: its feature "
                f"strides are {strides}"
            )
        self._blocks: dict[str, list[nn.Module]] = {}
        self.feature_info = []
        names = [_stage_name(self.body, n) for n in info.module_name()]
        leaves = _leaves_by_stage(self.body, names)
        for index, (channels, stride) in enumerate(zip(info.channels(), strides, strict=True)):
            name_i = f"stage{index + 1}"
            blocks = _blocks(self.body.get_submodule(names[index]))
            self._blocks[name_i] = blocks
            self.feature_info.append(
                FeatureInfo(
                    name=name_i,
                    channels=int(channels),
                    stride=stride,
                    dilation=tuple(_spatial_dilation(b) for b in blocks),
                    convs=main_path_convs(nn.ModuleList(leaves[index])),
                )
            )
        by_stride = {entry.stride: entry.name for entry in self.feature_info}
        self.low_level_feature = by_stride.get(4, self.feature_info[0].name)
        self.aux_feature = self.feature_info[-2].name

    def stage_blocks(self, name: str) -> list[nn.Module]:
        self.info(name)
        return list(self._blocks[name])

    def load_timm_weights(self, state_dict: Mapping[str, Tensor] | None) -> None:
        """Weights through timm's own loader: ``None`` downloads the default ImageNet
        weights as timm does; a state dict (a classifier's is fine) is mapped by timm."""
        timm = _timm()
        if state_dict is None:
            loaded = timm.create_model(
                self.timm_name,
                features_only=True,
                output_stride=self.output_stride,
                pretrained=True,
            )
        else:
            loaded = create_features(self.timm_name, self.output_stride, state_dict=state_dict)
        self.body.load_state_dict(loaded.state_dict(), strict=True)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = self.body(x)
        return {entry.name: f for entry, f in zip(self.feature_info, features, strict=True)}
