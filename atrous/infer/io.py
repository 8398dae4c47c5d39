"""Reading input images safely and expanding the inputs a user names into files.

Prediction runs over folders of files that come from anywhere: some are truncated, some
are not images, some are decompression bombs (a few kB of PNG that expand into billions
of pixels). Each failure becomes an :class:`ImageError` that names the file and the
reason, so the caller can report it and go on with the other files.
"""

from __future__ import annotations

import glob
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
    """An input file that cannot be used as an image; the message names file and reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as an ``HxWx3`` uint8 RGB array.

    The pixel count is checked from the header *before* decoding, so a decompression bomb
    costs nothing. EXIF orientation is applied so that masks line up with the image as
    viewers show it.

    Raises:
        ImageError: missing file, not an image, truncated/corrupt data, or more than
            ``max_pixels`` pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "no such file")
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; make every bomb an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageError(
                        path,
                        f"too many pixels ({width}x{height} = {width * height:,} > "
                        f"max_pixels={max_pixels:,}); refusing to decode a possible "
                        "decompression bomb",
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = image.convert("RGB")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(path, f"too many pixels (decompression bomb guard: {error})") from error
    except UnidentifiedImageError as error:
        raise ImageError(path, "not an image (format not recognised)") from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(path, f"truncated or corrupt image data ({error})") from error
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
