"""Set-up of a training run: datasets, model, optimiser, loss, precision, data loader.

``build_run`` makes everything a run needs before a checkpoint is restored into it;
``wrap_for_training`` adds what must come after (DDP copies rank 0's weights when
it wraps the model, so the restored ones have to be in place; the loader starts its
workers). The loop itself is in ``atrous.engine.trainer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from atrous.data import SegmentationDataset, build_dataset, train_transforms
from atrous.engine.config import Config, ConfigError
from atrous.engine.distributed import DistInfo
from atrous.engine.loader import EpochSampler, build_train_loader
from atrous.engine.losses import SegmentationLoss
from atrous.engine.precision import autocast_dtype, describe_cpu_precision
from atrous.engine.prior import WEIGHTINGS, class_weights_from_data

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    """What a run folder holds (see ``atrous.engine.trainer``)."""

    out_dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.out_dir / "metrics.jsonl"

    @property
    def best(self) -> Path:
        return self.out_dir / "best"


@dataclass
class Run:
    """Everything a training run is made of, built once by ``build_run``."""

    config: Config
    dist_info: DistInfo
    device: torch.device
    paths: RunPaths
    train_set: SegmentationDataset
    val_set: SegmentationDataset | None  # None: data.val_split is null, nothing evaluated
    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: SegmentationLoss
    class_weights: list[float] | None
    amp_dtype: torch.dtype
    use_amp: bool
    scaler: torch.amp.GradScaler
    sampler: DistributedSampler
    iters_per_epoch: int

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.config.model.channels_last else torch.contiguous_format


def build_datasets(config: Config) -> tuple[SegmentationDataset, SegmentationDataset | None]:
    """The augmented training split and the plain validation split (None without one)."""
    d, seed = config.data, config.train.seed
    transform = train_transforms(
        crop_size=d.crop_size,
        scale_range=d.scale_range,
        hflip=d.hflip,
        color_jitter=d.color_jitter,
        ignore_index=config.loss.ignore_index,
    )
    train_set = build_dataset(d.format, d.root, split=d.train_split, seed=seed, transform=transform)
    if d.val_split is None:  # no validation split: train only, best/ is the last model
        return train_set, None
    val_set = build_dataset(d.format, d.root, split=d.val_split, seed=seed)
    return train_set, val_set


def build_model_for(config: Config, num_classes: int) -> nn.Module:
    """The registry model, or ``model.pretrained`` with its head swapped when the dataset
    has another class count (fine-tuning: every weight but the last classifier convs)."""
    from atrous.models import build_model, load_pretrained

    if config.model.pretrained:
        model = load_pretrained(config.model.pretrained, num_classes=num_classes)
        source = model.metadata.get("fine_tuned_from") or {}
        if source.get("model") == str(config.model.pretrained):
            logger.info(
                "model.pretrained=%s has %s classes, data.root=%s has %d: classifier "
                "re-initialised for %d classes, every other weight loaded",
                config.model.pretrained,
                model.metadata["fine_tuned_from"]["num_classes"],
                config.data.root,
                num_classes,
                num_classes,
            )
        return model
    model = build_model(config.model.name, num_classes=num_classes, **config.model.options)
    if config.model.backbone_weights:
        from atrous.models.backbone_weights import BackboneWeightsError, load_backbone_weights

        try:
            load_backbone_weights(model, config.model.backbone_weights)
        except BackboneWeightsError as exc:
            raise ConfigError(f"model.backbone_weights: {exc}") from None
        logger.info("backbone initialised from %s", config.model.backbone_weights)
    return model


def check_data(
    config: Config,
    train_set: SegmentationDataset,
    val_set: SegmentationDataset | None,
    out_dir: Path | None,
) -> None:
    """Every sample of the splits in use, read before the first step (see
    ``atrous.engine.precheck``): all problems at once, or the bad ones skipped."""
    from atrous.engine.precheck import check_splits

    splits = {"train": (train_set, config.data.train_split)}
    if val_set is not None:
        splits["val"] = (val_set, str(config.data.val_split))
    check_splits(
        splits, policy=config.data.bad_samples, out_dir=out_dir, root=str(config.data.root)
    )
    if len(train_set) == 0:
        raise ConfigError(f"{config.data.root} [{config.data.train_split}]: no usable sample")


def class_weights(
    config: Config, num_classes: int, train_set: SegmentationDataset | None = None
) -> list[float] | None:
    """``loss.class_weights`` as one float per class (computed from the masks if named:
    those of ``train_set`` when given, the checked and possibly filtered split)."""
    weights = config.loss.class_weights
    if weights is None:
        return None
    if weights in WEIGHTINGS:
        values = class_weights_from_data(
            str(weights),
            config.data.format,
            config.data.root,
            config.data.train_split,
            dataset=train_set,
        )
        return [float(w) for w in values]
    if isinstance(weights, str):
        raise ConfigError(
            f"loss.class_weights={weights!r}; expected 'median_frequency', "
            "'sqrt_median_frequency' or a list"
        )
    if len(weights) != num_classes:
        raise ConfigError(
            f"loss.class_weights has {len(weights)} values; data.root={config.data.root} has "
            f"{num_classes} classes"
        )
    return list(weights)


def parameter_groups(config: Config, model: nn.Module) -> list[dict[str, Any]]:
    """The head group (``lr_mult`` 1) and, when the model has a backbone, the backbone
    group (``lr_mult = optim.backbone_lr_mult``); the loop sets ``lr = lr_mult * lr(t)``."""
    backbone = getattr(model, "backbone", None)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    head = [p for p in trainable if id(p) not in backbone_ids]
    trunk = [p for p in trainable if id(p) in backbone_ids]
    groups = [{"params": head, "lr_mult": 1.0, "name": "head"}]
    if trunk:
        groups.append(
            {"params": trunk, "lr_mult": config.optim.backbone_lr_mult, "name": "backbone"}
        )
    return [group for group in groups if group["params"]]


def make_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    groups = parameter_groups(config, model)
    o = config.optim
    for group in groups:
        group["lr"] = o.lr * group["lr_mult"]
    if o.name == "sgd":
        return torch.optim.SGD(
            groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def freeze_backbone_norms(model: nn.Module) -> None:
    """Put the backbone's batch norms in eval mode (``model.backbone_bn: frozen``): their
    running statistics stay the ImageNet ones; call after every ``model.train()``."""
    backbone = getattr(model, "module", model)
    backbone = getattr(backbone, "backbone", None)
    if backbone is None:
        return
    for module in backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _iters_per_epoch(config: Config, sampler: DistributedSampler, train_size: int) -> int:
    d, world = config.data, sampler.num_replicas
    batches = len(sampler) // d.batch_size
    if batches == 0:
        raise ConfigError(
            f"data.batch_size={d.batch_size}: {d.root} [{d.train_split}] has {train_size} "
            f"training samples, no full batch of {d.batch_size} per process x {world} "
            f"process(es); lower data.batch_size to at most {train_size // world}"
        )
    return min(batches, config.schedule.iters_per_epoch or batches)


def build_run(config: Config, paths: RunPaths, dist_info: DistInfo, device: torch.device) -> Run:
    """Datasets, model on ``device``, optimiser, loss and precision; no checkpoint yet.

    The global RNGs are seeded before anything is built, in a fixed order, so the
    initial weights are a function of ``train.seed`` alone.
    """
    import random

    import numpy as np

    seed = config.train.seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    train_set, val_set = build_datasets(config)
    check_data(config, train_set, val_set, paths.out_dir if dist_info.is_main else None)
    sampler = DistributedSampler(
        train_set,
        num_replicas=dist_info.world_size,
        rank=dist_info.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    iters_per_epoch = _iters_per_epoch(config, sampler, len(train_set))
    model = build_model_for(config, train_set.num_classes)
    model.class_names = list(train_set.class_names)  # type: ignore[assignment]
    model.palette = list(train_set.palette)  # type: ignore[assignment]
    if config.model.sync_bn and dist_info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if config.model.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = make_optimizer(config, model)
    weights = class_weights(config, train_set.num_classes, train_set)
    criterion = SegmentationLoss(
        ignore_index=config.loss.ignore_index,
        class_weights=weights,
        ohem_thresh=config.loss.ohem_thresh,
        ohem_min_kept=config.loss.ohem_min_kept,
        aux_weight=config.loss.aux_weight,
    ).to(device)
    amp_dtype, scaler = _precision(config, device, dist_info)
    return Run(
        config=config,
        dist_info=dist_info,
        device=device,
        paths=paths,
        train_set=train_set,
        val_set=val_set,
        model=model,
        optimizer=optimizer,
        criterion=criterion,
        class_weights=weights,
        amp_dtype=amp_dtype or torch.float32,
        use_amp=amp_dtype is not None,
        scaler=scaler,
        sampler=sampler,
        iters_per_epoch=iters_per_epoch,
    )


def _precision(
    config: Config, device: torch.device, dist_info: DistInfo
) -> tuple[torch.dtype | None, torch.amp.GradScaler]:
    """The autocast dtype (None: float32) and the gradient scaler (enabled for fp16 only)."""
    t = config.train
    if device.type == "cpu" and dist_info.is_main:
        line = describe_cpu_precision(t.amp, t.cpu_amp)
        if line is not None:
            logger.info("%s", line)
    amp_dtype = autocast_dtype(device, t.amp, t.cpu_amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype is not None and t.amp == "fp16")
    return amp_dtype, scaler


def wrap_for_training(run: Run) -> tuple[nn.Module, DataLoader, EpochSampler]:
    """The model the steps call (DDP-wrapped under torchrun) and the training loader."""
    config, model = run.config, run.model
    train_model: nn.Module = model
    if run.dist_info.enabled:
        has_aux = getattr(model, "aux_classifier", None) is not None
        train_model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=has_aux and config.loss.aux_weight == 0,
        )
    d = config.data
    loader, epoch_sampler = build_train_loader(
        run.train_set,
        run.sampler,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        seed=config.train.seed,
        pin_memory=run.device.type == "cuda",
        persistent_workers=d.persistent_workers,
        prefetch_factor=d.prefetch_factor,
    )
    return train_model, loader, epoch_sampler


def best_metadata(config: Config, epoch: int, val_miou: float | None) -> dict[str, Any]:
    """What ``best/config.json`` records about the run that wrote it."""
    from atrous.engine.config import config_to_dict

    return {
        "epoch": epoch,
        "val_miou": val_miou,
        "dataset": config.data.format,
        "config": config_to_dict(config),
    }
