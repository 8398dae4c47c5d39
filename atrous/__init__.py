"""atrous: semantic segmentation built around dilated (atrous) convolutions.

The package is organised one idea of the field per sub-package:

- ``atrous.ops``: the dilated convolution itself and its layers.
- ``atrous.analysis``: receptive fields, coverage/gridding maps, the HDC rule.
- ``atrous.models``: dilated backbones, ASPP/DeepLab heads, the model registry.
- ``atrous.data``, ``atrous.engine``: datasets, training and evaluation.
- ``atrous.infer``: prediction, export and the fast CPU path.
- ``atrous.serve``: the HTTP service.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "list_models", "load_pretrained", "save_pretrained"]


def __getattr__(name: str) -> Any:
    # Lazy: `import atrous` stays cheap, and `atrous.build_model` still works.
    if name in {"build_model", "list_models", "load_pretrained", "save_pretrained"}:
        from atrous import models

        return getattr(models, name)
    raise AttributeError(f"module 'atrous' has no attribute {name!r}")
