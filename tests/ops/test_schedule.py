"""DilationSchedule: parse/to_config round trip, errors, and resolve() against torchvision.

The per-block rates of the plain rule are read from torchvision's own
``replace_stride_with_dilation`` ResNets (built on the meta device, so nothing is
initialised); multi-grid and HDC are checked against rules derived from those rates,
not against numbers written here.
"""

from __future__ import annotations

import json

import pytest
import torch
from torchvision.models.resnet import Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from atrous.ops.schedule import (
    CONTEXT_MODULE,
    HDC_RATES,
    MULTI_GRID,
    ConvGeometry,
    DilationSchedule,
    StageLayout,
)

DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
DEPTHS["resnet101"] = (3, 4, 23, 3)
REPLACE = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}
STAGES = ("layer1", "layer2", "layer3", "layer4")


def _layout(blocks: tuple[int, ...]) -> StageLayout:
    return StageLayout(STAGES, blocks, (1, 2, 2, 2), stem_stride=4)


def _torchvision_stages(blocks: tuple[int, ...], output_stride: int) -> list[tuple[int, tuple]]:
    """(stride, per-block 3x3 dilations) of each stage of torchvision's dilated ResNet.

    torchvision's BasicBlock refuses dilation, so the bottleneck ResNet with the same
    block counts stands in for ResNet-18/34: the layout rule does not read the block.
    """
    with torch.device("meta"):
        net = TorchvisionResNet(
            Bottleneck, list(blocks), replace_stride_with_dilation=REPLACE[output_stride]
        )
    stages = []
    for name in STAGES:
        layer = getattr(net, name)
        stages.append((layer[0].conv2.stride[0], tuple(block.conv2.dilation[0] for block in layer)))
    return stages


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_plain_rule_is_torchvisions_replace_stride_with_dilation(
    depth: str, output_stride: int
) -> None:
    blocks = DEPTHS[depth]
    plans = DilationSchedule.plain().resolve(_layout(blocks), output_stride, model=depth)
    reference = _torchvision_stages(blocks, output_stride)
    assert [(plan.stride, plan.dilations) for plan in plans] == reference
    running = 4
    for plan, (stride, _) in zip(plans, reference, strict=True):
        running *= stride
        assert plan.output_stride == running
    assert plans[-1].output_stride == output_stride


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_multigrid_and_hdc_follow_from_the_plain_layout(depth: str, output_stride: int) -> None:
    blocks = DEPTHS[depth]
    layout = _layout(blocks)
    reference = _torchvision_stages(blocks, output_stride)
    # Multi-grid: the last stage's blocks at unit rate x stage rate (the stage rate is the
    # rate torchvision gives the blocks after the first); other stages stay plain.
    units = MULTI_GRID[: blocks[-1]]
    multigrid = DilationSchedule.multigrid(units).resolve(layout, output_stride)
    stage_rate = reference[-1][1][-1]
    assert multigrid[-1].dilations == tuple(u * stage_rate for u in units)
    assert [p.dilations for p in multigrid[:-1]] == [r for _, r in reference[:-1]]
    # HDC: every stage torchvision dilates (stage rate > 1) cycles the sawtooth.
    hdc = DilationSchedule.hdc().resolve(layout, output_stride)
    for plan, (stride, rates) in zip(hdc, reference, strict=True):
        assert plan.stride == stride
        if rates[-1] > 1:
            assert plan.dilations == tuple(HDC_RATES[i % len(HDC_RATES)] for i in range(len(rates)))
        else:
            assert plan.dilations == rates


def test_explicit_stages_replace_only_the_stages_they_name() -> None:
    layout = _layout(DEPTHS["resnet18"])
    plans = DilationSchedule.parse({"layer4": [3, 7]}).resolve(layout, 16)
    plain = DilationSchedule.plain().resolve(layout, 16)
    assert plans[-1].dilations == (3, 7)
    assert plans[:-1] == plain[:-1]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "plain",
        "multigrid",
        "multigrid:1,2",
        "hdc",
        " hdc:1,2,5",
        {"layer3": [1, 2], "layer4": [5, 9]},
        [1, 2, 5],
        DilationSchedule.exponential(10, repeats=3),
        DilationSchedule.explicit([1, 2, 4], kernel_size=3, ndim=3),
        DilationSchedule("hdc", (1, 2, 3), kernel_size=5),
        CONTEXT_MODULE,
    ],
)
def test_to_config_round_trips_through_json(value: object) -> None:
    schedule = DilationSchedule.parse(value)
    text = json.dumps(schedule.to_config())
    again = DilationSchedule.parse(json.loads(text))
    assert again == schedule
    assert hash(again) == hash(schedule)


def test_the_spellings_of_one_schedule_are_equal() -> None:
    assert DilationSchedule.parse(None) == DilationSchedule.parse("plain") == DilationSchedule()
    assert (
        DilationSchedule.parse("hdc")
        == DilationSchedule.hdc()
        == DilationSchedule.parse("hdc:" + ",".join(map(str, HDC_RATES)))
    )
    assert DilationSchedule.parse("multigrid").rates == MULTI_GRID
    assert DilationSchedule.parse("hdc:1,2,5") != DilationSchedule.hdc()
    assert DilationSchedule.parse("hdc").to_config() == "hdc:1,2,5,9"
    assert DilationSchedule.parse({"layer4": [2, 3]}).to_config() == {"layer4": [2, 3]}


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("sawtooth", ValueError, "unknown dilation schedule 'sawtooth'.*'hdc:1,2,5'"),
        ("hdc:1,x", ValueError, "'hdc:1,x': cannot read rates from '1,x'"),
        ("plain:1,2", ValueError, "'plain' takes no rates"),
        ("hdc:1,0", ValueError, r"cannot read rates from .1,0.; write integers >= 1"),
        ({"layer4": [2, -1]}, ValueError, "stage 'layer4'"),
        ({"rule": "hdc"}, ValueError, "a hdc schedule needs rates"),
        ({"rule": "explicit"}, ValueError, "at least one stage"),
        ({"rule": "hdc", "rates": [1, 2], "ndim": 4}, ValueError, "ndim must be 1, 2 or 3"),
        (3.5, TypeError, "cannot read a dilation schedule from 3.5"),
        (["a"], TypeError, "cannot read a dilation schedule"),
    ],
)
def test_bad_values_say_what_is_expected(value: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        DilationSchedule.parse(value)


def test_resolve_errors_name_the_stage_and_the_block_count() -> None:
    layout = _layout(DEPTHS["resnet18"])
    with pytest.raises(ValueError, match=r"unknown stages \['layer9'\]; resnet18 has"):
        DilationSchedule.parse({"layer9": [1]}).resolve(layout, 8, model="resnet18")
    with pytest.raises(ValueError, match="stage layer4 of resnet18, which has 2 blocks"):
        DilationSchedule.multigrid().resolve(layout, 8, model="resnet18")
    with pytest.raises(ValueError, match="layers, repeats and base must be >= 1"):
        DilationSchedule.exponential(0)


def test_layers_are_same_padded_and_causal_pads_the_past_only() -> None:
    wavenet = DilationSchedule.exponential(10, repeats=3)
    assert wavenet.flat_rates == tuple(2**i for i in range(10)) * 3
    assert (wavenet.kernel_size, wavenet.ndim, wavenet.causal) == (2, 1, True)
    layers = wavenet.layers()
    assert len(layers) == 30
    assert all(layer.padding == layer.dilation for layer in layers)  # (K - 1) r, all left
    centred = DilationSchedule.hdc((1, 2, 5)).layers()
    assert [layer.padding for layer in centred] == [1, 2, 5]
    assert ConvGeometry.same(3, 4).effective_kernel_size == 9
    with pytest.raises(ValueError, match="kind must be one of"):
        ConvGeometry("maxpool")


def test_same_padding_keeps_the_length_of_torchs_conv() -> None:
    # The geometry's padding is what a torch conv needs to keep a sequence's length
    # (all on the left when causal): checked against torch's own Conv1d.
    x = torch.randn(1, 1, 40)
    for layer in [*DilationSchedule.exponential(4).layers(), *CONTEXT_MODULE.layers()]:
        conv = torch.nn.Conv1d(1, 1, layer.kernel_size, dilation=layer.dilation)
        left = layer.padding
        right = 0 if layer.causal else layer.padding
        padded = torch.nn.functional.pad(x, (left, right))
        assert conv(padded).shape[-1] == 40
