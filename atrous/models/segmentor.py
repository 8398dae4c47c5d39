"""The segmentor: a backbone, a head and an optional auxiliary head.

Every model in the zoo is a ``Segmentor``, so training, evaluation, export and
serving code against one contract: logits at the input size, auxiliary logits on
request, and enough metadata (``config``, class names, palette) to save and rebuild it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from atrous.models.backbones.base import Backbone


class Segmentor(nn.Module):
    """Backbone -> head -> logits upsampled (bilinear) to the input size.

    Submodule names follow torchvision's segmentation models (``backbone``,
    ``classifier``, ``aux_classifier``), so their state dicts load without renaming.

    Args:
        backbone: a ``Backbone`` returning a dict of feature maps.
        classifier: the head; called with the feature maps named in ``head_inputs``,
            in that order, and returning logits at any resolution.
        head_inputs: names of the backbone features the head reads.
        num_classes: number of output channels.
        config: the builder's resolved arguments; ``build_model(**config)`` rebuilds
            the architecture.
        aux_classifier: optional auxiliary head (deep supervision), trained with a
            smaller loss weight and ignored at inference.
        aux_input: backbone feature the auxiliary head reads.

    Inputs are RGB scaled to [0, 1] and normalised with ``atrous.constants.IMAGENET_MEAN``
    and ``IMAGENET_STD``.
    """

    def __init__(
        self,
        *,
        backbone: Backbone,
        classifier: nn.Module,
        head_inputs: Sequence[str],
        num_classes: int,
        config: dict[str, Any],
        aux_classifier: nn.Module | None = None,
        aux_input: str | None = None,
    ) -> None:
        super().__init__()
        if (aux_classifier is None) != (aux_input is None):
            raise ValueError("aux_classifier and aux_input must be given together")
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.head_inputs = tuple(head_inputs)
        self.aux_input = aux_input
        self.num_classes = num_classes
        self.config = config
        self.class_names: list[str] | None = None
        self.palette: list[tuple[int, int, int]] | None = None
        self.metadata: dict[str, Any] = {}  # filled by load_pretrained
        self.source_dir: Path | None = None  # the folder load_pretrained read it from

    @property
    def output_stride(self) -> int:
        """Stride of the deepest feature map the head reads."""
        return max(self.backbone.info(name).stride for name in self.head_inputs)

    def forward(self, x: Tensor, return_aux: bool = False) -> Tensor | dict[str, Tensor]:
        """Logits ``(N, num_classes, H, W)`` at the input size.

        With ``return_aux=True`` returns ``{"out": logits, "aux": aux_logits}``; ``"aux"``
        is present only when the model was built with ``aux=True``.
        """
        if x.dim() != 4:
            raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
        size = x.shape[-2:]
        features = self.backbone(x)
        out = self.classifier(*(features[name] for name in self.head_inputs))
        out = _resize(out, size)
        if not return_aux:
            return out
        result = {"out": out}
        if self.aux_classifier is not None:
            assert self.aux_input is not None
            result["aux"] = _resize(self.aux_classifier(features[self.aux_input]), size)
        return result


def _resize(logits: Tensor, size: Sequence[int]) -> Tensor:
    # Always interpolate (an identity at equal sizes), like torchvision: a shape test here
    # would be frozen into traced/exported graphs.
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
