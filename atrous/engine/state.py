"""Where a run stands: the position, history and running sums a checkpoint must hold.

Everything that decides what the rest of the run does or writes lives in
``TrainState``, so that a run resumed from a checkpoint, also one written in the
middle of an epoch, continues as if it had never stopped: the weights bitwise, and
``metrics.jsonl`` too (the epoch's loss sums are part of the state, not of the loop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EpochSums:
    """The current epoch's training-loss sums over the steps read so far.

    A loss is read on the host every step on CPU and every ``train.log_every`` steps on
    CUDA; between reads it is summed on the device (``window``), which is never pending
    when a checkpoint is written (every checkpoint follows a read).
    """

    loss_sum: float = 0.0
    loss_count: int = 0

    def add(self, mean: float, steps: int) -> None:
        self.loss_sum += mean * steps
        self.loss_count += steps

    def mean(self) -> float:
        return self.loss_sum / max(self.loss_count, 1)


@dataclass
class TrainState:
    """The run's position and what it has learnt about itself; stored in every checkpoint.

    Attributes:
        epoch: the epoch under way (0-based); ``step_in_epoch`` of its steps are done.
        iteration: optimiser steps since the start of training.
        history: one row per finished epoch (``metrics.jsonl``).
        best_miou: best validation mIoU so far (``-inf`` before any evaluation).
        sums: the current epoch's loss sums (so a mid-epoch resume reports the whole
            epoch's ``train_loss``).
        budget: the time-budget plan (``schedule.fit_to_budget``), else None.
    """

    epoch: int = 0
    step_in_epoch: int = 0
    iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_miou: float = -math.inf
    sums: EpochSums = field(default_factory=EpochSums)
    budget: dict[str, Any] | None = None

    def to_info(self) -> dict[str, Any]:
        """The checkpoint JSON fields (``epoch``/``step_in_epoch`` name the resume point)."""
        return {
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "iteration": self.iteration,
            "best_miou": None if self.best_miou == -math.inf else self.best_miou,
            "history": self.history,
            "epoch_loss": {"sum": self.sums.loss_sum, "count": self.sums.loss_count},
            "budget_plan": self.budget,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> TrainState:
        """Read back ``to_info``; checkpoints written before the sums existed load too."""
        sums = document.get("epoch_loss") or {}
        best = document.get("best_miou")
        return cls(
            epoch=document["epoch"],
            step_in_epoch=document["step_in_epoch"],
            iteration=document["iteration"],
            history=list(document["history"]),
            best_miou=-math.inf if best is None else float(best),
            sums=EpochSums(float(sums.get("sum", 0.0)), int(sums.get("count", 0))),
            budget=document.get("budget_plan"),
        )
