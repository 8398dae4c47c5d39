"""Datasets, joint image+mask transforms and dataset validation.

- ``atrous.data.datasets``: ``FolderDataset``, ``CamVidDataset``,
  ``VOCSegmentation``, ``Cityscapes``, ``build_dataset``.
- ``atrous.data.splits``: split expressions by drive and by time (``drive:0006R0``,
  ``train+val-drive:0006R0``); ``camvid_drives``, ``camvid_drive_folds``.
- ``atrous.data.transforms``: seeded joint transforms (scale, crop, flip, jitter).
- ``atrous.data.validate``: ``check_dataset`` and median frequency weights.
- ``atrous.data.io``: reading files with errors naming file, value and expectation;
  ``read_image`` is the package's one image reader.
- ``atrous.data.layout``: ``detect_format``, the dataset layout of a folder.
"""

from atrous.data.datasets import (
    DATASET_FORMATS,
    CamVidDataset,
    Cityscapes,
    FolderDataset,
    SegmentationDataset,
    VOCSegmentation,
    build_dataset,
    camvid_drive_folds,
    camvid_drives,
    camvid_pool,
    camvid_split_names,
    check_split_pair,
)
from atrous.data.io import IMAGE_SUFFIXES, DataError, ImageError, read_image, read_raw_mask
from atrous.data.layout import detect_format
from atrous.data.splits import (
    DriveFold,
    DriveSummary,
    SplitError,
    SplitOverlapError,
    drives_table,
    parse_split,
    resolve_split,
    shared_frames,
)
from atrous.data.transforms import eval_transforms, train_transforms
from atrous.data.validate import DatasetReport, check_dataset, median_frequency_weights

__all__ = [
    "DATASET_FORMATS",
    "IMAGE_SUFFIXES",
    "CamVidDataset",
    "Cityscapes",
    "DataError",
    "DatasetReport",
    "DriveFold",
    "DriveSummary",
    "FolderDataset",
    "ImageError",
    "SegmentationDataset",
    "SplitError",
    "SplitOverlapError",
    "VOCSegmentation",
    "build_dataset",
    "camvid_drive_folds",
    "camvid_drives",
    "camvid_pool",
    "camvid_split_names",
    "check_dataset",
    "check_split_pair",
    "detect_format",
    "drives_table",
    "eval_transforms",
    "median_frequency_weights",
    "parse_split",
    "read_image",
    "read_raw_mask",
    "resolve_split",
    "shared_frames",
    "train_transforms",
]
