"""Hybrid Dilated Convolution (HDC): check a dilation schedule and design hole-free ones.

Wang et al. (2018), "Understanding Convolution for Semantic Segmentation"
(arXiv:1702.08502), define for ``K x K`` kernels and rates ``r_1..r_n`` the maximum
distance between two non-zero inputs seen by layer ``i``:

    M_n = r_n,    M_i = max(M_{i+1} - 2 r_i,  M_{i+1} - 2 (M_{i+1} - r_i),  r_i)

and ask for ``M_2 <= K`` so that the first layer (rate ``r_1``, usually 1) fills the
gaps; rates in a group should also share no common factor > 1. The M-rule is a
sufficient-looking rule of thumb, not a proof: ``[2, 2, 2]`` satisfies it and still
leaves holes. ``hdc_check`` therefore also counts the holes exactly, from the path
counts of the chain (``atrous.analysis.coverage.chain_coverage``).

A chain of stride-1 convolutions is a convolution of kernels, which commutes, so the
coverage depends only on the multiset of rates; the M-rule depends on their order.

Both read a ``DilationSchedule`` directly: ``hdc_check`` takes
one (its rates, kernel size and dimensions: a causal kernel-2 temporal stack is checked
in 1-D) and ``check_stages`` resolves one against a backbone's
``StageLayout`` and checks every dilated stage, without
building a network.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from atrous.analysis.coverage import CoverageMap, chain_counts_1d, chain_coverage
from atrous.ops.schedule import DilationSchedule, StageLayout


@dataclass(frozen=True)
class HDCReport:
    """Result of ``hdc_check``.

    Attributes:
        rates: the schedule, first layer first.
        kernel_size: ``K``.
        m_values: ``M_1..M_n`` (``M_1`` for completeness; the rule reads ``M_2``); for
            a schedule of several stages (repeated stacks), each stage's values in turn.
        m2: ``M_2`` (the largest over the stages), or ``None`` for a single layer (the
            rule does not apply).
        m_rule_passes: ``M_2 <= K`` (``True`` for a single layer).
        common_factor: greatest common divisor of the rates.
        has_common_factor: ``common_factor > 1`` (holes for certain: every offset reached
            is a multiple of it).
        coverage: exact 2-D coverage of the chain's centre output.
        hole_fraction: share of the receptive-field box never reached (exact).
        receptive_field: ``1 + (K - 1) * sum(rates)``.
        passes: M-rule holds and there are no holes.
        explanation: plain sentences on why it passes or fails.
        dims: dimensions of the convolutions (1 temporal, 2 images, 3 volumes); the
            hole fraction is over the ``dims``-dimensional receptive field.
    """

    rates: tuple[int, ...]
    kernel_size: int
    m_values: tuple[int, ...]
    m2: int | None
    m_rule_passes: bool
    common_factor: int
    has_common_factor: bool
    coverage: CoverageMap
    hole_fraction: float
    receptive_field: int
    passes: bool
    explanation: str
    dims: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return {
            "rates": list(self.rates),
            "kernel_size": self.kernel_size,
            "dims": self.dims,
            "m_values": list(self.m_values),
            "m2": self.m2,
            "m_rule_passes": self.m_rule_passes,
            "common_factor": self.common_factor,
            "has_common_factor": self.has_common_factor,
            "hole_fraction": self.hole_fraction,
            "receptive_field": self.receptive_field,
            "uniformity": self.coverage.uniformity,
            "is_grid": self.coverage.is_grid,
            "grid_period": None
            if self.coverage.grid_period is None
            else list(self.coverage.grid_period),
            "passes": self.passes,
            "explanation": self.explanation,
        }


def _check_rates(rates: Sequence[int], kernel_size: int) -> tuple[int, ...]:
    values = tuple(int(r) for r in rates)
    if not values:
        raise ValueError("rates must not be empty, e.g. --rates 1,2,5")
    if any(r < 1 for r in values) or any(int(r) != r for r in rates):
        raise ValueError(f"rates must be integers >= 1, got {list(rates)}")
    if kernel_size < 2:
        raise ValueError(f"kernel_size must be >= 2 for dilation to matter, got {kernel_size}")
    return values


def m_values(rates: Sequence[int]) -> tuple[int, ...]:
    """``M_1..M_n`` of Wang et al. (2018), computed from ``M_n = r_n`` downwards."""
    rates = tuple(int(r) for r in rates)
    m = [0] * len(rates)
    m[-1] = rates[-1]
    for i in range(len(rates) - 2, -1, -1):
        nxt, r = m[i + 1], rates[i]
        m[i] = max(nxt - 2 * r, nxt - 2 * (nxt - r), r)
    return tuple(m)


def receptive_field_of_rates(rates: Sequence[int], kernel_size: int = 3) -> int:
    """Receptive field of a chain of stride-1 convs: ``1 + (K - 1) * sum(rates)``."""
    return 1 + (kernel_size - 1) * sum(int(r) for r in rates)


def schedule_rates(schedule: DilationSchedule) -> tuple[int, ...]:
    """The chain a schedule stands for on its own: every rate of an explicit schedule in
    build order, or the HDC cycle.

    Raises:
        ValueError: for ``plain`` and ``multigrid``, whose rates depend on the output
            stride: resolve them against a backbone (``check_stages``).
    """
    if schedule.rule in ("plain", "multigrid"):
        raise ValueError(
            f"a {schedule.rule} schedule has no rates of its own: its rates follow the "
            "output stride. Check it per stage with check_stages(schedule, layout, "
            "output_stride) (atrous rf --backbone NAME --output-stride N "
            "--dilation-schedule ...), or give explicit rates (e.g. 'hdc:1,2,5' or [1, 2, 5])"
        )
    return schedule.flat_rates


_UNITS = {1: "sample", 2: "pixel", 3: "voxel"}


def _extent(size: int, dims: int) -> str:
    return f"{size}-sample" if dims == 1 else "x".join([str(size)] * dims)


_MAX_CELLS = 1 << 24  # an exact n-D map larger than this is summarised from the 1-D one


def _chain_coverage(
    values: Sequence[int], kernel_size: int, dims: int
) -> tuple[CoverageMap, float]:
    """Exact coverage and hole fraction of a chain in ``dims`` dimensions.

    The n-D kernels are outer products of the 1-D ones, so a position is reached exactly
    when each of its coordinates is reached in 1-D: the hole fraction is
    ``1 - (1 - h_1)^dims``. Maps too large to hold come back in 1-D with that fraction.
    """
    rf = receptive_field_of_rates(values, kernel_size)
    if rf**dims <= _MAX_CELLS:
        coverage = chain_coverage(values, kernel_size, dims=dims)
        return coverage, coverage.hole_fraction
    line = chain_coverage(values, kernel_size, dims=1)
    return line, 1.0 - (1.0 - line.hole_fraction) ** dims


def _resolve_inputs(
    rates: Sequence[int] | DilationSchedule,
    kernel_size: int | None,
    dims: int | None,
) -> tuple[Sequence[int], int, int, list[tuple[int, ...]] | None]:
    """Rates, kernel size, dimensions and stage groups of ``hdc_check``'s arguments.

    A ``DilationSchedule`` supplies its own kernel size and
    ``ndim`` unless the caller overrides them, and an explicit multi-stage schedule keeps
    its stages so the M-rule can be applied to each one.
    """
    groups: list[tuple[int, ...]] | None = None
    if isinstance(rates, DilationSchedule):
        kernel_size = rates.kernel_size if kernel_size is None else kernel_size
        dims = rates.ndim if dims is None else dims
        if rates.rule == "explicit" and len(rates.stages) > 1:
            groups = [tuple(group) for _, group in rates.stages]
        rates = schedule_rates(rates)
    kernel_size = 3 if kernel_size is None else kernel_size
    dims = 2 if dims is None else dims
    if dims not in (1, 2, 3):
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return rates, kernel_size, dims, groups


def _m_rule_sentence(
    m2: int | None, m_rule: bool, kernel_size: int, dims: int, groups: int, first_rate: int
) -> str:
    """The sentence of the explanation about the M-rule (``groups`` stages checked)."""
    if m2 is None:
        return "A single layer: the M-rule needs two or more layers."
    if m_rule:
        return f"M_2 = {m2} <= K = {kernel_size}: the M-rule of Wang et al. (2018) holds" + (
            f" in each of the {groups} stages." if groups > 1 else "."
        )
    unit = _UNITS[dims] + "s"
    return (
        f"M_2 = {m2} > K = {kernel_size}: the M-rule fails; the layers above leave gaps "
        f"of {m2} {unit} that a {_extent(kernel_size, dims)} first layer at rate "
        f"{first_rate} cannot fill."
    )


def _coverage_sentence(
    values: tuple[int, ...], coverage: CoverageMap, holes: float, rf: int, dims: int
) -> str:
    """The sentence of the explanation about the exact coverage of the chain."""
    schedule = ", ".join(map(str, values))
    if holes > 0:
        kind = (
            f"a regular grid with period {coverage.grid_period}"
            if coverage.is_grid
            else "an irregular pattern"
        )
        return (
            f"The exact coverage of [{schedule}] leaves {holes:.1%} of its "
            f"{_extent(rf, dims)} receptive field unreached, in {kind}."
        )
    where = _UNITS[dims]
    return (
        f"The exact coverage of [{schedule}] reaches every {where} of its "
        f"{_extent(rf, dims)} receptive field (uniformity {coverage.uniformity:.2f})."
    )


def hdc_check(
    rates: Sequence[int] | DilationSchedule,
    kernel_size: int | None = None,
    *,
    dims: int | None = None,
) -> HDCReport:
    """Check a schedule with the M-rule, the common-factor rule and the exact holes.

    Args:
        rates: dilation rates, first layer first, or a
            ``DilationSchedule`` (see ``schedule_rates``;
            its kernel size and dimensions are used unless given here).
        kernel_size: ``K`` (default 3, or the schedule's).
        dims: dimensions of the convolutions (default 2, or the schedule's ``ndim``):
            1 for temporal stacks, 3 for volumes.

    Returns:
        An ``HDCReport``; ``passes`` is the M-rule *and* no exact holes.

    Example:
        ```python
        from atrous.analysis import hdc_check

        report = hdc_check([1, 2, 5])
        assert report.passes and report.m2 == 2
        print(hdc_check([2, 4, 8]).explanation)  # a common factor: holes for certain
        ```
    """
    rates, kernel_size, dims, groups = _resolve_inputs(rates, kernel_size, dims)
    values = _check_rates(rates, kernel_size)
    # The M-rule is a rule for one group of layers (HDC repeats its sawtooth group; a
    # WaveNet repeats its 1..512 stack): with several stages it is applied per stage.
    groups = groups or [values]
    ms = tuple(m for group in groups for m in m_values(group))
    group_m2 = [m_values(group)[1] for group in groups if len(group) > 1]
    m2 = max(group_m2) if group_m2 else None
    m_rule = m2 is None or m2 <= kernel_size
    gcd = reduce(math.gcd, values)
    coverage, holes = _chain_coverage(values, kernel_size, dims)
    passes = m_rule and holes == 0
    rf = receptive_field_of_rates(values, kernel_size)
    sentences = [_m_rule_sentence(m2, m_rule, kernel_size, dims, len(groups), values[0])]
    if gcd > 1:
        sentences.append(
            f"All rates share the factor {gcd}, so only offsets that are multiples of {gcd} "
            "are ever reached (gridding)."
        )
    sentences.append(_coverage_sentence(values, coverage, holes, rf, dims))
    verdict = "Passes." if passes else "Fails."
    if not passes and m_rule and holes > 0:
        verdict = "Fails: the M-rule alone misses these holes; the exact check catches them."
    sentences.append(verdict)
    return HDCReport(
        rates=values,
        kernel_size=kernel_size,
        m_values=ms,
        m2=m2,
        m_rule_passes=m_rule,
        common_factor=gcd,
        has_common_factor=gcd > 1,
        coverage=coverage,
        hole_fraction=holes,
        receptive_field=rf,
        passes=passes,
        explanation=" ".join(sentences),
        dims=dims,
    )


@dataclass(frozen=True)
class StageCheck:
    """One stage of ``check_stages``.

    Attributes:
        name: stage name.
        stride: the stride the stage applies (1 once the output stride is reached).
        output_stride: the stride of its output map.
        dilations: per-block rates.
        chain: rates of the stage's dilated convs in order (``convs_per_block`` each).
        report: ``hdc_check`` of ``chain`` on the map the stage reads, or ``None``
            for a stage that strides or does not dilate. Exact with shortcuts too:
            every kernel includes its centre tap, so a shortcut reaches a subset of
            what the main path reaches.
    """

    name: str
    stride: int
    output_stride: int
    dilations: tuple[int, ...]
    chain: tuple[int, ...]
    report: HDCReport | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        report = self.report
        return {
            "name": self.name,
            "stride": self.stride,
            "output_stride": self.output_stride,
            "dilations": list(self.dilations),
            "chain": list(self.chain),
            "receptive_field": None if report is None else report.receptive_field,
            "m2": None if report is None else report.m2,
            "common_factor": None if report is None else report.common_factor,
            "hole_fraction": 0.0 if report is None else report.hole_fraction,
            "passes": True if report is None else report.passes,
        }


def check_stages(
    schedule: DilationSchedule,
    layout: StageLayout,
    output_stride: int,
    *,
    model: str = "this backbone",
) -> list[StageCheck]:
    """Per-stage rates and exact holes of ``schedule`` on a backbone, without building it.

    Each dilated stage is checked on the grid it reads (the previous stage's map),
    where gridding shows; the schedule is resolved exactly as the backbone resolves it.
    """
    plans = schedule.resolve(layout, output_stride, model=model)
    checks = []
    for plan in plans:
        chain = tuple(rate for rate in plan.dilations for _ in range(layout.convs_per_block))
        dilated = plan.stride == 1 and any(rate > 1 for rate in chain)
        report = hdc_check(chain, schedule.kernel_size, dims=schedule.ndim) if dilated else None
        checks.append(
            StageCheck(plan.name, plan.stride, plan.output_stride, plan.dilations, chain, report)
        )
    return checks


@dataclass(frozen=True)
class DesignedSchedule:
    """A hole-free schedule found by ``design_schedules`` (a search result; the
    schedule a network is built from is ``DilationSchedule``).

    Attributes:
        rates: rates in the order to build them (ascending, the order HDC uses).
        kernel_size: ``K``.
        receptive_field: its receptive field.
        largest_rate: its largest rate.
        uniformity: uniformity of its 2-D path counts (1 = every pixel equally often).
        m2: ``M_2`` of that order (``None`` for one layer).
        explanation: the trade-off in one or two sentences.
    """

    rates: tuple[int, ...]
    kernel_size: int
    receptive_field: int
    largest_rate: int
    uniformity: float
    m2: int | None
    explanation: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def layers(self) -> int:
        """Number of layers (rates)."""
        return len(self.rates)

    @property
    def rf(self) -> int:
        """Short name for ``receptive_field``."""
        return self.receptive_field

    def to_schedule(self) -> DilationSchedule:
        """The ``DilationSchedule`` to build these rates with."""
        return DilationSchedule.explicit(self.rates, kernel_size=self.kernel_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rates": list(self.rates),
            "layers": self.layers,
            "receptive_field": self.receptive_field,
            "largest_rate": self.largest_rate,
            "uniformity": self.uniformity,
            "m2": self.m2,
            "explanation": self.explanation,
        }


def _hole_free(rates: Sequence[int], kernel_size: int) -> bool:
    """Bitset test: is every offset in [-R, R] reached by some path?"""
    reach = 1
    span = 0
    for rate in rates:
        shifted = 0
        for tap in range(kernel_size):
            shifted |= reach << (tap * rate)
        reach = shifted
        span += (kernel_size - 1) * rate
    return reach == (1 << (span + 1)) - 1


def _ascending_schedules(
    layers: int, kernel_size: int, need: int, most: int, high: int
) -> Iterator[tuple[int, ...]]:
    """Ascending rate tuples of length ``layers`` whose every prefix is hole-free.

    A chain whose support is the whole span ``[0, S]`` (``S = (K - 1) * sum``) stays
    gap-free after adding rate ``r`` exactly when ``r <= S + 1``, so the search grows
    each schedule from a gap-free prefix; the rate sum must end in ``[need, most]``.
    """

    def reach(span: int, remaining: int, low: int) -> int:
        # Largest rate sum the remaining layers can add (greedy: each as large as allowed).
        total = 0
        for _ in range(remaining):
            rate = min(high, span + 1)
            if rate < low:
                return total
            total += rate
            span += (kernel_size - 1) * rate
        return total

    def grow(prefix: tuple[int, ...], total: int) -> Iterator[tuple[int, ...]]:
        if len(prefix) == layers:
            if need <= total <= most:
                yield prefix
            return
        span = (kernel_size - 1) * total
        low = prefix[-1] if prefix else 1
        remaining = layers - len(prefix)
        for rate in range(low, min(high, span + 1, most - total) + 1):
            after = total + rate
            if after + reach(span + (kernel_size - 1) * rate, remaining - 1, rate) < need:
                continue
            yield from grow((*prefix, rate), after)

    yield from grow((), 0)


def design_schedules(
    kernel_size: int = 3,
    target_rf: int = 67,
    max_layers: int = 8,
    max_rate: int | None = None,
    limit: int = 10,
    *,
    max_candidates: int = 200_000,
) -> list[DesignedSchedule]:
    """Hole-free schedules whose receptive field reaches ``target_rf``, fewest layers first.

    The search runs over ascending schedules grown from hole-free prefixes (each new
    rate at most the span so far plus one; HDC's sawtooth groups such as 1, 2, 5 are of
    this kind), with a rate sum between the least that reaches the target and a quarter
    more. Coverage does not depend on the order of the rates, so every schedule is
    reported ascending. Within a depth, schedules closest to the target come first, then
    the smaller largest rate (less padding, fewer border effects), then the more uniform.

    Args:
        kernel_size: ``K``.
        target_rf: receptive field to reach (``>= target_rf``).
        max_layers: the most layers to consider.
        max_rate: the largest rate allowed (default: whatever the target needs).
        limit: how many schedules to return.
        max_candidates: stop after this many candidates (``extra["truncated"]`` says so).

    Returns:
        Up to ``limit`` schedules, or an empty list when none fits the limits.

    Example:
        ```python
        from atrous.analysis import design_schedules

        for found in design_schedules(target_rf=33, limit=3):
            print(found.rates, found.receptive_field, found.largest_rate)
        ```
    """
    if kernel_size < 2:
        raise ValueError(f"kernel_size must be >= 2, got {kernel_size}")
    if target_rf < 1:
        raise ValueError(f"target_rf must be >= 1, got {target_rf}")
    if max_layers < 1:
        raise ValueError(f"max_layers must be >= 1, got {max_layers}")
    need = max(1, math.ceil((target_rf - 1) / (kernel_size - 1)))
    most = need + max(2, need // 4)
    high = max_rate if max_rate is not None else most
    found: list[tuple[int, ...]] = []
    seen = 0
    truncated = False
    for layers in range(1, max_layers + 1):
        for rates in _ascending_schedules(layers, kernel_size, need, most, high):
            seen += 1
            if seen > max_candidates:
                truncated = True
                break
            found.append(rates)
        if truncated or len(found) >= limit:
            break
    # Rank cheaply first (depth, receptive field, largest rate), then by uniformity among
    # the leading candidates only: computing every candidate's counts would dominate.
    found.sort(key=lambda rates: (len(rates), sum(rates), max(rates)))
    schedules = []
    for rates in found[: 5 * limit]:
        coverage = chain_coverage(rates, kernel_size, dims=1)
        ms = m_values(rates)
        schedules.append(
            DesignedSchedule(
                rates=rates,
                kernel_size=kernel_size,
                receptive_field=receptive_field_of_rates(rates, kernel_size),
                largest_rate=max(rates),
                uniformity=_uniformity_2d(coverage.counts),
                m2=ms[1] if len(rates) > 1 else None,
                extra={"truncated": truncated},
            )
        )
    schedules.sort(key=lambda s: (s.layers, s.receptive_field, s.largest_rate, -s.uniformity))
    schedules = schedules[:limit]
    return [_explain(s, schedules) for s in schedules]


def _uniformity_2d(line: Any) -> float:
    """Uniformity of the 2-D counts ``outer(line, line)`` without building them."""
    import numpy as np

    line = np.asarray(line, dtype=np.float64)
    line = line[line > 0]
    # mean and mean-square of an outer product factorise.
    mean = line.mean() ** 2
    square = (line**2).mean() ** 2
    cv = math.sqrt(max(square - mean**2, 0.0)) / mean
    return 1.0 / (1.0 + cv)


def _explain(schedule: DesignedSchedule, all_found: Sequence[DesignedSchedule]) -> DesignedSchedule:
    best_uniformity = max(s.uniformity for s in all_found)
    fewest = min(s.layers for s in all_found)
    parts = [
        f"{schedule.layers} layer(s) reach RF {schedule.receptive_field} with no holes; "
        f"largest rate {schedule.largest_rate} needs {schedule.largest_rate * (schedule.kernel_size - 1) // 2} "
        "pixels of padding per side."
    ]
    if schedule.layers == fewest:
        parts.append("Fewest layers (cheapest).")
    else:
        parts.append(f"{schedule.layers - fewest} layer(s) more than the shallowest.")
    if schedule.uniformity >= best_uniformity - 1e-12:
        parts.append(f"Most uniform coverage found ({schedule.uniformity:.2f}).")
    else:
        parts.append(
            f"Coverage uniformity {schedule.uniformity:.2f} (best {best_uniformity:.2f}): "
            "some pixels are counted much more often than others."
        )
    return DesignedSchedule(
        rates=schedule.rates,
        kernel_size=schedule.kernel_size,
        receptive_field=schedule.receptive_field,
        largest_rate=schedule.largest_rate,
        uniformity=schedule.uniformity,
        m2=schedule.m2,
        explanation=" ".join(parts),
        extra=schedule.extra,
    )


__all__ = [
    "DesignedSchedule",
    "HDCReport",
    "StageCheck",
    "chain_counts_1d",
    "check_stages",
    "design_schedules",
    "hdc_check",
    "m_values",
    "receptive_field_of_rates",
    "schedule_rates",
]
