"""CGNet: the published architecture, its dilation schedule as one value, its holes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from atrous.analysis.model_report import stage_report
from atrous.models import build_model
from atrous.models.gates import ChannelGate
from atrous.models.realtime.cgnet import SCHEDULE, ContextGuidedBlock
from atrous.models.summary import summarize


def test_parameter_count_matches_the_authors_network() -> None:
    # wutianyiRosun/CGNet (commit cfccea3) model/CGNet.py: Context_Guided_Network(
    # classes=19, M=3, N=21) has 496,306 parameters (the paper's 0.5M). Its FGlo
    # nn.Linear layers are 1x1 convs here (same counts); with its weights loaded (the
    # Linear weights reshaped, stage 3's concatenation order swapped) this network gave
    # the same logits to 7.6e-5 on values up to 136 (checked on 2026-12-01).
    model = build_model("cgnet", num_classes=19)
    assert sum(p.numel() for p in model.parameters()) == 496_306


def test_stages_follow_the_schedule() -> None:
    model = build_model("cgnet", num_classes=5)
    features = model.backbone(torch.randn(1, 3, 64, 96))
    channels = {"stage1": 32 + 3, "stage2": 2 * 64 + 3, "stage3": 2 * 128}
    for info in model.backbone.feature_info:
        assert features[info.name].shape[1:] == (
            channels[info.name],
            64 // info.stride,
            96 // info.stride,
        )
        assert info.dilation == SCHEDULE.stage_rates[info.name]
    for name, rate, count in (("stage2", 2, 3), ("stage3", 4, 21)):
        blocks = model.backbone.stage_blocks(name)
        assert len(blocks) == count  # M = 3, N = 21
        assert all(isinstance(b, ContextGuidedBlock) for b in blocks)
        # Surrounding context at the stage's rate, local feature undilated, both depth-wise.
        assert {b.surround.dilation for b in blocks} == {(rate, rate)}
        assert {b.local.dilation for b in blocks} == {(1, 1)}
        assert all(b.surround.groups == b.surround.in_channels for b in blocks)
        assert blocks[0].conv.conv.stride == (2, 2)


def test_global_context_is_a_channel_gate_the_coverage_analysis_can_read() -> None:
    model = build_model("cgnet", num_classes=3)
    blocks = [m for m in model.modules() if isinstance(m, ContextGuidedBlock)]
    assert all(isinstance(b.context.gate, ChannelGate) for b in blocks)
    # No nn.Linear: the analysis would otherwise fall back to its slow full-channel run.
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    rows = stage_report(model, 65)
    assert {row.grid_coverage.method for row in rows if row.grid_coverage} == {"collapsed"}


def test_a_schedule_override_changes_rates_not_parameters() -> None:
    base = build_model("cgnet", num_classes=5)
    hdc = build_model("cgnet", num_classes=5, dilation_schedule={"stage3": [1, 2, 5] * 7})
    assert sum(p.numel() for p in base.parameters()) == sum(p.numel() for p in hdc.parameters())
    assert hdc.backbone.info("stage3").dilation == (1, 2, 5) * 7
    surround = [b.surround.dilation[0] for b in hdc.backbone.stage_blocks("stage3")]
    assert surround == [1, 2, 5] * 7
    rebuilt = build_model(**{**hdc.config, "num_classes": 5})
    assert rebuilt.backbone.info("stage3").dilation == hdc.backbone.info("stage3").dilation
    with pytest.raises(ValueError, match="explicit per stage"):
        build_model("cgnet", num_classes=5, dilation_schedule="multigrid")
    with pytest.raises(ValueError, match="takes 3 rates"):
        build_model("cgnet", num_classes=5, dilation_schedule={"stage2": [2, 2]})
    with pytest.raises(ValueError, match="no rates"):
        build_model("cgnet", num_classes=5, dilation_schedule={"layer4": [2]})


def test_macs_count_every_conv_including_depthwise() -> None:
    # Reference: per conv, output elements x (input channels / groups) x kernel taps,
    # counted with forward hooks on the real network.
    model = build_model("cgnet", num_classes=19).eval()
    macs = []

    def hook(conv: nn.Conv2d, _inputs: object, out: torch.Tensor) -> None:
        taps = conv.kernel_size[0] * conv.kernel_size[1]
        macs.append(out.numel() * conv.in_channels // conv.groups * taps)

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    assert summarize("cgnet", num_classes=19, input_size=64).macs == sum(macs)


def _reach(steps: np.ndarray, times: int) -> np.ndarray:
    """Offsets reachable by ``times`` steps from the set ``steps`` (a centred boolean square)."""
    reach = np.ones((1, 1), dtype=bool)
    radius = steps.shape[0] // 2
    for _ in range(times):
        size = reach.shape[0] + 2 * radius
        grown = np.zeros((size, size), dtype=bool)
        for dy, dx in zip(*np.nonzero(steps)):
            grown[dy : dy + reach.shape[0], dx : dx + reach.shape[1]] |= reach
        reach = grown
    return reach


def _block_steps(rate: int) -> np.ndarray:
    """One CG block: the local 3x3 *or* the surrounding 3x3 at ``rate`` (0 is in both)."""
    steps = np.zeros((2 * rate + 1, 2 * rate + 1), dtype=bool)
    steps[rate - 1 : rate + 2, rate - 1 : rate + 2] = True
    steps[::rate, ::rate] = True
    return steps


def _on_finer_map(reach: np.ndarray) -> np.ndarray:
    """Offsets on the map a stride-2 3x3 conv read: ``2 p + {-1, 0, 1}`` per axis."""
    size = 2 * reach.shape[0] + 1
    fine = np.zeros((size, size), dtype=bool)
    for y, x in zip(*np.nonzero(reach)):
        fine[2 * y : 2 * y + 3, 2 * x : 2 * x + 3] = True
    return fine


def test_side_by_side_branches_leave_holes_at_the_corners() -> None:
    # A CG block moves a path by a step of {-1,0,1}^2 (local) or {-2,0,2}^2 (rate 2),
    # never (2, 1): the branches are side by side, not chained. Stage 2's three blocks
    # (the residuals and the first block's output, concatenated, add nothing new) reach
    # offset 6 along an axis only with three rate-2 steps, whose other coordinate is then
    # even: on the 1/4 grid the 24 offsets (+-6, odd) and (odd, +-6) are unreached. The
    # stride-2 3x3 conv spreads each reached offset over 3x3 of stage 1's map, which
    # leaves 2 x 6 positions along each side of the 27 x 27 box: 48 / 729 = 6.58% holes.
    expected = _on_finer_map(_reach(_block_steps(2), 3))
    assert expected.shape == (27, 27) and int((~expected).sum()) == 48
    rows = {row.name: row for row in stage_report(build_model("cgnet", num_classes=3), 129)}
    stage2 = rows["stage2"]
    assert stage2.source == "stage1"
    assert stage2.grid_hole_fraction == pytest.approx(48 / 729)
    coverage = stage2.grid_coverage
    y0, y1, x0, x1 = coverage.box
    np.testing.assert_array_equal(coverage.counts[y0:y1, x0:x1] > 0, expected)
    # At the image the stem's three undilated 3x3 convs and the stride-2 steps fill them.
    assert stage2.image_hole_fraction == 0.0


@pytest.mark.slow
def test_stage3_corner_holes_over_its_whole_receptive_field() -> None:
    # Stage 3's 21 blocks at rate 4 reach 1415 px; the same reasoning as stage 2 with
    # steps {-1,0,1}^2 or {-4,0,4}^2 gives 6.47% holes on stage 2's map. At 257 x 257
    # the corners fall outside the image and the report shows 0.0.
    expected = _on_finer_map(_reach(_block_steps(4), 21))
    model = build_model("cgnet", num_classes=3)
    stage3 = {row.name: row for row in stage_report(model, 1449)}["stage3"]
    assert stage3.grid_coverage.box_shape == expected.shape == (339, 339)
    assert stage3.grid_hole_fraction == pytest.approx(1 - expected.mean())
    assert stage3.grid_hole_fraction == pytest.approx(0.0647, abs=1e-4)
    assert stage3.image_hole_fraction == 0.0
