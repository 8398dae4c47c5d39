"""Model zoo: dilated backbones, atrous heads, the segmentor, registry and weights I/O.

``build_model(name, num_classes=..., **options)`` builds any registered model;
``list_models()`` names them; ``save_pretrained`` / ``load_pretrained`` store and
rebuild models as safetensors + JSON.
"""

from atrous.models.pretrained import load_pretrained, save_pretrained, shipped_models
from atrous.models.registry import build_model, list_models
from atrous.models.segmentor import Segmentor
from atrous.models.torchvision_weights import from_torchvision, load_torchvision_backbone

__all__ = [
    "Segmentor",
    "build_model",
    "from_torchvision",
    "list_models",
    "load_pretrained",
    "load_torchvision_backbone",
    "save_pretrained",
    "shipped_models",
]
