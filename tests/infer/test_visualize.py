from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.constants import voc_palette
from atrous.infer import class_areas, colorize, overlay


def test_colorize_keeps_labels_and_voc_colours(tmp_path: Path) -> None:
    mask = np.array([[0, 1, 2], [15, 20, 1]], dtype=np.int64)
    image = colorize(mask, voc_palette(21))
    assert image.mode == "P"
    image.save(tmp_path / "m.png")
    reread = Image.open(tmp_path / "m.png")
    np.testing.assert_array_equal(np.asarray(reread), mask)
    rgb = np.asarray(reread.convert("RGB"))
    # VOC's published colours: background black, aeroplane (128,0,0), person (192,128,128).
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    assert tuple(rgb[0, 1]) == (128, 0, 0)
    assert tuple(rgb[1, 0]) == (192, 128, 128)


def test_colorize_rejects_bad_labels() -> None:
    with pytest.raises(ValueError, match=r"0\.\.255"):
        colorize(np.array([[0, 300]]), voc_palette())


def test_overlay_alpha_extremes(rgb_image: np.ndarray) -> None:
    mask = np.zeros(rgb_image.shape[:2], dtype=np.int64)
    mask[:10] = 1
    np.testing.assert_array_equal(
        np.asarray(overlay(rgb_image, mask, voc_palette(), 0.0)), rgb_image
    )
    full = np.asarray(overlay(rgb_image, mask, voc_palette(), 1.0))
    assert tuple(full[0, 0]) == (128, 0, 0) and tuple(full[-1, -1]) == (0, 0, 0)


def test_class_areas() -> None:
    mask = np.array([[0, 0, 2], [2, 2, 2]])
    rows = class_areas(mask, ["bg", "cat", "dog"])
    assert [r["pixels"] for r in rows] == [2, 0, 4]
    assert sum(r["fraction"] for r in rows) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="label 2"):
        class_areas(mask, ["bg", "cat"])
