"""Segmentation datasets: a generic folder layout, CamVid, Pascal VOC 2012 and Cityscapes.

All of them are ``SegmentationDataset``: a list of ``(image, mask)`` file pairs,
class names, a palette, and a lookup table from raw mask values to training labels
(CamVid's 11 = void and Cityscapes' 34 label ids become the ignore index 255). Any raw
value the table does not cover is a ``DataError``, never a
silently dropped pixel.

``dataset[i]`` returns ``(image, mask)``: a normalised float ``(3, H, W)`` tensor and an
int64 ``(H, W)`` tensor. Augmentation is a deterministic function of
``(seed, epoch, index)`` (see ``SegmentationDataset.set_epoch``), which is what
lets ``atrous train --resume`` replay a run exactly.

Folder dataset layout (what ``atrous.data.synthetic.generate`` writes)::

    root/classes.json        {"names": [...], "palette": [[r, g, b], ...], "ignore_index": 255}
    root/images/<split>/<stem>.png|.jpg
    root/masks/<split>/<stem>.png      mode L or P; pixel value = class index; 255 = ignore
    root/<split>.txt (optional)        lines "images/train/a.png masks/train/a.png"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from atrous.constants import IGNORE_INDEX, voc_palette
from atrous.data.io import (
    IMAGE_SUFFIXES,
    DataError,
    apply_label_map,
    check_same_size,
    identity_label_map,
    read_image,
    read_raw_mask,
)
from atrous.data.splits import (
    DriveFold,
    DriveSummary,
    SplitError,
    SplitOverlapError,
    describe_pool,
    drive_folds,
    parse_split,
    resolve_split,
    shared_frames,
    summarize_drives,
)
from atrous.data.transforms import eval_transforms

Transform = Callable[
    [torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]
]

DATASET_FORMATS = ("folder", "camvid", "voc", "cityscapes")


class SegmentationDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """A list of image/mask pairs with class metadata and deterministic augmentation.

    Args:
        samples: ``(image_path, mask_path)`` pairs.
        class_names: one name per class index.
        palette: one RGB colour per class, for visualisation.
        transform: joint transform ``(image, mask, generator) -> (image, mask)``;
            defaults to normalisation only.
        label_map: 256-entry table from raw mask value to label (-1 = invalid value).
            Defaults to identity on ``[0, num_classes)`` plus the ignore index.
        ignore_index: label excluded from loss and metrics.
        seed: base seed of the per-sample augmentation generators.
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, Path]],
        *,
        class_names: Sequence[str],
        palette: Sequence[Sequence[int]],
        transform: Transform | None = None,
        label_map: np.ndarray | None = None,
        ignore_index: int = IGNORE_INDEX,
        seed: int = 0,
    ) -> None:
        self.samples = [(Path(i), Path(m)) for i, m in samples]
        self.class_names = list(class_names)
        self.palette = [tuple(int(v) for v in c) for c in palette]
        self.num_classes = len(self.class_names)
        self.ignore_index = ignore_index
        self.transform = transform if transform is not None else eval_transforms()
        self.label_map = (
            label_map
            if label_map is not None
            else identity_label_map(self.num_classes, ignore_index)
        )
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream; the trainer calls this before every epoch.

        The trainer's loader (atrous.engine.loader) keeps workers alive across epochs and
        sends the epoch with every index instead, so workers never rely on this attribute.
        """
        self.epoch = epoch

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and validate one pair: ``(H, W, 3)`` uint8 image, ``(H, W)`` int64 labels."""
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        raw = read_raw_mask(mask_path)
        check_same_size(image, raw, image_path, mask_path)
        labels = apply_label_map(
            raw, self.label_map, mask_path, self.num_classes, self.ignore_index
        )
        return image, labels

    def sample_generator(self, index: int) -> torch.Generator:
        """The generator for sample ``index`` this epoch: a pure function of (seed, epoch, index)."""
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index)
        return generator

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, labels = self.load(index)
        image_t = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        mask_t = torch.from_numpy(labels)
        return self.transform(image_t, mask_t, self.sample_generator(index))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes, "
            f"transform={self.transform})"
        )


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _pairs_by_stem(
    image_dir: Path, mask_dir: Path, mask_suffix: str = ".png"
) -> list[tuple[Path, Path]]:
    images = _images_in(image_dir)
    if not images:
        raise DataError(f"{image_dir}: no images found; expected {', '.join(IMAGE_SUFFIXES)} files")
    pairs = []
    for image in images:
        mask = mask_dir / (image.stem + mask_suffix)
        if not mask.exists():
            raise DataError(f"{image}: no mask for this image; expected {mask}")
        pairs.append((image, mask))
    return pairs


def _read_list_file(list_file: Path, resolve: Callable[[str], Path]) -> list[tuple[Path, Path]]:
    pairs = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(
                f"{list_file}:{number}: found {len(parts)} fields; expected 'IMAGE MASK'"
            )
        image, mask = resolve(parts[0]), resolve(parts[1])
        for path in (image, mask):
            if not path.exists():
                raise DataError(f"{list_file}:{number}: {path} does not exist")
        pairs.append((image, mask))
    return pairs


class FolderDataset(SegmentationDataset):
    """The generic layout described in the module docstring (``classes.json`` + folders)."""

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        classes_file = root / "classes.json"
        if not classes_file.exists():
            raise DataError(
                f"{classes_file}: missing; expected a JSON file with 'names' and 'palette'"
            )
        meta = json.loads(classes_file.read_text())
        names = meta.get("names")
        if not names:
            raise DataError(f"{classes_file}: no 'names' list; expected the class names")
        palette = meta.get("palette") or voc_palette(len(names))
        list_file = root / f"{split}.txt"
        if list_file.exists():
            samples = _read_list_file(list_file, lambda p: root / p)
        else:
            samples = _pairs_by_stem(root / "images" / split, root / "masks" / split)
        super().__init__(
            samples,
            class_names=names,
            palette=palette,
            transform=transform,
            ignore_index=int(meta.get("ignore_index", IGNORE_INDEX)),
            seed=seed,
        )


CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
# SegNet tutorial's colours for the 11 classes.
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip


class CamVidDataset(SegmentationDataset):
    """CamVid in the SegNet tutorial's layout: ``train/``, ``trainannot/``, ``train.txt``.

    List files carry absolute ``/SegNet/CamVid/train/x.png`` paths; they are resolved by
    their last two parts relative to ``root``. Label 11 (void) becomes the ignore index.

    ``split`` is a split name (``train``, ``val``) or a split expression over the frame
    names (``drive:0006R0``, ``train+val-drive:0006R0``, ``frames:0016E5:7000..``; see
    ``atrous.data.splits``): SegNet's val shares a drive with train, so it cannot
    tell how a model does on a street it has never seen, and a held-out drive can.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        spec = parse_split(split)
        if spec.is_plain and (split in camvid_split_names(root) or (root / split).is_dir()):
            samples = _camvid_split_samples(root, split)
        else:
            samples = resolve_split(spec, camvid_pool(root))
        self.split = split
        label_map = identity_label_map(len(CAMVID_CLASSES), IGNORE_INDEX)
        label_map[11] = IGNORE_INDEX
        super().__init__(
            samples,
            class_names=CAMVID_CLASSES,
            palette=CAMVID_PALETTE,
            transform=transform,
            label_map=label_map,
            seed=seed,
        )


def _is_list_file(path: Path) -> bool:
    """A ``NAME.txt`` with ``IMAGE MASK`` lines is a split list; a README.txt is not."""
    for line in path.read_text(errors="replace").splitlines():
        if line.strip():
            return len(line.split()) == 2
    return False


def camvid_split_names(root: str | Path) -> list[str]:
    """The splits a CamVid folder holds: ``NAME.txt`` lists and ``NAME/`` + ``NAMEannot/``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: CamVid folder does not exist")
    names = {p.stem for p in root.glob("*.txt") if _is_list_file(p)}
    names |= {p.name for p in root.iterdir() if p.is_dir() and (root / f"{p.name}annot").is_dir()}
    return sorted(names)


def _camvid_split_samples(root: Path, name: str) -> list[tuple[Path, Path]]:
    list_file = root / f"{name}.txt"
    if list_file.exists():
        return _read_list_file(list_file, lambda p: root.joinpath(*Path(p).parts[-2:]))
    return _pairs_by_stem(root / name, root / f"{name}annot")


def camvid_pool(root: str | Path) -> dict[str, list[tuple[Path, Path]]]:
    """Every split on disk with its ``(image, mask)`` pairs: what drive splits select from."""
    root = Path(root)
    return {name: _camvid_split_samples(root, name) for name in camvid_split_names(root)}


def camvid_drives(root: str | Path) -> list[DriveSummary]:
    """The drives of a CamVid folder: frame count, count per split, first and last frame.

    On the SegNet split: 0001TP 62 (train), 0006R0 101 (train), 0016E5 305 (204 train,
    101 val). ``print(drives_table(camvid_drives(root)))`` shows them as a table.
    """
    return summarize_drives(camvid_pool(root))


def camvid_drive_folds(root: str | Path, pool: Sequence[str] = ("train", "val")) -> list[DriveFold]:
    """Leave-one-drive-out folds over ``pool``'s drives, as split specs for a config."""
    on_disk = camvid_pool(root)
    missing = [name for name in pool if name not in on_disk]
    if missing:
        raise SplitError(f"{root}: no split {missing}; {describe_pool(on_disk)}")
    drives = [s.drive for s in summarize_drives({name: on_disk[name] for name in pool})]
    return drive_folds(drives, pool, splits_on_disk=list(on_disk))


def check_split_pair(
    format: str,
    root: str | Path,
    train_split: str,
    val_split: str,
    *,
    allow_overlap: bool = False,
) -> tuple[int, int]:
    """Resolve a training and a validation split and check that they share no frame.

    A validation frame the model trained on measures memory, not a new street. Only
    CamVid splits are resolved here (its list files are cheap to read); other formats
    take plain split names, checked when they are read. Returns the two frame counts
    (``(0, 0)`` for other formats).

    Raises:
        SplitError: bad syntax, an unknown split or drive, or an empty split.
        SplitOverlapError: frames in both splits while ``allow_overlap`` is false.
    """
    if format != "camvid":
        return 0, 0
    pool = camvid_pool(root)
    train = resolve_split(train_split, pool)
    val = resolve_split(val_split, pool)
    shared = shared_frames(train, val)
    if shared and not allow_overlap:
        val_terms = parse_split(val_split).terms
        hint = ""
        if all(sign == "+" for sign, _ in val_terms):
            hint = f" (e.g. train split {train_split + ''.join(f'-{t}' for _, t in val_terms)!r})"
        shown = ", ".join(shared[:3]) + (", ..." if len(shared) > 3 else "")
        raise SplitOverlapError(
            f"train split {train_split!r} ({len(train)} frames) and val split {val_split!r} "
            f"({len(val)} frames) share {len(shared)} frames ({shown}): a score on frames "
            f"the model trained on measures memory, not new streets. Remove them from the "
            f"train split{hint}, or allow the overlap on purpose (a final model trained "
            f"on every frame)"
        )
    return len(train), len(val)


VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


class VOCSegmentation(SegmentationDataset):
    """Pascal VOC 2012: ``JPEGImages``, palette PNGs in ``SegmentationClass`` (255 = border).

    ``root`` is the ``VOC2012`` folder or a ``VOCdevkit`` folder containing it; the split
    list is ``ImageSets/Segmentation/<split>.txt``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        if (root / "VOC2012").is_dir():
            root = root / "VOC2012"
        list_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not list_file.exists():
            raise DataError(f"{list_file}: missing; expected the VOC split list for {split!r}")
        samples = []
        for stem in list_file.read_text().split():
            image = root / "JPEGImages" / f"{stem}.jpg"
            mask = root / "SegmentationClass" / f"{stem}.png"
            for path in (image, mask):
                if not path.exists():
                    raise DataError(f"{list_file}: {path} listed but does not exist")
            samples.append((image, mask))
        super().__init__(
            samples,
            class_names=VOC_CLASSES,
            palette=voc_palette(len(VOC_CLASSES)),
            transform=transform,
            seed=seed,
        )


# Cityscapes label id -> train id (cityscapesScripts' labels.py); other ids are ignored.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
    "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations: ``*_gtFine_labelIds.png`` mapped to the 19 train ids.

    Layout: ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png``. Label ids 0..33 are valid;
    those without a train id (and 255) become the ignore index.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train",
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        image_root = root / "leftImg8bit" / split
        images = sorted(image_root.glob("*/*_leftImg8bit.png"))
        if not images:
            raise DataError(f"{image_root}: no '*/*_leftImg8bit.png' images found")
        samples = []
        for image in images:
            name = image.name.removesuffix("_leftImg8bit.png")
            mask = root / "gtFine" / split / image.parent.name / f"{name}_gtFine_labelIds.png"
            if not mask.exists():
                raise DataError(f"{image}: no label file; expected {mask}")
            samples.append((image, mask))
        label_map = np.full(256, -1, dtype=np.int64)
        label_map[:34] = IGNORE_INDEX
        label_map[IGNORE_INDEX] = IGNORE_INDEX
        for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
            label_map[label_id] = train_id
        super().__init__(
            samples,
            class_names=CITYSCAPES_CLASSES,
            palette=CITYSCAPES_PALETTE,
            transform=transform,
            label_map=label_map,
            seed=seed,
        )


def build_dataset(
    format: str,
    root: str | Path,
    *,
    split: str = "train",
    transform: Transform | None = None,
    seed: int = 0,
) -> SegmentationDataset:
    """Build a dataset by format name: ``folder``, ``camvid``, ``voc`` or ``cityscapes``.

    Example:
        ```python
        import tempfile

        from atrous.data import build_dataset
        from atrous.data.synthetic import generate

        root = generate(tempfile.mkdtemp(), train=4, val=2, size=64)  # a folder dataset
        dataset = build_dataset("folder", root, split="train")
        image, mask = dataset[0]  # float CHW in [0, 1], long HW class indices
        print(len(dataset), dataset.class_names, tuple(image.shape), tuple(mask.shape))
        ```
    """
    classes = {
        "folder": FolderDataset,
        "camvid": CamVidDataset,
        "voc": VOCSegmentation,
        "cityscapes": Cityscapes,
    }
    if format not in classes:
        raise ValueError(f"unknown dataset format {format!r}; choose one of {DATASET_FORMATS}")
    if not Path(root).exists():
        raise DataError(f"{root}: dataset folder does not exist")
    return classes[format](root, split=split, transform=transform, seed=seed)
