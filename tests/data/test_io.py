"""The one image reader: accepted formats, 16-bit scaling, EXIF, warnings, one rule for all."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from atrous.data import DataError, FolderDataset
from atrous.data.io import IMAGE_SUFFIXES, NOT_RASTER_FORMATS, ImageError, read_image

from .helpers import write_folder_dataset

# A little-endian TIFF EXIF block whose orientation tag (0x0112) is 6 ("rotate 90
# clockwise to display"), followed by an entry that points past the end of the data.
CORRUPT_EXIF = (
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00"
    b"\x00\x00\x99\x99\x04\x00\xff\xff\xff\xff\xff\xff\xff\x0f"
)


def _gradient(height: int = 12, width: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_suffixes_are_exactly_the_raster_formats_pillow_reads() -> None:
    Image.init()
    registered = Image.registered_extensions()
    readable = set(Image.OPEN) | {"MPO"}  # MPO files are opened by the JPEG plugin
    expected = {
        suffix
        for suffix, name in registered.items()
        if name in readable and name not in NOT_RASTER_FORMATS
    }
    # AVIF is listed even where this Pillow was built without it (then: "not an image").
    assert set(IMAGE_SUFFIXES) - {".avif", ".avifs"} == expected - {".avif", ".avifs"}
    assert len(IMAGE_SUFFIXES) == len(set(IMAGE_SUFFIXES))
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)


@pytest.mark.parametrize("suffix", [".tga", ".pcx", ".qoi", ".sgi", ".dds", ".jp2", ".ppm"])
def test_formats_beyond_png_and_jpeg_read_back_exactly(tmp_path: Path, suffix: str) -> None:
    image = _gradient()
    path = tmp_path / f"picture{suffix}"
    options = {"irreversible": False} if suffix == ".jp2" else {}
    Image.fromarray(image).save(path, **options)
    assert suffix in IMAGE_SUFFIXES
    np.testing.assert_array_equal(read_image(path), image)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 12 * 20).round().astype(np.uint16).reshape(12, 20)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode == "I;16"  # the mode the fix is about
        # What Pillow's own conversion does: everything above 255 becomes white.
        assert (np.asarray(opened.convert("RGB"))[..., 0] == 255).mean() > 0.99
    rgb = read_image(path)
    assert rgb.shape == (12, 20, 3) and rgb.dtype == np.uint8
    expected = np.rint(values / 257.0).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], expected)
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 200


def test_32_bit_images_scaled_when_unambiguous_else_refused(tmp_path: Path) -> None:
    sixteen = np.array([[0, 257, 65535]], dtype=np.int32)
    Image.fromarray(sixteen, mode="I").save(tmp_path / "i16.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "i16.tif")[0, :, 0], [0, 1, 255])
    Image.fromarray(np.array([[-5, 70000]], dtype=np.int32), mode="I").save(tmp_path / "i.tif")
    with pytest.raises(ImageError, match=r"i\.tif: .*unsupported pixel format.*\[-5, 70000\]"):
        read_image(tmp_path / "i.tif")
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[0, :, 1], [0, 128, 255])
    Image.fromarray(np.array([[0.0, 3.5]], dtype=np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageError, match=r"hdr\.tif: .*32-bit float.*not \[0, 1\]"):
        read_image(tmp_path / "hdr.tif")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = _gradient(12, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif)
    np.testing.assert_array_equal(read_image(path), np.rot90(stored, k=-1))


def test_dataset_reads_images_as_prediction_does(tmp_path: Path) -> None:
    # One reader: a dataset image with EXIF orientation is turned like in `atrous predict`,
    # so a mask drawn on the displayed image (20 wide, 24 high) lines up with it.
    root = write_folder_dataset(tmp_path / "d", splits={"train": 1}, size=(20, 24))
    image_path = root / "images" / "train" / "s000.png"
    displayed = np.asarray(Image.open(image_path).convert("RGB"))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.rot90(displayed, k=1).copy()).save(image_path, exif=exif)
    image, labels = FolderDataset(root).load(0)
    np.testing.assert_array_equal(image, displayed)
    assert labels.shape == (24, 20)
    from atrous.infer import load_image

    np.testing.assert_array_equal(load_image(image_path), image)


def test_dataset_refuses_a_decompression_bomb(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "d", splits={"train": 1})
    path = root / "images" / "train" / "s000.png"
    Image.new("L", (9000, 9000)).save(path)  # 81 Mpx in a few kB
    assert path.stat().st_size < 200_000
    with pytest.raises(DataError, match=r"s000\.png: cannot read image: too many pixels"):
        FolderDataset(root).load(0)


def test_errors_are_data_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(_gradient()).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError) as info:
        read_image(path)
    assert isinstance(info.value, ImageError) and info.value.kind == "corrupt"
    assert str(info.value).startswith(f"{path}: cannot read image: truncated")
    with pytest.raises(ImageError, match=r"<bytes>: cannot read image: not an image") as info:
        read_image(b"plain text")
    assert info.value.kind == "not_an_image"


def test_pillow_warnings_go_to_the_log_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "odd.jpg"
    Image.fromarray(_gradient(8, 8)).save(path, exif=CORRUPT_EXIF)
    with warnings.catch_warnings(record=True) as direct:
        warnings.simplefilter("always")
        ImageOps.exif_transpose(Image.open(path))
    assert any("Corrupt EXIF" in str(w.message) for w in direct)  # Pillow warns, read directly
    with warnings.catch_warnings(record=True) as escaped, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        image = read_image(path)
    assert image.shape == (8, 8, 3)
    assert [w for w in escaped if "EXIF" in str(w.message)] == []
    records = [r for r in caplog.records if r.name == "atrous.data.io"]
    assert records and all(str(path) in r.getMessage() for r in records)
    assert any("Corrupt EXIF data" in r.getMessage() for r in records)
    # Each distinct message once, although Pillow repeats them.
    messages = [r.getMessage() for r in records]
    assert len(messages) == len(set(messages))


def test_bytes_and_path_read_the_same(tmp_path: Path) -> None:
    image = _gradient()
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    (tmp_path / "a.png").write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(read_image(buffer.getvalue()), read_image(tmp_path / "a.png"))
