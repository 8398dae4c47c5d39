"""The synthetic context dataset: deterministic, in the documented folder format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.data import build_dataset, check_dataset
from atrous.data.synthetic import CLASS_NAMES, DiscStyle, generate


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_images(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", seed=3, train=4, val=2, size=64)
    b = generate(tmp_path / "b", seed=3, train=4, val=2, size=64)
    c = generate(tmp_path / "c", seed=4, train=4, val=2, size=64)
    assert _digest(a) == _digest(b)
    assert _digest(a)["images/train/train_00000.png"] != _digest(c)["images/train/train_00000.png"]


def test_adding_images_keeps_the_existing_ones(tmp_path: Path) -> None:
    small = _digest(generate(tmp_path / "small", seed=0, train=2, val=1, size=64))
    large = _digest(generate(tmp_path / "large", seed=0, train=5, val=3, size=64))
    assert all(large[name] == digest for name, digest in small.items())


def test_documented_folder_format(tmp_path: Path) -> None:
    root = generate(tmp_path / "data", seed=1, train=6, val=3, size=80)
    meta = json.loads((root / "classes.json").read_text())
    assert meta["names"] == list(CLASS_NAMES)
    assert len(meta["palette"]) == len(CLASS_NAMES) and meta["ignore_index"] == 255
    for split, count in (("train", 6), ("val", 3)):
        images = sorted((root / "images" / split).glob("*.png"))
        masks = sorted((root / "masks" / split).glob("*.png"))
        assert [p.name for p in images] == [p.name for p in masks] and len(images) == count
        for image_path, mask_path in zip(images, masks):
            image, mask = Image.open(image_path), Image.open(mask_path)
            assert image.mode == "RGB" and image.size == (80, 80)
            assert mask.mode in ("L", "P") and mask.size == (80, 80)
            assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 1, 2}
    # The team's folder reader and validator accept it.
    dataset = build_dataset("folder", root, split="train")
    assert dataset.num_classes == 3 and len(dataset) == 6
    report = check_dataset(dataset)
    assert not report.problems


def test_marked_discs_have_a_dot_at_their_centre_and_plain_ones_do_not(tmp_path: Path) -> None:
    style = DiscStyle()
    root = generate(tmp_path / "data", seed=2, train=8, val=0, size=96, style=style)
    seen = {1: 0, 2: 0}
    for path in sorted((root / "masks" / "train").glob("*.png")):
        mask = np.asarray(Image.open(path))
        image = np.asarray(Image.open(root / "images" / "train" / path.name)).mean(axis=2)
        bright = image > 255 * (style.disc_level + style.dot_level) / 2
        for cls in (1, 2):
            inside = mask == cls
            # Each class is present and, with this seed, holds several discs.
            seen[cls] += int(inside.any())
            dots = (bright & inside).sum()
            if cls == 1:
                assert dots == 0, f"{path.name}: a plain disc holds bright dot pixels"
        # Every marked region holds at least one dot pixel per disc (3x3 dots, >= 9 px).
        if (mask == 2).any():
            assert (bright & (mask == 2)).sum() >= 9
    assert seen[1] > 0 and seen[2] > 0


@pytest.mark.parametrize("size", [20, 30])
def test_too_small_images_are_refused_with_the_needed_size(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError, match="use size >= 40"):
        generate(tmp_path, size=size)
