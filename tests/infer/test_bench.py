from __future__ import annotations

import numpy as np
import torch
from torch import nn

from atrous.infer.bench import (
    Variant,
    assign_flops,
    count_flops,
    peak_rss_mb,
    peak_rss_reset,
    run_variants,
)


def test_count_flops_matches_the_formula_for_a_dilated_conv() -> None:
    conv = nn.Conv2d(8, 16, 3, padding=2, dilation=2).eval()
    x = torch.randn(1, 8, 20, 30)
    # 2 FLOPs per multiply-add; dilation changes no FLOP count, only where taps land.
    assert count_flops(conv, x) == 2 * 8 * 16 * 3 * 3 * 20 * 30


def test_peak_rss_reset_and_read() -> None:
    before = peak_rss_mb()
    block = np.ones(40_000_000 // 8)  # 40 MB touched
    assert peak_rss_mb() >= before
    del block
    if peak_rss_reset():  # Linux: the peak drops back towards the current RSS
        assert peak_rss_mb() <= before + 20


def test_run_variants_agreement() -> None:
    model = nn.Conv2d(3, 4, 1).eval()
    variants = [Variant("a", model), Variant("b", lambda x: model(x) + 1e-3)]
    run_variants(variants, torch.randn(1, 3, 8, 8), runs=2, warmup=0, reference="a")
    assert len(variants[0].times) == 2 and variants[0].max_diff == 0
    assert abs(variants[1].max_diff - 1e-3) < 1e-6 and variants[1].agreement == 1.0


def test_effective_flops_skip_padding_taps() -> None:
    from atrous.infer.bench import count_effective_conv_flops

    x = torch.randn(1, 4, 10, 10)
    plain = nn.Conv2d(4, 6, 3, padding=0).eval()  # no padding: nominal == effective
    assert count_effective_conv_flops(plain, x) == count_flops(plain, x)
    # Dilation 12 on a 10x10 map: every off-centre tap is padding, only the centre counts.
    wide = nn.Conv2d(4, 6, 3, padding=12, dilation=12).eval()
    assert count_effective_conv_flops(wide, x) == 2 * 4 * 6 * 10 * 10
    assert count_flops(wide, x) == 9 * count_effective_conv_flops(wide, x)


def test_a_variant_with_its_own_model_is_credited_its_own_flops() -> None:
    """Output stride 16 does fewer FLOPs than the OS8 reference; its GFLOP/s must use them."""
    from atrous.models import build_model

    x = torch.randn(1, 3, 64, 64)
    os8 = build_model("deeplabv3", num_classes=3, backbone="resnet18", output_stride=8).eval()
    os16 = build_model("deeplabv3", num_classes=3, backbone="resnet18", output_stride=16).eval()
    reference = Variant("os8", os8)
    own = Variant("os16", os16, flops_model=os16)
    flops = count_flops(os8, x)
    assign_flops([reference, own], x, flops=flops, effective=flops - 1)
    assert reference.flops_per_image == flops and reference.effective_flops_per_image == flops - 1
    assert own.flops_per_image == count_flops(os16, x) < flops
    assert 0 < own.effective_flops_per_image <= own.flops_per_image
