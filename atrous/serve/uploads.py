"""Turning an uploaded body into an RGB array, or into an error the client can act on.

Decoding is :func:`atrous.infer.load_image` on the bytes in memory (pixel count checked
from the header before decoding, every decompression bomb an error, EXIF orientation
applied); this module maps its failures to HTTP status codes and messages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atrous.infer.io import ImageError, load_image


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


# How each failure of atrous.infer.load_image reads to a client.
_STATUS = {"not_an_image": 415, "too_many_pixels": 413, "corrupt": 422}
_CODES = {
    "not_an_image": "not_an_image",
    "too_many_pixels": "too_many_pixels",
    "corrupt": "corrupt_image",
}


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image into an ``HxWx3`` uint8 RGB array.

    Raises:
        UploadError: empty body (400), not an image (415), more than ``max_pixels``
            pixels (413), truncated or corrupt data (422).
    """
    if not data:
        raise UploadError(400, "empty_body", "the upload is empty; send an image file")
    try:
        return load_image(data, max_pixels=max_pixels, name="upload")
    except ImageError as error:
        if error.kind == "not_an_image":
            message = "the upload is not an image in a format Pillow can read"
        elif error.kind == "too_many_pixels":
            message = (
                f"{error.reason}; this server's limit is {max_pixels:,} pixels, resize it first"
            )
        else:
            message = f"the image data is {error.reason}"
        raise UploadError(_STATUS[error.kind], _CODES[error.kind], message) from error
