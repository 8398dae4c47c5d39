"""Bad data never passes silently: each problem names the file, the value and what was expected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main
from atrous.data import DataError, FolderDataset, check_dataset, median_frequency_weights
from tests.data.helpers import write_folder_dataset


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "ds", num_classes=3, splits={"train": 3})


def _mask_path(root: Path, i: int = 0) -> Path:
    return root / "masks" / "train" / f"s{i:03d}.png"


def test_size_mismatch_names_both_files_and_sizes(root: Path) -> None:
    Image.fromarray(np.zeros((20, 23), np.uint8)).save(_mask_path(root))
    with pytest.raises(DataError) as info:
        FolderDataset(root)[0]
    message = str(info.value)
    assert "s000.png" in message and "23x20" in message and "24x20" in message


def test_label_out_of_range_names_values_and_range(root: Path) -> None:
    mask = np.zeros((20, 24), np.uint8)
    mask[0, :3] = [3, 7, 255]
    Image.fromarray(mask).save(_mask_path(root))
    with pytest.raises(DataError, match=r"s000\.png: label values \[3, 7\] are outside \[0, 3\)"):
        FolderDataset(root)[0]


def test_truncated_image_is_reported(root: Path) -> None:
    image = root / "images" / "train" / "s001.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"s001\.png: cannot read image"):
        FolderDataset(root)[1]


def test_unreadable_mask_is_reported(root: Path) -> None:
    _mask_path(root, 2).write_bytes(b"not a png at all")
    with pytest.raises(DataError, match=r"s002\.png: cannot read mask"):
        FolderDataset(root)[2]


def test_rgb_colour_mask_is_rejected_with_its_colours(root: Path) -> None:
    rgb = np.zeros((20, 24, 3), np.uint8)
    rgb[:10] = (128, 64, 128)
    Image.fromarray(rgb).save(_mask_path(root))
    with pytest.raises(DataError, match=r"RGB-encoded with colours such as .*\(128, 64, 128\)"):
        FolderDataset(root)[0]


def test_grey_mask_stored_as_rgb_is_accepted(root: Path) -> None:
    grey = np.asarray(Image.open(_mask_path(root)))
    Image.fromarray(np.stack([grey] * 3, -1)).save(_mask_path(root))
    assert np.array_equal(FolderDataset(root)[0][1].numpy(), grey)


def test_missing_mask_is_reported(root: Path) -> None:
    _mask_path(root, 1).unlink()
    with pytest.raises(DataError, match=r"s001\.png: no mask for this image"):
        FolderDataset(root)


def test_check_reports_every_problem_and_histogram(root: Path) -> None:
    Image.fromarray(np.full((20, 24), 9, np.uint8)).save(_mask_path(root, 0))
    _mask_path(root, 2).write_bytes(b"junk")
    report = check_dataset(FolderDataset(root))
    assert report.num_samples == 3 and len(report.problems) == 2
    good = np.asarray(Image.open(_mask_path(root, 1)))
    assert report.class_pixels.tolist() == np.bincount(good.ravel(), minlength=3).tolist()


def test_median_frequency_weights_match_hand_computation(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "ds", num_classes=3, splits={"train": 2}, size=(4, 4))
    Image.fromarray(np.array([[0] * 4] * 3 + [[1] * 4], np.uint8)).save(_mask_path(root, 0))
    Image.fromarray(np.array([[0] * 4] * 2 + [[2] * 4] * 2, np.uint8)).save(_mask_path(root, 1))
    weights = median_frequency_weights(check_dataset(FolderDataset(root)))
    freq = np.array([20 / 32, 4 / 16, 8 / 16])  # class pixels / pixels of images containing it
    np.testing.assert_allclose(weights, np.median(freq) / freq)


def test_cli_data_check_exit_codes(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", str(root), "--format", "folder"]) == 0
    assert "class0" in capsys.readouterr().out
    Image.fromarray(np.full((20, 24), 40, np.uint8)).save(_mask_path(root, 1))
    assert main(["data", "check", str(root), "--format", "folder"]) == 1
    out = capsys.readouterr().out
    assert "s001.png" in out and "[40]" in out
