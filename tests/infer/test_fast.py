from __future__ import annotations

import pytest
import torch
from torch import nn

from atrous.infer import Predictor
from atrous.infer.fast import fold_batchnorm, prepare_for_cpu

from .conftest import TinyASPPNet


def _count_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_removes_every_conv_bn_pair(tiny_model: TinyASPPNet) -> None:
    x = torch.randn(2, 3, 45, 61)
    folded, count = fold_batchnorm(tiny_model, x)
    assert count == 3 and _count_bn(folded) == 0 and _count_bn(tiny_model) == 3
    with torch.no_grad():
        torch.testing.assert_close(folded(x), tiny_model(x), atol=1e-5, rtol=0)


def test_bn_not_after_conv_is_kept() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
    ).eval()
    model[2].running_mean.fill_(0.5)
    folded, count = fold_batchnorm(model, torch.randn(1, 3, 8, 8))
    assert count == 1 and isinstance(folded[2], nn.BatchNorm2d)
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["eager", "jit"])
def test_fast_path_matches_plain_model(tiny_model: TinyASPPNet, backend: str) -> None:
    fast = prepare_for_cpu(tiny_model, backend=backend)
    for shape in [(1, 3, 64, 64), (2, 3, 45, 97)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(fast(x), tiny_model(x), atol=1e-4, rtol=0)
    assert fast.class_names == tiny_model.class_names


def test_compiled_fast_path_matches_plain_model(tiny_model: TinyASPPNet) -> None:
    # The inductor path (frozen weights) that `atrous bench` times; one shape, since each
    # new shape compiles again.
    fast = prepare_for_cpu(tiny_model, backend="compile", example=torch.randn(1, 3, 40, 56))
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), tiny_model(x), atol=1e-4, rtol=0)


def test_fast_path_on_torchvision_model() -> None:
    # A real network written by someone else: torchvision's ResNet-18 (conv/BN pairs in
    # blocks and in downsample Sequentials, residual adds), non-trivial BN statistics.
    from torchvision.models import resnet18

    model = resnet18(num_classes=5).eval()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    fast = prepare_for_cpu(model)
    assert _count_bn(fast) == 0 < _count_bn(model)
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), atol=1e-4, rtol=0)


def test_bfloat16_path_mostly_agrees(tiny_model: TinyASPPNet) -> None:
    fast = prepare_for_cpu(tiny_model, dtype=torch.bfloat16)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, expected = fast(x), tiny_model(x)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max() < 0.1


def test_predictor_fast_flag(tiny_model: TinyASPPNet, rgb_image) -> None:
    plain = Predictor(tiny_model).predict_proba(rgb_image)
    fast = Predictor(tiny_model, fast=True).predict_proba(rgb_image)
    torch.testing.assert_close(torch.from_numpy(fast), torch.from_numpy(plain), atol=1e-5, rtol=0)
