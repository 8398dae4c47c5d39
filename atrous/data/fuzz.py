"""Mutations of real image files, for fuzzing the image readers.

Used by the property-based test (``tests/data/test_fuzz_decoders.py``, a short run in
``make test``) and by ``benchmarks/fuzz_decoders.py`` (the long run recorded in
BENCHMARKS.md). Each base file is a small image that Pillow itself wrote, so every
mutation starts from bytes a decoder takes seriously.
"""

from __future__ import annotations

import io
import random
import struct

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF", "DDS")
EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
MUTATIONS = ("flip", "truncate", "header", "field", "insert", "delete", "splice")


def base_files(size: tuple[int, int] = (12, 16), seed: int = 0) -> dict[str, bytes]:
    """One small RGB image per format of ``FORMATS``, encoded by Pillow."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    files = {}
    for name in FORMATS:
        buffer = io.BytesIO()
        image.save(buffer, format=name)
        files[name] = buffer.getvalue()
    return files


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """``data`` changed by one mutation ``kind`` of ``MUTATIONS``, positions from ``rng``."""
    out = bytearray(data)
    if not out:
        return bytes(out)
    position = rng.randrange(len(out))
    if kind == "flip":
        for _ in range(rng.randint(1, 8)):
            index = rng.randrange(len(out))
            out[index] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del out[position:]
    elif kind == "header":  # the first 64 bytes hold sizes, counts and offsets
        index = rng.randrange(min(64, len(out)))
        out[index] = rng.randrange(256)
    elif kind == "field":  # a 2- or 4-byte field set to an extreme value
        width = rng.choice((2, 4))
        value = rng.choice(EXTREMES) & ((1 << (8 * width)) - 1)
        order = rng.choice(("little", "big"))
        out[position : position + width] = value.to_bytes(width, order)
    elif kind == "insert":
        out[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        del out[position : position + rng.randint(1, 16)]
    elif kind == "splice":  # the tail of the file repeated: chunks counted twice
        out += out[position:]
    else:
        raise ValueError(f"unknown mutation {kind!r}; known: {MUTATIONS}")
    return bytes(out)


def dds_with_unimplemented_format(width: int = 20, height: int = 18) -> bytes:
    """A real DDS file whose DXGI pixel format (93) Pillow does not implement: its
    decoder raises NotImplementedError, the failure met on a user's corpus."""
    flags = 0x1 | 0x2 | 0x4 | 0x1000
    pixel_format = struct.pack("<II4sIIIII", 32, 0x4, b"DX10", 0, 0, 0, 0, 0)
    header = (
        struct.pack("<IIIIIII", 124, flags, height, width, width * 4, 0, 1)
        + b"\0" * 44
        + pixel_format
        + struct.pack("<IIIII", 0x1000, 0, 0, 0, 0)
    )
    dx10 = struct.pack("<IIIII", 93, 3, 0, 1, 0)
    return b"DDS " + header + dx10 + b"\0" * (width * height * 4)


def unusual_images() -> dict[str, bytes]:
    """Valid but unusual images, and a few files that are not images at all, by name."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))

    def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    frames = [rgb.convert("P"), rgb.rotate(90).convert("P")]
    deep = Image.fromarray((rng.integers(0, 65536, (24, 32))).astype(np.uint16))
    return {
        "u_16bit_grey.png": encoded(deep, "PNG"),
        "u_cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG"),
        "u_palette.png": encoded(rgb.convert("P"), "PNG"),
        "u_grey_alpha.png": encoded(rgb.convert("LA"), "PNG"),
        "u_one_bit.png": encoded(rgb.convert("1"), "PNG"),
        "u_rgba.webp": encoded(rgb.convert("RGBA"), "WEBP"),
        "u_exif_rotated.jpg": encoded(rgb, "JPEG", exif=exif),
        "u_animated.gif": encoded(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "u_one_pixel.png": encoded(rgb.resize((1, 1)), "PNG"),
        "u_float.tif": encoded(Image.fromarray(rng.random((24, 32), dtype=np.float32)), "TIFF"),
        "u_unimplemented.dds": dds_with_unimplemented_format(),
        "u_empty.png": b"",
        "u_text.png": b"this is text, not a picture\n",
        "u_bomb_header.png": _png_header(40_000, 40_000),
    }


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
