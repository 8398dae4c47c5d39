"""Reading input images safely and expanding the inputs a user names into files.

Prediction runs over folders of files that come from anywhere: some are truncated, some
are not images, some are decompression bombs (a few kB of PNG that expand into billions
of pixels). Each failure becomes an :class:`ImageError` that names the file and the
reason, so the caller can report it and go on with the other files.
"""

from __future__ import annotations

import glob
import io
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# 64 megapixels: four times a 4096x4096 photo, far above anything the models need, far
# below what would exhaust memory once decoded to float (64e6 * 3 * 4 bytes = 768 MB).
DEFAULT_MAX_PIXELS = 64_000_000

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".gif")


class ImageError(ValueError):
    """An input that cannot be used as an image; the message names the file and reason.

    Attributes:
        path: the file (or the name given to in-memory data).
        reason: what was wrong, in words.
        kind: ``"missing"``, ``"not_an_image"``, ``"too_many_pixels"`` or ``"corrupt"``,
            for callers that map failures to their own codes (the web service's 4xx).
    """

    def __init__(self, path: str | Path, reason: str, *, kind: str = "corrupt") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.kind = kind


def load_image(
    source: str | Path | bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Read an image file (or encoded bytes, e.g. an upload) as an ``HxWx3`` uint8 RGB array.

    The pixel count is checked from the header *before* decoding, so a decompression bomb
    costs nothing. EXIF orientation is applied so that masks line up with the image as
    viewers show it.

    Args:
        source: a path, or the encoded image itself as bytes (decoded in memory).
        max_pixels: refuse images with more pixels than this.
        name: what error messages call ``source`` (default: the path, or ``<bytes>``).

    Raises:
        ImageError: missing file, not an image, truncated/corrupt data, or more than
            ``max_pixels`` pixels (see :attr:`ImageError.kind`).
    """
    if isinstance(source, bytes):
        label: str | Path = name or "<bytes>"
        opened: Path | io.BytesIO = io.BytesIO(source)
    else:
        label = name or Path(source)
        opened = Path(source)
        if not opened.is_file():
            raise ImageError(label, "no such file", kind="missing")
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; make every bomb an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
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
                image = ImageOps.exif_transpose(image)
                rgb = image.convert("RGB")
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
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(label, f"truncated or corrupt image data ({error})") from error
    return np.asarray(rgb, dtype=np.uint8).copy()


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Turn files, folders and glob patterns into a sorted, de-duplicated list of files.

    A folder contributes the files directly inside it whose suffix looks like an image
    (non-image files with image suffixes are still returned, and fail later with a
    reason). A named file is always returned, whatever its suffix, so that the user hears
    why it could not be read instead of it being skipped silently.

    Raises:
        FileNotFoundError: an input that is neither a file, a folder nor a matching glob.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    found[child] = None
        elif path.is_file():
            found[path] = None
        elif glob.has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise FileNotFoundError(f"glob {text!r} matched no files")
            for match in files:
                found[match] = None
        else:
            raise FileNotFoundError(f"input {text!r} is not a file, a folder or a glob")
    return list(found)
