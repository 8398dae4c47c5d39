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
index, see ``atrous.engine.loader``), and a checkpoint stores the model, optimiser,
RNG states and the ``TrainState`` (position, history, the
epoch's loss sums, the time-budget plan). ``train(..., resume=True)`` restores the newest
complete checkpoint and skips the batches it already used, so on CPU a run killed at any
moment and resumed ends with bitwise the same weights, and the same ``metrics.jsonl``
apart from its timing fields, as an uninterrupted one. SIGTERM finishes the current
step, saves a mid-epoch checkpoint and returns with ``status == "interrupted"``.

Where the parts are: set-up in ``atrous.engine.build``, the run's position in
``atrous.engine.state``, reporting in ``atrous.engine.run_log``, the time budget
and its schedule plan in ``atrous.engine.budget``, the autocast decision in
``atrous.engine.precision``, ``best/`` in ``atrous.engine.best``. This module holds
``train`` and ``_Loop``: one step, one epoch, the epoch's end (evaluation,
checkpoint) and the stop signals.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from atrous.data.io import DataError
from atrous.device import resolve_device
from atrous.engine.best import recover_best, save_best
from atrous.engine.budget import TimeBudget
from atrous.engine.build import (
    Run,
    RunPaths,
    best_metadata,
    build_run,
    freeze_backbone_norms,
    wrap_for_training,
)
from atrous.engine.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from atrous.engine.config import Config, config_to_dict, save_config
from atrous.engine.distributed import (
    DistInfo,
    any_true,
    barrier,
    broadcast_int,
    cleanup,
    init_distributed,
)
from atrous.engine.evaluate import evaluate
from atrous.engine.loader import EpochSampler
from atrous.engine.losses import poly_lr_factor
from atrous.engine.precision import autocast_dtype, cpu_has_native_bf16
from atrous.engine.run_log import RunLog
from atrous.engine.state import EpochSums, TrainState
from atrous.engine.validate import validate_config

__all__ = [
    "NonFiniteLossError",
    "TrainResult",
    "autocast_dtype",
    "cpu_has_native_bf16",
    "train",
]

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


@dataclass
class TrainResult:
    """What ``train`` did.

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
    device = resolve_device(name)
    if device.type == "cuda" and dist_info.enabled:
        device = torch.device("cuda", dist_info.local_rank)
    return device


def _loss_read_interval(device: torch.device, log_every: int) -> int:
    """Steps between reads of the loss on the host (NaN check, progress bar, TensorBoard).

    A read is free on CPU but waits for CUDA's queue to drain, so on CUDA the loss is
    summed on the device and read every ``train.log_every`` steps and at each epoch's end.
    A NaN is then caught up to ``log_every`` steps late, always before any checkpoint.
    """
    return 1 if device.type == "cpu" else log_every


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


def train(
    config: Config,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    clock: Callable[[], float] | None = None,
) -> TrainResult:
    """Train ``config.model`` on ``config.data``; see the module docstring for the outputs.

    Args:
        config: the run's configuration (see ``atrous.engine.config``).
        out_dir: run folder; created if needed.
        resume: continue from the newest complete checkpoint in ``out_dir`` (starts
            fresh, with a log line, when there is none).
        progress: show a tqdm bar (rank 0 only).
        clock: seconds for the time budget (``time.perf_counter`` by default; tests
            pass a fake one).

    Raises:
        ConfigError: a setting that does not fit the data (batch size, class count).
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.

    Example:
        ```python
        import tempfile
        from pathlib import Path

        from atrous.data.synthetic import generate
        from atrous.engine import load_config, train

        folder = Path(tempfile.mkdtemp())
        generate(folder / "data", train=4, val=2, size=64)
        config = load_config(None, [f"data.root={folder / 'data'}", "data.crop_size=[48, 48]",
                                    "data.batch_size=2", "schedule.epochs=1", "train.device=cpu",
                                    "model.options={width: 8}"])
        result = train(config, folder / "run", progress=False)
        print(result.status, result.best_dir.name)  # completed best: load_pretrained(result.best_dir)
        ```
    """
    validate_config(config)  # load_config did already; a Config built in Python too
    out_dir = Path(out_dir)
    requested = config.train.device
    dist_info = init_distributed(
        "cuda" if requested != "cpu" and torch.cuda.is_available() else "cpu"
    )
    try:
        device = _resolve_device(config.train.device, dist_info)
        paths = RunPaths(out_dir)
        if dist_info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            recovered = recover_best(paths.best)
            if recovered:
                logger.warning("%s", recovered)
            save_config(config, out_dir / "config.yaml")
        run = build_run(config, paths, dist_info, device)
        return _train(run, resume=resume, progress=progress, clock=clock)
    finally:
        cleanup(dist_info)


def _train(
    run: Run, *, resume: bool, progress: bool, clock: Callable[[], float] | None
) -> TrainResult:
    """Restore, train until the schedule ends or something stops it, report."""
    config = run.config
    budget = TimeBudget(
        config.schedule.max_minutes,
        fit=config.schedule.fit_to_budget,
        configured_epochs=config.schedule.epochs,
        iters_per_epoch=run.iters_per_epoch,
        eval_every=config.eval.every,
        clock=clock or time.perf_counter,
    )
    state, last_checkpoint = _restore(run, budget, resume)
    log = RunLog(
        run.paths.metrics,
        main=run.dist_info.is_main,
        progress=progress,
        tensorboard=config.train.tensorboard,
        log_every=config.train.log_every,
    )
    log.restart(state.history)
    train_model, loader, epoch_sampler = wrap_for_training(run)
    loop = _Loop(run, train_model, loader, epoch_sampler, state, budget, log)
    loop.last_checkpoint = last_checkpoint
    try:
        status = loop.train_epochs()
    finally:
        log.close()
    if status == "data_error":
        raise _stopped_by_data(run, loop)
    _hint_adjust_prior(run)
    return loop.result(status)


def _stopped_by_data(run: Run, loop: _Loop) -> DataError:
    """The error that ends a run whose sample failed mid-run, saying how to go on."""
    s = loop.state
    return DataError(
        f"{loop.data_error}\ntraining stopped at epoch {s.epoch + 1}, step {s.step_in_epoch}; "
        f"saved {loop.last_checkpoint}. Fix or remove the file, then continue with: "
        f"atrous train --out {run.paths.out_dir} --resume"
    )


def _restore(run: Run, budget: TimeBudget, resume: bool) -> tuple[TrainState, Path | None]:
    """The state to start from: the newest checkpoint's (restored into the run) or fresh."""
    if not resume:
        return TrainState(), None
    folder = run.paths.checkpoints
    path = latest_checkpoint(folder)
    if path is None:
        if run.dist_info.is_main:
            logger.info("--resume: no checkpoint in %s yet; starting from scratch", folder)
        return TrainState(), None
    document = load_checkpoint(
        path, model=run.model, optimizer=run.optimizer, load_scaler=run.scaler.load_state_dict
    )
    state = TrainState.from_document(document)
    budget.restore(state.budget)
    if run.dist_info.is_main:
        logger.info("resumed from %s (epoch %d, step %d)", path, state.epoch, state.step_in_epoch)
        if budget.fit and state.budget:
            logger.info(
                "continuing the time budget plan: %d epochs, %.3g of %.4g min spent",
                budget.epochs,
                budget.spent_before_s / 60,
                run.config.schedule.max_minutes,
            )
    return state, path


def _hint_adjust_prior(run: Run) -> None:
    d, best = run.config.data, run.paths.best
    if run.dist_info.is_main and run.class_weights is not None and best.exists():
        weights = run.config.loss.class_weights
        logger.info(
            "trained with class weights (%s): `atrous adjust-prior --model %s --data.root %s "
            "--split %s --out <dir>` can undo over-prediction of rare classes",
            weights if isinstance(weights, str) else "list",
            best,
            d.root,
            d.train_split,
        )


class _Loop:
    """One run's loop over epochs and steps; its state is ``self.state`` (checkpointed)."""

    def __init__(
        self,
        run: Run,
        train_model: nn.Module,
        loader: DataLoader,
        epoch_sampler: EpochSampler,
        state: TrainState,
        budget: TimeBudget,
        log: RunLog,
    ) -> None:
        self.run, self.config = run, run.config
        self.train_model, self.loader, self.epoch_sampler = train_model, loader, epoch_sampler
        self.state, self.budget, self.log = state, budget, log
        self.main = run.dist_info.is_main
        self.stop = _StopFlag()
        self.read_every = _loss_read_interval(run.device, self.config.train.log_every)
        self.want_aux = self.config.loss.aux_weight > 0
        self.lr = self.config.optim.lr
        self.window: torch.Tensor | None = None  # loss summed on the device since the last read
        self.window_steps = 0
        self.planned = False
        self.last_checkpoint: Path | None = None
        self.partial_row: dict[str, Any] | None = None
        self.data_error: DataError | None = None

    def train_epochs(self) -> str:
        """Epochs until the (planned) schedule ends; the run's status."""
        with self.stop.installed():
            self.budget.start()
            while self.state.epoch < self.budget.epochs:
                status = self._end_epoch(self._train_epoch())
                if status is not None:
                    return status
        return "completed"

    # --- one epoch, one step ----------------------------------------------------------

    def _train_epoch(self) -> str | None:
        """Train epoch ``state.epoch`` from ``state.step_in_epoch``; why it stopped early."""
        s, iters = self.state, self.run.iters_per_epoch
        if s.step_in_epoch == 0:
            s.sums = EpochSums()
        self.epoch_sampler.start(s.epoch, skip=s.step_in_epoch, batches=iters)
        self.log.epoch_started(s.epoch, self.budget.epochs, iters, s.step_in_epoch)
        self.budget.epoch_started()
        self.train_model.train()
        if self.config.model.backbone_bn == "frozen":
            freeze_backbone_norms(self.train_model)
        self.lr, self.window, self.window_steps = self.config.optim.lr, None, 0
        reason = None
        try:
            for images, masks in self.loader:
                loss = self._step(images, masks)
                s.iteration += 1
                s.step_in_epoch += 1
                self.window = loss if self.window is None else self.window + loss
                self.window_steps += 1
                self.log.step_done(images.shape[0] * self.run.dist_info.world_size)
                if self.budget.step_done():
                    self._replan(steps_left=iters - s.step_in_epoch)
                if self._read_due():
                    self._read_loss()
                    reason = self._stop_reason()
                if reason is not None:
                    break
        except DataError as error:  # a file that went bad after the check before step 1
            self.data_error, reason = error, "data_error"
        self.log.close_bar()
        return reason

    def _step(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One optimiser step at the poly schedule's learning rate; the detached loss."""
        run, c = self.run, self.config
        s = c.schedule
        factor = poly_lr_factor(
            self.state.iteration,
            self.budget.total_iters,
            warmup_iters=s.warmup_iters,
            warmup_ratio=s.warmup_ratio,
            power=s.power,
        )
        self.lr = c.optim.lr * factor
        for group in run.optimizer.param_groups:
            group["lr"] = self.lr * group.get("lr_mult", 1.0)
        images = images.to(run.device, non_blocking=True, memory_format=run.memory_format)
        masks = masks.to(run.device, non_blocking=True)
        with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.use_amp):
            model = self.train_model
            outputs = model(images, return_aux=True) if self.want_aux else model(images)
        loss = run.criterion(outputs, masks)
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if c.train.grad_clip is not None:
            run.scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), c.train.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        return loss.detach()

    # --- loss reads and stop signals -------------------------------------------------

    def _read_due(self) -> bool:
        s = self.state
        read = s.step_in_epoch == self.run.iters_per_epoch or s.iteration % self.read_every == 0
        if not self.run.dist_info.enabled:  # no collective needed: look at the flags every step
            read = read or self.stop.requested or self.budget.out_of_time()
        return read

    def _read_loss(self) -> None:
        """Bring the summed loss to the host: NaN check, the epoch's sums, progress."""
        assert self.window is not None
        value = float(self.window) / self.window_steps
        if any_true(not math.isfinite(value), self.run.dist_info, self.run.device):
            self.log.close_bar()
            self._raise_non_finite(value)
        self.state.sums.add(value, self.window_steps)
        self.window, self.window_steps = None, 0
        self.log.loss_read(value, self.lr, self.state.iteration)

    def _raise_non_finite(self, value: float) -> None:
        s, steps = self.state, self.window_steps
        where = (
            f"iteration {s.iteration - 1}"
            if steps == 1
            else f"iterations {s.iteration - steps}-{s.iteration - 1} "
            "(their mean; read every train.log_every steps on CUDA)"
        )
        kept = latest_checkpoint(self.run.paths.checkpoints)
        raise NonFiniteLossError(
            f"loss is {value} at epoch {s.epoch + 1}, {where} (lr {self.lr:.3g}); "
            f"training stopped. Last good checkpoint: {kept or 'none yet'}. "
            "Lower optim.lr, set train.grad_clip, or use train.amp=none, then "
            "rerun (with --resume to continue from it)."
        )

    def _stop_reason(self) -> str | None:
        """``"interrupted"`` (SIGTERM), ``"time_budget"`` or None; the same on every rank."""
        info, device = self.run.dist_info, self.run.device
        if any_true(self.stop.requested, info, device):
            return "interrupted"
        if self.budget.budget_s is not None and any_true(self.budget.out_of_time(), info, device):
            return "time_budget"
        return None

    def _replan(self, steps_left: int) -> None:
        """Fit the schedule to the time budget from what has been measured (rank 0 decides)."""
        before = self.budget.epochs
        epochs = self.budget.plan(self.state.epoch, steps_left)
        self.budget.epochs = broadcast_int(epochs, self.run.dist_info, self.run.device)
        if self.main and (self.budget.epochs != before or not self.planned):
            logger.info("%s", self.budget.describe())
        self.planned = True

    # --- the end of an epoch: evaluation, checkpoint, metrics -------------------------

    def _end_epoch(self, reason: str | None) -> str | None:
        """Evaluate, checkpoint and report the epoch just trained; the status if the run ends."""
        s = self.state
        finished = s.step_in_epoch == self.run.iters_per_epoch
        if finished and self.budget.can_plan():
            self._replan(steps_left=0)
        last_epoch = s.epoch + 1 >= self.budget.epochs
        if finished and last_epoch:
            reason = None  # the signal or the budget came with the very last step
        if reason in ("interrupted", "data_error") and not finished:
            self._checkpoint()
            if self.main:
                logger.warning("saved %s; continue with --resume", self.last_checkpoint)
            return reason
        row = self._epoch_row(finished)
        final = last_epoch or reason == "time_budget"
        if self.main and ((s.epoch + 1) % self.config.eval.every == 0 or final):
            self._evaluate(row)
        if finished:
            s.history.append(row)
            due = (s.epoch + 1) % self.config.train.checkpoint_every == 0 or final or reason
            s.epoch, s.step_in_epoch, s.sums = s.epoch + 1, 0, EpochSums()
            if due:
                self._checkpoint()
        else:  # continue this epoch on resume; the checkpoint's history stays whole epochs
            self.partial_row = row
            self._checkpoint()
        self.log.epoch_row(row, self.budget.epochs)
        barrier(self.run.dist_info)
        if reason is not None and self.main:
            spent = "time budget spent" if reason == "time_budget" else "interrupted"
            logger.warning("%s: saved %s; continue with --resume", spent, self.last_checkpoint)
        return reason

    def _epoch_row(self, finished: bool) -> dict[str, Any]:
        elapsed = self.log.seconds()
        row: dict[str, Any] = {
            "epoch": self.state.epoch + 1,
            "iteration": self.state.iteration,
            "train_loss": self.state.sums.mean(),
            "lr": self.lr,
            "images_per_s": self.log.images / max(elapsed, 1e-9),
            "epoch_time_s": elapsed,
        }
        if not finished:
            row["partial"] = True  # the time budget ran out inside this epoch
        return row

    def _evaluate(self, row: dict[str, Any]) -> None:
        """Validation metrics into ``row``; a new best model replaces ``best/``."""
        run, c, s = self.run, self.config, self.state
        if run.val_set is None:  # data.val_split: null: nothing to score, best/ is the last
            save_best(run.model, run.paths.best, best_metadata(c, s.epoch + 1, None))
            return
        self.budget.eval_started()
        result = evaluate(
            run.model,
            run.val_set,
            num_classes=run.num_classes,
            ignore_index=c.loss.ignore_index,
            mode=c.eval.mode,
            window=c.eval.window,
            overlap=c.eval.overlap,
            scales=c.eval.scales,
            boundary_tolerance=c.eval.boundary_tolerance,
            device=run.device,
            max_samples=c.data.max_val_samples,
            progress=self.log.progress,
        )
        self.budget.eval_done()
        row.update({f"val_{k}": v for k, v in result.metrics.items() if k != "images"})
        if result["miou"] > s.best_miou:
            s.best_miou = result["miou"]
            save_best(run.model, run.paths.best, best_metadata(c, s.epoch + 1, s.best_miou))
        self.log.evaluated(row, s.epoch + 1)

    def _checkpoint(self) -> None:
        """Save the state as it stands (rank 0) and prune the older checkpoints."""
        if not self.main:
            return
        run, s = self.run, self.state
        s.budget = self.budget.state()
        info = {
            **s.to_info(),
            "scheduler": {
                "name": "poly",
                "iteration": s.iteration,
                "total": self.budget.total_iters,
            },
            "world_size": run.dist_info.world_size,
            "config": config_to_dict(self.config),
        }
        self.last_checkpoint = save_checkpoint(
            run.paths.checkpoints,
            f"epoch{s.epoch:04d}_iter{s.iteration:08d}",
            model=run.model,
            optimizer=run.optimizer,
            info=info,
            scaler_state=run.scaler.state_dict() if run.scaler.is_enabled() else None,
        )
        prune_checkpoints(run.paths.checkpoints, self.config.train.keep_checkpoints)

    def result(self, status: str) -> TrainResult:
        s, paths = self.state, self.run.paths
        return TrainResult(
            status=status,
            history=s.history + ([self.partial_row] if self.partial_row is not None else []),
            best_miou=s.best_miou if s.best_miou != -math.inf else math.nan,
            out_dir=paths.out_dir,
            best_dir=paths.best if paths.best.exists() else None,
            last_checkpoint=self.last_checkpoint,
            metrics_path=paths.metrics,
            model=self.run.model,
        )
