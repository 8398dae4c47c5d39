"""A synthetic segmentation dataset whose labels can only be read with enough context.

Every image holds a few discs on a noisy background. All discs share one texture (the
same grey level and noise), so no pixel tells its class from its own neighbourhood:

- ``background``: everything outside the discs. Told apart locally, by brightness.
- ``plain disc``: a disc with nothing at its centre.
- ``marked disc``: the same disc with one small bright dot (3x3 pixels) at its centre.

A pixel of a disc is therefore ``marked`` or ``plain`` depending on a tiny cue up to one
radius (``min_radius``..``max_radius`` pixels) away. Three kinds of network behave
differently on it, which is what ``atrous demo`` shows:

- a small receptive field (no dilation) sees the dot only near the centre and has to
  guess on the outer ring of large discs;
- equal rates (e.g. 4,4,4,4) reach far but sample the input on a lattice with holes, so
  the 3x3 dot is seen from some pixels and missed from their neighbours: the prediction
  inside one disc alternates in a checkerboard (the "gridding" of Wang et al., 2018);
- a hybrid schedule (e.g. 1,2,5,9) reaches as far with no holes and can label whole
  discs.

Random ``distractor`` dots are also scattered over the background, so "a dot somewhere
in view" is not enough: the dot has to lie inside the same disc.

The dataset is written in the folder format users' own data uses::

    root/classes.json               {"names": [...], "palette": [...], "ignore_index": 255}
    root/images/<split>/<stem>.png  RGB
    root/masks/<split>/<stem>.png   palette PNG, value = class index

Every image is drawn from its own random generator seeded by ``(seed, split, index)``,
so the files are the same on every machine and adding images does not change others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from atrous.constants import IGNORE_INDEX

CLASS_NAMES: tuple[str, ...] = ("background", "plain disc", "marked disc")
PALETTE: tuple[tuple[int, int, int], ...] = ((0, 0, 0), (52, 120, 220), (235, 140, 30))
SPLITS: tuple[str, ...] = ("train", "val")
_SPLIT_CODES = {"train": 1, "val": 2}


@dataclass(frozen=True)
class DiscStyle:
    """Geometry and texture of the discs; shared by all classes on purpose.

    Attributes:
        min_radius, max_radius: disc radius range in pixels. The lower end is above
            what an undilated 4-layer network sees; the upper end within what a
            dilated one sees.
        dot_radius: the marker is a square of side ``2 * dot_radius + 1``.
        gap: minimum free pixels between two discs, so one disc's dot is not
            confused with a neighbour's.
        max_discs: discs tried per image (fewer when they do not fit).
        distractors: dots scattered over the background per image.
    """

    min_radius: int = 9
    max_radius: int = 18
    dot_radius: int = 1
    gap: int = 6
    max_discs: int = 4
    distractors: int = 2
    background_level: float = 0.30
    disc_level: float = 0.58
    dot_level: float = 0.95
    noise: float = 0.06


def _place_discs(
    rng: np.random.Generator, size: int, style: DiscStyle
) -> list[tuple[int, int, int]]:
    """Non-overlapping discs (cy, cx, r) fully inside the image, by rejection sampling."""
    discs: list[tuple[int, int, int]] = []
    for _ in range(style.max_discs * 20):
        if len(discs) == style.max_discs:
            break
        radius = int(rng.integers(style.min_radius, style.max_radius + 1))
        if 2 * radius + 2 >= size:
            continue
        cy, cx = (int(v) for v in rng.integers(radius + 1, size - radius - 1, size=2))
        if all((cy - y) ** 2 + (cx - x) ** 2 >= (radius + r + style.gap) ** 2 for y, x, r in discs):
            discs.append((cy, cx, radius))
    return discs


def render_sample(
    rng: np.random.Generator, size: int, style: DiscStyle = DiscStyle()
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one image (uint8 HxWx3) and its mask (uint8 HxW, class indices)."""
    yy, xx = np.mgrid[0:size, 0:size]
    level = np.full((size, size), style.background_level, dtype=np.float64)
    mask = np.zeros((size, size), dtype=np.uint8)
    inside_any = np.zeros((size, size), dtype=bool)
    dots: list[tuple[int, int]] = []
    for cy, cx, radius in _place_discs(rng, size, style):
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        inside_any |= inside
        level[inside] = style.disc_level
        marked = bool(rng.integers(0, 2))
        mask[inside] = 2 if marked else 1
        if marked:
            dots.append((cy, cx))
    # Distractor dots: on the background, at least a dot's width away from every disc.
    free = ~inside_any
    d = style.dot_radius + 2
    placed = 0
    for _ in range(style.distractors * 20):
        if placed == style.distractors:
            break
        cy, cx = (int(v) for v in rng.integers(d, size - d, size=2))
        if free[cy - d : cy + d + 1, cx - d : cx + d + 1].all():
            dots.append((cy, cx))
            free[cy - d : cy + d + 1, cx - d : cx + d + 1] = False
            placed += 1
    r = style.dot_radius
    for cy, cx in dots:
        level[cy - r : cy + r + 1, cx - r : cx + r + 1] = style.dot_level
    # Same noise statistics everywhere; a slight colour tint per image so that absolute
    # RGB values are not a shortcut.
    tint = 1.0 + rng.uniform(-0.08, 0.08, size=3)
    noisy = level[..., None] * tint + rng.normal(0.0, style.noise, size=(size, size, 3))
    image = np.clip(noisy * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return image, mask


def _palette_bytes() -> list[int]:
    flat = [channel for colour in PALETTE for channel in colour]
    flat += [255, 255, 255] * (IGNORE_INDEX - len(PALETTE)) + [255, 255, 255]
    return flat + [0] * (768 - len(flat))


def generate(
    root: str | Path,
    *,
    seed: int = 0,
    train: int = 400,
    val: int = 100,
    size: int = 96,
    style: DiscStyle = DiscStyle(),
) -> Path:
    """Write the dataset to ``root`` (created if needed) and return ``root``.

    Args:
        root: output folder; existing files with the same names are overwritten.
        seed: base seed; the same seed gives byte-identical files.
        train, val: number of images per split.
        size: side of the square images in pixels.
        style: disc geometry and texture.
    """
    if size < 2 * style.max_radius + 4:
        raise ValueError(
            f"size={size} is too small for discs of radius up to {style.max_radius}; "
            f"use size >= {2 * style.max_radius + 4}"
        )
    for name, count in (("train", train), ("val", val)):
        if count < 0:
            raise ValueError(f"{name} must be >= 0 images, got {count}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    classes = {
        "names": list(CLASS_NAMES),
        "palette": [list(c) for c in PALETTE],
        "ignore_index": IGNORE_INDEX,
    }
    (root / "classes.json").write_text(json.dumps(classes, indent=2) + "\n")
    palette = _palette_bytes()
    for split, count in (("train", train), ("val", val)):
        image_dir = root / "images" / split
        mask_dir = root / "masks" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        mask_dir.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
            image, mask = render_sample(rng, size, style)
            stem = f"{split}_{index:05d}"
            Image.fromarray(image, mode="RGB").save(image_dir / f"{stem}.png")
            mask_image = Image.fromarray(mask, mode="L").convert("P")
            mask_image.putpalette(palette)
            mask_image.save(mask_dir / f"{stem}.png")
    return root
