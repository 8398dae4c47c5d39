"""Import torchvision weights: ImageNet backbones and whole segmentation models.

Backbone keys match torchvision's, so importing is a strict ``load_state_dict`` after
dropping the classification layers; nothing is renamed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from atrous.models.backbones.mobilenet import MobileNetV2
from atrous.models.backbones.resnet import ResNet
from atrous.models.registry import build_model
from atrous.models.segmentor import Segmentor

# torchvision segmentation model -> (atrous model, options); all are dilated to stride 8.
TORCHVISION_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "deeplabv3_resnet50": ("deeplabv3", {"backbone": "resnet50", "output_stride": 8}),
    "deeplabv3_resnet101": ("deeplabv3", {"backbone": "resnet101", "output_stride": 8}),
    "fcn_resnet50": ("fcn", {"backbone": "resnet50", "output_stride": 8}),
    "fcn_resnet101": ("fcn", {"backbone": "resnet101", "output_stride": 8}),
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
        model: a model whose backbone is a ResNet or MobileNetV2 of matching depth.
        weights: a torchvision classification state dict (``resnet50().state_dict()``,
            or one saved to disk and read with ``torch.load(..., weights_only=True)``), or
            a torchvision weights enum such as ``ResNet50_Weights.IMAGENET1K_V2``, which
            torchvision downloads and caches.

    Returns:
        ``model``, for chaining.
    """
    state = _state_dict(weights)
    backbone = model.backbone
    if isinstance(backbone, ResNet):
        kept = {k: v for k, v in state.items() if not k.startswith("fc.")}
    elif isinstance(backbone, MobileNetV2):
        kept = {
            k: v
            for k, v in state.items()
            if k.startswith("features.") and not k.startswith("features.18.")
        }
    else:
        raise ValueError(
            f"{type(backbone).__name__} has no torchvision counterpart; ImageNet weights load "
            "into ResNet-18/34/50/101 and MobileNetV2 backbones"
        )
    result = backbone.load_state_dict(kept, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"these weights do not fit the {model.config.get('backbone', 'model')} backbone: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]} "
            "(is it the same ResNet depth?)"
        )
    return model


def from_torchvision(name: str, state_dict: Mapping[str, Tensor]) -> Segmentor:
    """Build the atrous equivalent of a torchvision segmentation model and load its weights.

    The number of classes and the auxiliary head are read from the state dict, so
    ``from_torchvision("deeplabv3_resnet50", tv_model.state_dict())`` reproduces
    ``tv_model``'s outputs.

    Args:
        name: ``deeplabv3_resnet50``, ``deeplabv3_resnet101``, ``fcn_resnet50`` or
            ``fcn_resnet101``.
        state_dict: the torchvision model's state dict.

    Returns:
        The model in eval mode.
    """
    if name not in TORCHVISION_MODELS:
        raise ValueError(
            f"unknown torchvision model {name!r}; supported: {', '.join(TORCHVISION_MODELS)}"
        )
    model_name, options = TORCHVISION_MODELS[name]
    final = "classifier.4.weight"
    if final not in state_dict:
        raise ValueError(f"state dict has no {final!r}; is it a torchvision {name} state dict?")
    num_classes = int(state_dict[final].shape[0])
    aux = any(key.startswith("aux_classifier.") for key in state_dict)
    model = build_model(model_name, num_classes=num_classes, aux=aux, **options)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ValueError(f"state dict does not match torchvision's {name}: {error}") from error
    return model.eval()
