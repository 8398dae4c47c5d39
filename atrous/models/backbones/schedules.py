"""Per-block dilation lists: the one primitive every dilation schedule generates.

A schedule is decided while the backbone is built (timm's running stride): stages are
walked in order; while the running stride is below the target ``output_stride`` a
stride-2 stage downsamples, afterwards it keeps stride 1 and doubles the stage rate
instead. Each stage then gets one dilation per block from a generator:

- ``None`` (plain): the first block keeps the previous stage's rate (it sits where the
  stride used to be), the rest use the stage rate. This is torchvision's and timm's
  ``replace_stride_with_dilation`` layout, so their weights give the same outputs.
- ``"multigrid"``: the last stage's blocks get ``unit_rate * stage_rate`` for the
  unit rates in ``multi_grid`` (DeepLabv3, Chen et al. 2017, arXiv:1706.05587). Unit
  rates are multiplied by the stage rate, as detectron2 reads them (mmsegmentation
  reads them as absolute rates): ``(1, 2, 4)`` at output stride 16 gives ``(2, 4, 8)``.
- ``"hdc"``: every dilated stage cycles the sawtooth ``hdc_rates`` through its blocks,
  restarting at each stage (hybrid dilated convolution, Wang et al. 2018,
  arXiv:1702.08502). The rates are absolute, not multiplied by the stage rate: a
  common factor > 1 would bring the gridding back.
- a mapping ``{stage_name: [rate, ...]}``: explicit lists for the named stages (one
  rate per block); unnamed stages stay plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DilationSchedule = str | Mapping[str, Sequence[int]] | None

SCHEDULES = ("multigrid", "hdc")
OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class StagePlan:
    """How one stage is built: its stride, output stride and per-block rates."""

    name: str
    stride: int
    output_stride: int
    dilations: tuple[int, ...]


def check_output_stride(output_stride: int, allowed: Sequence[int], model: str) -> None:
    if output_stride not in allowed:
        raise ValueError(
            f"output_stride={output_stride} is not supported by {model}; choose one of "
            f"{tuple(allowed)}"
        )


def plan_stages(
    *,
    names: Sequence[str],
    blocks: Sequence[int],
    strides: Sequence[int],
    stem_stride: int,
    output_stride: int,
    dilation_schedule: DilationSchedule = None,
    multi_grid: Sequence[int] = (1, 2, 4),
    hdc_rates: Sequence[int] = (1, 2, 5, 9),
    model: str = "this backbone",
) -> list[StagePlan]:
    """Resolve strides and per-block dilations for every stage.

    Args:
        names: stage names (``layer1`` ...).
        blocks: number of blocks per stage.
        strides: nominal stride of each stage (1 or 2) before dilation replaces it.
        stem_stride: output stride after the stem.
        output_stride: target output stride.
        dilation_schedule: see the module docstring.
        multi_grid: unit rates of the last stage for ``"multigrid"``.
        hdc_rates: the sawtooth cycle for ``"hdc"``.
        model: name used in error messages.

    Raises:
        ValueError: unknown schedule, unknown stage name, or a list whose length is not
            the stage's block count.
    """
    if isinstance(dilation_schedule, str) and dilation_schedule not in SCHEDULES:
        raise ValueError(
            f"unknown dilation_schedule {dilation_schedule!r}; use None (plain), "
            f"{', '.join(repr(s) for s in SCHEDULES)} or a mapping stage -> list of rates "
            f"for stages {list(names)}"
        )
    explicit: Mapping[str, Sequence[int]] = (
        dilation_schedule if isinstance(dilation_schedule, Mapping) else {}
    )
    unknown = sorted(set(explicit) - set(names))
    if unknown:
        raise ValueError(
            f"dilation_schedule names unknown stages {unknown}; {model} has {list(names)}"
        )
    running_stride, rate = stem_stride, 1
    plans = []
    for index, (name, count, nominal) in enumerate(zip(names, blocks, strides, strict=True)):
        previous_rate = rate
        stride = nominal
        if nominal > 1 and running_stride >= output_stride:
            rate *= nominal
            stride = 1
        else:
            running_stride *= nominal
        dilations = [previous_rate] + [rate] * (count - 1)
        if dilation_schedule == "multigrid" and index == len(names) - 1:
            dilations = _fit(name, count, [unit * rate for unit in multi_grid], "multi_grid", model)
        elif dilation_schedule == "hdc" and rate > 1:
            dilations = [hdc_rates[i % len(hdc_rates)] for i in range(count)]
        elif name in explicit:
            dilations = _fit(name, count, list(explicit[name]), "dilation_schedule", model)
        if any(not isinstance(d, int) or d < 1 for d in dilations):
            raise ValueError(f"{name}: dilation rates must be ints >= 1, got {dilations}")
        plans.append(StagePlan(name, stride, running_stride, tuple(int(d) for d in dilations)))
    return plans


def _fit(name: str, count: int, rates: list[int], option: str, model: str) -> list[int]:
    if len(rates) != count:
        raise ValueError(
            f"{option} gives {len(rates)} rates {rates} for stage {name} of {model}, which has "
            f"{count} blocks; give exactly {count} rates (one per block)"
        )
    return rates
