"""Write small folder datasets with PIL for tests (independent of the synthetic generator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from atrous.constants import voc_palette


def write_folder_dataset(
    root: Path,
    *,
    num_classes: int = 3,
    splits: dict[str, int] | None = None,
    size: tuple[int, int] = (24, 20),
    seed: int = 0,
) -> Path:
    """Random images with blocky masks; returns ``root``. ``size`` is (width, height)."""
    rng = np.random.default_rng(seed)
    splits = splits or {"train": 4, "val": 2}
    names = [f"class{i}" for i in range(num_classes)]
    palette = [list(c) for c in voc_palette(num_classes)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(
        json.dumps({"names": names, "palette": palette, "ignore_index": 255})
    )
    width, height = size
    for split, count in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            mask = rng.integers(0, num_classes, (height // 4 + 1, width // 4 + 1)).astype(np.uint8)
            mask = np.kron(mask, np.ones((4, 4), np.uint8))[:height, :width]
            image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
            Image.fromarray(image).save(root / "images" / split / f"s{i:03d}.png")
            Image.fromarray(mask, mode="L").save(root / "masks" / split / f"s{i:03d}.png")
    return root
