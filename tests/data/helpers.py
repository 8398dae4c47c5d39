"""Write small folder datasets with PIL for tests (independent of the synthetic generator)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from atrous.constants import voc_palette
from atrous.data.fuzz import dds_with_unimplemented_format  # noqa: F401 (re-exported for tests)


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


# A miniature of CamVid's SegNet layout: drive names and frame-number styles as in the
# real data (0001TP_006690, 0006R0_f00930, 0016E5_07959), val interleaved with train in
# drive 0016E5 as in SegNet's split.
FAKE_CAMVID_FRAMES = {
    "train": [
        "0001TP_006690", "0001TP_006720", "0001TP_006750",
        "0006R0_f00930", "0006R0_f00960",
        "0016E5_00390", "0016E5_00420", "0016E5_07950", "0016E5_07980",
    ],
    "val": ["0016E5_07959", "0016E5_07989"],
}  # fmt: skip


def write_camvid_dataset(root: Path, frames: dict[str, list[str]] | None = None) -> Path:
    """Tiny CamVid in the SegNet layout (``NAME/``, ``NAMEannot/``, ``NAME.txt`` with
    ``/SegNet/CamVid/...`` paths); masks use labels 0..11 (11 = void). Returns ``root``."""
    frames = FAKE_CAMVID_FRAMES if frames is None else frames
    rng = np.random.default_rng(0)
    for split, stems in frames.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for stem in stems:
            image = rng.integers(0, 256, (4, 6, 3)).astype(np.uint8)
            mask = rng.integers(0, 12, (4, 6)).astype(np.uint8)
            Image.fromarray(image).save(root / split / f"{stem}.png")
            Image.fromarray(mask, mode="L").save(root / f"{split}annot" / f"{stem}.png")
            lines.append(
                f"/SegNet/CamVid/{split}/{stem}.png /SegNet/CamVid/{split}annot/{stem}.png"
            )
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root
