"""DABNet: the published architecture, its dilation schedule as one value, its holes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atrous.analysis.coverage import coverage_map
from atrous.analysis.model_report import stage_report
from atrous.models import build_model
from atrous.models.realtime.dabnet import SCHEDULE, DABModule
from atrous.models.summary import summarize


def test_parameter_count_matches_the_authors_network() -> None:
    # Reagan1311/DABNet (commit b8d62fe) model/DABNet.py: DABNet(classes=19) has
    # 756,643 parameters (the paper's 0.76M). With those weights loaded in order, this
    # network gave the same logits (max difference 0.0, checked on 2026-12-01).
    model = build_model("dabnet", num_classes=19)
    assert sum(p.numel() for p in model.parameters()) == 756_643


def test_stages_follow_the_schedule() -> None:
    model = build_model("dabnet", num_classes=5)
    x = torch.randn(1, 3, 64, 96)
    features = model.backbone(x)
    channels = {"stem": 32 + 3, "stage1": 2 * 64 + 3, "stage2": 2 * 128 + 3}
    for info in model.backbone.feature_info:
        assert features[info.name].shape[1:] == (
            channels[info.name],
            64 // info.stride,
            96 // info.stride,
        )
        assert info.dilation == SCHEDULE.stage_rates[info.name]
    modules = [m for m in model.backbone.stage2.blocks if isinstance(m, DABModule)]
    # The paper's block 2: six modules at 4, 4, 8, 8, 16, 16, on both factorised axes.
    assert [m.context_3x1.conv.dilation for m in modules] == [(r, 1) for r in (4, 4, 8, 8, 16, 16)]
    assert [m.context_1x3.conv.dilation for m in modules] == [(1, r) for r in (4, 4, 8, 8, 16, 16)]
    assert all(m.local_3x1.conv.dilation == (1, 1) for m in modules)
    assert all(m.context_3x1.conv.groups == 64 for m in modules)  # depth-wise on C/2


def test_a_schedule_override_changes_rates_not_parameters() -> None:
    base = build_model("dabnet", num_classes=5)
    hdc = build_model("dabnet", num_classes=5, dilation_schedule={"stage2": [1, 1, 2, 5, 9, 2, 5]})
    assert sum(p.numel() for p in base.parameters()) == sum(p.numel() for p in hdc.parameters())
    assert hdc.backbone.info("stage2").dilation == (1, 1, 2, 5, 9, 2, 5)
    assert hdc.backbone.info("stage1").dilation == (1, 2, 2, 2)
    rates = [m.context_3x1.conv.dilation[0] for m in hdc.backbone.stage2.blocks]
    assert rates == [1, 2, 5, 9, 2, 5]
    rebuilt = build_model(**{**hdc.config, "num_classes": 5})
    assert rebuilt.backbone.info("stage2").dilation == hdc.backbone.info("stage2").dilation
    with pytest.raises(ValueError, match="explicit per stage"):
        build_model("dabnet", num_classes=5, dilation_schedule="hdc")
    with pytest.raises(ValueError, match="takes 7 rates"):
        build_model("dabnet", num_classes=5, dilation_schedule={"stage2": [4, 4, 8, 8, 16, 16]})
    with pytest.raises(ValueError, match="downsampler"):
        build_model("dabnet", num_classes=5, dilation_schedule={"stage1": [2, 2, 2, 2]})


def test_macs_count_every_conv_including_depthwise() -> None:
    # Reference: per conv, output elements x (input channels / groups) x kernel taps,
    # counted with forward hooks on the real network (FlopCounterMode counts on meta).
    model = build_model("dabnet", num_classes=19).eval()
    macs = []

    def hook(conv: nn.Conv2d, _inputs: object, out: torch.Tensor) -> None:
        taps = conv.kernel_size[0] * conv.kernel_size[1]
        macs.append(out.numel() * conv.in_channels // conv.groups * taps)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert summarize("dabnet", num_classes=19, input_size=64).macs == sum(macs)


def test_one_module_leaves_holes_that_the_stack_fills() -> None:
    # One module at rate 4 reaches the 5x5 square of its two undilated 3x3 steps (the
    # halving conv, then the local branch) or the undilated 3x3 plus the rate-4
    # lattice: offsets 0, +-1, +-3, +-4, +-5 per axis. Offsets like (2, 5) are in
    # neither: 121 - (25 + 81 - 9) = 24 holes in the 11x11 box.
    one = coverage_map(DABModule(8, rate=4), (41, 41), in_channels=8)
    assert one.box_shape == (11, 11)
    assert one.hole_fraction == pytest.approx(24 / 121)
    # In the network the next module's undilated 3x3 steps fill them, and the stride-2
    # 3x3 downsampler covers the odd positions of the finer map: no stage leaves holes,
    # on the map it reads or at the image. Stage 1's whole receptive field (87 px) lies
    # inside 129 x 129; stage 2's (1087 px) gives 0.0 at 1121 x 1121 as well
    # (`atrous rf --model dabnet --input-size 1121`).
    rows = {row.name: row for row in stage_report(build_model("dabnet", num_classes=3), 129)}
    assert rows["stage1"].measured_box == (21, 108, 21, 108)
    for name in ("stage1", "stage2", "head"):
        assert rows[name].grid_hole_fraction == 0.0, name
        assert rows[name].image_hole_fraction == 0.0, name
