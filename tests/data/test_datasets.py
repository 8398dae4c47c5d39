"""Dataset loading: folder layout, list files, CamVid's SegNet layout, label mapping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from atrous.data import CamVidDataset, Cityscapes, FolderDataset, VOCSegmentation, build_dataset
from atrous.data.transforms import train_transforms
from tests.data.helpers import write_folder_dataset


def test_folder_dataset_reads_pairs_and_normalises(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "ds")
    ds = FolderDataset(root, split="train")
    assert len(ds) == 4 and ds.num_classes == 3
    image, mask = ds[1]
    assert image.shape == (3, 20, 24) and image.dtype == torch.float32
    assert mask.shape == (20, 24) and mask.dtype == torch.int64
    raw = np.asarray(Image.open(ds.samples[1][0]).convert("RGB")).astype(np.float32) / 255
    expected = (raw[..., 0] - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    torch.testing.assert_close(image[0], torch.from_numpy(expected))
    assert torch.equal(
        mask, torch.from_numpy(np.asarray(Image.open(ds.samples[1][1])).astype(np.int64))
    )


def test_folder_list_file_is_used_when_present(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "ds")
    (root / "train.txt").write_text("images/train/s002.png masks/train/s002.png\n")
    ds = FolderDataset(root, split="train")
    assert [p.name for p, _ in ds.samples] == ["s002.png"]


def test_augmentation_is_a_function_of_seed_epoch_index(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "ds", size=(40, 32))
    transform = train_transforms(crop_size=(16, 16), scale_range=(0.5, 1.5), color_jitter=0.2)
    a = FolderDataset(root, transform=transform, seed=3)
    b = FolderDataset(root, transform=transform, seed=3)
    b[0], b[2]  # consuming other samples must not change sample 1
    assert all(torch.equal(x, y) for x, y in zip(a[1], b[1]))
    a.set_epoch(1)
    assert not torch.equal(a[1][0], b[1][0])


def test_crop_pads_mask_with_ignore_and_keeps_labels_exact(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "ds", size=(12, 8))
    ds = FolderDataset(
        root, transform=train_transforms(crop_size=(16, 16), scale_range=(1, 1), hflip=False)
    )
    _, mask = ds[0]
    assert mask.shape == (16, 16)
    assert (mask[8:, :] == IGNORE_INDEX).all() and (mask[:, 12:] == IGNORE_INDEX).all()
    assert set(mask.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}


def test_scale_uses_nearest_for_masks(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "ds", size=(40, 40))
    ds = FolderDataset(root, transform=train_transforms(crop_size=(16, 16), scale_range=(0.7, 1.3)))
    for index in range(len(ds)):
        assert set(ds[index][1].unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_camvid_layout_resolves_segnet_paths_and_ignores_void(tmp_path: Path) -> None:
    mask = np.array([[0, 10, 11, 3]] * 4)
    _png(tmp_path / "train" / "a.png", np.zeros((4, 4, 3)))
    _png(tmp_path / "trainannot" / "a.png", mask)
    (tmp_path / "train.txt").write_text(
        "/SegNet/CamVid/train/a.png /SegNet/CamVid/trainannot/a.png\n"
    )
    ds = CamVidDataset(tmp_path, split="train")
    assert ds.num_classes == 11 and ds.class_names[0] == "Sky"
    assert ds[0][1][0].tolist() == [0, 10, IGNORE_INDEX, 3]


def test_voc_palette_masks_give_indices(tmp_path: Path) -> None:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    _png(root / "JPEGImages" / "x.png", np.zeros((4, 4, 3)))  # saved then renamed below
    (root / "JPEGImages" / "x.png").rename(root / "JPEGImages" / "x.jpg")
    mask = Image.fromarray(np.array([[0, 15, 255, 20]] * 4, dtype=np.uint8), mode="P")
    mask.putpalette([v for c in range(256) for v in (c, 0, 0)])
    (root / "SegmentationClass").mkdir(parents=True)
    mask.save(root / "SegmentationClass" / "x.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("x\n")
    ds = VOCSegmentation(tmp_path / "VOCdevkit", split="val")
    assert ds.num_classes == 21
    assert ds[0][1][0].tolist() == [0, 15, 255, 20]


def test_cityscapes_label_ids_map_to_train_ids(tmp_path: Path) -> None:
    _png(tmp_path / "leftImg8bit/val/ulm/ulm_1_leftImg8bit.png", np.zeros((2, 5, 3)))
    _png(tmp_path / "gtFine/val/ulm/ulm_1_gtFine_labelIds.png", np.array([[7, 26, 33, 0, 4]] * 2))
    ds = Cityscapes(tmp_path, split="val")
    assert ds.num_classes == 19
    assert ds[0][1][0].tolist() == [0, 13, 18, IGNORE_INDEX, IGNORE_INDEX]


def test_build_dataset_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        build_dataset("ade", tmp_path)


@pytest.mark.camvid
def test_real_camvid_loads(camvid_root: Path) -> None:
    train = CamVidDataset(camvid_root, split="train")
    val = CamVidDataset(camvid_root, split="val")
    assert (len(train), len(val)) == (367, 101)
    image, mask = val[0]
    assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
    values = set(mask.unique().tolist())
    assert values <= set(range(11)) | {IGNORE_INDEX} and len(values) > 3
