"""Dilation schedules and conv geometry: the one value networks are built from and analysis reads.

A *dilation schedule* says which rate every dilated convolution of a network uses.
It is a frozen value, ``DilationSchedule``, made once and passed whole: backbones
resolve it against their stage layout while they are built, heads and fixed networks
(DRN, the context module, ERFNet, ...) declare theirs as constants, and the analysis
toolkit reads the same value (its rates, its receptive-field chain, its holes) without
building a model.

Rules (``rule``):

- ``"plain"``: torchvision's / timm's ``replace_stride_with_dilation`` layout. Once the
  running stride reaches the target output stride, each further stride-2 stage keeps
  stride 1 and doubles the stage rate; the first block of such a stage keeps the
  previous rate (it sits where the stride used to be), the others use the stage rate.
- ``"multigrid"``: the last stage's blocks get ``unit_rate * stage_rate`` for the unit
  rates in ``rates`` (DeepLabv3, Chen et al. 2017, arXiv:1706.05587). Unit rates are
  multiplied by the stage rate, as detectron2 reads them (mmsegmentation reads them as
  absolute rates): ``(1, 2, 4)`` at output stride 16 gives ``(2, 4, 8)``.
- ``"hdc"``: every dilated stage cycles the sawtooth ``rates`` through its blocks,
  restarting at each stage (hybrid dilated convolution, Wang et al. 2018,
  arXiv:1702.08502). The rates are absolute: a common factor > 1 would bring the
  gridding back.
- ``"explicit"``: per-stage lists ``stages`` (one rate per block); stages it does not
  name stay plain. Fixed networks state their whole schedule this way.

Defaults are written here and nowhere else: ``MULTI_GRID`` and ``HDC_RATES``,
and the published fixed schedules that both a model and the analysis read
(``CONTEXT_MODULE``).

Temporal (1-D) and volumetric (3-D) stacks are schedules too: ``ndim``, ``kernel_size``
and ``causal`` say what the convolutions look like, so WaveNet's ``1, 2, ..., 512``
three times is ``DilationSchedule.exponential(10, repeats=3)`` and the analysis reports
its receptive field and holes without a network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MULTI_GRID: tuple[int, ...] = (1, 2, 4)
"""DeepLabv3's multi-grid unit rates for the last stage."""
HDC_RATES: tuple[int, ...] = (1, 2, 5, 9)
"""The HDC sawtooth cycled through a dilated stage's blocks (Wang et al. 2018)."""

Rule = Literal["plain", "multigrid", "hdc", "explicit"]
RULES: tuple[str, ...] = ("plain", "multigrid", "hdc", "explicit")
_KINDS = ("conv", "pool")


@dataclass(frozen=True)
class ConvGeometry:
    """Geometry of one convolution or pooling window along one spatial/temporal axis.

    The one geometry type of atrous: backbones describe their main paths with it
    (``FeatureInfo.convs``) and the receptive-field arithmetic reads it.

    Attributes:
        kind: ``"conv"`` or ``"pool"`` (max or average pooling window).
        kernel_size: taps ``K`` per dimension.
        stride: step between outputs.
        dilation: rate ``r``; the kernel reads every ``r``-th input sample.
        padding: zero padding before the first sample (moves ``start``, not ``size``).
        causal: the kernel reads only the present and the past (temporal networks:
            all padding on the left, so an output never sees a later input).
    """

    kind: str = "conv"
    kernel_size: int = 3
    stride: int = 1
    dilation: int = 1
    padding: int = 0
    causal: bool = False

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        for name in ("kernel_size", "stride", "dilation"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.padding, int) or isinstance(self.padding, bool) or self.padding < 0:
            raise ValueError(f"padding must be an int >= 0, got {self.padding!r}")

    @property
    def effective_kernel_size(self) -> int:
        """Input samples one output spans along one dimension: ``r (K - 1) + 1``."""
        return self.dilation * (self.kernel_size - 1) + 1

    @classmethod
    def same(cls, kernel_size: int = 3, dilation: int = 1, *, causal: bool = False) -> ConvGeometry:
        """A stride-1 conv padded to keep the size (centred, or all-left when causal)."""
        span = dilation * (kernel_size - 1)
        return cls("conv", kernel_size, 1, dilation, span if causal else span // 2, causal)


@dataclass(frozen=True)
class StageLayout:
    """What a backbone's stages look like before a schedule is applied.

    Attributes:
        names: stage names in order (``layer1`` ...).
        blocks: blocks per stage (one dilation rate each).
        strides: nominal stride of each stage (1 or 2) before dilation replaces it.
        stem_stride: running stride after the stem (before the first stage).
        convs_per_block: dilated ``K x K`` convs in each block, all at the block's rate
            (2 for ResNet's basic block, 1 for the bottleneck and inverted residual);
            analysis reads it to chain a stage's convs without building the network.
    """

    names: tuple[str, ...]
    blocks: tuple[int, ...]
    strides: tuple[int, ...]
    stem_stride: int = 1
    convs_per_block: int = 1

    def __post_init__(self) -> None:
        if not len(self.names) == len(self.blocks) == len(self.strides):
            raise ValueError(
                f"names, blocks and strides must have one entry per stage, got "
                f"{len(self.names)}, {len(self.blocks)}, {len(self.strides)}"
            )
        if self.convs_per_block < 1:
            raise ValueError(f"convs_per_block must be >= 1, got {self.convs_per_block}")


@dataclass(frozen=True)
class StagePlan:
    """One resolved stage: the stride it applies, its output stride and per-block rates."""

    name: str
    stride: int
    output_stride: int
    dilations: tuple[int, ...]


@dataclass(frozen=True)
class DilationSchedule:
    """How every dilated convolution of a network picks its rate: one frozen value.

    Build it with the class methods (``plain``, ``multigrid``, ``hdc``,
    ``explicit``, ``exponential``) or ``parse`` (``None``, a rule name, a
    mapping ``{stage: [rates]}`` or a schedule), resolve it for a backbone with
    ``resolve``, and read it in analysis through ``rates`` and ``layers``.

    Attributes:
        rule: ``"plain"``, ``"multigrid"``, ``"hdc"`` or ``"explicit"``.
        rates: the unit rates (multigrid) or the cycle (hdc); empty otherwise.
        stages: ``((stage, (rate, ...)), ...)`` for explicit schedules.
        kernel_size: ``K`` of the dilated convolutions (3 for 2-D networks, often 2
            for temporal ones).
        ndim: spatial/temporal dimensions of the convolutions (1, 2 or 3).
        causal: temporal convolutions that read only the past.

    Example:
        ```python
        import atrous
        from atrous.ops import DilationSchedule

        schedule = DilationSchedule.hdc((1, 2, 5))  # each dilated stage cycles 1, 2, 5
        model = atrous.build_model("deeplabv3", num_classes=3, backbone="resnet18",
                                   output_stride=8, dilation_schedule=schedule)
        print([(f.name, f.dilation) for f in model.backbone.feature_info[-2:]])
        assert DilationSchedule.parse("hdc") == DilationSchedule.hdc()
        ```
    """

    rule: Rule = "plain"
    rates: tuple[int, ...] = ()
    stages: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())
    kernel_size: int = 3
    ndim: int = 2
    causal: bool = False

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(
                f"unknown dilation schedule {self.rule!r}; use one of {', '.join(RULES)}"
            )
        _check_rates(self.rates, "rates")
        for name, rates in self.stages:
            _check_rates(rates, f"stage {name!r}")
        if self.rule in ("multigrid", "hdc") and not self.rates:
            raise ValueError(f"a {self.rule} schedule needs rates")
        if self.rule == "explicit" and not self.stages:
            raise ValueError("an explicit schedule needs at least one stage with its rates")
        if self.ndim not in (1, 2, 3):
            raise ValueError(f"ndim must be 1, 2 or 3, got {self.ndim!r}")
        if not isinstance(self.kernel_size, int) or self.kernel_size < 1:
            raise ValueError(f"kernel_size must be an int >= 1, got {self.kernel_size!r}")

    # -- constructors -----------------------------------------------------------------
    @classmethod
    def plain(cls) -> DilationSchedule:
        """torchvision's layout: doubled rates past the output stride."""
        return cls("plain")

    @classmethod
    def multigrid(cls, unit_rates: Sequence[int] = MULTI_GRID) -> DilationSchedule:
        """DeepLabv3's multi-grid: last stage's blocks at ``unit * stage_rate``."""
        return cls("multigrid", tuple(int(r) for r in unit_rates))

    @classmethod
    def hdc(cls, rates: Sequence[int] = HDC_RATES) -> DilationSchedule:
        """Hybrid dilated convolution: each dilated stage cycles ``rates``."""
        return cls("hdc", tuple(int(r) for r in rates))

    @classmethod
    def explicit(
        cls,
        stages: Mapping[str, Sequence[int]] | Sequence[int],
        *,
        kernel_size: int = 3,
        ndim: int = 2,
        causal: bool = False,
    ) -> DilationSchedule:
        """Per-stage rate lists, or a bare list of rates (one stage named ``"layers"``)."""
        if not isinstance(stages, Mapping):
            stages = {"layers": stages}
        items = tuple((str(name), tuple(int(r) for r in rates)) for name, rates in stages.items())
        return cls("explicit", (), items, kernel_size, ndim, causal)

    @classmethod
    def exponential(
        cls,
        layers: int,
        *,
        base: int = 2,
        repeats: int = 1,
        kernel_size: int = 2,
        ndim: int = 1,
        causal: bool = True,
    ) -> DilationSchedule:
        """``1, base, base**2, ...`` for ``layers`` layers, the stack repeated ``repeats`` times.

        WaveNet's ``1, 2, ..., 512`` three times is
        ``DilationSchedule.exponential(10, repeats=3)``; a TCN's causal kernel-2 stack
        with rates 1..16 is ``exponential(5)``.
        """
        if layers < 1 or repeats < 1 or base < 1:
            raise ValueError(
                f"layers, repeats and base must be >= 1, got {layers}, {repeats}, {base}"
            )
        one = tuple(base**i for i in range(layers))
        stages = {f"stack{i + 1}": one for i in range(repeats)}
        return cls.explicit(stages, kernel_size=kernel_size, ndim=ndim, causal=causal)

    @classmethod
    def parse(cls, value: Any) -> DilationSchedule:
        """Read a schedule from ``None``, a rule name, rates, a mapping or a schedule.

        Strings: ``"plain"``, ``"multigrid"``, ``"hdc"`` (default rates) or with rates,
        ``"multigrid:1,2,4"``, ``"hdc:1,2,5"``. A list of ints is one explicit chain
        (stage ``"layers"``). A mapping ``{stage: [rates]}`` is an explicit schedule; a
        mapping with a ``rule`` key is the dict form written by ``to_config``.

        Raises:
            ValueError: an unknown rule, unreadable rates or invalid values.
            TypeError: a value of another type.
        """
        if value is None:
            return cls.plain()
        if isinstance(value, DilationSchedule):
            return value
        if isinstance(value, str):
            rule, _, rates = value.partition(":")
            rule = rule.strip()
            if rule not in ("plain", "multigrid", "hdc"):
                raise ValueError(
                    f"unknown dilation schedule {value!r}; use 'plain', 'multigrid', 'hdc' "
                    "(optionally with rates, e.g. 'hdc:1,2,5'), or a mapping stage -> rates"
                )
            if rule == "plain":
                if rates:
                    raise ValueError(f"'plain' takes no rates, got {value!r}")
                return cls.plain()
            try:
                parsed = parse_rates(rates) if rates else None
            except ValueError as error:
                raise ValueError(f"dilation schedule {value!r}: {error}") from None
            if rule == "multigrid":
                return cls.multigrid(parsed or MULTI_GRID)
            return cls.hdc(parsed or HDC_RATES)
        if isinstance(value, Mapping):
            if "rule" in value:
                data = dict(value)
                stages = data.pop("stages", {}) or {}
                rates = tuple(data.pop("rates", ()) or ())
                return cls(
                    data.pop("rule"),
                    tuple(int(r) for r in rates),
                    tuple((str(k), tuple(int(r) for r in v)) for k, v in dict(stages).items()),
                    **data,
                )
            return cls.explicit(value)
        if isinstance(value, Sequence) and all(
            isinstance(r, int) and not isinstance(r, bool) for r in value
        ):
            return cls.explicit(value)
        raise TypeError(
            f"cannot read a dilation schedule from {value!r}; pass None, 'plain', "
            "'multigrid', 'hdc' (optionally with rates, 'hdc:1,2,5'), a list of rates, a "
            "mapping stage -> rates, or a DilationSchedule"
        )

    # -- reading ----------------------------------------------------------------------
    @property
    def stage_rates(self) -> dict[str, tuple[int, ...]]:
        """Explicit stages as a dict (empty for rule-based schedules)."""
        return dict(self.stages)

    @property
    def flat_rates(self) -> tuple[int, ...]:
        """Every rate in build order: the stages of an explicit schedule one after
        another, or the rule's rates (unit rates for multigrid, the cycle for hdc)."""
        if self.rule == "explicit":
            return tuple(r for _, rates in self.stages for r in rates)
        return self.rates

    def layers(self) -> tuple[ConvGeometry, ...]:
        """The stride-1 chain of this schedule's rates (same padding), for RF tables."""
        return tuple(
            ConvGeometry.same(self.kernel_size, rate, causal=self.causal)
            for rate in self.flat_rates
        )

    def to_config(self) -> str | dict[str, Any]:
        """JSON/YAML form that ``parse`` reads back (equal value, not just equal rates).

        The short forms (``"plain"``, ``"hdc:1,2,5,9"``, ``{stage: [rates]}``) are used
        for 2-D ``3 x 3`` non-causal schedules, the dict with a ``rule`` key otherwise.
        """
        default_geometry = (self.kernel_size, self.ndim, self.causal) == (3, 2, False)
        if self.rule == "plain" and default_geometry:
            return "plain"
        if self.rule in ("multigrid", "hdc") and default_geometry:
            return f"{self.rule}:{','.join(str(r) for r in self.rates)}"
        if self.rule == "explicit" and default_geometry and "rule" not in self.stage_rates:
            return {name: list(rates) for name, rates in self.stages}
        return {
            "rule": self.rule,
            "rates": list(self.rates),
            "stages": {name: list(rates) for name, rates in self.stages},
            "kernel_size": self.kernel_size,
            "ndim": self.ndim,
            "causal": self.causal,
        }

    def __str__(self) -> str:
        if self.rule == "explicit":
            inner = "; ".join(f"{n}: {','.join(map(str, r))}" for n, r in self.stages)
            return f"explicit ({inner})"
        if self.rule == "plain":
            return "plain"
        return f"{self.rule} ({','.join(map(str, self.rates))})"

    # -- building ---------------------------------------------------------------------
    def resolve(
        self, layout: StageLayout, output_stride: int, *, model: str = "this backbone"
    ) -> tuple[StagePlan, ...]:
        """Strides and per-block rates of every stage of ``layout`` at ``output_stride``.

        Stages are walked in order (timm's running stride): while the running stride is
        below ``output_stride`` a stride-2 stage downsamples; afterwards it keeps stride
        1 and doubles the stage rate, and the rule picks the per-block rates.

        Raises:
            ValueError: a stage the layout does not have, or a list whose length is not
                the stage's block count.
        """
        explicit = self.stage_rates
        unknown = sorted(set(explicit) - set(layout.names))
        if unknown:
            raise ValueError(
                f"dilation schedule names unknown stages {unknown}; {model} has "
                f"{list(layout.names)}"
            )
        running_stride, rate = layout.stem_stride, 1
        plans = []
        last = len(layout.names) - 1
        for index, (name, count, nominal) in enumerate(
            zip(layout.names, layout.blocks, layout.strides, strict=True)
        ):
            previous_rate, stride = rate, nominal
            if nominal > 1 and running_stride >= output_stride:
                rate *= nominal
                stride = 1
            else:
                running_stride *= nominal
            dilations = [previous_rate] + [rate] * (count - 1)
            if self.rule == "multigrid" and index == last:
                dilations = _fit(name, count, [u * rate for u in self.rates], "multi-grid", model)
            elif self.rule == "hdc" and rate > 1:
                dilations = [self.rates[i % len(self.rates)] for i in range(count)]
            elif name in explicit:
                dilations = _fit(name, count, list(explicit[name]), "the schedule", model)
            plans.append(StagePlan(name, stride, running_stride, tuple(dilations)))
        return tuple(plans)


ScheduleLike = DilationSchedule | str | Mapping[str, Sequence[int]] | Sequence[int] | None
"""Anything ``DilationSchedule.parse`` reads: what a builder's ``dilation_schedule`` takes."""


def check_output_stride(output_stride: int, allowed: Iterable[int], model: str) -> None:
    """Refuse an output stride the model cannot be built at, listing those it can."""
    allowed = tuple(allowed)
    if output_stride not in allowed:
        raise ValueError(
            f"output_stride={output_stride} is not supported by {model}; choose one of {allowed}"
        )


def _check_rates(rates: Sequence[int], where: str) -> None:
    for rate in rates:
        if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
            raise ValueError(f"{where}: dilation rates must be ints >= 1, got {list(rates)}")


def parse_rates(text: str) -> tuple[int, ...]:
    """``"1,2,5"`` -> ``(1, 2, 5)``: the one reader of a rate list (schedules, the CLI).

    Spaces are ignored. Raises ValueError, showing the expected form, for anything but
    comma-separated integers >= 1.
    """
    parts = [part for part in text.replace(" ", "").split(",") if part]
    try:
        rates = tuple(int(part) for part in parts)
    except ValueError:
        rates = ()
    if not rates or min(rates) < 1:
        raise ValueError(
            f"cannot read rates from {text!r}; write integers >= 1 separated by commas, e.g. 1,2,5"
        )
    return rates


def _fit(name: str, count: int, rates: list[int], option: str, model: str) -> list[int]:
    if len(rates) != count:
        raise ValueError(
            f"{option} gives {len(rates)} rates {rates} for stage {name} of {model}, which has "
            f"{count} blocks; give exactly {count} rates (one per block)"
        )
    return rates


CONTEXT_MODULE = DilationSchedule.explicit({"context": (1, 1, 2, 4, 8, 16, 1)})
"""The context module's seven ``3 x 3`` layers (Yu & Koltun 2016, arXiv:1511.07122):
receptive field 67 with no holes. The module and its receptive-field table read this."""
