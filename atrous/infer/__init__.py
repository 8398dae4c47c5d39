"""Prediction (whole image, sliding window, TTA), image I/O, visualisation, export, fast CPU path.

Heavy pieces (export, the fast path) live in their own modules and are imported lazily.
"""

from __future__ import annotations

from atrous.infer.io import DEFAULT_MAX_PIXELS, ImageError, expand_inputs, load_image
from atrous.infer.predictor import Predictor, model_logits, normalize
from atrous.infer.visualize import class_areas, colorize, overlay

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "Predictor",
    "class_areas",
    "colorize",
    "expand_inputs",
    "load_image",
    "model_logits",
    "normalize",
    "overlay",
]
