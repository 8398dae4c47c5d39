"""Datasets, joint image+mask transforms and dataset validation.

- :mod:`atrous.data.datasets`: :class:`FolderDataset`, :class:`CamVidDataset`,
  :class:`VOCSegmentation`, :class:`Cityscapes`, :func:`build_dataset`.
- :mod:`atrous.data.transforms`: seeded joint transforms (scale, crop, flip, jitter).
- :mod:`atrous.data.validate`: :func:`check_dataset` and median frequency weights.
- :mod:`atrous.data.io`: reading files with errors naming file, value and expectation.
"""

from atrous.data.datasets import (
    DATASET_FORMATS,
    CamVidDataset,
    Cityscapes,
    FolderDataset,
    SegmentationDataset,
    VOCSegmentation,
    build_dataset,
)
from atrous.data.io import DataError, read_image, read_raw_mask
from atrous.data.transforms import eval_transforms, train_transforms
from atrous.data.validate import DatasetReport, check_dataset, median_frequency_weights

__all__ = [
    "DATASET_FORMATS",
    "CamVidDataset",
    "Cityscapes",
    "DataError",
    "DatasetReport",
    "FolderDataset",
    "SegmentationDataset",
    "VOCSegmentation",
    "build_dataset",
    "check_dataset",
    "eval_transforms",
    "median_frequency_weights",
    "read_image",
    "read_raw_mask",
    "train_transforms",
]
