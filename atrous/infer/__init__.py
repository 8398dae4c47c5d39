"""Prediction (whole image, sliding window, TTA), image I/O, visualisation, export, fast CPU path.

Imports inside the package point one way: ``logits`` (the lowest) <- ``fast`` <-
``predictor``; ``logits`` <- ``export`` <- ``quantize``; ``io`` reads images through
``atrous.data.io``. Export, quantisation and the benchmarks (ONNX, ONNX Runtime) are
not imported here, so ``import atrous.infer`` stays light; tests/infer/test_imports.py
keeps the graph free of cycles.
"""

from __future__ import annotations

from atrous.infer.io import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    InputsError,
    expand_inputs,
    load_image,
    output_stems,
)
from atrous.infer.logits import model_logits
from atrous.infer.predictor import Predictor, normalize
from atrous.infer.visualize import class_areas, colorize, overlay

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageError",
    "InputsError",
    "Predictor",
    "class_areas",
    "colorize",
    "expand_inputs",
    "load_image",
    "model_logits",
    "normalize",
    "output_stems",
    "overlay",
]
