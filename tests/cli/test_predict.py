from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.cli import main
from atrous.infer import Predictor
from atrous.models import build_model, load_pretrained, save_pretrained
from tests.data.helpers import dds_with_unimplemented_format
from tests.infer.test_io import _write_bomb


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small zoo model (the plain dilated stack, 8 channels), saved as a model folder."""
    torch.manual_seed(0)
    model = build_model("dilated_net", num_classes=3, width=8, rates=(1, 2, 4))
    return save_pretrained(
        model.eval(),
        tmp_path_factory.mktemp("model") / "tiny",
        class_names=["sky", "road", "car"],
        palette=[(0, 0, 255), (128, 128, 128), (255, 0, 0)],
    )


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, size in [("a.png", (40, 56)), ("b.jpg", (33, 47)), ("c.png", (40, 56))]:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
    broken = folder / "broken.jpg"
    broken.write_bytes((folder / "b.jpg").read_bytes()[:200])
    (folder / "notes.png").write_text("not an image")
    _write_bomb(folder / "bomb.png")
    # Sorted before c.png: a decoder that raises NotImplementedError must not stop the
    # files after it.
    (folder / "b_texture.dds").write_bytes(dds_with_unimplemented_format())
    return folder


def test_predict_folder_with_corrupt_files(
    saved_model: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    table = tmp_path / "areas.csv"
    status = main(
        ["predict", str(image_folder), "--model", str(saved_model), "--out", str(out),
         "--overlay", "--csv", str(table), "--batch-size", "2"]
    )  # fmt: skip
    assert status == 1
    error = capsys.readouterr().err
    assert "broken.jpg: cannot read image: truncated" in error
    assert "notes.png: cannot read image: not an image" in error
    assert "bomb.png: cannot read image: too many pixels" in error
    assert "b_texture.dds: cannot read image: a format variant Pillow does not implement" in error
    assert "Traceback" not in error
    # The readable files were predicted, with the model's labels and palette.
    model = load_pretrained(saved_model)
    for name in ("a", "b", "c"):
        mask = Image.open(out / f"{name}.png")
        assert mask.mode == "P" and mask.getpalette()[:9] == [0, 0, 255, 128, 128, 128, 255, 0, 0]
        image = np.asarray(Image.open(next(image_folder.glob(f"{name}.*"))).convert("RGB"))
        np.testing.assert_array_equal(np.asarray(mask), Predictor(model).predict(image))
        assert (out / f"{name}_overlay.png").is_file()
    assert not (out / "broken.png").exists() and not (out / "bomb.png").exists()
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 3 and {r["name"] for r in rows} == {"sky", "road", "car"}
    for name in ("a", "b"):
        pixels = sum(int(r["pixels"]) for r in rows if Path(r["file"]).stem == name)
        assert pixels == np.asarray(Image.open(out / f"{name}.png")).size


def test_predict_all_good_exits_zero(saved_model: Path, image_folder: Path, tmp_path: Path) -> None:
    status = main(
        ["predict", str(image_folder / "*.png"), str(image_folder / "b.jpg"),
         "--model", str(saved_model), "--out", str(tmp_path / "o"), "--tta-scales", "1,0.5",
         "--flip"]
    )  # fmt: skip
    # notes.png matches the glob and is not an image.
    assert status == 1
    status = main(
        ["predict", str(image_folder / "a.png"), "--model", str(saved_model),
         "--out", str(tmp_path / "o2")]
    )  # fmt: skip
    assert status == 0 and (tmp_path / "o2" / "a.png").is_file()


def test_export_then_predict_with_onnxruntime(
    saved_model: Path, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    onnx_path = tmp_path / "m.onnx"
    status = main(
        ["export", "--model", str(saved_model), "--format", "onnx", "--out", str(onnx_path),
         "--size", "64", "64"]
    )  # fmt: skip
    assert status == 0 and "max abs logit diff" in capsys.readouterr().out
    status = main(
        ["predict", str(image_folder / "a.png"), "--model", str(saved_model),
         "--backend", "onnxruntime", "--onnx", str(onnx_path), "--out", str(tmp_path / "o")]
    )  # fmt: skip
    assert status == 0
    mask = np.asarray(Image.open(tmp_path / "o" / "a.png"))
    image = np.asarray(Image.open(image_folder / "a.png").convert("RGB"))
    expected = Predictor(load_pretrained(saved_model)).predict(image)
    assert (mask == expected).mean() > 0.999


def test_inputs_with_one_stem_get_distinct_masks(
    saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    images = {}
    for name in ("gray.png", "gray.bmp", "x.png", "x_overlay.png"):
        images[name] = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
        Image.fromarray(images[name]).save(folder / name)
    out = tmp_path / "out"
    status = main(["predict", str(folder), "--model", str(saved_model), "--out", str(out),
                   "--overlay"])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert f"predicted 4 of 4 files into {out}" in printed
    assert f"{folder / 'gray.png'} -> gray_png.png" in printed
    assert f"{folder / 'gray.bmp'} -> gray_bmp.png" in printed
    assert f"{folder / 'x_overlay.png'} -> x_overlay_2.png" in printed
    predictor = Predictor(load_pretrained(saved_model))
    written = {"gray.png": "gray_png", "gray.bmp": "gray_bmp", "x.png": "x",
               "x_overlay.png": "x_overlay_2"}  # fmt: skip
    for name, stem in written.items():
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        np.testing.assert_array_equal(mask, predictor.predict(images[name]))
        assert (out / f"{stem}_overlay.png").is_file()
    assert len(list(out.iterdir())) == 8  # four masks and four overlays, none overwritten


def test_sixteen_bit_png_is_predicted_as_its_8_bit_reading(
    saved_model: Path, tmp_path: Path
) -> None:
    # 16-bit greyscale used to become flat white (every pixel one class) with exit 0.
    rng = np.random.default_rng(2)
    values = rng.integers(0, 65536, (36, 44), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    eight = np.rint(values / 257.0).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "shallow.png")
    out = tmp_path / "out"
    status = main(["predict", str(tmp_path / "deep.png"), str(tmp_path / "shallow.png"),
                   "--model", str(saved_model), "--out", str(out), "--overlay"])  # fmt: skip
    assert status == 0
    deep = np.asarray(Image.open(out / "deep.png"))
    np.testing.assert_array_equal(deep, np.asarray(Image.open(out / "shallow.png")))
    # The overlay blends the image as read: the same as the 8-bit one, and not flat.
    overlay = np.asarray(Image.open(out / "deep_overlay.png").convert("RGB"))
    np.testing.assert_array_equal(
        overlay, np.asarray(Image.open(out / "shallow_overlay.png").convert("RGB"))
    )
    assert overlay.std() > 20


def test_pillow_warnings_are_logged_not_printed(
    saved_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.data.test_io import CORRUPT_EXIF

    path = tmp_path / "odd.jpg"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path, exif=CORRUPT_EXIF)
    with warnings.catch_warnings(record=True) as escaped, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        status = main(["predict", str(path), "--model", str(saved_model),
                       "--out", str(tmp_path / "o")])  # fmt: skip
    assert status == 0
    assert [str(w.message) for w in escaped if w.category is UserWarning] == []
    assert any(
        r.name == "atrous.data.io" and str(path) in r.getMessage() and "EXIF" in r.getMessage()
        for r in caplog.records
    )


def test_predict_without_model_uses_the_shipped_camvid_model(tmp_path: Path) -> None:
    from atrous.serve import ServeConfig

    image = tmp_path / "street.png"
    Image.fromarray(np.full((48, 64, 3), 128, dtype=np.uint8)).save(image)
    assert main(["predict", str(image), "--out", str(tmp_path / "masks")]) == 0
    mask = np.asarray(Image.open(tmp_path / "masks" / "street.png"))
    assert mask.shape == (48, 64) and mask.max() < 11  # CamVid's 11 classes
    assert ServeConfig().model == "camvid"
