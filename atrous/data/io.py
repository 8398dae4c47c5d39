"""Reading images and label masks, refusing bad data with errors a user can act on.

Every check here exists because the failure it catches is otherwise silent: a mask of a
different size gets resized by someone's transform, a label 12 in an 11-class dataset
is dropped from the metric, an RGB colour mask is read as three channels of nonsense.
Each :class:`DataError` names the file, the value found and the value expected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class DataError(ValueError):
    """A dataset file is unusable; the message names the file, what was found and expected."""


def read_image(path: str | Path) -> np.ndarray:
    """Read an RGB image as a ``(H, W, 3)`` uint8 array.

    Decoding is forced (``Image.load``) so that truncated files fail here, with their
    name, rather than later inside a DataLoader worker.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.array(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read image ({exc}); expected a complete, readable image file"
        ) from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image header ({exc})") from exc


def read_raw_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel index mask (mode L, P, I or I;16) as an int64 ``(H, W)`` array.

    Palette (mode P) masks give their palette indices, which is what Pascal VOC stores.
    An RGB(A) mask whose channels are all equal is accepted as grey; a colour mask is an
    error, because colours are not class indices and guessing the mapping hides mistakes.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read mask ({exc}); expected a complete, readable PNG"
        ) from exc
    if mode in ("RGB", "RGBA"):
        rgb = array[..., :3]
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return rgb[..., 0].astype(np.int64)
        colours = np.unique(rgb.reshape(-1, 3), axis=0)[:3]
        shown = ", ".join(str(tuple(int(v) for v in c)) for c in colours)
        raise DataError(
            f"{path}: mask is {mode}-encoded with colours such as {shown}; expected a "
            "single-channel index mask (mode L or P) whose pixel values are class indices. "
            "Convert the colours to indices with the dataset palette first."
        )
    if array.ndim != 2:
        raise DataError(f"{path}: mask has mode {mode} and shape {array.shape}; expected (H, W)")
    return array.astype(np.int64)


def identity_label_map(num_classes: int, ignore_index: int) -> np.ndarray:
    """Lookup table for masks that already store class indices: valid raw value -> itself.

    Entries of -1 mark raw values that are errors.
    """
    table = np.full(256, -1, dtype=np.int64)
    table[:num_classes] = np.arange(num_classes)
    if 0 <= ignore_index < 256:
        table[ignore_index] = ignore_index
    return table


def apply_label_map(
    raw: np.ndarray, label_map: np.ndarray, path: str | Path, num_classes: int, ignore_index: int
) -> np.ndarray:
    """Map raw mask values through ``label_map``; any unmapped value is a :class:`DataError`."""
    if raw.size and (raw.min() < 0 or raw.max() >= len(label_map)):
        bad = np.unique(raw[(raw < 0) | (raw >= len(label_map))])
        raise DataError(_bad_values_message(path, bad, num_classes, ignore_index))
    mapped = label_map[raw]
    if (mapped < 0).any():
        bad = np.unique(raw[mapped < 0])
        raise DataError(_bad_values_message(path, bad, num_classes, ignore_index))
    return mapped


def _bad_values_message(path: str | Path, bad: np.ndarray, num_classes: int, ignore: int) -> str:
    shown = ", ".join(str(int(v)) for v in bad[:10]) + (" ..." if len(bad) > 10 else "")
    return (
        f"{path}: label values [{shown}] are outside [0, {num_classes}) and not the ignore "
        f"index {ignore}; expected class indices 0..{num_classes - 1} or {ignore}"
    )


def check_same_size(image: np.ndarray, mask: np.ndarray, image_path: Path, mask_path: Path) -> None:
    """Raise if image and mask differ in size; resizing one silently misaligns labels."""
    if image.shape[:2] != mask.shape[:2]:
        ih, iw = image.shape[:2]
        mh, mw = mask.shape[:2]
        raise DataError(
            f"{mask_path}: mask size {mw}x{mh} (WxH) differs from its image {image_path} "
            f"size {iw}x{ih}; expected the same size"
        )
