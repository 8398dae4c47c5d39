"""Temporal (1-D, causal) and volumetric (3-D) stacks: the schedule value, `atrous rf` and
`atrous hdc` agree with coverage_map run on the matching torch Conv1d / Conv3d stacks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from atrous.analysis import check_stages, coverage_map, hdc_check, receptive_field_table
from atrous.cli import main
from atrous.ops.schedule import DilationSchedule

WAVENET = [2**i for i in range(10)]


def _causal_stack(rates: list[int], kernel_size: int = 2) -> nn.Sequential:
    """What a TCN / WaveNet builds: left padding (K - 1) r, then the dilated Conv1d."""
    layers: list[nn.Module] = []
    for rate in rates:
        layers += [
            nn.ConstantPad1d(((kernel_size - 1) * rate, 0), 0.0),
            nn.Conv1d(1, 1, kernel_size, dilation=rate),
        ]
    return nn.Sequential(*layers)


def test_causal_kernel_2_stack_covers_32_steps_of_the_past_with_no_holes() -> None:
    schedule = DilationSchedule.exponential(5)  # causal, kernel 2, rates 1..16
    length = 48
    measured = coverage_map(
        _causal_stack(list(schedule.flat_rates)), (length,), (40,), in_channels=1
    )
    assert measured.box == (40 - 31, 41)  # steps t-31 .. t: nothing after the output
    assert measured.hole_fraction == 0.0
    report = hdc_check(schedule)
    assert (report.receptive_field, report.hole_fraction, report.dims) == (32, 0.0, 1)
    rows = receptive_field_table(schedule)
    assert rows[-1].size == measured.box_shape[0] == 32
    # The table's start is the field's centre relative to output 0 of a causal chain.
    assert rows[-1].start == -(32 - 1) / 2


def test_wavenet_stack_three_times_matches_the_network() -> None:
    schedule = DilationSchedule.exponential(10, repeats=3)
    measured = coverage_map(_causal_stack(WAVENET * 3), (3200,), (3150,), in_channels=1)
    report = hdc_check(schedule)
    assert measured.box_shape == (report.receptive_field,) == (3070,)
    assert measured.hole_fraction == report.hole_fraction == 0.0
    assert report.passes  # the M-rule holds within each stack (not across the repeat)


def test_a_gapped_temporal_stack_is_measured_like_the_network() -> None:
    # Rates 1, 4: a kernel-2 stack that skips rate 2 leaves holes.
    rates = [1, 4, 8]
    measured = coverage_map(_causal_stack(rates), (40,), (30,), in_channels=1)
    report = hdc_check(rates, 2, dims=1)
    assert measured.hole_fraction == pytest.approx(report.hole_fraction)
    assert report.hole_fraction > 0 and not report.passes


def test_three_conv3d_at_rate_2_leave_84_percent_holes() -> None:
    net = nn.Sequential(*(nn.Conv3d(1, 1, 3, dilation=2, padding=2) for _ in range(3)))
    measured = coverage_map(net, (17, 17, 17), in_channels=1)
    schedule = DilationSchedule.explicit([2, 2, 2], ndim=3)
    report = hdc_check(schedule)
    assert measured.box_shape == (13, 13, 13)
    assert measured.hole_fraction == pytest.approx(report.hole_fraction)
    assert report.hole_fraction == pytest.approx(1 - (7 / 13) ** 3)  # 84.4%
    assert round(report.hole_fraction, 2) == 0.84


def test_rf_cli_for_a_causal_repeated_stack(capsys: pytest.CaptureFixture[str]) -> None:
    rates = ",".join(map(str, WAVENET))
    args = ["rf", "--kernel", "2", "--rates", rates, "--repeat", "3", "--causal", "--ndim", "1"]
    assert main([*args, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [layer["size"] for layer in document["layers"]][-1] == 3070
    assert all(layer["hole_fraction"] == 0.0 for layer in document["layers"])
    assert document["causal"] and document["ndim"] == 1 and len(document["layers"]) == 30
    assert DilationSchedule.parse(document["schedule"]) == DilationSchedule.exponential(
        10, repeats=3
    )
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "receptive field 3070 samples, hole fraction 0.0%" in out
    assert "reads steps t-3069 .. t" in out


def test_rf_cli_for_a_3d_stack_matches_conv3d(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rf", "--rates", "2,2,2", "--ndim", "3", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    net = nn.Sequential(*(nn.Conv3d(1, 1, 3, dilation=2, padding=2) for _ in range(3)))
    measured = coverage_map(net, (15, 15, 15), in_channels=1)
    assert document["layers"][-1]["hole_fraction"] == pytest.approx(measured.hole_fraction)
    assert document["coverage"]["grid_period"] == [2, 2, 2]


def test_hdc_cli_reads_schedules_and_temporal_stacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hdc", "--schedule", "hdc:1,2,5", "--strict"]) == 0
    assert "rates           1,2,5  (kernel 3)" in capsys.readouterr().out
    rates = ",".join(map(str, WAVENET))
    args = ["hdc", "--kernel", "2", "--rates", rates, "--repeat", "3", "--ndim", "1", "--causal"]
    assert main([*args, "--strict"]) == 0
    out = capsys.readouterr().out
    assert "dimensions      1, causal, 3 stacks" in out and "PASS" in out
    assert "receptive field 3070" in out
    with pytest.raises(SystemExit):
        main(["hdc", "--schedule", "sawtooth"])
    assert "unknown dilation schedule 'sawtooth'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="multigrid schedule has no rates of its own"):
        main(["rf", "--schedule", "multigrid"])


def test_rf_cli_reads_a_schedule_on_a_backbone_layout(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["rf", "--backbone", "resnet50", "--output-stride", "8", "--schedule", "hdc", "--json"]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    stages = {stage["name"]: stage for stage in document["stages"]}
    assert stages["layer3"]["dilations"] == [1, 2, 5, 9, 1, 2]
    assert stages["layer4"]["hole_fraction"] == 0.0
    assert document["schedule"] == "hdc:1,2,5,9"


def test_stage_holes_from_the_layout_equal_the_built_network() -> None:
    # ResNet-18 at output stride 8, plain: layer4 (2, 4) on layer3's map, measured through
    # the real backbone (shortcuts included) and read from the layout alone.
    from atrous.models.backbones.factory import backbone_layout
    from atrous.models.backbones.resnet import ResNet

    with torch.device("meta"):
        backbone = ResNet(depth="resnet18", output_stride=8, width=8)
    measured = coverage_map(backbone, (225, 225), output_index="layer4", source="layer3")
    checks = check_stages(DilationSchedule.plain(), backbone_layout("resnet18"), 8)
    layer4 = checks[-1]
    assert layer4.dilations == backbone.info("layer4").dilation
    assert layer4.report is not None
    assert layer4.report.hole_fraction == pytest.approx(measured.hole_fraction)
    assert (layer4.report.receptive_field,) * 2 == measured.box_shape
