"""MobileNetV3-Large, DeepLabV3 on it and LR-ASPP: parity with torchvision's models."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models.segmentation import (
    DeepLabV3_MobileNet_V3_Large_Weights,
    LRASPP_MobileNet_V3_Large_Weights,
    deeplabv3_mobilenet_v3_large,
    lraspp_mobilenet_v3_large,
)

from atrous.analysis.model_report import stage_report
from atrous.models import build_model, from_torchvision, load_torchvision_backbone
from atrous.models.backbones.mobilenet_v3 import MobileNetV3Large
from atrous.models.summary import summarize

SIZES = [(65, 65), (63, 97)]


def _randomise(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine weights, so eval mode is not an identity."""
    torch.manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model.eval()


def _depthwise_rates(blocks: nn.Module) -> list[tuple[int, int]]:
    """(stride, dilation) of each inverted residual's depthwise conv, in order."""
    found = []
    for block in blocks:
        if hasattr(block, "block"):
            depthwise = next(
                m for m in block.modules() if isinstance(m, nn.Conv2d) and m.groups > 1
            )
            found.append((depthwise.stride[0], depthwise.dilation[0]))
    return found


@pytest.mark.parametrize(("output_stride", "dilated"), [(16, True), (32, False)])
def test_backbone_is_torchvision_features(output_stride: int, dilated: bool) -> None:
    """Same keys (strict load), same strides and rates, same outputs as ``.features``."""
    reference = _randomise(mobilenet_v3_large(weights=None, dilated=dilated).features)
    ours = MobileNetV3Large(output_stride=output_stride)
    ours.load_state_dict(reference.state_dict(), strict=True)
    ours.eval()
    assert _depthwise_rates(ours.children()) == _depthwise_rates(reference)
    x = torch.randn(2, 3, 63, 97)
    with torch.no_grad():
        difference = (ours(x)["stage6"] - reference(x)).abs().max().item()
    assert difference <= 1e-5
    assert ours.output_stride == output_stride


def test_output_stride_8_dilates_from_the_stride_16_stage() -> None:
    backbone = MobileNetV3Large(output_stride=8)
    assert [(info.name, info.stride) for info in backbone.feature_info] == [
        ("stage1", 2),
        ("stage2", 4),
        ("stage3", 8),
        ("stage4", 8),
        ("stage5", 8),
        ("stage6", 8),
    ]
    assert backbone.info("stage4").dilation == (1, 1, 2)
    assert backbone.info("stage5").dilation == (2, 2, 2, 2, 2, 4)
    assert backbone.info("stage6").dilation == (4, 4)
    with pytest.raises(ValueError, match="plain dilation schedule only"):
        MobileNetV3Large(output_stride=16, dilation_schedule="hdc")
    with pytest.raises(ValueError, match="output_stride=4"):
        MobileNetV3Large(output_stride=4)


def _compare(reference: nn.Module, ours: nn.Module, keys: tuple[str, ...], sizes=SIZES) -> float:
    """Largest absolute difference of the outputs ``keys`` over inputs of ``sizes``."""
    worst = 0.0
    for size in sizes:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = reference(x)
            actual = ours(x, return_aux=True)
        for key in keys:
            assert actual[key].shape == expected[key].shape == (1, 5, *size)
            worst = max(worst, (actual[key] - expected[key]).abs().max().item())
    return worst


def test_deeplabv3_mobilenet_v3_large_matches_torchvision() -> None:
    torch.manual_seed(1)
    reference = _randomise(
        deeplabv3_mobilenet_v3_large(
            weights=None, weights_backbone=None, aux_loss=True, num_classes=5
        )
    )
    ours = from_torchvision("deeplabv3_mobilenet_v3_large", reference.state_dict())
    assert not ours.training
    assert ours.aux_classifier is not None
    assert ours.output_stride == 16
    assert _compare(reference, ours, ("out", "aux")) <= 1e-5
    with torch.device("meta"):
        built = build_model(
            "deeplabv3",
            num_classes=5,
            backbone="mobilenet_v3_large",
            output_stride=16,
            aspp_rates=(12, 24, 36),
            aux=True,
        )
    assert built.config == ours.config
    # The test can fail: our default rates at stride 16, (6, 12, 18), give other outputs
    # once the map is wider than 6 (63x97 gives 4x7; at 65x65, 5x5, both sets of rates
    # only reach padding off-centre).
    default_rates = build_model(
        "deeplabv3", num_classes=5, backbone="mobilenet_v3_large", output_stride=16, aux=True
    )
    default_rates.load_state_dict(reference.state_dict(), strict=True)
    assert _compare(reference, default_rates.eval(), ("out",), SIZES[1:]) > 1e-4


def test_lraspp_mobilenet_v3_large_matches_torchvision() -> None:
    torch.manual_seed(2)
    reference = _randomise(
        lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5)
    )
    ours = from_torchvision("lraspp_mobilenet_v3_large", reference.state_dict())
    assert ours.head_inputs == ("stage3", "stage6")
    assert ours.backbone.info("stage3").stride == 8
    assert _compare(reference, ours, ("out",)) <= 1e-5
    with torch.device("meta"):
        assert ours.config == build_model("lraspp", num_classes=5).config
    with pytest.raises(ValueError, match=r"classifier\.low_classifier\.weight"):
        from_torchvision("lraspp_mobilenet_v3_large", {})


@pytest.mark.parametrize(
    ("name", "weights", "options"),
    [
        (
            "lraspp",
            LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
            {},
        ),
        (
            "deeplabv3",
            DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
            {"backbone": "mobilenet_v3_large", "aspp_rates": (12, 24, 36), "aux": True},
        ),
    ],
)
def test_counts_match_torchvision_tables(name: str, weights, options: dict) -> None:
    """torchvision's published ``num_params`` and ``_ops`` ("GFLOPS", which are
    multiply-accumulates at 520x520, 21 VOC classes; its DeepLabV3 counts the aux head)."""
    summary = summarize(name, input_size=520, count_aux=True, **options)
    assert summary.params == weights.meta["num_params"]
    assert abs(summary.macs / 1e9 - weights.meta["_ops"]) < 0.005
    assert summary.output_stride == 16


def test_imagenet_backbone_weights_load() -> None:
    # A classification state dict; dilated=True changes no weight, only the layout.
    classifier = _randomise(mobilenet_v3_large(weights=None, dilated=True))
    model = build_model("lraspp", num_classes=3)
    load_torchvision_backbone(model, classifier.state_dict())
    model.eval()
    x = torch.randn(1, 3, 47, 51)
    with torch.no_grad():
        expected = classifier.features(x)
        assert (model.backbone(x)["stage6"] - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("deeplabv3", {"head_channels": 16, "aux": True}),
        ("deeplabv3plus", {"head_channels": 16, "low_level_projection": 8, "aux": True}),
        ("fcn", {"output_stride": 16, "aux": True}),
        ("lraspp", {"head_channels": 16, "output_stride": 8}),
    ],
)
def test_models_on_mobilenet_v3_train_and_keep_their_strides(name: str, options: dict) -> None:
    """test_zoo's checks for every builder that takes this backbone."""
    model = build_model(name, num_classes=3, backbone="mobilenet_v3_large", **options)
    result = model.train()(torch.randn(2, 3, 45, 45), return_aux=True)
    assert result["out"].shape == (2, 3, 45, 45)
    sum(out.square().mean() for out in result.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    model.eval()
    size = (64, 97)
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, *size))
    for info in model.backbone.feature_info:
        expected = (math.ceil(size[0] / info.stride), math.ceil(size[1] / info.stride))
        assert tuple(features[info.name].shape[-2:]) == expected, info.name
        assert features[info.name].shape[1] == info.channels
    assert model.output_stride == model.config["output_stride"]


def test_coverage_sees_through_squeeze_excitation_gates() -> None:
    """Gates are channel rescalings: every stage reaches the image, and the rate-2 tail
    of torchvision's layout (blocks 13-15 all at rate 2) grids on the stride-16 map."""
    with torch.device("meta"):
        model = build_model("lraspp", num_classes=3)
    rows = {row.name: row for row in stage_report(model, 129)}
    assert rows["stage6"].measured_box == (0, 129, 0, 129)
    assert all(row.image_hole_fraction == 0.0 for row in rows.values())
    assert rows["stage6"].grid_period == (2, 2)
    assert rows["stage6"].grid_hole_fraction > 0.5
    assert rows["stage5"].base_hole_fraction == 0.0  # its rate-1 blocks fill the lattice
