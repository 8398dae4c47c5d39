"""One training DataLoader for the whole run whose workers survive from epoch to epoch.

Why: with ``persistent_workers=False`` PyTorch starts ``num_workers`` fresh processes at
every epoch. A CamVid epoch at batch 16 is only ~22 iterations, so on a GPU the worker
start-up (import, dataset copy, first prefetch) dominated the epoch.

Persistent workers hold their own copy of the dataset, made when they start, so the
usual ``dataset.set_epoch(epoch)`` in the main process no longer reaches them. Here the
epoch travels with every index instead: the sampler yields ``(epoch, index)`` pairs and
``EpochDataset`` selects the augmentation stream of that epoch before loading the
sample. A sample is therefore still a pure function of ``(seed, epoch, index)``, wherever
and in whichever worker it is loaded, which is what exact resume needs.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, get_worker_info

from atrous.data import SegmentationDataset


class EpochDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``dataset[(epoch, index)]``: sample ``index`` with epoch ``epoch``'s augmentation.

    Inside a worker process the global torch/numpy/python RNGs are also reseeded from
    ``(seed, epoch, index)`` before each sample, so even a user transform that draws from
    them (instead of the generator it is given) repeats on resume.
    """

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        if self.dataset.epoch != epoch:
            self.dataset.set_epoch(epoch)
        if get_worker_info() is not None:  # never touch the main process's RNG streams
            seed = int(self.dataset.sample_generator(index).initial_seed()) % 2**32
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
        return self.dataset[index]


class EpochSampler(Sampler[tuple[int, int]]):
    """This process's share of one epoch, as ``(epoch, index)`` pairs, minus a resumed prefix.

    ``start`` selects the epoch before each pass over the loader. The order comes from
    a ``DistributedSampler`` seeded with ``seed + epoch`` (one process is world size 1),
    and only the ``batches`` full batches the epoch will use are yielded, so persistent
    workers never prefetch samples that an ``iters_per_epoch`` cap throws away.
    """

    def __init__(self, sampler: DistributedSampler, batch_size: int) -> None:
        self.sampler, self.batch_size = sampler, batch_size
        self.epoch, self.skip, self.batches = 0, 0, 0

    def start(self, epoch: int, *, skip: int, batches: int) -> None:
        """Next pass: epoch ``epoch``, batches ``skip`` (already trained) to ``batches``."""
        self.sampler.set_epoch(epoch)
        self.epoch, self.skip, self.batches = epoch, skip, batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(self.sampler)[self.skip * self.batch_size : self.batches * self.batch_size]
        return iter([(self.epoch, i) for i in indices])

    def __len__(self) -> int:
        return max(0, self.batches - self.skip) * self.batch_size


def build_train_loader(
    dataset: SegmentationDataset,
    sampler: DistributedSampler,
    *,
    batch_size: int,
    num_workers: int,
    seed: int,
    pin_memory: bool,
    persistent_workers: bool,
    prefetch_factor: int | None,
) -> tuple[DataLoader, EpochSampler]:
    """The run's training loader and the sampler to ``EpochSampler.start`` each epoch."""
    epoch_sampler = EpochSampler(sampler, batch_size)
    options: dict[str, Any] = {}
    if num_workers > 0:
        options["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            options["prefetch_factor"] = prefetch_factor
    loader = DataLoader(
        EpochDataset(dataset),
        batch_size=batch_size,
        sampler=epoch_sampler,
        num_workers=num_workers,
        drop_last=True,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )
    return loader, epoch_sampler
