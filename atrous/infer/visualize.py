"""Turning label masks into palette PNGs, overlays and per-class area tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

Palette = Sequence[tuple[int, int, int]]


def _flat_palette(palette: Palette) -> list[int]:
    if len(palette) > 256:
        raise ValueError(f"a PNG palette holds at most 256 colours, got {len(palette)}")
    flat = [channel for colour in palette for channel in colour]
    return flat + [0] * (768 - len(flat))


def colorize(mask: np.ndarray, palette: Palette) -> Image.Image:
    """A mode ``P`` image whose pixel values are the class indices.

    Palette PNGs keep the labels themselves (readable back with ``np.asarray``) while
    viewers show colours, which is how VOC distributes its masks.

    Example:
        ```python
        import numpy as np

        from atrous.infer import colorize, overlay

        mask = np.array([[0, 1, 1], [2, 2, 0]])
        palette = [(0, 0, 0), (255, 0, 0), (0, 128, 0)]
        image = colorize(mask, palette)  # mode P: the labels, shown in colour
        print(image.mode, np.asarray(image).tolist())
        photo = np.full((2, 3, 3), 200, dtype=np.uint8)
        print(np.asarray(overlay(photo, mask, palette, alpha=0.5))[0, 1].tolist())
        ```

    Raises:
        ValueError: mask not 2-D, or labels outside ``0..255``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask labels must lie in 0..255, got {mask.min()}..{mask.max()}")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(_flat_palette(palette))
    return image


def overlay(
    image: np.ndarray, mask: np.ndarray, palette: Palette, alpha: float = 0.5
) -> Image.Image:
    """Blend the mask's colours over the RGB image (``alpha`` = weight of the colours)."""
    image = np.asarray(image)
    if image.shape[:2] != np.asarray(mask).shape:
        raise ValueError(f"image {image.shape[:2]} and mask {np.asarray(mask).shape} differ")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    colours = np.asarray(colorize(mask, palette).convert("RGB"), dtype=np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def class_areas(mask: np.ndarray, class_names: Sequence[str]) -> list[dict]:
    """Pixel count and fraction of the image for every class, in class order.

    Returns:
        One dict per class: ``{"index", "name", "pixels", "fraction"}``; classes that do
        not occur are listed with zero so that tables from several images line up.
    """
    mask = np.asarray(mask)
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=len(class_names))
    if len(counts) > len(class_names):
        raise ValueError(
            f"mask holds label {len(counts) - 1} but only {len(class_names)} class names given"
        )
    total = max(int(mask.size), 1)
    return [
        {"index": i, "name": name, "pixels": int(counts[i]), "fraction": counts[i] / total}
        for i, name in enumerate(class_names)
    ]
