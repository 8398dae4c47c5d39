from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.cli import main
from atrous.infer import Predictor
from atrous.models import build_model, load_pretrained, save_pretrained

from .test_io import _write_bomb


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
    assert "broken.jpg: truncated" in error and "notes.png: not an image" in error
    assert "bomb.png: too many pixels" in error
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
