"""Reading images and label masks, refusing bad data with errors a user can act on.

``read_image`` is the one image reader of the package (datasets, ``atrous predict``
and the web service), so its rules (bomb guard, EXIF orientation, 16-bit scaling, the
accepted suffixes) hold everywhere.

Every check here exists because the failure it catches is otherwise silent: a mask of a
different size gets resized by someone's transform, a label 12 in an 11-class dataset
is dropped from the metric, an RGB colour mask is read as three channels of nonsense.
Each ``DataError`` names the file, the value found and the value expected.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

LOGGER = logging.getLogger(__name__)

# 64 megapixels: four times a 4096x4096 photo, far above anything the models need, far
# below what would exhaust memory once decoded to float (64e6 * 3 * 4 bytes = 768 MB).
DEFAULT_MAX_PIXELS = 64_000_000

# The suffixes of every raster format Pillow decodes by itself (Pillow 13, checked by
# tests/data/test_io.py against Pillow's registry). A folder contributes the files with
# these suffixes; a file that has one but is not such an image fails with a reason.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".apng", ".avif", ".avifs", ".blp", ".bmp", ".bw", ".cur", ".dcx", ".dds", ".dib",
    ".fit", ".fits", ".flc", ".fli", ".ftc", ".ftu", ".gbr", ".gif", ".icb", ".icns",
    ".ico", ".im", ".j2c", ".j2k", ".jfif", ".jp2", ".jpc", ".jpe", ".jpeg", ".jpf",
    ".jpg", ".jpx", ".mpo", ".msp", ".pbm", ".pcd", ".pcx", ".pfm", ".pgm", ".png",
    ".pnm", ".ppm", ".psd", ".pxr", ".qoi", ".ras", ".rgb", ".rgba", ".sgi", ".tga",
    ".tif", ".tiff", ".vda", ".vst", ".webp", ".xbm", ".xpm",
)  # fmt: skip

# Formats Pillow registers that are left out, and why: not raster images Pillow decodes
# itself. AVIF is in the list although some Pillow builds lack it: such a file is then
# reported as "not an image" instead of being skipped without a word.
NOT_RASTER_FORMATS: dict[str, str] = {
    "BUFR": "stub: needs a handler registered by another package",
    "EPS": "vector (PostScript), rendered only through Ghostscript",
    "GRIB": "stub: needs a handler registered by another package",
    "HDF5": "stub: needs a handler registered by another package",
    "IPTC": "news-photo metadata container",
    "MPEG": "video; Pillow identifies it but cannot decode it",
    "PALM": "written by Pillow, not read",
    "PDF": "written by Pillow, not read",
    "WMF": "vector (Windows metafile), rendered only on Windows",
}

# 16-bit samples to 8-bit: round(v * 255 / 65535) = round(v / 257).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class DataError(ValueError):
    """A dataset file is unusable; the message names the file, what was found and expected."""


class ImageError(DataError):
    """An input that cannot be used as an image; the message names the file and reason.

    Attributes:
        path: the file (or the name given to in-memory data).
        reason: what was wrong, in words.
        kind: ``"missing"``, ``"not_an_image"``, ``"too_many_pixels"`` or ``"corrupt"``
            (which includes pixel formats that have no faithful 8-bit RGB reading), for
            callers that map failures to their own codes (the web service's 4xx).
    """

    def __init__(
        self, path: str | Path, reason: str | None = None, *, kind: str = "corrupt"
    ) -> None:
        if reason is None:  # one finished message: how DataLoader workers re-raise it
            super().__init__(str(path))
            self.path, self.reason = "", str(path)
        else:
            super().__init__(f"{path}: cannot read image: {reason}")
            self.path, self.reason = str(path), reason
        self.kind = kind


def read_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Read an image file (or encoded bytes, e.g. an upload) as an ``HxWx3`` uint8 RGB array.

    The one image reader of atrous: datasets, ``atrous predict`` and the web service all
    read through it, so a model sees the same pixels in training and in use.

    * The pixel count is checked from the header *before* decoding, so a decompression
      bomb costs nothing.
    * Decoding is forced, so a truncated file fails here, with its name, rather than
      later inside a DataLoader worker.
    * EXIF orientation is applied, so that masks line up with the image as viewers (and
      annotation tools) show it.
    * 16-bit greyscale (Pillow modes ``I;16*``, and ``I`` with values in 0..65535) is
      scaled to 8 bits (``v / 257``); Pillow's own conversion clips it, which turns most
      such images flat white. Float images (mode ``F``) with values in [0, 1] are scaled
      by 255. Other 32-bit images are refused: no 8-bit reading of them is faithful.
    * Pillow's warnings (corrupt EXIF, odd palettes) go to the log, naming the file.

    Args:
        source: a path, or the encoded image itself as bytes (decoded in memory).
        max_pixels: refuse images with more pixels than this.
        name: what error messages call ``source`` (default: the path, or ``<bytes>``).

    Raises:
        ImageError: missing file, not an image, truncated/corrupt data, an unsupported
            pixel format, or more than ``max_pixels`` pixels (see ``ImageError.kind``).
    """
    if isinstance(source, bytes):
        label: str | Path = name or "<bytes>"
        opened: Path | io.BytesIO = io.BytesIO(source)
    else:
        label = name or Path(source)
        opened = Path(source)
        if not opened.is_file():
            raise ImageError(label, "no such file", kind="missing")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # PIL only warns between its limit and twice it; make every bomb an error.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            rgb = _decode(opened, label, max_pixels)
        finally:
            _log_warnings(label, caught)
    return rgb


def _decode(opened: Path | io.BytesIO, label: str | Path, max_pixels: int) -> np.ndarray:
    try:
        with Image.open(opened) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    label,
                    f"too many pixels ({width}x{height} = {width * height:,} > "
                    f"max_pixels={max_pixels:,}); refusing to decode a possible "
                    "decompression bomb",
                    kind="too_many_pixels",
                )
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image), label)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(
            label,
            f"too many pixels (over max_pixels={max_pixels:,}; decompression bomb guard: {error})",
            kind="too_many_pixels",
        ) from error
    except UnidentifiedImageError as error:
        raise ImageError(
            label, "not an image (format not recognised)", kind="not_an_image"
        ) from error
    except MemoryError as error:
        raise ImageError(label, "decoding needs more memory than is free") from error
    except Exception as error:
        # The per-file boundary. Pillow's plugins fail on bad data with OSError,
        # SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError,
        # NotImplementedError (an unimplemented DDS pixel format) and more; Pillow's
        # security notes say to expect any of them. Each becomes this file's ImageError.
        raise ImageError(label, decode_failure(error)) from error


def decode_failure(error: BaseException) -> str:
    """The words for a decoder's exception: what kind of problem, and Pillow's message."""
    detail = str(error).strip() or type(error).__name__
    if isinstance(error, NotImplementedError):
        return f"a format variant Pillow does not implement ({detail})"
    if isinstance(error, (OSError, SyntaxError, ValueError, EOFError)):
        return f"truncated or corrupt image data ({detail})"
    return f"corrupt image data ({type(error).__name__}: {detail})"


def _to_rgb(image: Image.Image, label: str | Path) -> np.ndarray:
    """``HxWx3`` uint8 of a decoded image, scaling high-bit-depth greyscale to 8 bits."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "F":
            if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
                raise ImageError(
                    label,
                    f"unsupported pixel format: 32-bit float greyscale (mode F) with values "
                    f"in [{values.min():g}, {values.max():g}], not [0, 1]; convert it to "
                    "8-bit RGB first",
                )
            grey = np.rint(values.astype(np.float64) * 255)
        else:
            if mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
                raise ImageError(
                    label,
                    f"unsupported pixel format: 32-bit integer greyscale (mode I) with values "
                    f"in [{values.min()}, {values.max()}], outside 16 bits; convert it to "
                    "8-bit RGB first",
                )
            grey = (values.astype(np.uint32) + 128) // 257
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    try:
        rgb = image.convert("RGB")
    except ValueError as error:
        raise ImageError(
            label, f"unsupported pixel format (mode {mode}: {error}); convert it to RGB first"
        ) from error
    return np.asarray(rgb, dtype=np.uint8).copy()


def _log_warnings(label: str | Path, caught: list[warnings.WarningMessage]) -> None:
    """Pillow's warnings as log records naming the file, each distinct one once."""
    for message in dict.fromkeys(str(w.message).strip() for w in caught):
        LOGGER.warning("%s: %s", label, message)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:  # the per-file boundary (see _decode)
        raise DataError(f"{path}: cannot read image header: {decode_failure(exc)}") from exc


def read_raw_mask(path: str | Path) -> np.ndarray:
    """Read a single-channel index mask (mode L, P, I or I;16) as an int64 ``(H, W)`` array.

    Palette (mode P) masks give their palette indices, which is what Pascal VOC stores.
    An RGB(A) mask whose channels are all equal is accepted as grey; a colour mask is an
    error, because colours are not class indices and guessing the mapping hides mistakes.
    EXIF orientation is applied, as ``read_image`` applies it to the image.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(ImageOps.exif_transpose(image))
    except Exception as exc:  # the per-file boundary (see _decode)
        raise DataError(
            f"{path}: cannot read mask: {decode_failure(exc)}; expected a complete, readable PNG"
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
    """Map raw mask values through ``label_map``; any unmapped value is a ``DataError``."""
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
