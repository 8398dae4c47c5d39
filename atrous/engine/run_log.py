"""What a run reports while it trains: metrics.jsonl, the progress bar, TensorBoard, log lines.

Only rank 0 reports; on other ranks every method is a no-op, so the loop never asks.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("atrous.engine.trainer")


def _open_tensorboard(enabled: bool, out_dir: Path) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("train.tensorboard=true but tensorboard is not installed; skipping it")
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


class RunLog:
    """Rank 0's reporting for one run.

    Args:
        metrics_path: ``metrics.jsonl``; rewritten from the history at the start so it
            always mirrors the history the run continues from.
        main: this process reports (rank 0).
        progress: show a tqdm bar per epoch.
        tensorboard: write TensorBoard scalars under ``<out>/tensorboard``.
        log_every: iterations between TensorBoard loss points.
    """

    def __init__(
        self, metrics_path: Path, *, main: bool, progress: bool, tensorboard: bool, log_every: int
    ) -> None:
        self.metrics_path, self.main, self.log_every = metrics_path, main, log_every
        self.progress = progress and main
        self.writer = _open_tensorboard(tensorboard and main, metrics_path.parent)
        self.bar: Any = None
        self.images = 0
        self.started = time.perf_counter()

    def restart(self, history: list[dict[str, Any]]) -> None:
        if self.main:
            self.metrics_path.write_text("".join(json.dumps(row) + "\n" for row in history))

    def epoch_started(self, epoch: int, epochs: int, total: int, initial: int) -> None:
        """A bar for epoch ``epoch`` (0-based) of ``epochs``, ``initial`` steps already done."""
        self.images, self.started = 0, time.perf_counter()
        if self.progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=initial,
                desc=f"epoch {epoch + 1}/{epochs}",
                unit="it",
                dynamic_ncols=True,
            )

    def step_done(self, images: int) -> None:
        self.images += images
        if self.bar is not None:
            self.bar.update(1)

    def images_per_s(self) -> float:
        return self.images / max(self.seconds(), 1e-9)

    def seconds(self) -> float:
        """Wall time since the epoch (or its resumed part) started."""
        return time.perf_counter() - self.started

    def loss_read(self, value: float, lr: float, iteration: int) -> None:
        """A loss read on the host: the bar's figures, a TensorBoard point now and then."""
        if self.bar is not None:
            rate = self.images / max(self.seconds(), 1e-9)
            self.bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")
        if self.writer is not None and iteration % self.log_every == 0:
            self.writer.add_scalar("train/loss", value, iteration)
            self.writer.add_scalar("train/lr", lr, iteration)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def evaluated(self, row: dict[str, Any], epoch: int) -> None:
        """TensorBoard's epoch scalars, after an evaluation."""
        if self.writer is not None:
            for key, value in row.items():
                self.writer.add_scalar(f"epoch/{key}", value, epoch)

    def epoch_row(self, row: dict[str, Any], epochs: int) -> None:
        """Append the epoch's row to metrics.jsonl and log its headline figures."""
        if not self.main:
            return
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        shown = ", ".join(
            f"{k}={v:.4g}"
            for k, v in row.items()
            if k in ("train_loss", "images_per_s", "val_miou")
        )
        logger.info("epoch %d/%d: %s", row["epoch"], epochs, shown)

    def close(self) -> None:
        self.close_bar()
        if self.writer is not None:
            self.writer.close()
