"""ERFNet: the published architecture, its dilation schedule as one value, its holes."""

from __future__ import annotations

import pytest
import torch

from atrous.analysis.model_report import stage_report
from atrous.models import build_model
from atrous.models.realtime.erfnet import SCHEDULE, NonBottleneck1D


def test_parameter_count_matches_the_authors_network() -> None:
    # Eromera/erfnet_pytorch train/erfnet.py Net(20) has 2,066,836 parameters, of which
    # encoder.output_conv (128 * 20 + 20 = 2,580) is used only to pre-train the encoder
    # alone; the segmentation network is the rest.
    model = build_model("erfnet", num_classes=20)
    assert sum(p.numel() for p in model.parameters()) == 2_066_836 - 2_580


def test_stage_strides_and_rates_follow_the_schedule() -> None:
    model = build_model("erfnet", num_classes=5, width=32)
    x = torch.randn(1, 3, 64, 96)
    features = model.backbone(x)
    for info in model.backbone.feature_info:
        assert features[info.name].shape[-2:] == (64 // info.stride, 96 // info.stride)
        assert info.dilation == SCHEDULE.stage_rates[info.name]
    blocks = [m for m in model.backbone.stage2 if isinstance(m, NonBottleneck1D)]
    assert [b.conv3x1_2.dilation for b in blocks] == [(r, 1) for r in (2, 4, 8, 16) * 2]
    assert [b.conv1x3_2.dilation for b in blocks] == [(1, r) for r in (2, 4, 8, 16) * 2]


def test_a_schedule_override_changes_rates_not_parameters() -> None:
    base = build_model("erfnet", num_classes=5, width=32)
    hdc = build_model(
        "erfnet", num_classes=5, width=32, dilation_schedule={"stage2": [1, *(1, 2, 5, 9) * 2]}
    )
    assert sum(p.numel() for p in base.parameters()) == sum(p.numel() for p in hdc.parameters())
    assert hdc.backbone.info("stage2").dilation == (1, 1, 2, 5, 9, 1, 2, 5, 9)
    rebuilt = build_model(**{**hdc.config, "num_classes": 5})
    assert rebuilt.backbone.info("stage2").dilation == hdc.backbone.info("stage2").dilation
    with pytest.raises(ValueError, match="explicit per stage"):
        build_model("erfnet", num_classes=5, dilation_schedule="hdc")
    with pytest.raises(ValueError, match="takes 9 rates"):
        build_model("erfnet", num_classes=5, dilation_schedule={"stage2": [1, 2, 5, 9] * 2})


def test_odd_input_sizes_give_logits_at_the_input_size() -> None:
    model = build_model("erfnet", num_classes=3, width=32).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 47)).shape == (1, 3, 45, 47)


def test_undilated_first_pairs_leave_no_holes() -> None:
    model = build_model("erfnet", num_classes=3, width=32)
    rows = {row.name: row for row in stage_report(model, input_size=(129, 129))}
    # Holes of stage2's centre output on stage1's map, and at the image.
    assert rows["stage2"].grid_hole_fraction == 0.0
    assert rows["stage2"].image_hole_fraction == 0.0
    # The same rates without the undilated pairs (a plain stack at 2, 4, 8, 16) grid.
    gridded = build_model("dilated_net", num_classes=3, rates=(2, 4, 8, 16), width=4)
    assert stage_report(gridded, input_size=(129, 129))[-2].grid_hole_fraction > 0.5
