"""schedule.fit_to_budget: the poly schedule is planned to end, decayed, inside the budget.

Timing runs on a fake clock (``train(..., clock=...)``), so nothing here depends on how
fast or loaded the machine is.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import pytest

from atrous.engine import ConfigError, load_config, poly_lr_factor, train
from atrous.engine.budget import MEASURE_STEPS, WARMUP_STEPS, TimeBudget, plan_epochs
from atrous.engine.checkpoint import latest_checkpoint
from tests.data.helpers import write_folder_dataset

TINY = [
    "data.crop_size=[16, 16]",
    "data.batch_size=2",
    "model.options={width: 4, rates: [1, 2]}",
    "loss.aux_weight=0",
    "train.device=cpu",
    "eval.every=100",  # only after the last epoch
]


class TickingClock:
    """Every read is one second later; optionally sends SIGTERM at read ``kill_at``."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.reads, self.kill_at = 0, kill_at

    def __call__(self) -> float:
        self.reads += 1
        if self.reads == self.kill_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return float(self.reads)


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plan_counts_steps_evaluations_and_overhead() -> None:
    common = {"step_s": 1.0, "iters_per_epoch": 10, "overhead_s": 0.0, "eval_every": 1}
    # Each epoch: 10 s of steps + a 5 s evaluation; 100 s hold 6 epochs (90 s).
    assert (
        plan_epochs(epoch=0, steps_left=10, configured=20, remaining_s=100, eval_s=5, **common) == 6
    )
    # Evaluating after epoch 5 and the last fits more: 9 x 10 + 2 x 5 = 100 s.
    every5 = {**common, "eval_every": 5}
    assert (
        plan_epochs(epoch=0, steps_left=10, configured=20, remaining_s=100, eval_s=5, **every5) == 9
    )
    # Overhead per epoch (checkpoints) counts: 10 + 2 + eval 5 -> 5 epochs (85 s) in 100 s.
    heavy = {**common, "overhead_s": 2.0}
    assert (
        plan_epochs(epoch=0, steps_left=10, configured=20, remaining_s=100, eval_s=5, **heavy) == 5
    )
    # Never more than configured, never less than the epoch under way.
    assert (
        plan_epochs(epoch=0, steps_left=10, configured=3, remaining_s=1e9, eval_s=5, **common) == 3
    )
    assert plan_epochs(epoch=7, steps_left=4, configured=20, remaining_s=0, eval_s=5, **common) == 8
    # Mid-epoch: 4 steps left of epoch 2 (0-based), then whole epochs: 4 + 5 + 2 x 15 = 39 s.
    assert (
        plan_epochs(epoch=2, steps_left=4, configured=20, remaining_s=40, eval_s=5, **common) == 5
    )


def test_time_budget_measures_after_warmup_and_plans() -> None:
    clock = ManualClock()
    budget = TimeBudget(
        1.0, fit=True, configured_epochs=100, iters_per_epoch=5, eval_every=1, clock=clock
    )
    budget.start()
    budget.epoch_started()
    ready = []
    for step in range(WARMUP_STEPS + MEASURE_STEPS):
        clock.now += 10.0 if step < WARMUP_STEPS else 2.0  # slow warm-up, then 2 s/step
        ready.append(budget.step_done())
    assert ready == [False] * (WARMUP_STEPS + MEASURE_STEPS - 1) + [True]
    assert budget.timings.mean("step") == 2.0  # the warm-up steps are not timed
    # 26 s spent, 0.95 x 60 - 26 = 31 s left; epoch 0 (5 steps) is done and each further
    # one costs 5 x 2 s (no evaluation or overhead measured yet): 3 more fit.
    assert budget.plan(epoch=0, steps_left=0) == 4
    assert budget.total_iters == 20
    assert "4 of 100 epochs" in budget.describe()
    # The plan and the spending travel in the checkpoint.
    state = budget.state()
    assert state is not None and state["epochs"] == 4 and state["spent_s"] == 26.0
    resumed = TimeBudget(
        1.0, fit=True, configured_epochs=100, iters_per_epoch=5, eval_every=1, clock=clock
    )
    resumed.restore(state)
    resumed.start()
    assert resumed.epochs == 4 and resumed.total_iters == 20
    clock.now += 40.0
    resumed.epoch_started()
    assert resumed.out_of_time()  # 26 s before + 40 s now > 60 s: the whole run's budget


def test_without_fit_the_budget_is_only_a_stop() -> None:
    clock = ManualClock()
    budget = TimeBudget(
        1.0, fit=False, configured_epochs=100, iters_per_epoch=5, eval_every=1, clock=clock
    )
    budget.start()
    for _ in range(10):
        clock.now += 7.0
        assert not budget.step_done()  # never asks for a plan
    assert budget.epochs == 100 and budget.state() is None and budget.out_of_time()


def test_fit_to_budget_needs_a_budget() -> None:
    with pytest.raises(ConfigError, match=r"fit_to_budget=true needs schedule\.max_minutes"):
        load_config(None, ["schedule.fit_to_budget=true"])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("budget")
    return write_folder_dataset(base / "data", splits={"train": 4, "val": 1}, size=(16, 16))


def _assert_schedule_finished(history: list[dict], iters_per_epoch: int) -> None:
    """The last step ran at the poly schedule's last learning rate."""
    total = iters_per_epoch * len(history)
    assert history[-1]["lr"] == pytest.approx(0.01 * poly_lr_factor(total - 1, total))
    lrs = [row["lr"] for row in history]
    assert lrs == sorted(lrs, reverse=True)


def test_fit_to_budget_ends_a_finished_schedule_inside_the_budget(
    root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each clock read is a second: 3 s an epoch (its start, 2 steps), 2 s the final
    # evaluation; a 24 s budget holds 7 epochs (1 + 7 x 3 + 2 = 24 reads).
    settings = [f"data.root={root}", *TINY, "schedule.epochs=50", "optim.lr=0.01"]
    config = load_config(
        None, [*settings, "schedule.max_minutes=0.4", "schedule.fit_to_budget=true"]
    )
    clock = TickingClock()
    with caplog.at_level(logging.INFO, logger="atrous.engine.trainer"):
        result = train(config, tmp_path / "run", progress=False, clock=clock)
    assert result.status == "completed"
    assert len(result.history) == 7
    _assert_schedule_finished(result.history, iters_per_epoch=2)
    assert clock.reads - 1 <= 24  # inside the budget (the first read starts it)
    assert any("time budget plan" in r.message for r in caplog.records)
    info = json.loads(latest_checkpoint(tmp_path / "run" / "checkpoints").read_text())  # type: ignore[union-attr]
    assert info["budget_plan"]["epochs"] == len(result.history)
    assert info["scheduler"]["total"] == 2 * len(result.history)
    # Without fit_to_budget the same budget stops the 50-epoch schedule part-way.
    stopped = train(
        load_config(None, [*settings, "schedule.max_minutes=0.4"]),
        tmp_path / "stop",
        progress=False,
        clock=TickingClock(),
    )
    assert stopped.status == "time_budget"
    assert stopped.history[-1]["lr"] > 0.5 * 0.01  # far from decayed


def test_fit_to_budget_resume_continues_plan_and_budget(root: Path, tmp_path: Path) -> None:
    settings = [f"data.root={root}", *TINY, "schedule.epochs=50", "schedule.max_minutes=0.6666",
                "schedule.fit_to_budget=true"]  # fmt: skip
    config = load_config(None, settings)
    # SIGTERM at the 18th clock read: the 1st step of the 6th epoch, after the plan was made.
    first = train(config, tmp_path / "run", progress=False, clock=TickingClock(kill_at=18))
    assert first.status == "interrupted"
    saved = json.loads(first.last_checkpoint.read_text())  # type: ignore[union-attr]
    plan = saved["budget_plan"]
    assert plan["epochs"] < 50 and 0 < plan["spent_s"] < 40
    clock = TickingClock()
    resumed = train(config, tmp_path / "run", resume=True, progress=False, clock=clock)
    assert resumed.status == "completed"
    _assert_schedule_finished(resumed.history, iters_per_epoch=2)
    final = json.loads(resumed.last_checkpoint.read_text())  # type: ignore[union-attr]
    # The budget is the whole run's: the resumed process used only what was left.
    assert plan["spent_s"] + clock.reads - 1 <= 40
    assert final["budget_plan"]["spent_s"] <= 40
