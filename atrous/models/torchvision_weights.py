"""Import torchvision weights: ImageNet backbones and whole segmentation models.

Backbone keys match torchvision's, so importing is a strict ``load_state_dict`` after
dropping the classification layers; nothing is renamed (MobileNetV3's ImageNet keys only
lose their ``features.`` prefix, as in torchvision's own segmentation models).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from atrous.models.backbones.mobilenet import MobileNetV2
from atrous.models.backbones.mobilenet_v3 import MobileNetV3Large
from atrous.models.backbones.resnet import ResNet
from atrous.models.registry import build_model
from atrous.models.segmentor import Segmentor


class TorchvisionModel(NamedTuple):
    """How one torchvision segmentation model is built in atrous."""

    model: str
    options: dict[str, Any]
    classes_key: str  # the final classifier weight: its rows are the classes
    has_aux: bool = True  # whether torchvision can add an aux_classifier


_DEEPLAB_KEY = "classifier.4.weight"
# The ResNet models are dilated to stride 8. The MobileNetV3 ones run at stride 16 with
# the last stage dilated; torchvision's DeepLabV3 keeps ASPP rates (12, 24, 36) there.
TORCHVISION_MODELS: dict[str, TorchvisionModel] = {
    "deeplabv3_resnet50": TorchvisionModel(
        "deeplabv3", {"backbone": "resnet50", "output_stride": 8}, _DEEPLAB_KEY
    ),
    "deeplabv3_resnet101": TorchvisionModel(
        "deeplabv3", {"backbone": "resnet101", "output_stride": 8}, _DEEPLAB_KEY
    ),
    "deeplabv3_mobilenet_v3_large": TorchvisionModel(
        "deeplabv3",
        {"backbone": "mobilenet_v3_large", "output_stride": 16, "aspp_rates": (12, 24, 36)},
        _DEEPLAB_KEY,
    ),
    "fcn_resnet50": TorchvisionModel(
        "fcn", {"backbone": "resnet50", "output_stride": 8}, _DEEPLAB_KEY
    ),
    "fcn_resnet101": TorchvisionModel(
        "fcn", {"backbone": "resnet101", "output_stride": 8}, _DEEPLAB_KEY
    ),
    "lraspp_mobilenet_v3_large": TorchvisionModel(
        "lraspp",
        {"backbone": "mobilenet_v3_large", "output_stride": 16},
        "classifier.low_classifier.weight",
        has_aux=False,
    ),
}


def _state_dict(weights: Any) -> Mapping[str, Tensor]:
    if isinstance(weights, Mapping):
        return weights
    if hasattr(weights, "get_state_dict"):  # a torchvision WeightsEnum member; may download
        return weights.get_state_dict(progress=True)
    raise TypeError(
        f"expected a state dict or a torchvision weights enum (e.g. ResNet50_Weights.IMAGENET1K_V1), "
        f"got {type(weights).__name__}"
    )


def load_torchvision_backbone(model: Segmentor, weights: Any) -> Segmentor:
    """Load torchvision ImageNet weights into ``model.backbone`` (strict, no renaming).

    Args:
        model: a model whose backbone is a ResNet of matching depth, MobileNetV2 or
            MobileNetV3-Large.
        weights: a torchvision classification state dict (``resnet50().state_dict()``,
            or one saved to disk and read with ``torch.load(..., weights_only=True)``), or
            a torchvision weights enum such as ``ResNet50_Weights.IMAGENET1K_V2``, which
            torchvision downloads and caches.

    Returns:
        ``model``, for chaining.
    """
    state = _state_dict(weights)
    backbone = model.backbone
    kept = torchvision_backbone_keys(backbone, state)
    result = backbone.load_state_dict(kept, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"these weights do not fit the {model.config.get('backbone', 'model')} backbone: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]} "
            "(is it the same ResNet depth?)"
        )
    return model


def torchvision_backbone_keys(
    backbone: nn.Module, state: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """The entries of a torchvision classification state dict that ``backbone`` holds.

    Raises:
        ValueError: a backbone with no torchvision counterpart.
    """
    if isinstance(backbone, ResNet):
        return {k: v for k, v in state.items() if not k.startswith("fc.")}
    if isinstance(backbone, MobileNetV2):
        return {
            k: v
            for k, v in state.items()
            if k.startswith("features.") and not k.startswith("features.18.")
        }
    if isinstance(backbone, MobileNetV3Large):
        return {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
    raise ValueError(
        f"{type(backbone).__name__} has no torchvision counterpart; ImageNet weights load "
        "into ResNet-18/34/50/101, MobileNetV2 and MobileNetV3-Large backbones"
    )


def from_torchvision(name: str, state_dict: Mapping[str, Tensor]) -> Segmentor:
    """Build the atrous equivalent of a torchvision segmentation model and load its weights.

    The number of classes and the auxiliary head are read from the state dict, so
    ``from_torchvision("deeplabv3_resnet50", tv_model.state_dict())`` reproduces
    ``tv_model``'s outputs.

    Args:
        name: ``deeplabv3_resnet50``, ``deeplabv3_resnet101``,
            ``deeplabv3_mobilenet_v3_large``, ``fcn_resnet50``, ``fcn_resnet101`` or
            ``lraspp_mobilenet_v3_large``.
        state_dict: the torchvision model's state dict.

    Returns:
        The model in eval mode.

    Example:
        ```python
        import torch
        import torchvision

        from atrous.models import from_torchvision

        tv = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None).eval()
        ours = from_torchvision("fcn_resnet50", tv.state_dict()).eval()
        x = torch.randn(1, 3, 33, 33)
        with torch.no_grad():
            assert torch.allclose(ours(x), tv(x)["out"], atol=1e-4)
        ```
    """
    if name not in TORCHVISION_MODELS:
        raise ValueError(
            f"unknown torchvision model {name!r}; supported: {', '.join(TORCHVISION_MODELS)}"
        )
    spec = TORCHVISION_MODELS[name]
    if spec.classes_key not in state_dict:
        raise ValueError(
            f"state dict has no {spec.classes_key!r}; is it a torchvision {name} state dict?"
        )
    num_classes = int(state_dict[spec.classes_key].shape[0])
    options = dict(spec.options)
    if spec.has_aux:
        options["aux"] = any(key.startswith("aux_classifier.") for key in state_dict)
    model = build_model(spec.model, num_classes=num_classes, **options)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(f"state dict does not match torchvision's {name}: {error}") from error
    return model.eval()
