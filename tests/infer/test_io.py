from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.infer import ImageError, expand_inputs, load_image, output_stems


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_bomb(path: Path, side: int = 50_000) -> None:
    """A valid PNG header claiming side x side 8-bit grey pixels, followed by a tiny
    compressed stream: the shape of a decompression bomb, at a few hundred bytes."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 4096, 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )


def test_load_image_reads_rgb(tmp_path: Path, rgb_image: np.ndarray) -> None:
    Image.fromarray(rgb_image).save(tmp_path / "a.png")
    Image.fromarray(rgb_image[..., 0]).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb_image)
    grey = load_image(tmp_path / "grey.png")
    assert grey.shape == (*rgb_image.shape[:2], 3) and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey[..., 2], rgb_image[..., 0])


def test_truncated_file_is_named(tmp_path: Path, rgb_image: np.ndarray) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(rgb_image).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("hello, I am text")
    with pytest.raises(ImageError, match="not an image") as info:
        load_image(path)
    assert info.value.path == str(path)


def test_decompression_bomb_rejected_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    _write_bomb(path)
    assert path.stat().st_size < 1000
    with pytest.raises(ImageError, match="too many pixels"):
        load_image(path)


def test_max_pixels_is_configurable(tmp_path: Path, rgb_image: np.ndarray) -> None:
    Image.fromarray(rgb_image).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match="max_pixels=100"):
        load_image(tmp_path / "a.png", max_pixels=100)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_expand_inputs(tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg", "skip.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").write_bytes(b"x")
    assert expand_inputs([tmp_path]) == [tmp_path / "a.jpg", tmp_path / "b.png"]
    assert expand_inputs([str(tmp_path / "**" / "*.png")]) == [
        tmp_path / "b.png",
        tmp_path / "sub" / "c.png",
    ]
    # Named twice: listed once; a named file is kept whatever its suffix.
    assert expand_inputs([tmp_path / "skip.txt", tmp_path / "skip.txt"]) == [tmp_path / "skip.txt"]
    with pytest.raises(FileNotFoundError, match="nothing"):
        expand_inputs([tmp_path / "nothing"])


def test_folder_names_the_files_it_skips(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Formats beyond the usual few are taken (TGA, PSD, DDS, JPEG 2000 ... everything
    # Pillow decodes); the rest of the folder is counted and named, not dropped silently.
    for name in ("a.png", "b.TGA", "c.psd", "d.dds", "e.jp2", "f.avif", "notes.txt", "x.pdf"):
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="atrous.infer.io"):
        found = expand_inputs([tmp_path])
    assert [p.name for p in found] == ["a.png", "b.TGA", "c.psd", "d.dds", "e.jp2", "f.avif"]
    (record,) = caplog.records
    assert f"{tmp_path}: skipped 2 file(s)" in record.getMessage()
    assert "notes.txt, x.pdf" in record.getMessage()


def test_output_stems_never_collide() -> None:
    paths = [Path(p) for p in ("gray.png", "gray.jpg", "a/x.png", "b/x.png", "Y.png", "y.bmp")]
    assert output_stems(paths) == ["gray_png", "gray_jpg", "x_png", "x_png_2", "Y_png", "y_bmp"]
    # A stem that collides with another input's overlay file is moved aside too.
    assert output_stems([Path("x.png"), Path("x_overlay.png")]) == ["x", "x_overlay_2"]
    assert output_stems([Path("x.png"), Path("x_overlay.png")], companions=()) == [
        "x",
        "x_overlay",
    ]
    # Unique names are kept as they are.
    assert output_stems([Path("a.png"), Path("b.jpg")]) == ["a", "b"]
    many = [Path(f"d{i % 7}/img.{s}") for i, s in enumerate(["png", "jpg", "PNG"] * 20)]
    stems = output_stems(many)
    written = [f"{s}{extra}".lower() for s in stems for extra in ("", "_overlay")]
    assert len(written) == len(set(written))
