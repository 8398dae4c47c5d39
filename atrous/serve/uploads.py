"""Turning an uploaded body into an RGB array, or into an error the client can act on.

The guards are the ones :func:`atrous.infer.load_image` applies to files (pixel count
checked from the header before decoding, every decompression bomb an error, EXIF
orientation applied); this module applies them to bytes in memory, because a service
should not write every upload to disk just to read it back.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


@dataclass
class UploadError(Exception):
    """A request whose body cannot be segmented; becomes a 4xx JSON response.

    Attributes:
        status: HTTP status code (400, 413, 415 or 422).
        code: short machine-readable reason, e.g. ``"not_an_image"``.
        message: what was wrong, in words a user can act on.
    """

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image into an ``HxWx3`` uint8 RGB array.

    Raises:
        UploadError: empty body (400), not an image (415), more than ``max_pixels``
            pixels (413), truncated or corrupt data (422).
    """
    if not data:
        raise UploadError(400, "empty_body", "the upload is empty; send an image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UploadError(
                        413,
                        "too_many_pixels",
                        f"the image is {width}x{height} = {width * height:,} pixels, more "
                        f"than this server's limit of {max_pixels:,}; resize it first",
                    )
                image.load()
                image = ImageOps.exif_transpose(image)
                rgb = image.convert("RGB")
    except UploadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UploadError(
            413,
            "too_many_pixels",
            f"the image has far more pixels than this server's limit of {max_pixels:,} "
            f"(Pillow's decompression-bomb guard: {error})",
        ) from error
    except UnidentifiedImageError as error:
        raise UploadError(
            415, "not_an_image", "the upload is not an image in a format Pillow can read"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise UploadError(
            422, "corrupt_image", f"the image data is truncated or corrupt ({error})"
        ) from error
    return np.asarray(rgb, dtype=np.uint8).copy()
