"""The run-long training loader: persistent workers give the same batches as none."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DistributedSampler

from atrous.data import FolderDataset, train_transforms
from atrous.engine.loader import build_train_loader
from tests.data.helpers import write_folder_dataset


def _dataset(root: Path) -> FolderDataset:
    transform = train_transforms(crop_size=(12, 12), scale_range=(0.5, 1.5), color_jitter=0.2)
    return FolderDataset(root, split="train", seed=3, transform=transform)


def _sampler(dataset: FolderDataset) -> DistributedSampler:
    return DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=3)


def _expected(root: Path, plan: list[tuple[int, int, int]]) -> list:
    """Batches written out by hand: the sampler's order, ``dataset.set_epoch``, stacking."""
    dataset = _dataset(root)
    sampler = _sampler(dataset)
    out = []
    for epoch, skip, batches in plan:
        sampler.set_epoch(epoch)
        dataset.set_epoch(epoch)
        order = list(sampler)[2 * skip : 2 * batches]
        samples = [dataset[i] for i in order]
        pairs = [samples[i : i + 2] for i in range(0, len(samples), 2)]
        out.append([tuple(torch.stack(x) for x in zip(*pair, strict=True)) for pair in pairs])
    return out


def _loaded(root: Path, *, num_workers: int, plan: list[tuple[int, int, int]]) -> list:
    """Batches of every pass in ``plan`` ((epoch, skip, batches)) through one loader."""
    dataset = _dataset(root)
    loader, epoch_sampler = build_train_loader(
        dataset,
        _sampler(dataset),
        batch_size=2,
        num_workers=num_workers,
        seed=3,
        pin_memory=False,
        persistent_workers=True,
        prefetch_factor=None,
    )
    out = []
    first_workers = None
    for epoch, skip, batches in plan:
        epoch_sampler.start(epoch, skip=skip, batches=batches)
        out.append([(images.clone(), masks.clone()) for images, masks in loader])
        if num_workers:
            workers = [w.pid for w in loader._iterator._workers]  # type: ignore[union-attr]
            first_workers = first_workers or workers
            assert workers == first_workers, "workers were restarted between epochs"
    return out


def test_persistent_workers_give_each_epochs_own_samples(tmp_path: Path) -> None:
    root = write_folder_dataset(tmp_path / "data", splits={"train": 8}, size=(16, 16))
    # Epochs 0 and 1 in full, epoch 2 capped at 3 batches, epoch 1 resumed after 2 batches.
    plan = [(0, 0, 4), (1, 0, 4), (2, 0, 3), (1, 2, 4)]
    expected = _expected(root, plan)
    assert [len(p) for p in expected] == [4, 4, 3, 2]
    for num_workers in (0, 2):
        loaded = _loaded(root, num_workers=num_workers, plan=plan)
        for want_pass, got_pass in zip(expected, loaded, strict=True):
            for (want_x, want_y), (got_x, got_y) in zip(want_pass, got_pass, strict=True):
                assert torch.equal(got_x, want_x) and torch.equal(got_y, want_y), num_workers
    # Augmentation differs between epochs even for the same image.
    dataset = _dataset(root)
    first = dataset[0][0]
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0][0])
