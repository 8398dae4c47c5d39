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
