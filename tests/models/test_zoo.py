"""Every registered model, on tiny and odd inputs: shapes, gradients, strides, dilations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from atrous.models import build_model, list_models

# The cheapest options of each model, so the whole registry runs in seconds.
SMALL_OPTIONS: dict[str, dict] = {
    "deeplabv3": {"backbone": "resnet18", "head_channels": 16, "aux": True},
    "deeplabv3plus": {
        "backbone": "resnet18",
        "head_channels": 16,
        "low_level_projection": 8,
        "aux": True,
    },
    "fcn": {"backbone": "resnet18", "aux": True},
    "lraspp": {"head_channels": 16},
    "duc_hdc": {"backbone": "resnet18", "head_channels": 16, "aux": True},
    "dilated_net": {"width": 8},
    "erfnet": {"width": 32},
    "dabnet": {},  # 0.76M parameters: the published network is small enough
    "cgnet": {},  # 0.5M
    "drn_c_26": {"aux": True},
    "drn_d_22": {"aux": True},
}
SIZES = [(45, 45), (64, 97)]


def test_every_model_has_small_options() -> None:
    assert sorted(SMALL_OPTIONS) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_output_shape_and_every_parameter_gets_a_gradient(name: str) -> None:
    model = build_model(name, num_classes=3, **SMALL_OPTIONS[name])
    model.train()
    x = torch.randn(1, 3, 45, 45)  # batch 1 on purpose: ASPP must train with it
    result = model(x, return_aux=True)
    assert result["out"].shape == (1, 3, 45, 45)
    has_aux = SMALL_OPTIONS[name].get("aux", False)
    assert ("aux" in result) == has_aux
    if has_aux:
        assert result["aux"].shape == (1, 3, 45, 45)
    loss = sum(out.square().mean() for out in result.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", list_models())
def test_measured_strides_match_the_requested_output_stride(name: str) -> None:
    model = build_model(name, num_classes=3, **SMALL_OPTIONS[name]).eval()
    for size in SIZES:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            features = model.backbone(x)
        assert list(features) == [info.name for info in model.backbone.feature_info]
        # A stride-s map of a size-H input has ceil(H / s) rows for every H.
        for info in model.backbone.feature_info:
            expected = (math.ceil(size[0] / info.stride), math.ceil(size[1] / info.stride))
            assert tuple(features[info.name].shape[-2:]) == expected, (name, info.name, size)
            assert features[info.name].shape[1] == info.channels
    requested = model.config.get("output_stride", model.config.get("stem_stride", 8))
    assert model.output_stride == requested
    assert model.backbone.feature_info[-1].stride == requested


@pytest.mark.parametrize("name", list_models())
def test_convs_carry_the_scheduled_dilation(name: str) -> None:
    model = build_model(name, num_classes=3, **SMALL_OPTIONS[name])
    for info in model.backbone.feature_info:
        blocks = model.backbone.stage_blocks(info.name)
        assert len(blocks) == len(info.dilation), info.name
        for block, rate in zip(blocks, info.dilation):
            # Per axis, the block's spatial convs run at its rate; factorised blocks
            # (ERFNet's 3x1/1x3 pairs) may add undilated ones, never another rate.
            convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
            for axis in (0, 1):
                rates = {c.dilation[axis] for c in convs if c.kernel_size[axis] > 1}
                assert rates, f"{info.name} block has no spatial conv along axis {axis}"
                assert max(rates) == rate and rates <= {1, rate}, (info.name, axis, rates)
        on_path = [
            spec.dilation for spec in info.convs if spec.kernel_size > 1 and spec.kind == "conv"
        ]
        assert set(on_path) <= set(info.dilation) | {1}


@pytest.mark.parametrize("name", list_models())
def test_config_rebuilds_same_architecture(name: str) -> None:
    model = build_model(name, num_classes=3, **SMALL_OPTIONS[name])
    rebuilt = build_model(**model.config)
    assert rebuilt.config == model.config
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
