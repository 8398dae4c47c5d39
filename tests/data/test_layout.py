"""``atrous.data.detect_format``: the layout of a dataset folder, from its documented marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from atrous.data import DATASET_FORMATS, detect_format

from .helpers import write_folder_dataset


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("trainannot", "camvid"),
        ("valannot", "camvid"),
        ("gtFine", "cityscapes"),
        ("SegmentationClass", "voc"),
        ("VOC2012", "voc"),
    ],
)
def test_marker_folders(tmp_path: Path, marker: str, expected: str) -> None:
    (tmp_path / marker).mkdir()
    assert detect_format(tmp_path) == expected
    assert detect_format(str(tmp_path)) == expected
    assert expected in DATASET_FORMATS


def test_folder_format_and_default(tmp_path: Path) -> None:
    assert detect_format(write_folder_dataset(tmp_path / "d")) == "folder"
    # classes.json wins over a stray marker folder; an empty folder is taken as "folder".
    (tmp_path / "d" / "gtFine").mkdir()
    assert detect_format(tmp_path / "d") == "folder"
    (tmp_path / "empty").mkdir()
    assert detect_format(tmp_path / "empty") == "folder"
