"""Turning an uploaded body into an RGB array, or into an error the client can act on.

Decoding is ``atrous.infer.load_image`` on the bytes in memory (pixel count checked
from the header before decoding, every decompression bomb an error, EXIF orientation
applied); this module maps its failures to HTTP status codes and messages.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

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


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the image's header, without decoding pixels; ``None`` if
    no Pillow format recognises the data.

    ``PIL.Image.open`` refuses images above its own decompression-bomb limit before
    saying how large they are; the format plugins it dispatches to read only the header,
    so calling them directly gives the size for a message and for the cost estimate.
    """
    Image.init()
    prefix = data[:16]
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        try:
            # Some plugins' accept() unpacks fixed-size fields: a 3-byte upload makes
            # them raise struct.error, which only means "not this format".
            if accept is not None and not accept(prefix):
                continue
        except Exception:
            continue
        try:
            # The full decode after this logs the file's warnings once; none here.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with factory(io.BytesIO(data)) as image:
                    width, height = image.size
        except Exception:  # Pillow's plugins raise many types: try the next one
            continue
        if width > 0 and height > 0:
            return int(width), int(height)
    return None


def too_many_pixels(width: int, height: int, max_pixels: int) -> UploadError:
    """The 413 for an image over the pixel limit, in the client's terms."""
    return UploadError(
        413,
        "too_many_pixels",
        f"the image is {width}x{height} = {width * height:,} pixels; this server's limit "
        f"is {max_pixels:,} pixels, resize it first",
    )


def decode_image(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decode an uploaded image into an ``HxWx3`` uint8 RGB array.

    Raises:
        UploadError: empty body (400), not an image (415), more than ``max_pixels``
            pixels (413), truncated or corrupt data (422).
    """
    if not data:
        raise UploadError(400, "empty_body", "the upload is empty; send an image file")
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise too_many_pixels(*size, max_pixels)
    try:
        return load_image(data, max_pixels=max_pixels, name="upload")
    except ImageError as error:
        if error.kind == "not_an_image":
            message = "the upload is not an image in a format Pillow can read"
        elif error.kind == "too_many_pixels":
            message = (
                f"the image has too many pixels; this server's limit is {max_pixels:,} "
                "pixels, resize it first"
            )
        else:
            message = f"the image data is {error.reason}"
        raise UploadError(_STATUS[error.kind], _CODES[error.kind], message) from error
