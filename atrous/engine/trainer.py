"""The training loop: ``train(config, out_dir)`` on CPU, one GPU or many via torchrun.

What a run folder holds::

    <out>/config.yaml              the resolved config (reproduce with --config this file)
    <out>/metrics.jsonl            one JSON line per epoch (loss, lr, img/s, val metrics)
    <out>/checkpoints/*.json|.safetensors   the last ``train.keep_checkpoints`` checkpoints,
                                   written every ``train.checkpoint_every`` epochs
    <out>/best/                    best model by val mIoU, a ``save_pretrained`` folder

Exact resume. Data order (``DistributedSampler`` seeded with ``seed + epoch``) and every
sample's augmentation (seeded from ``(seed, epoch, index)``) are pure functions of the
position in training, also with persistent loader workers (the epoch travels with each
index, see :mod:`atrous.engine.loader`), and a checkpoint stores the model, optimiser, RNG states and that
position. ``train(..., resume=True)`` restores the newest complete checkpoint and skips
the batches it already used, so on CPU a run killed at any moment and resumed ends with
bitwise the same weights as an uninterrupted one. SIGTERM finishes the current step,
saves a mid-epoch checkpoint and returns with ``status == "interrupted"``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from atrous.data import build_dataset, train_transforms
from atrous.engine.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from atrous.engine.config import Config, ConfigError, config_to_dict, save_config
from atrous.engine.distributed import DistInfo, any_true, barrier, cleanup, init_distributed
from atrous.engine.evaluate import evaluate
from atrous.engine.loader import build_train_loader
from atrous.engine.losses import SegmentationLoss, poly_lr_factor
from atrous.engine.prior import WEIGHTINGS, class_weights_from_data

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        status: ``"completed"``, ``"interrupted"`` (SIGTERM) or ``"time_budget"``
            (``schedule.max_minutes`` spent); both save a checkpoint to ``resume`` from.
        history: one dict per epoch, as in ``metrics.jsonl``; after a time budget the
            last one may be a partial epoch (``"partial": True``) with the final
            evaluation.
        best_miou: best validation mIoU (NaN if never evaluated).
        out_dir, best_dir, last_checkpoint, metrics_path: where things were written.
        model: the trained model (unwrapped from DDP) as it is at the end of the run.
    """

    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    best_miou: float = math.nan
    out_dir: Path = Path()
    best_dir: Path | None = None
    last_checkpoint: Path | None = None
    metrics_path: Path | None = None
    model: nn.Module | None = None


def _resolve_device(name: str, dist_info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    return device


def _build_model(config: Config, num_classes: int) -> nn.Module:
    from atrous.models import build_model, load_pretrained

    if config.model.pretrained:
        model = load_pretrained(config.model.pretrained)
        if model.num_classes != num_classes:
            raise ValueError(
                f"pretrained model {config.model.pretrained} has {model.num_classes} classes, "
                f"the dataset has {num_classes}; expected the same number"
            )
        return model
    return build_model(config.model.name, num_classes=num_classes, **config.model.options)


def _class_weights(config: Config, num_classes: int) -> list[float] | None:
    weights = config.loss.class_weights
    if weights is None:
        return None
    if weights in WEIGHTINGS:
        values = class_weights_from_data(
            str(weights), config.data.format, config.data.root, config.data.train_split
        )
        return [float(w) for w in values]
    if isinstance(weights, str):
        raise ValueError(
            f"loss.class_weights={weights!r}; expected 'median_frequency', "
            "'sqrt_median_frequency' or a list"
        )
    if len(weights) != num_classes:
        raise ValueError(f"loss.class_weights has {len(weights)} values; expected {num_classes}")
    return list(weights)


def _make_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
        )
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


class _StopFlag:
    """Set by SIGTERM; the loop checks it between steps."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: object) -> None:
            logger.warning("SIGTERM received: finishing this step, saving, exiting")
            self.requested = True

        previous = signal.signal(signal.SIGTERM, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)


def _save_best(model: nn.Module, best_dir: Path, metadata: dict[str, Any]) -> None:
    """Replace ``best_dir`` with a fresh ``save_pretrained`` folder, never leaving it empty."""
    from atrous.models import save_pretrained

    tmp = best_dir.with_name(best_dir.name + ".tmp")
    old = best_dir.with_name(best_dir.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    save_pretrained(model, tmp, metadata=metadata)  # type: ignore[arg-type]
    if best_dir.exists():
        shutil.rmtree(old, ignore_errors=True)
        best_dir.rename(old)
    tmp.rename(best_dir)
    shutil.rmtree(old, ignore_errors=True)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so autocast pays.

    On other CPUs bfloat16 is emulated and slower than float32.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(device: torch.device, amp: str, cpu_amp: bool = False) -> torch.dtype | None:
    """The autocast dtype ``train.amp`` asks for on ``device``, or ``None`` for float32.

    CUDA: float16 or bfloat16. CPU: bfloat16 only when ``cpu_amp`` opts in and the CPU
    has native bfloat16 (measured on a 2-core Sapphire Rapids: a DeepLabV3+ ResNet-18
    training step 2.2x faster than float32, both channels_last; see
    benchmarks/results/camvid.md). Opt-in because it changes results of CPU runs.
    """
    if amp == "none":
        return None
    if device.type == "cuda":
        return torch.float16 if amp == "fp16" else torch.bfloat16
    if device.type == "cpu" and cpu_amp and amp == "bf16" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def _loss_read_interval(device: torch.device, log_every: int) -> int:
    """Steps between reads of the loss on the host (NaN check, progress bar, TensorBoard).

    A read is free on CPU but waits for CUDA's queue to drain, so on CUDA the loss is
    summed on the device and read every ``train.log_every`` steps and at each epoch's end.
    A NaN is then caught up to ``log_every`` steps late, always before any checkpoint.
    """
    return 1 if device.type == "cpu" else log_every


def _open_tensorboard(enabled: bool, out_dir: Path) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("train.tensorboard=true but tensorboard is not installed; skipping it")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def train(
    config: Config, out_dir: str | Path, *, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train ``config.model`` on ``config.data``; see the module docstring for the outputs.

    Args:
        config: the run's configuration (see :mod:`atrous.engine.config`).
        out_dir: run folder; created if needed.
        resume: continue from the newest complete checkpoint in ``out_dir`` (starts
            fresh, with a log line, when there is none).
        progress: show a tqdm bar (rank 0 only).

    Raises:
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    out_dir = Path(out_dir)
    requested = config.train.device
    dist_info = init_distributed(
        "cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu"
    )
    try:
        return _train(config, out_dir, dist_info, resume=resume, progress=progress)
    finally:
        cleanup(dist_info)


def _train(
    config: Config, out_dir: Path, dist_info: DistInfo, *, resume: bool, progress: bool
) -> TrainResult:
    import random

    import numpy as np

    device = _resolve_device(config.train.device, dist_info)
    main = dist_info.is_main
    seed = config.train.seed
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    ckpt_dir = out_dir / "checkpoints"
    metrics_path = out_dir / "metrics.jsonl"
    best_dir = out_dir / "best"
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")

    d = config.data
    train_set = build_dataset(
        d.format,
        d.root,
        split=d.train_split,
        seed=seed,
        transform=train_transforms(
            crop_size=d.crop_size,
            scale_range=d.scale_range,
            hflip=d.hflip,
            color_jitter=d.color_jitter,
            ignore_index=config.loss.ignore_index,
        ),
    )
    val_set = build_dataset(d.format, d.root, split=d.val_split, seed=seed)
    num_classes = train_set.num_classes

    model = _build_model(config, num_classes)
    model.class_names = list(train_set.class_names)  # type: ignore[assignment]
    model.palette = list(train_set.palette)  # type: ignore[assignment]
    if config.model.sync_bn and dist_info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    memory_format = torch.channels_last if config.model.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = _make_optimizer(config, model)
    weights = _class_weights(config, num_classes)
    criterion = SegmentationLoss(
        ignore_index=config.loss.ignore_index,
        class_weights=weights,
        ohem_thresh=config.loss.ohem_thresh,
        ohem_min_kept=config.loss.ohem_min_kept,
        aux_weight=config.loss.aux_weight,
    ).to(device)

    amp_dtype = autocast_dtype(device, config.train.amp, config.train.cpu_amp)
    use_amp = amp_dtype is not None
    if main and device.type == "cpu" and config.train.cpu_amp and not use_amp:
        logger.info(
            "train.cpu_amp with train.amp=%s ignored on this CPU (%s); training in float32",
            config.train.amp,
            "fp16 autocast is CUDA-only"
            if config.train.amp == "fp16"
            else "no native bfloat16: needs AVX512-BF16 or AMX",
        )
    amp_dtype = amp_dtype or torch.float32
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and config.train.amp == "fp16")

    sampler = DistributedSampler(
        train_set,
        num_replicas=dist_info.world_size,
        rank=dist_info.rank,
        shuffle=True,
        seed=seed,
        drop_last=True,
    )
    batches = len(sampler) // d.batch_size
    if batches == 0:
        raise ValueError(
            f"{d.root}: {len(train_set)} training samples give no full batch of "
            f"{d.batch_size} per process x {dist_info.world_size} processes; "
            "lower data.batch_size"
        )
    for name in ("checkpoint_every", "keep_checkpoints", "log_every"):
        if getattr(config.train, name) < 1:
            raise ConfigError(f"train.{name}={getattr(config.train, name)}; expected >= 1")
    if config.schedule.max_minutes is not None and config.schedule.max_minutes <= 0:
        raise ConfigError(
            f"schedule.max_minutes={config.schedule.max_minutes}; expected > 0 or null"
        )
    iters_per_epoch = min(batches, config.schedule.iters_per_epoch or batches)
    total_iters = iters_per_epoch * config.schedule.epochs

    start_epoch, start_step, iteration = 0, 0, 0
    history: list[dict[str, Any]] = []
    best_miou = -math.inf
    last_checkpoint: Path | None = None
    if resume:
        last_checkpoint = latest_checkpoint(ckpt_dir)
        if last_checkpoint is None:
            if main:
                logger.info("--resume: no checkpoint in %s yet; starting from scratch", ckpt_dir)
        else:
            document = load_checkpoint(
                last_checkpoint,
                model=model,
                optimizer=optimizer,
                load_scaler=scaler.load_state_dict,
            )
            start_epoch, start_step = document["epoch"], document["step_in_epoch"]
            iteration, history = document["iteration"], document["history"]
            best_miou = document["best_miou"] if document["best_miou"] is not None else -math.inf
            if main:
                logger.info(
                    "resumed from %s (epoch %d, step %d)", last_checkpoint, start_epoch, start_step
                )
    if main:  # metrics.jsonl always mirrors the history the run continues from
        metrics_path.write_text("".join(json.dumps(row) + "\n" for row in history))

    train_model: nn.Module = model
    if dist_info.enabled:
        has_aux = getattr(model, "aux_classifier", None) is not None
        train_model = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=has_aux and config.loss.aux_weight == 0,
        )
    loader, epoch_sampler = build_train_loader(
        train_set,
        sampler,
        batch_size=d.batch_size,
        num_workers=d.num_workers,
        seed=seed,
        pin_memory=device.type == "cuda",
        persistent_workers=d.persistent_workers,
        prefetch_factor=d.prefetch_factor,
    )
    want_aux = config.loss.aux_weight > 0
    writer = _open_tensorboard(config.train.tensorboard and main, out_dir)
    stop = _StopFlag()

    def checkpoint(epoch: int, step: int) -> Path | None:
        if not main:
            return None
        info = {
            "epoch": epoch,
            "step_in_epoch": step,
            "iteration": iteration,
            "scheduler": {"name": "poly", "iteration": iteration, "total": total_iters},
            "best_miou": None if best_miou == -math.inf else best_miou,
            "history": history,
            "world_size": dist_info.world_size,
            "config": config_to_dict(config),
        }
        path = save_checkpoint(
            ckpt_dir,
            f"epoch{epoch:04d}_iter{iteration:08d}",
            model=model,
            optimizer=optimizer,
            info=info,
            scaler_state=scaler.state_dict() if scaler.is_enabled() else None,
        )
        prune_checkpoints(ckpt_dir, config.train.keep_checkpoints)
        return path

    read_every = _loss_read_interval(device, config.train.log_every)
    max_minutes = config.schedule.max_minutes
    run_started = time.perf_counter()

    def out_of_time() -> bool:
        return max_minutes is not None and time.perf_counter() - run_started >= 60 * max_minutes

    status = "completed"
    partial_row: dict[str, Any] | None = None
    with stop.installed():
        for epoch in range(start_epoch, config.schedule.epochs):
            skip = start_step if epoch == start_epoch else 0
            epoch_sampler.start(epoch, skip=skip, batches=iters_per_epoch)
            bar = None
            if progress and main:
                from tqdm import tqdm

                bar = tqdm(
                    total=iters_per_epoch,
                    initial=skip,
                    desc=f"epoch {epoch + 1}/{config.schedule.epochs}",
                    unit="it",
                    dynamic_ncols=True,
                )
            train_model.train()
            loss_sum, loss_count, images_done = 0.0, 0, 0
            window: torch.Tensor | None = None  # loss summed on the device since the last read
            window_steps = 0
            started = time.perf_counter()
            step = skip
            reason: str | None = None  # why the run stops early: "interrupted" / "time_budget"
            lr = config.optim.lr
            for images, masks in loader:
                factor = poly_lr_factor(
                    iteration,
                    total_iters,
                    warmup_iters=config.schedule.warmup_iters,
                    warmup_ratio=config.schedule.warmup_ratio,
                    power=config.schedule.power,
                )
                lr = config.optim.lr * factor
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = images.to(device, non_blocking=True, memory_format=memory_format)
                masks = masks.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    outputs = (
                        train_model(images, return_aux=True) if want_aux else train_model(images)
                    )
                loss = criterion(outputs, masks)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.train.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                iteration += 1
                step += 1
                images_done += images.shape[0] * dist_info.world_size
                window = loss.detach() if window is None else window + loss.detach()
                window_steps += 1
                read = step == iters_per_epoch or iteration % read_every == 0
                if not dist_info.enabled:  # no collective needed: look at the flags every step
                    read = read or stop.requested or out_of_time()
                if read:
                    value = float(window) / window_steps
                    if any_true(not math.isfinite(value), dist_info, device):
                        if bar is not None:
                            bar.close()
                        where = (
                            f"iteration {iteration - 1}"
                            if window_steps == 1
                            else f"iterations {iteration - window_steps}-{iteration - 1} "
                            "(their mean; read every train.log_every steps on CUDA)"
                        )
                        kept = latest_checkpoint(ckpt_dir)
                        raise NonFiniteLossError(
                            f"loss is {value} at epoch {epoch + 1}, {where} (lr {lr:.3g}); "
                            f"training stopped. Last good checkpoint: {kept or 'none yet'}. "
                            "Lower optim.lr, set train.grad_clip, or use train.amp=none, then "
                            "rerun (with --resume to continue from it)."
                        )
                    loss_sum += value * window_steps
                    loss_count += window_steps
                    window, window_steps = None, 0
                    if bar is not None:
                        rate = images_done / max(time.perf_counter() - started, 1e-9)
                        bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
                    if writer is not None and iteration % config.train.log_every == 0:
                        writer.add_scalar("train/loss", value, iteration)
                        writer.add_scalar("train/lr", lr, iteration)
                    if any_true(stop.requested, dist_info, device):
                        reason = "interrupted"
                    elif max_minutes is not None and any_true(out_of_time(), dist_info, device):
                        reason = "time_budget"
                if bar is not None:
                    bar.update(1)
                if reason is not None:
                    break
            if bar is not None:
                bar.close()
            finished = step == iters_per_epoch
            last_epoch = epoch + 1 == config.schedule.epochs
            if finished and last_epoch:
                reason = None  # the signal or the budget came with the very last step
            if reason == "interrupted" and not finished:
                last_checkpoint = checkpoint(epoch, step) or last_checkpoint
                status = "interrupted"
                if main:
                    logger.warning("saved %s; continue with --resume", last_checkpoint)
                break
            elapsed = time.perf_counter() - started
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "iteration": iteration,
                "train_loss": loss_sum / max(loss_count, 1),
                "lr": lr,
                "images_per_s": images_done / max(elapsed, 1e-9),
                "epoch_time_s": elapsed,
            }
            if not finished:
                row["partial"] = True  # the time budget ran out inside this epoch
            final = last_epoch or reason == "time_budget"
            if main and ((epoch + 1) % config.eval.every == 0 or final):
                result = evaluate(
                    model,
                    val_set,
                    num_classes=num_classes,
                    ignore_index=config.loss.ignore_index,
                    mode=config.eval.mode,
                    window=config.eval.window,
                    overlap=config.eval.overlap,
                    scales=config.eval.scales,
                    boundary_tolerance=config.eval.boundary_tolerance,
                    device=device,
                    max_samples=d.max_val_samples,
                    progress=progress,
                )
                row.update({f"val_{k}": v for k, v in result.metrics.items() if k != "images"})
                if result["miou"] > best_miou:
                    best_miou = result["miou"]
                    _save_best(
                        model,
                        best_dir,
                        {"epoch": epoch + 1, "val_miou": best_miou, "dataset": d.format,
                         "config": config_to_dict(config)},
                    )  # fmt: skip
                if writer is not None:
                    for key, value in row.items():
                        writer.add_scalar(f"epoch/{key}", value, epoch + 1)
            if finished:
                history.append(row)
                if (epoch + 1) % config.train.checkpoint_every == 0 or final or reason:
                    last_checkpoint = checkpoint(epoch + 1, 0) or last_checkpoint
            else:  # continue this epoch on resume; the checkpoint's history stays whole epochs
                partial_row = row
                last_checkpoint = checkpoint(epoch, step) or last_checkpoint
            if main:
                with metrics_path.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                shown = ", ".join(
                    f"{k}={v:.4g}"
                    for k, v in row.items()
                    if k in ("train_loss", "images_per_s", "val_miou")
                )
                logger.info("epoch %d/%d: %s", epoch + 1, config.schedule.epochs, shown)
            barrier(dist_info)
            if reason is not None:
                status = reason
                if main:
                    logger.warning(
                        "%s: saved %s; continue with --resume",
                        "time budget spent" if reason == "time_budget" else "interrupted",
                        last_checkpoint,
                    )
                break
    if writer is not None:
        writer.close()
    if main and weights is not None and best_dir.exists():
        logger.info(
            "trained with class weights (%s): `atrous adjust-prior --model %s --data.root %s "
            "--split %s --out <dir>` can undo over-prediction of rare classes",
            config.loss.class_weights if isinstance(config.loss.class_weights, str) else "list",
            best_dir,
            d.root,
            d.train_split,
        )
    return TrainResult(
        status=status,
        history=history + ([partial_row] if partial_row is not None else []),
        best_miou=best_miou if best_miou != -math.inf else math.nan,
        out_dir=out_dir,
        best_dir=best_dir if best_dir.exists() else None,
        last_checkpoint=last_checkpoint,
        metrics_path=metrics_path,
        model=model,
    )
