"""Backbones: torchvision key compatibility, output stride and dilation schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from atrous.models import build_model, load_torchvision_backbone
from atrous.models.backbones.mobilenet import MobileNetV2
from atrous.models.backbones.resnet import ResNet
from atrous.ops.schedule import DilationSchedule


def _rates(backbone: ResNet, stage: str) -> list[int]:
    return [block.conv2.dilation[0] for block in getattr(backbone, stage)]


@pytest.mark.parametrize("depth", ["resnet18", "resnet34", "resnet50", "resnet101"])
def test_torchvision_resnet_state_dict_loads_without_renaming(depth: str) -> None:
    reference = getattr(torchvision.models, depth)(weights=None).state_dict()
    ours = ResNet(depth=depth, output_stride=8)
    ours.load_state_dict({k: v for k, v in reference.items() if not k.startswith("fc.")})


@pytest.mark.parametrize(
    ("output_stride", "replace"), [(8, [False, True, True]), (16, [False, False, True])]
)
def test_plain_schedule_matches_torchvision_dilated_resnet(output_stride: int, replace) -> None:
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=replace)
    ours = ResNet(depth="resnet50", output_stride=output_stride)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        assert _rates(ours, stage) == _rates(reference, stage), stage
        assert list(ours.info(stage).dilation) == _rates(reference, stage)
    if output_stride == 8:
        return  # OS8 numerics: test_parity.py runs torchvision's whole DeepLabV3 on it
    ours.load_state_dict(
        {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    )
    reference.eval()
    ours.eval()
    trunk = nn.Sequential(*list(reference.children())[:-2])
    x = torch.randn(1, 3, 33, 35)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["layer4"], trunk(x), atol=1e-5, rtol=0)


def test_multigrid_multiplies_unit_rates_by_the_stage_rate() -> None:
    assert ResNet(depth="resnet50", output_stride=16, dilation_schedule="multigrid").info(
        "layer4"
    ).dilation == (2, 4, 8)
    backbone = ResNet(depth="resnet18", output_stride=8, dilation_schedule="multigrid:1,2")
    assert _rates(backbone, "layer4") == [4, 8]
    assert backbone.info("layer3").dilation == (1, 2)  # other stages stay plain


def test_hdc_cycles_the_sawtooth_through_dilated_stages() -> None:
    backbone = ResNet(depth="resnet50", output_stride=8, dilation_schedule="hdc")
    assert _rates(backbone, "layer3") == [1, 2, 5, 9, 1, 2]
    assert _rates(backbone, "layer4") == [1, 2, 5]
    assert _rates(backbone, "layer2") == [1, 1, 1, 1]  # not dilated: untouched


def test_basic_block_supports_dilation() -> None:
    backbone = ResNet(depth="resnet18", output_stride=8)
    convs = [(b.conv1.dilation[0], b.conv2.dilation[0]) for b in backbone.layer4]
    assert convs == [(2, 2), (4, 4)]


def test_explicit_per_stage_lists() -> None:
    backbone = ResNet(depth="resnet18", output_stride=16, dilation_schedule={"layer4": [3, 7]})
    assert _rates(backbone, "layer4") == [3, 7]
    assert backbone.info("layer4").stride == 16


def test_schedule_errors_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"output_stride=4 .* choose one of \(8, 16, 32\)"):
        build_model("deeplabv3", num_classes=2, backbone="resnet18", output_stride=4)
    with pytest.raises(ValueError, match="layer4 of resnet18, which has 2 blocks"):
        ResNet(depth="resnet18", dilation_schedule={"layer4": [1, 2, 3]})
    with pytest.raises(ValueError, match="which has 3 blocks"):
        ResNet(depth="resnet50", dilation_schedule=DilationSchedule.multigrid((1, 2, 4, 8)))
    with pytest.raises(ValueError, match="unknown stages"):
        ResNet(depth="resnet18", dilation_schedule={"layer9": [1]})
    with pytest.raises(ValueError, match="multigrid"):
        ResNet(depth="resnet18", dilation_schedule="sawtooth")
    with pytest.raises(ValueError, match="known backbones: resnet18"):
        build_model("deeplabv3", num_classes=2, backbone="vgg16")
    with pytest.raises(ValueError, match="stage5 of mobilenet_v2, which has 4 blocks"):
        build_model(
            "deeplabv3", num_classes=2, backbone="mobilenet_v2", dilation_schedule="multigrid"
        )


def test_mobilenet_v2_reads_the_schedule_value() -> None:
    # The plain rule at OS8 is test_mobilenet_v2_matches_torchvision_and_dilates; HDC
    # cycles its sawtooth through the two dilated stages, the depthwise convs carry it.
    backbone = MobileNetV2(output_stride=8, dilation_schedule="hdc:1,2,5")
    assert backbone.info("stage4").dilation == (1, 2, 5, 1, 2, 5, 1)
    assert backbone.info("stage5").dilation == (1, 2, 5, 1)
    depthwise = [
        conv.dilation[0]
        for block in backbone.stage_blocks("stage5")
        for conv in block.modules()
        if isinstance(conv, nn.Conv2d) and conv.groups > 1
    ]
    assert depthwise == [1, 2, 5, 1]
    assert backbone.schedule == DilationSchedule.hdc((1, 2, 5))


def test_mobilenet_v2_matches_torchvision_and_dilates() -> None:
    reference = torchvision.models.mobilenet_v2(weights=None).eval()
    ours = MobileNetV2(output_stride=32).eval()
    state = {
        k: v
        for k, v in reference.state_dict().items()
        if k.startswith("features.") and not k.startswith("features.18.")
    }
    ours.load_state_dict(state)
    x = torch.randn(1, 3, 45, 51)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["stage5"], reference.features[:18](x), atol=1e-5, rtol=0)
    dilated = MobileNetV2(output_stride=8)
    assert dilated.info("stage4").dilation == (1, 2, 2, 2, 2, 2, 2)
    assert dilated.info("stage5").dilation == (2, 4, 4, 4)
    assert [f.stride for f in dilated.feature_info] == [2, 4, 8, 8, 8]


def test_load_torchvision_backbone_from_a_saved_file(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "resnet18.pth")
    model = build_model("deeplabv3", num_classes=2, backbone="resnet18", head_channels=8)
    state = torch.load(tmp_path / "resnet18.pth", weights_only=True)
    load_torchvision_backbone(model, state)
    torch.testing.assert_close(
        model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight
    )
    wrong = torchvision.models.resnet34(weights=None).state_dict()
    with pytest.raises(ValueError, match="same ResNet depth"):
        load_torchvision_backbone(model, wrong)
    drn = build_model("drn_d_22", num_classes=2)
    with pytest.raises(ValueError, match="no torchvision counterpart"):
        load_torchvision_backbone(drn, state)


def test_drn_levels() -> None:
    for name in ("drn_c_26", "drn_d_22"):
        backbone = build_model(name, num_classes=2).backbone
        rates = [info.dilation for info in backbone.feature_info]
        assert rates[5:] == [(2, 2), (4, 4), (2,), (1,)]  # dilated, then degridding
        assert not any(isinstance(m, nn.MaxPool2d) for m in backbone.modules())
    c_blocks = build_model("drn_c_26", num_classes=2).backbone
    assert [block.residual for block in c_blocks.layer7] == [False]
    assert all(block.residual for block in c_blocks.layer6)
