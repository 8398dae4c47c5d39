"""Every check a config can pass without its dataset, run when it is loaded.

``atrous.engine.config.load_config`` has already checked types and key names; this
checks values: ranges, combinations (``fit_to_budget`` needs ``max_minutes``) and the
model. The model options are checked against the builder's keyword-only signature and
then by building the model on PyTorch's ``meta`` device (shapes only, no memory, no
weights; ~0.2 s for a ResNet-50 DeepLab), so ``model.options.output_stride=7`` fails
when the config is loaded, naming the key, not when training starts. What needs the
data (batch size against the training set, the class count of ``model.pretrained``,
a list of class weights) is checked by ``atrous.engine.build`` before the model is
built.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from atrous.engine.schema import Config, ConfigError

#: Stands in for the dataset's class count when a model is built to check its options.
_PLACEHOLDER_CLASSES = 2


def _at_least(value: float | None, low: float, key: str, *, strict: bool = False) -> None:
    if value is None:
        return
    if value < low or (strict and value == low):
        raise ConfigError(f"{key}={value}; expected {'>' if strict else '>='} {low}")


def _check_numbers(config: Config) -> None:
    d, o, s, t, e, loss = (
        config.data, config.optim, config.schedule, config.train, config.eval, config.loss
    )  # fmt: skip
    for key in ("checkpoint_every", "keep_checkpoints", "log_every"):
        _at_least(getattr(t, key), 1, f"train.{key}")
    if s.max_minutes is not None and s.max_minutes <= 0:
        raise ConfigError(f"schedule.max_minutes={s.max_minutes}; expected > 0 or null")
    if s.fit_to_budget and s.max_minutes is None:
        raise ConfigError(
            "schedule.fit_to_budget=true needs schedule.max_minutes (the budget to fit)"
        )
    for key, low in (("epochs", 1), ("iters_per_epoch", 1), ("warmup_iters", 0)):
        _at_least(getattr(s, key), low, f"schedule.{key}")
    _at_least(s.power, 0, "schedule.power", strict=True)
    for key, low in (("batch_size", 1), ("val_batch_size", 1), ("num_workers", 0)):
        _at_least(getattr(d, key), low, f"data.{key}")
    _at_least(d.prefetch_factor, 1, "data.prefetch_factor")
    _at_least(d.max_val_samples, 1, "data.max_val_samples")
    if min(d.crop_size) < 1:
        raise ConfigError(f"data.crop_size={list(d.crop_size)}; expected positive [height, width]")
    if not 0 < d.scale_range[0] <= d.scale_range[1]:
        raise ConfigError(f"data.scale_range={list(d.scale_range)}; expected 0 < low <= high")
    _at_least(o.lr, 0, "optim.lr", strict=True)
    _at_least(o.backbone_lr_mult, 0, "optim.backbone_lr_mult")
    _at_least(o.weight_decay, 0, "optim.weight_decay")
    _at_least(e.every, 1, "eval.every")
    _at_least(e.window, 1, "eval.window")
    if not 0 <= e.overlap < 1:
        raise ConfigError(f"eval.overlap={e.overlap}; expected 0 <= overlap < 1")
    if any(scale <= 0 for scale in e.scales):
        raise ConfigError(f"eval.scales={list(e.scales)}; expected positive scales")
    _at_least(loss.aux_weight, 0, "loss.aux_weight")
    if loss.ohem_thresh is not None and not 0 < loss.ohem_thresh <= 1:
        raise ConfigError(f"loss.ohem_thresh={loss.ohem_thresh}; expected 0 < thresh <= 1")


def _check_class_weights(config: Config) -> None:
    from atrous.engine.prior import WEIGHTINGS

    weights = config.loss.class_weights
    if isinstance(weights, str) and weights not in WEIGHTINGS:
        raise ConfigError(
            f"loss.class_weights={weights!r}; expected one of {sorted(WEIGHTINGS)} or a list"
        )
    if isinstance(weights, list) and any(w < 0 for w in weights):
        raise ConfigError(f"loss.class_weights={weights}; expected weights >= 0")


def _check_device(name: str) -> None:
    import torch

    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"train.device={name!r}; expected auto, cpu, cuda or cuda:N") from None


def _check_pretrained(name_or_dir: str) -> None:
    """The folder (or shipped name) exists and its config.json reads; weights load later."""
    from atrous.models.pretrained import SHIPPED_DIR, read_config, shipped_models

    folder = Path(name_or_dir)
    if not folder.is_dir():
        if name_or_dir not in shipped_models():
            raise ConfigError(
                f"model.pretrained={name_or_dir!r}: neither a folder nor a shipped model "
                f"(shipped: {shipped_models() or 'none'})"
            )
        folder = SHIPPED_DIR / name_or_dir
    try:
        read_config(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"model.pretrained={name_or_dir!r}: {exc}") from None


def _offending_key(options: dict[str, Any], message: str) -> str:
    """``model.options.<key>=<value>`` for the option an error message names, if one does."""
    named = [key for key in options if key in message]
    if len(named) == 1:
        return f"model.options.{named[0]}={options[named[0]]!r}"
    return f"model.options={options!r}"


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """``build_model(name, **options)`` would work: known name, known keys, good values.

    Raises:
        ConfigError: naming ``model.name`` or the offending ``model.options`` key.
    """
    import torch

    from atrous.models import build_model, list_models
    from atrous.models.registry import MODELS

    if name not in MODELS:
        raise ConfigError(f"model.name={name!r}; known models: {', '.join(list_models())}")
    parameters = inspect.signature(MODELS[name]).parameters
    if "num_classes" in options:
        raise ConfigError("model.options.num_classes: set from the dataset's classes; remove it")
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        valid = sorted(p for p in parameters if p != "num_classes")
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(
                f"unknown key(s) {[f'model.options.{k}' for k in unknown]}; {name} takes: {valid}"
            )
    try:
        with torch.device("meta"):
            build_model(name, num_classes=_PLACEHOLDER_CLASSES, **options)
    except (ValueError, TypeError, KeyError, AssertionError, RuntimeError, IndexError) as exc:
        raise ConfigError(
            f"{_offending_key(options, str(exc))}: {name} rejects it: {exc}"
        ) from None


def validate_config(config: Config) -> None:
    """Check every value of ``config`` that can be checked without the dataset.

    Raises:
        ConfigError: the first problem, naming the key, the value and what is expected.
    """
    _check_numbers(config)
    _check_class_weights(config)
    _check_device(config.train.device)
    if config.model.pretrained:
        _check_pretrained(config.model.pretrained)
        if config.model.backbone_weights:
            raise ConfigError(
                "model.backbone_weights and model.pretrained both set: a pretrained folder "
                "already holds its backbone's weights; keep one"
            )
    else:
        check_model_options(config.model.name, dict(config.model.options))
    if config.model.backbone_weights:
        _check_backbone_weights(config.model.backbone_weights)


def _check_backbone_weights(spec: str) -> None:
    """The packaged weights are installed and intact, or the file exists (shapes later)."""
    from atrous.models.backbone_weights import (
        PACKAGED,
        BackboneWeightsError,
        packaged_weights_path,
    )

    try:
        if spec in PACKAGED:
            packaged_weights_path(spec)
        elif spec != "timm" and "_Weights." not in spec and not Path(spec).is_file():
            raise BackboneWeightsError(
                f"{spec!r} is neither packaged weights ({', '.join(PACKAGED)}), a torchvision "
                "weights name (ResNet18_Weights.IMAGENET1K_V1), 'timm' (for a timm:<name> "
                "backbone) nor a file"
            )
    except BackboneWeightsError as exc:
        raise ConfigError(f"model.backbone_weights: {exc}") from None
