"""Resolve the ``--model NAME|DIR`` argument shared by predict, export and bench."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

LOGGER = logging.getLogger(__name__)


def load_model(spec: str, *, num_classes: int = 21) -> nn.Module:
    """A saved model folder, a shipped model name, or (untrained) a zoo architecture name.

    A zoo name without weights is accepted for export and benchmarking, where only the
    architecture matters; a warning says the weights are random.

    Raises:
        FileNotFoundError: when ``spec`` is none of the three (the message lists them).
    """
    from atrous.models import build_model, list_models, load_pretrained, shipped_models

    if Path(spec).is_dir() or spec in shipped_models():
        return load_pretrained(spec)
    if spec in list_models():
        LOGGER.warning(
            "%s: zoo architecture with random weights (no saved model of that name)", spec
        )
        model = build_model(spec, num_classes=num_classes)
        return model.eval()
    raise FileNotFoundError(
        f"--model {spec!r} is not a saved model folder, a shipped model "
        f"({', '.join(shipped_models()) or 'none shipped'}) or a zoo architecture "
        f"({', '.join(list_models())})"
    )
