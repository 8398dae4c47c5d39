"""Re-exports of :mod:`atrous.ops.schedule` for the backbones, and the output strides they take.

The dilation schedule lives in ``atrous/ops`` as one frozen value,
:class:`~atrous.ops.schedule.DilationSchedule`; a backbone describes its stages with a
:class:`~atrous.ops.schedule.StageLayout` and builds from
``schedule.resolve(layout, output_stride)``. This module only keeps the old import path
working.
"""

from __future__ import annotations

from collections.abc import Sequence

from atrous.ops.schedule import (
    DilationSchedule,
    ScheduleLike,
    StageLayout,
    StagePlan,
    check_output_stride,
)

OUTPUT_STRIDES = (8, 16, 32)
"""Output strides of the ResNet and MobileNet backbones (stride-32 trunks)."""


def plan_stages(
    *,
    names: Sequence[str],
    blocks: Sequence[int],
    strides: Sequence[int],
    stem_stride: int,
    output_stride: int,
    dilation_schedule: ScheduleLike = None,
    model: str = "this backbone",
) -> tuple[StagePlan, ...]:
    """Deprecated spelling of ``DilationSchedule.parse(s).resolve(StageLayout(...), os)``.

    Kept so that code written against the old helper keeps building; new backbones
    call :meth:`DilationSchedule.resolve` directly.
    """
    layout = StageLayout(tuple(names), tuple(blocks), tuple(strides), stem_stride)
    return DilationSchedule.parse(dilation_schedule).resolve(layout, output_stride, model=model)


__all__ = [
    "OUTPUT_STRIDES",
    "DilationSchedule",
    "ScheduleLike",
    "StageLayout",
    "StagePlan",
    "check_output_stride",
    "plan_stages",
]
