"""Mutations of real image files, for fuzzing the image readers.

Used by the property-based test (``tests/data/test_fuzz_decoders.py``, a short run in
``make test``) and by ``benchmarks/fuzz_decoders.py`` (the long run recorded in
BENCHMARKS.md). Each base file is a small image that Pillow itself wrote, so every
mutation starts from bytes a decoder takes seriously.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image

FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "GIF", "DDS")
EXTREMES = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
MUTATIONS = ("flip", "truncate", "header", "field", "insert", "delete", "splice")


def base_files(size: tuple[int, int] = (12, 16), seed: int = 0) -> dict[str, bytes]:
    """One small RGB image per format of :data:`FORMATS`, encoded by Pillow."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    files = {}
    for name in FORMATS:
        buffer = io.BytesIO()
        image.save(buffer, format=name)
        files[name] = buffer.getvalue()
    return files


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """``data`` changed by one mutation ``kind`` of :data:`MUTATIONS`, positions from ``rng``."""
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
