"""One name -> builder dict behind ``build_model`` and ``list_models``.

Each builder is an explicit keyword-only function; this module only maps names to them,
so an IDE jumps from a name straight to the code that builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atrous.models.builders.deeplab import deeplabv3, deeplabv3plus, duc_hdc, fcn
from atrous.models.builders.dilated_net import dilated_net
from atrous.models.builders.drn import drn_c_26, drn_d_22
from atrous.models.builders.lraspp import lraspp
from atrous.models.realtime import cgnet, dabnet, erfnet
from atrous.models.segmentor import Segmentor

MODELS: dict[str, Callable[..., Segmentor]] = {
    "cgnet": cgnet,
    "dabnet": dabnet,
    "deeplabv3": deeplabv3,
    "deeplabv3plus": deeplabv3plus,
    "dilated_net": dilated_net,
    "drn_c_26": drn_c_26,
    "drn_d_22": drn_d_22,
    "duc_hdc": duc_hdc,
    "erfnet": erfnet,
    "fcn": fcn,
    "lraspp": lraspp,
}


def list_models() -> list[str]:
    """Registered model names, sorted.

    Example:
        ```python
        import atrous

        assert "deeplabv3plus" in atrous.list_models()
        ```
    """
    return sorted(MODELS)


def build_model(name: str, *, num_classes: int, **options: Any) -> Segmentor:
    """Build a registered model: ``build_model("deeplabv3", num_classes=21, backbone="resnet50")``.

    ``build_model(**model.config)`` rebuilds the same architecture.

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or options
            the builder does not take.

    Example:
        ```python
        import torch

        import atrous

        model = atrous.build_model("deeplabv3", num_classes=11, backbone="resnet18", output_stride=16)
        logits = model.eval()(torch.randn(1, 3, 65, 97))
        assert logits.shape == (1, 11, 65, 97)  # at the input size, any size
        print(model.classifier[0].rates)  # ASPP rates follow the output stride: (6, 12, 18)
        ```
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    builder = MODELS[name]
    try:
        return builder(num_classes=num_classes, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise ValueError(
                f"{name}: {error}; see help(atrous.models.{builder.__name__})"
            ) from error
        raise
