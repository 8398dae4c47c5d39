"""Training configuration: frozen dataclasses, YAML files, dotted command-line overrides.

YAML is only the serialisation of :class:`Config`; every field has a type and a
default, so a typo (``optim.lr=O.01``, ``optim.learning_rate=...``) is an error that
lists the valid choices instead of a silently ignored key::

    config = load_config("configs/synthetic_quick.yaml", ["optim.lr=0.02", "schedule.epochs=3"])
    save_config(config, "runs/x/config.yaml")   # the resolved config, to reproduce the run

Sections: ``model`` (registry name + builder options, optional pretrained folder),
``data``, ``optim``, ``schedule``, ``loss``, ``train`` (seed, precision, device, ...)
and ``eval``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass(frozen=True)
class ModelConfig:
    """Which model: ``build_model(name, num_classes=<dataset's>, **options)``.

    ``pretrained`` is a folder written by ``save_pretrained`` (or a shipped model name)
    to start from; its architecture is used and ``name``/``options`` are ignored.

    ``backbone_weights`` initialises only the backbone from ImageNet weights (see
    :mod:`atrous.models.backbone_weights`): ``efficientnet-lite0`` (an installed weights
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
    expression by drive or time (see :mod:`atrous.data.splits`): ``train+val-drive:0006R0``
    with ``drive:0006R0`` validates on a street the model never saw. They are checked
    when the config is loaded (syntax always; drives, emptiness and train/val overlap
    when ``root`` exists). ``allow_split_overlap`` permits frames in both, on purpose:
    a final model trained on every frame (``train+val``), whose val score is then a
    training score. ``val_split: null`` trains without a validation split: nothing is
    evaluated and ``best/`` is the last model.
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
    :mod:`atrous.engine.budget`).
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


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a field annotation, converting YAML lists to tuples."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} is not {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list ({_type_name(annotation)}), got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)}")
        item_types = [args[0]] * len(value) if (origin is list or args[-1] is Ellipsis) else args
        items = [_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {annotation!r}")


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "")


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[f'{where}{k}' for k in unknown]}; valid keys in "
            f"{where.rstrip('.') or 'the top level'}: {sorted(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        annotation = hints[name]
        if dataclasses.is_dataclass(annotation):
            kwargs[name] = _build(annotation, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, annotation, f"{where}{name}")
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain dict (tuples as lists) for YAML/JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.02"`` -> ``(["optim", "lr"], 0.02)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else ""


def config_from_dict(values: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a :class:`Config` from a nested dict plus dotted overrides, type-checked."""
    merged = dict(values or {})
    for text in overrides:
        keys, value = parse_override(text)
        node = merged
        for key in keys[:-1]:
            child = node.get(key)
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = value
    config = _build(Config, merged, "")
    _check_splits(config.data)
    from atrous.engine.validate import validate_config

    validate_config(config)
    return config


def _check_splits(data: DataConfig) -> None:
    """Validate CamVid split expressions at the door, not an hour later in the trainer."""
    if data.format != "camvid":
        return
    from atrous.data.splits import SplitError, SplitOverlapError, parse_split

    for key in ("train_split", "val_split"):
        if getattr(data, key) is None:
            continue
        try:
            parse_split(getattr(data, key))
        except SplitError as exc:
            raise ConfigError(f"data.{key}: {exc}") from None
    if not Path(data.root).is_dir() or data.val_split is None:
        return  # checked again when the datasets are built, with the file named
    from atrous.data import check_split_pair

    try:
        check_split_pair(
            data.format,
            data.root,
            data.train_split,
            data.val_split,
            allow_overlap=data.allow_split_overlap,
        )
    except SplitError as exc:
        how = ": data.allow_split_overlap=true" if isinstance(exc, SplitOverlapError) else ""
        raise ConfigError(
            f"data.train_split={data.train_split!r}, data.val_split={data.val_split!r}: {exc}{how}"
        ) from None


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Read a YAML config (or start from defaults when ``path`` is None) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        values = loaded or {}
    try:
        return config_from_dict(values, overrides)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def replace(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A copy of ``config`` with dotted overrides applied (type-checked)."""
    return config_from_dict(config_to_dict(config), overrides)


def config_keys() -> list[tuple[str, str, Any]]:
    """Every dotted key ``--set`` accepts, with its type and default, read from the
    dataclasses above so the list cannot drift from what :func:`load_config` checks.

    ``model.options.*`` keys are the chosen builder's keyword arguments (see
    ``help(atrous.models.<name>)``), so they are listed as one ``model.options`` entry.
    """
    keys: list[tuple[str, str, Any]] = []
    for section in dataclasses.fields(Config):
        section_default = section.default_factory()  # type: ignore[misc]
        for item in dataclasses.fields(type(section_default)):
            value = getattr(section_default, item.name)
            if isinstance(value, tuple):
                value = list(value)
            keys.append((f"{section.name}.{item.name}", _type_name(item.type), value))
    return keys
