"""Encoding responses: PNG bytes, data URLs, and heat maps of the receptive-field view."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG (compression level 1: these are per-request images, speed wins)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    """A ``data:`` URL the page can put straight into an ``<img>`` or ``Image``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def label_png(mask: np.ndarray) -> bytes:
    """Labels as an 8-bit greyscale PNG: pixel value = class index.

    The page reads the indices back from the red channel, which lets it recolour and
    toggle classes without another request (a palette PNG would be decoded to colours).
    """
    return png_bytes(Image.fromarray(mask.astype(np.uint8), mode="L"))


def heatmap(values: np.ndarray, *, colormap: str, gamma: float = 1.0) -> Image.Image:
    """RGBA heat map of non-negative values: zero is transparent, the maximum opaque.

    Transparency lets the page lay the map over the image. ``gamma`` < 1 lifts the
    small values (0.5: square-root scale, as the ERF is shown).
    """
    from matplotlib import colormaps

    values = np.asarray(values, dtype=np.float64)
    peak = float(values.max()) if values.size else 0.0
    scaled = (values / peak) ** gamma if peak > 0 else np.zeros_like(values)
    rgba = colormaps[colormap](scaled)
    rgba[..., 3] = np.where(values > 0, 0.35 + 0.65 * scaled, 0.0)
    return Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), mode="RGBA")


def count_range(counts: np.ndarray) -> tuple[float, float]:
    """Smallest and largest non-zero path count (``(0, 0)`` when nothing is reached)."""
    reached = np.asarray(counts, dtype=np.float64)
    reached = reached[reached > 0]
    return (float(reached.min()), float(reached.max())) if reached.size else (0.0, 0.0)


def log_heatmap(counts: np.ndarray, *, colormap: str) -> Image.Image:
    """Path counts on a log scale, opaque where reached, transparent at the holes.

    Counts span many decades (1 to 10^16 through a ResNet), so a linear scale shows only
    the peak; ``log10`` from the smallest to the largest count shows the whole field,
    and the page's colour bar reads the same two ends from ``count_range``. Reached
    positions are opaque so their colour matches the bar; only holes let the photo show.
    """
    from matplotlib import colormaps

    counts = np.asarray(counts, dtype=np.float64)
    low, high = count_range(counts)
    reached = counts > 0
    scaled = np.ones_like(counts)
    if high > low:
        logs = np.log10(np.where(reached, counts, low))
        scaled = (logs - np.log10(low)) / (np.log10(high) - np.log10(low))
    rgba = colormaps[colormap](np.clip(scaled, 0.0, 1.0))
    rgba[..., 3] = reached
    return Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), mode="RGBA")


def colour_stops(colormap: str, count: int = 16) -> list[str]:
    """``count`` evenly spaced colours of a colormap as ``#rrggbb``: the page's colour bar."""
    from matplotlib import colormaps

    rgba = colormaps[colormap](np.linspace(0.0, 1.0, count))
    return ["#{:02x}{:02x}{:02x}".format(*(int(v * 255 + 0.5) for v in row[:3])) for row in rgba]


def side_by_side(left: Image.Image, right: Image.Image, *, gap: int = 4) -> Image.Image:
    """Two equally sized panels on a white background (the ``format=png`` answer)."""
    width, height = left.size
    canvas = Image.new("RGBA", (2 * width + gap, height), (255, 255, 255, 255))
    canvas.alpha_composite(left, (0, 0))
    canvas.alpha_composite(right, (width + gap, 0))
    return canvas
