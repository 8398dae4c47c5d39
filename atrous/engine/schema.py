"""The training configuration's types: one frozen dataclass per section, and its error.

``atrous.engine.config`` reads and writes them (YAML, dotted overrides) and
``atrous.engine.validate`` checks their values; both import this module, and it
imports neither, so the three form no circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ModelConfig:
    """Which model: ``build_model(name, num_classes=<dataset's>, **options)``.

    ``pretrained`` is a folder written by ``save_pretrained`` (or a shipped model name)
    to start from; its architecture is used and ``name``/``options`` are ignored.

    ``backbone_weights`` initialises only the backbone from ImageNet weights (see
    ``atrous.models.backbone_weights``): ``efficientnet-lite0`` (an installed weights
    package, checked by SHA-256), a torchvision weights name such as
    ``ResNet18_Weights.IMAGENET1K_V1`` (downloaded as torchvision does), or a path to a
    ``.safetensors``/``.pth`` state dict. The head starts from random weights.

    ``backbone_bn``: ``"train"`` updates the backbone's batch-norm statistics as usual;
    ``"frozen"`` keeps the ImageNet running statistics (the backbone's norms stay in
    eval mode while training; their scale and shift still learn), the usual choice for
    very small batches.
    """

    name: str = "dilated_net"
    options: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    backbone_weights: str | None = None
    backbone_bn: Literal["train", "frozen"] = "train"
    sync_bn: bool = False
    channels_last: bool = False


@dataclass(frozen=True)
class DataConfig:
    """Dataset location, augmentation and loading; ``crop_size`` is ``[height, width]``.

    ``persistent_workers`` (only meaningful with ``num_workers > 0``) keeps the loader
    processes alive from one epoch to the next instead of starting them again each
    epoch; the data stay a pure function of ``(seed, epoch, index)`` either way.
    ``prefetch_factor`` is batches loaded ahead per worker (PyTorch's default, 2, when
    ``None``; ignored without workers). Batches are pinned on CUDA.

    ``train_split`` / ``val_split`` name a split (``train``) or, for CamVid, a split
    expression by drive or time (see ``atrous.data.splits``): ``train+val-drive:0006R0``
    with ``drive:0006R0`` validates on a street the model never saw. They are checked
    when the config is loaded (syntax always; drives, emptiness and train/val overlap
    when ``root`` exists). ``allow_split_overlap`` permits frames in both, on purpose:
    a final model trained on every frame (``train+val``), whose val score is then a
    training score. ``val_split: null`` trains without a validation split: nothing is
    evaluated and ``best/`` is the last model.

    ``bad_samples``: every sample of the splits in use is read before the first step
    (decode, sizes, label values; known-good files are cached by path, size and time).
    ``stop`` refuses to train and lists every bad file; ``skip`` trains without them and
    lists them in ``<run>/skipped_samples.txt``. A file that goes bad during the run
    ends it with the last step checkpointed, to ``--resume`` once the file is fixed.
    """

    format: Literal["folder", "camvid", "voc", "cityscapes"] = "folder"
    root: str = "data/synthetic"
    train_split: str = "train"
    val_split: str | None = "val"
    allow_split_overlap: bool = False
    crop_size: tuple[int, int] = (64, 64)
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    color_jitter: float = 0.0
    batch_size: int = 8
    val_batch_size: int = 1
    num_workers: int = 0
    persistent_workers: bool = True
    prefetch_factor: int | None = None
    max_val_samples: int | None = None
    bad_samples: Literal["stop", "skip"] = "stop"


@dataclass(frozen=True)
class OptimConfig:
    """SGD with momentum (DeepLab) or AdamW.

    ``backbone_lr_mult`` scales the learning rate of the backbone's parameters (a
    separate parameter group): below 1 when the backbone starts from ImageNet weights,
    so fine-tuning moves them less than the randomly initialised head (DeepLab's and
    mmsegmentation's usual 0.1). The warm-up and poly decay apply to both groups.
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    backbone_lr_mult: float = 1.0
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class ScheduleConfig:
    """Poly decay ``(1 - t/T) ** power`` after a linear warm-up from ``warmup_ratio * lr``.

    ``iters_per_epoch`` caps an epoch (for quick runs); ``None`` = the whole dataset.

    ``max_minutes`` is an optional wall-clock budget for this process's training (from
    the first step, evaluations included): when spent, the run finishes the step, saves
    a checkpoint, evaluates and returns with status ``"time_budget"``. Alone it is only
    that stop: the poly decay still runs over ``epochs`` and a ``--resume`` gets a
    fresh budget. With ``fit_to_budget: true`` the budget shapes the schedule: from
    timed steps the run plans how many of the ``epochs`` fit (never more), re-plans at
    every epoch's end, and ends with a decayed learning rate inside the budget; the
    plan and the time spent are checkpointed, so a ``--resume`` continues both (see
    ``atrous.engine.budget``).
    """

    epochs: int = 10
    iters_per_epoch: int | None = None
    warmup_iters: int = 0
    warmup_ratio: float = 0.1
    power: float = 0.9
    max_minutes: float | None = None
    fit_to_budget: bool = False


@dataclass(frozen=True)
class LossConfig:
    """Cross-entropy with the ignore index; optional class weights, OHEM, auxiliary loss.

    ``class_weights``: ``None``, ``"median_frequency"`` (SegNet's balancing, computed
    from the training masks), ``"sqrt_median_frequency"`` (its square root: a softer
    balance that over-predicts rare classes less) or an explicit list. ``ohem_thresh``: keep only pixels whose
    target probability is below it (at least ``ohem_min_kept``), as in PSPNet/mmseg.
    """

    ignore_index: int = 255
    class_weights: str | list[float] | None = None
    ohem_thresh: float | None = None
    ohem_min_kept: int = 10000
    aux_weight: float = 0.4


@dataclass(frozen=True)
class TrainConfig:
    """Run settings. ``amp``: autocast on CUDA (fp16 or bf16). CPU runs stay float32
    unless ``cpu_amp`` is true: then ``amp=bf16`` autocasts on CPUs with native bfloat16
    (AVX512-BF16 or AMX; ~2.2x faster training there) and is ignored, with a log line,
    elsewhere (emulated bfloat16 is slower than float32).

    ``checkpoint_every``: write the full checkpoint (model + optimiser, ~150 MB fsync'ed
    for a ResNet-50 DeepLab) after every this many epochs; the final epoch and a SIGTERM
    always write one. ``--resume`` after a SIGKILL restarts from the newest one, so a
    larger value trades redone epochs for less I/O. ``keep_checkpoints`` newest are kept.
    """

    seed: int = 0
    device: str = "auto"
    amp: Literal["none", "bf16", "fp16"] = "bf16"
    cpu_amp: bool = False
    grad_clip: float | None = None
    log_every: int = 10
    tensorboard: bool = False
    keep_checkpoints: int = 2
    checkpoint_every: int = 1


@dataclass(frozen=True)
class EvalConfig:
    """Validation during training and ``atrous eval``."""

    every: int = 1
    mode: Literal["whole", "slide", "ms_flip"] = "whole"
    window: int = 512
    overlap: float = 0.33
    scales: tuple[float, ...] = (0.75, 1.0, 1.25)
    boundary_tolerance: int = 2


@dataclass(frozen=True)
class Config:
    """Everything a run needs; written resolved to ``<out>/config.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A config key or value is wrong; the message lists what is valid."""


KEY_HELP: dict[str, str] = {
    "model.name": "registry name of the model (`atrous models` lists them)",
    "model.options": "keyword arguments of the model's builder (backbone, output_stride, dilation_schedule, ...)",
    "model.pretrained": "start from a saved model folder or shipped name; its architecture replaces name/options",
    "model.backbone_weights": "ImageNet weights for the backbone: efficientnet-lite0/1/2, a torchvision weights name, timm, or a file",
    "model.backbone_bn": "train: update the backbone's batch-norm statistics; frozen: keep the pretrained ones",
    "model.sync_bn": "synchronise batch norm across processes under torchrun",
    "model.channels_last": "NHWC memory format (faster convolutions on CPUs with AMX/AVX-512 and on GPUs)",
    "data.format": "dataset layout: folder, camvid, voc or cityscapes",
    "data.root": "dataset folder",
    "data.train_split": "split to train on; CamVid also takes expressions such as train+val-drive:0006R0",
    "data.val_split": "split to validate on (null: no validation, best/ is the last model)",
    "data.allow_split_overlap": "permit frames in both splits on purpose (a final model trained on every frame)",
    "data.crop_size": "training crop [height, width], taken after rescaling (padded when the image is smaller)",
    "data.scale_range": "random rescale range before cropping",
    "data.hflip": "random horizontal flips",
    "data.color_jitter": "strength of random brightness/contrast/saturation changes (0 = off)",
    "data.batch_size": "training images per step and process",
    "data.val_batch_size": "images per validation step",
    "data.num_workers": "data-loading processes (0 = in the training process)",
    "data.persistent_workers": "keep loader processes alive between epochs",
    "data.prefetch_factor": "batches loaded ahead per worker (PyTorch's default when null)",
    "data.max_val_samples": "validate on only the first N samples (quick runs)",
    "data.bad_samples": "stop: refuse to train on unreadable samples, listing them; skip: train without them",
    "optim.name": "optimiser: sgd (with momentum) or adamw",
    "optim.lr": "peak learning rate, reached after the warm-up and decayed by the poly schedule",
    "optim.backbone_lr_mult": "the backbone's learning rate as a multiple of optim.lr (below 1 when fine-tuning)",
    "optim.momentum": "SGD momentum",
    "optim.nesterov": "Nesterov momentum for SGD",
    "optim.weight_decay": "L2 weight decay (decoupled for AdamW)",
    "optim.betas": "AdamW's moment coefficients",
    "schedule.epochs": "training epochs (the most fit_to_budget may plan)",
    "schedule.iters_per_epoch": "cap on steps per epoch (null: the whole dataset)",
    "schedule.warmup_iters": "steps of linear warm-up from warmup_ratio * lr",
    "schedule.warmup_ratio": "learning rate at the first step, as a fraction of optim.lr",
    "schedule.power": "exponent of the poly decay (1 - t/T) ** power",
    "schedule.max_minutes": "wall-clock budget: checkpoint, evaluate and stop when spent",
    "schedule.fit_to_budget": "plan the epochs that fit max_minutes from timed steps, so the decay ends in time",
    "loss.ignore_index": "label value excluded from the loss and the metrics (void)",
    "loss.class_weights": "null, median_frequency, sqrt_median_frequency or one weight per class",
    "loss.ohem_thresh": "online hard example mining: keep pixels whose target probability is below this",
    "loss.ohem_min_kept": "OHEM keeps at least this many pixels",
    "loss.aux_weight": "weight of the auxiliary head's loss (models with aux=true)",
    "train.seed": "seed of the weights, the data order and the augmentation",
    "train.device": "auto, cpu, cuda or cuda:N",
    "train.amp": "mixed precision on GPUs: none, bf16 or fp16",
    "train.cpu_amp": "bf16 autocast on CPUs with native bf16 (AMX/AVX512-BF16); ignored, with a log line, elsewhere",
    "train.grad_clip": "clip the gradient norm to this (null: no clipping)",
    "train.log_every": "steps between loss readings in the log",
    "train.tensorboard": "also write TensorBoard event files",
    "train.keep_checkpoints": "newest checkpoints kept in <run>/checkpoints",
    "train.checkpoint_every": "epochs between full checkpoints (the last epoch and a SIGTERM always write one)",
    "eval.every": "epochs between validations (the last epoch always validates)",
    "eval.mode": "whole image, slide (windows) or ms_flip (multi-scale + flip)",
    "eval.window": "window side for mode slide",
    "eval.overlap": "window overlap for mode slide",
    "eval.scales": "scales for mode ms_flip",
    "eval.boundary_tolerance": "pixels of tolerance for the boundary F-score",
}
"""One line on what each key does: ``atrous train --list-keys`` and the reference page print it."""

KEY_EXAMPLES: dict[str, str] = {
    "model.name": "--set model.name=deeplabv3plus",
    "model.options": "--set 'model.options={backbone: efficientnet_lite0, output_stride: 16}'",
    "model.backbone_weights": "--backbone-weights efficientnet-lite0",
    "data.root": "--data.root ../shared/datasets/camvid",
    "data.train_split": "--set data.train_split=train+val-drive:0006R0",
    "data.crop_size": "--set data.crop_size=[360,480]",
    "data.batch_size": "--set data.batch_size=16",
    "optim.lr": "--set optim.lr=0.002",
    "schedule.epochs": "--set schedule.epochs=80",
    "schedule.max_minutes": "--set schedule.max_minutes=90 --set schedule.fit_to_budget=true",
    "train.cpu_amp": "--set train.cpu_amp=true",
    "loss.class_weights": "--set loss.class_weights=sqrt_median_frequency",
}
"""Command-line examples for the keys people change most."""
