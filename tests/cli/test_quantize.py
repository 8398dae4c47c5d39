"""``atrous quantize``: calibrate, measure, refuse a lossy int8 unless forced, and leave
a record that ``--precision int8`` and ``auto`` then use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("torchao")

import atrous.infer.quantized as quantized
from atrous.cli import main
from atrous.data.synthetic import generate
from atrous.infer.runtime import build_runner, choose
from atrous.models import build_model, load_pretrained, save_pretrained


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("discs"), train=6, val=3, size=64)


@pytest.fixture
def saved(tmp_path: Path, data: Path) -> Path:
    from atrous.data import build_dataset

    classes = build_dataset("folder", data, split="val").num_classes
    torch.manual_seed(0)
    model = build_model("dilated_net", num_classes=classes, width=8, rates=(1, 2, 4))
    return save_pretrained(model.eval(), tmp_path / "tiny")


def _quantize(model: Path, data: Path, *extra: str) -> int:
    return main(["quantize", "--model", str(model), "--data.root", str(data),
                 "--calib-split", "train", "--calib-count", "4", "--eval-split", "val",
                 "--no-timing", *extra])  # fmt: skip


def test_accepted_quantisation_is_saved_and_used(saved, data, monkeypatch, capsys) -> None:
    monkeypatch.setattr(quantized, "MAX_MIOU_DROP", 1.0)  # a random model: accept anything
    assert _quantize(saved, data) == 0
    out = capsys.readouterr().out
    assert "calibrated on 4 images" in out and "mIoU" in out
    model = load_pretrained(saved)
    found = quantized.find_quantized(model)
    assert found is not None and found.path.parent == saved / "cache" / "int8"
    record = found.record
    assert record["guard"] == "passed" and not record["forced"]
    assert record["accuracy"]["images"] == 3 and record["calibration"]["images"] == 4
    assert record["accuracy"]["miou_fp32"] is not None
    choice = choose(model, "torch", "auto")
    assert choice.precision == "int8" and "agreement" in choice.reason
    runner = build_runner(model, choice)
    x = torch.randn(1, 3, 64, 64)
    assert runner(x).shape == (1, model.num_classes, 64, 64)


def test_lossy_quantisation_is_refused_unless_forced(saved, data, monkeypatch, capsys) -> None:
    monkeypatch.setattr(quantized, "MAX_MIOU_DROP", -1.0)  # refuse whatever is measured
    assert _quantize(saved, data) == 1
    assert "refused" in capsys.readouterr().err
    assert quantized.find_quantized(load_pretrained(saved)) is None  # nothing saved
    assert _quantize(saved, data, "--force") == 0
    found = quantized.find_quantized(load_pretrained(saved))
    assert found is not None and found.record["forced"] is True
    assert "loses" in found.record["guard"]


def test_usage_errors(saved, tmp_path, capsys) -> None:
    import numpy as np
    from PIL import Image

    assert main(["quantize", "--model", str(saved), "--eval-split", "val"]) == 2
    assert "give calibration images" in capsys.readouterr().err
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    code = main(["quantize", "--model", str(saved), "--calib", str(folder), "--held", str(folder)])
    assert code == 2
    assert "--held must differ from --calib" in capsys.readouterr().err
    assert main(["quantize", "--model", str(saved), "--calib", str(folder)]) == 2
    assert "give images to measure on" in capsys.readouterr().err
