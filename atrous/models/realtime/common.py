"""Layers and schedule handling shared by the real-time networks (DABNet, CGNet).

Both networks (and ESPNet, ENet before them) normalise with BN + PReLU, start with
three 3x3 convs at 1/2 resolution, and concatenate the input image, average-pooled to
each stage's resolution, into a stage's output ("input injection"): the cheap stages
see the colours of the pixels they label again. These layers are here once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from atrous.models.segmentor import Segmentor
from atrous.ops.schedule import DilationSchedule

STEM_CHANNELS = 32
"""Channels of the three stem convs (DABNet and CGNet both use 32)."""


class BNPReLU(nn.Module):
    """BatchNorm (eps 1e-3, as the authors' code) then a per-channel PReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-3)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(x))


class ConvBNPReLU(nn.Module):
    """Bias-free conv (same padding per axis) + BN + PReLU.

    Args:
        inputs: input channels.
        outputs: output channels.
        kernel_size: ``k`` or ``(kh, kw)``.
        stride: 1, or 2 to halve the map.
        dilation: ``r`` or ``(rh, rw)``; the padding ``r (k - 1) / 2`` keeps the size.
        groups: ``inputs`` for a depth-wise conv.
    """

    def __init__(
        self,
        inputs: int,
        outputs: int,
        kernel_size: int | tuple[int, int] = 3,
        *,
        stride: int = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
    ) -> None:
        super().__init__()
        kernel = _pair(kernel_size)
        rate = _pair(dilation)
        padding = tuple(r * (k - 1) // 2 for k, r in zip(kernel, rate))
        self.conv = nn.Conv2d(
            inputs,
            outputs,
            kernel,
            stride=stride,
            padding=padding,
            dilation=rate,
            groups=groups,
            bias=False,
        )
        self.bn_act = BNPReLU(outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn_act(self.conv(x))


class InjectedStem(nn.Module):
    """Three 3x3 convs to 32 channels (the first with stride 2), then the image at 1/2.

    Output: BN + PReLU of ``cat([convs(x), image_half])``, 35 channels at 1/2.

    Args:
        rates: the three convs' rates (1, 1, 1 published; the first one is strided).
    """

    def __init__(self, rates: tuple[int, ...] = (1, 1, 1)) -> None:
        super().__init__()
        if len(rates) != 3 or rates[0] != 1:
            raise ValueError(
                f"the stem has three convs, the first with stride 2 at rate 1; got rates "
                f"{list(rates)}"
            )
        width = STEM_CHANNELS
        self.convs = nn.Sequential(
            ConvBNPReLU(3, width, 3, stride=2),
            *(ConvBNPReLU(width, width, 3, dilation=rate) for rate in rates[1:]),
        )
        self.bn_act = BNPReLU(width + 3)

    @property
    def out_channels(self) -> int:
        return STEM_CHANNELS + 3

    def forward(self, x: Tensor, image: Tensor) -> Tensor:
        return self.bn_act(torch.cat([self.convs(x), image], dim=1))


def image_pool() -> nn.AvgPool2d:
    """The injection's 3x3 stride-2 average pool (padding 1: ``ceil(H / 2)`` rows)."""
    return nn.AvgPool2d(3, stride=2, padding=1)


def override_stages(
    base: DilationSchedule, override: object, *, model: str, example: str
) -> DilationSchedule:
    """``base`` with the stages ``override`` names replaced (``None`` keeps ``base``).

    A fixed network's schedule has one rate per block; an override may change rates,
    not the number of blocks (that would change the published network's size).

    Args:
        base: the network's published schedule.
        override: anything ``DilationSchedule.parse`` reads, naming some stages.
        model: the network's name, for messages.
        example: an override that works, shown when one does not.

    Raises:
        ValueError: a rule-based schedule, an unknown stage or a wrong number of rates.
    """
    if override is None:
        return base
    value = DilationSchedule.parse(override)
    if value.rule != "explicit":
        raise ValueError(
            f"{model}'s schedule is explicit per stage; got the {value.rule!r} rule. Pass a "
            f"mapping of stage to rates, e.g. {example}"
        )
    for name, rates in value.stage_rates.items():
        expected = base.stage_rates.get(name)
        if expected is None or len(rates) != len(expected):
            raise ValueError(
                f"{model} stage {name!r} takes {len(expected) if expected else 'no'} rates "
                f"(one per block), got {list(rates)}; its stages are "
                f"{', '.join(f'{n}: {list(r)}' for n, r in base.stages)}"
            )
    return DilationSchedule.explicit({**base.stage_rates, **value.stage_rates})


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def assemble(
    encoder: nn.Module,
    *,
    config: dict[str, Any],
    schedule: DilationSchedule,
    num_classes: int,
    head_input: str,
    classifier: nn.Module | None = None,
) -> Segmentor:
    """The real-time networks' tail: the resolved schedule written into ``config`` and
    the encoder wrapped as a ``Segmentor`` with
    ``classifier`` (default: the papers' bias-free 1x1 conv on ``head_input``)."""
    config["dilation_schedule"] = schedule.to_config()
    if classifier is None:
        classifier = nn.Conv2d(encoder.out_channels, num_classes, 1, bias=False)
    return Segmentor(
        backbone=encoder,
        classifier=classifier,
        head_inputs=(head_input,),
        num_classes=num_classes,
        config=config,
    )
