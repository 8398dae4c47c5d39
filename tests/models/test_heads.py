"""Heads: ASPP (rates, batch-1 training), context module identity init, DUC."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP

from atrous.models import build_model
from atrous.models.heads import ASPP, ContextModule, DUCHead, default_rates


def test_aspp_rates_follow_the_output_stride_and_can_be_overridden() -> None:
    assert default_rates(16) == (6, 12, 18)
    assert default_rates(8) == (12, 24, 36)
    model = build_model("deeplabv3", num_classes=2, backbone="resnet18", output_stride=8)
    branches = model.classifier[0].convs[1:-1]
    assert [branch[0].dilation[0] for branch in branches] == [12, 24, 36]
    custom = build_model("deeplabv3", num_classes=2, backbone="resnet18", aspp_rates=(2, 3))
    assert custom.classifier[0].rates == (2, 3)


def test_aspp_matches_torchvision_and_keys_agree() -> None:
    reference = TorchvisionASPP(32, [2, 4, 6], 16).eval()
    ours = ASPP(32, rates=(2, 4, 6), out_channels=16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_aspp_trains_with_batch_size_one() -> None:
    reference = TorchvisionASPP(8, [2], 8).train()
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        reference(torch.randn(1, 8, 5, 5))  # why ours needs the batch-1 path
    ours = ASPP(8, rates=(2,), out_channels=8).train()
    ours.load_state_dict(reference.state_dict())
    batch = torch.randn(2, 8, 5, 5)
    torch.manual_seed(3)  # same dropout mask for both
    expected = reference(batch)
    torch.manual_seed(3)
    torch.testing.assert_close(ours(batch), expected)  # batch >= 2: identical
    single = ours(torch.randn(1, 8, 5, 5))
    single.sum().backward()
    assert ours.convs[-1][1].weight.grad is not None


@pytest.mark.parametrize("name", ["deeplabv3", "deeplabv3plus"])
def test_batch_one_training_step(name: str) -> None:
    model = build_model(name, num_classes=3, backbone="resnet18", head_channels=16).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, target = torch.randn(1, 3, 33, 33), torch.randint(0, 3, (1, 33, 33))
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert changed > 0.9 * len(before)


def test_group_norm_keeps_image_context_at_batch_one() -> None:
    """With BatchNorm after the projection, a per-image constant (the pooled branch) is
    removed again by the batch statistics of a single image; GroupNorm keeps it."""
    grads = {}
    for norm in ("batch", "group"):
        torch.manual_seed(0)
        model = build_model(
            "deeplabv3", num_classes=3, backbone="resnet18", head_channels=256, norm=norm
        ).train()
        model(torch.randn(1, 3, 40, 40)).square().mean().backward()
        grads[norm] = model.classifier[0].convs[-1][1].weight.grad.abs().max().item()
    assert grads["batch"] < 1e-4 < grads["group"]
    with pytest.raises(ValueError, match="at least 64 head channels"):
        ASPP(8, rates=(2,), out_channels=32, norm="group")


@pytest.mark.parametrize("variant", ["basic", "large"])
def test_context_module_starts_as_identity(variant: str) -> None:
    module = ContextModule(4, variant=variant, noise=0.0)
    x = torch.randn(2, 4, 12, 12)
    torch.testing.assert_close(module(x), torch.relu(x), atol=1e-6, rtol=1e-5)
    assert [c.dilation[0] for c in module.layers if isinstance(c, torch.nn.Conv2d)] == [
        1,
        1,
        2,
        4,
        8,
        16,
        1,
        1,
    ]
    if variant == "large":
        assert max(c.out_channels for c in module.layers if isinstance(c, torch.nn.Conv2d)) == 128
        noisy = ContextModule(4, variant="large")
        assert (noisy(x) - torch.relu(x)).abs().max() < 0.5


def test_duc_rearranges_subpixel_maps() -> None:
    head = DUCHead(16, 3, upscale=8, channels=8)
    assert head(torch.randn(1, 16, 5, 7)).shape == (1, 3, 40, 56)


def test_drn_heads() -> None:
    for head in ("context_basic", "duc"):
        model = build_model("drn_d_22", num_classes=3, head=head).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 3, 33, 35)).shape == (1, 3, 33, 35)
    with pytest.raises(ValueError, match="choose one of"):
        build_model("drn_d_22", num_classes=3, head="nope")
