"""The wall-clock budget (``schedule.max_minutes``) and the schedule plan it shapes.

Without ``schedule.fit_to_budget`` the budget is a hard stop: when this process has
trained for ``max_minutes`` it saves, evaluates and returns ``"time_budget"``, wherever
the poly schedule is (a slower machine stops it before the learning rate has decayed).
A ``--resume`` starts a fresh budget.

With ``schedule.fit_to_budget: true`` the budget shapes the schedule instead: after a
few timed steps (the first ``WARMUP_STEPS`` of the process, which pay for start-up
and compilation, are not timed) the run plans how many of the configured ``epochs``
fit, and the poly schedule spans that many. The plan is redone at every epoch's end
from the measured step time, evaluation time and per-epoch overhead (checkpoints), so
the run ends with a finished schedule inside ``SAFETY`` of the budget; it never
plans more than ``epochs``. The plan and the time spent travel in the checkpoint: a
``--resume`` continues the same plan and the same budget (raise ``max_minutes`` to give
it more), and the hard stop remains as a backstop.

All timing goes through one injected ``clock`` (seconds), so tests run on a fake one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Steps of each process not timed for the plan: the first ones pay for start-up,
#: lazy initialisation and compilation.
WARMUP_STEPS = 2
#: Timed steps before the first plan.
MEASURE_STEPS = 3
#: Fraction of the budget the plan fills; the rest absorbs the measuring error.
SAFETY = 0.95


def plan_epochs(
    *,
    epoch: int,
    steps_left: int,
    configured: int,
    remaining_s: float,
    step_s: float,
    iters_per_epoch: int,
    overhead_s: float,
    eval_s: float,
    eval_every: int,
) -> int:
    """The most epochs (counted from the start of training) that fit in ``remaining_s``.

    Epoch ``epoch`` (0-based) is under way with ``steps_left`` steps to go; it always
    finishes. A plan of ``n`` epochs costs the rest of this epoch, ``n - epoch - 1``
    more epochs of ``iters_per_epoch * step_s``, ``overhead_s`` (checkpoint, loader
    start) per epoch, the periodic evaluations (every ``eval_every`` epochs) and the
    final one.
    """
    cost = steps_left * step_s + overhead_s  # the time to the end of epoch `epochs`
    best = epochs = epoch + 1
    while epochs <= configured:
        if cost + eval_s > remaining_s:  # stopping after `epochs` with its final evaluation
            break
        best = epochs
        if epochs % eval_every == 0:
            cost += eval_s  # not the final epoch: its periodic evaluation
        cost += iters_per_epoch * step_s + overhead_s
        epochs += 1
    return best


@dataclass
class _Timings:
    """Running means of what one epoch costs, measured in this process."""

    step_total: float = 0.0
    step_count: int = 0
    eval_total: float = 0.0
    eval_count: int = 0
    overhead_total: float = 0.0
    overhead_count: int = 0

    def mean(self, kind: str) -> float:
        count = getattr(self, f"{kind}_count")
        return getattr(self, f"{kind}_total") / count if count else 0.0


class TimeBudget:
    """Hard stop and (with ``fit``) the number of epochs the schedule spans.

    The trainer tells it when epochs, steps and evaluations start and end; it reads the
    clock there and nowhere else (one read per step, two per evaluation, one at each
    epoch's start), and judges the budget by the latest read.
    """

    def __init__(
        self,
        max_minutes: float | None,
        *,
        fit: bool,
        configured_epochs: int,
        iters_per_epoch: int,
        eval_every: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.budget_s = None if max_minutes is None else 60.0 * max_minutes
        self.fit = fit and max_minutes is not None
        self.configured_epochs = configured_epochs
        self.iters_per_epoch = iters_per_epoch
        self.eval_every = eval_every
        self.clock = clock
        self.epochs = configured_epochs  #: the epochs the poly schedule spans now
        self.spent_before_s = 0.0  #: budget spent by earlier processes (fit mode)
        self.timings = _Timings()
        self._started = self._last = self._eval_started = self._now = 0.0
        self._steps_seen = 0
        self._eval_since_step = 0.0

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continue the plan and the spending stored by ``state`` in a checkpoint."""
        if state and self.fit:
            self.epochs = min(int(state["epochs"]), self.configured_epochs)
            self.spent_before_s = float(state["spent_s"])

    def state(self) -> dict[str, Any] | None:
        """What a checkpoint stores so ``--resume`` continues this plan (None without fit)."""
        if not self.fit:
            return None
        return {
            "epochs": self.epochs,
            "spent_s": self.spent_before_s + self.elapsed(),
            "step_s": self.timings.mean("step"),
            "eval_s": self.timings.mean("eval"),
            "overhead_s": self.timings.mean("overhead"),
        }

    @property
    def total_iters(self) -> int:
        """The iteration at which the poly schedule reaches zero."""
        return self.epochs * self.iters_per_epoch

    def _read_clock(self) -> float:
        self._now = self.clock()
        return self._now

    def start(self) -> None:
        self._started = self._last = self._read_clock()

    def elapsed(self) -> float:
        """Seconds from ``start`` to the latest event (the clock is read only at events)."""
        return self._now - self._started

    def out_of_time(self) -> bool:
        """The hard stop: the budget is spent (the whole run's with ``fit``)."""
        if self.budget_s is None:
            return False
        spent = self.elapsed() + (self.spent_before_s if self.fit else 0.0)
        return spent >= self.budget_s

    def epoch_started(self) -> None:
        """Also times the previous epoch's tail: evaluation aside, checkpoint and restart."""
        now = self._read_clock()
        if self._steps_seen:  # an epoch of this process ended since its last step
            overhead = now - self._last - self._eval_since_step
            self.timings.overhead_total += max(0.0, overhead)
            self.timings.overhead_count += 1
        self._last = now
        self._eval_since_step = 0.0

    def step_done(self) -> bool:
        """Time one step; True exactly when enough steps are timed for the first plan."""
        now = self._read_clock()
        self._steps_seen += 1
        if self._steps_seen > WARMUP_STEPS:
            self.timings.step_total += now - self._last
            self.timings.step_count += 1
        self._last = now
        self._eval_since_step = 0.0
        return self.fit and self.timings.step_count == MEASURE_STEPS

    def eval_started(self) -> None:
        self._eval_started = self._read_clock()

    def eval_done(self) -> None:
        seconds = self._read_clock() - self._eval_started
        self.timings.eval_total += seconds
        self.timings.eval_count += 1
        self._eval_since_step += seconds

    def can_plan(self) -> bool:
        return self.fit and self.timings.step_count >= MEASURE_STEPS

    def plan(self, epoch: int, steps_left: int) -> int:
        """Re-plan from the measurements: the number of epochs the schedule spans now."""
        assert self.budget_s is not None
        remaining = SAFETY * self.budget_s - self.spent_before_s - self.elapsed()
        self.epochs = plan_epochs(
            epoch=epoch,
            steps_left=steps_left,
            configured=self.configured_epochs,
            remaining_s=remaining,
            step_s=self.timings.mean("step"),
            iters_per_epoch=self.iters_per_epoch,
            overhead_s=self.timings.mean("overhead"),
            eval_s=self.timings.mean("eval"),
            eval_every=self.eval_every,
        )
        return self.epochs

    def describe(self) -> str:
        """One log line: the plan and the measurements it rests on."""
        assert self.budget_s is not None
        t = self.timings
        evals = f"{t.mean('eval'):.3g} s" if t.eval_count else "not measured yet"
        spent = self.spent_before_s + self.elapsed()
        return (
            f"time budget plan: {self.epochs} of {self.configured_epochs} epochs "
            f"(poly schedule ends at iteration {self.total_iters}); "
            f"{t.mean('step'):.3g} s/step x {self.iters_per_epoch} steps/epoch, "
            f"+{t.mean('overhead'):.3g} s/epoch overhead, evaluation (every "
            f"{self.eval_every} epochs and after the last) {evals}; spent {spent / 60:.3g} "
            f"of {self.budget_s / 60:.4g} min, plans fill {SAFETY:.0%} of it"
        )
