"""Exact coverage maps against brute-force path enumeration and hand-derived counts."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from atrous.analysis import chain_counts_1d, chain_coverage, coverage_map

Chain1d = tuple[int, int, int]  # kernel, stride, dilation


def brute_force_1d(layers: list[Chain1d], out_position: int = 0) -> Counter[int]:
    """Count every path from one output of a chain of valid (unpadded) convs to the input."""
    counts: Counter[int] = Counter({out_position: 1})
    for kernel, stride, dilation in reversed(layers):
        below: Counter[int] = Counter()
        for position, paths in counts.items():
            for tap in range(kernel):
                below[stride * position + dilation * tap] += paths
        counts = below
    return counts


def input_length(layers: list[Chain1d], outputs: int = 1) -> int:
    length = outputs
    for kernel, stride, dilation in reversed(layers):
        length = (length - 1) * stride + dilation * (kernel - 1) + 1
    return length


layer_strategy = st.tuples(
    st.integers(1, 4), st.integers(1, 2), st.integers(1, 4)
)  # kernel, stride, dilation


@settings(max_examples=30, deadline=None)
@given(st.lists(layer_strategy, min_size=1, max_size=4), st.integers(1, 3))
def test_1d_chain_equals_brute_force(layers: list[Chain1d], channels: int) -> None:
    outputs = 3
    length = input_length(layers, outputs)
    convs = []
    c_in = 1
    for kernel, stride, dilation in layers:
        convs += [nn.Conv1d(c_in, channels, kernel, stride, dilation=dilation), nn.ReLU()]
        c_in = channels
    net = nn.Sequential(*convs)
    for method in ("collapsed", "full"):
        coverage = coverage_map(net, (length,), (1,), in_channels=1, method=method)
        expected = np.zeros(length)
        for position, paths in brute_force_1d(layers, 1).items():
            expected[position] = paths
        np.testing.assert_array_equal(coverage.counts, expected)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=3))
def test_2d_chain_with_anisotropic_rates_equals_brute_force(rates: list[tuple[int, int]]) -> None:
    # 3x3 kernels, rate (ry, rx) per layer, 'valid' convs, one output.
    span_y = sum(2 * ry for ry, _ in rates) + 1
    span_x = sum(2 * rx for _, rx in rates) + 1
    net = nn.Sequential(*(nn.Conv2d(2 if i else 3, 2, 3, dilation=r) for i, r in enumerate(rates)))
    expected = np.zeros((span_y, span_x))
    taps = [[(ry * ty, rx * tx) for ty in range(3) for tx in range(3)] for ry, rx in rates]
    for path in itertools.product(*taps):
        expected[sum(t[0] for t in path), sum(t[1] for t in path)] += 1
    coverage = coverage_map(net, (span_y, span_x))
    np.testing.assert_array_equal(coverage.counts, expected)
    assert coverage.location == (0, 0)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=4), st.integers(2, 4))
def test_analytic_chain_equals_brute_force(rates: list[int], kernel: int) -> None:
    counts = chain_counts_1d(rates, kernel)
    enumerated = brute_force_1d([(kernel, 1, r) for r in rates])
    expected = np.zeros(counts.size, dtype=np.int64)
    for position, paths in enumerated.items():
        expected[position] += paths
    np.testing.assert_array_equal(counts, expected)


def test_same_padded_chain_at_the_centre_equals_analytic_chain() -> None:
    rates = [1, 2, 5]
    net = nn.Sequential(*(nn.Conv2d(3, 3, 3, padding=r, dilation=r) for r in rates))
    coverage = coverage_map(net, (41, 41))
    analytic = chain_coverage(rates)
    y0, y1, x0, x1 = coverage.box
    np.testing.assert_array_equal(coverage.counts[y0:y1, x0:x1], analytic.counts)
    assert coverage.hole_fraction == analytic.hole_fraction == 0.0
    assert coverage.location == (20, 20)


def test_gridding_chain_has_exact_lattice_of_holes() -> None:
    coverage = chain_coverage([2, 2, 2])
    assert coverage.box_shape == (13, 13)
    # Only even offsets are reached: 7 of 13 per axis.
    assert coverage.hole_fraction == pytest.approx(1 - (7 / 13) ** 2)
    assert coverage.is_grid and coverage.grid_period == (2, 2)
    assert np.all(coverage.counts[1::2, :] == 0)
    hdc = chain_coverage([1, 2, 5])
    assert hdc.hole_fraction == 0 and not hdc.is_grid and hdc.grid_period is None


class Residual(nn.Module):
    def __init__(self, channels: int, rate: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=rate, dilation=rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.conv2(torch.relu(self.bn(self.conv1(x)))))


def test_residual_block_counts_are_identity_plus_conv_paths() -> None:
    block = nn.Sequential(nn.Conv2d(3, 4, 1), Residual(4, 3))
    for method in ("collapsed", "full"):
        coverage = coverage_map(block, (21, 21), method=method)
        expected = np.zeros((21, 21))
        expected[10, 10] += 1  # the identity path
        conv_paths = chain_coverage([1, 3]).counts  # 9x9 around the centre
        expected[6:15, 6:15] += conv_paths
        np.testing.assert_array_equal(coverage.counts, expected)


class ASPPLike(nn.Module):
    """Branches of different widths, concatenated and projected, plus image pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                nn.Conv2d(3, 2, 1),
                nn.Sequential(nn.Conv2d(3, 5, 3, padding=2, dilation=2), nn.ReLU()),
                nn.Conv2d(3, 3, 3, padding=4, dilation=4),
            ]
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(3, 4, 1))
        self.project = nn.Conv2d(2 + 5 + 3 + 4, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear")
        return self.project(torch.cat([*(b(x) for b in self.branches), pooled], dim=1))


def test_aspp_branches_add_their_paths_and_global_pooling_is_exact() -> None:
    net = ASPPLike()
    size = 17
    dropped = coverage_map(net, (size, size), global_pooling="drop")
    expected = np.zeros((size, size))
    expected[8, 8] += 1
    expected[6:11:2, 6:11:2] += 1
    expected[4:13:4, 4:13:4] += 1
    np.testing.assert_array_equal(dropped.counts, expected)
    assert dropped.is_grid and dropped.box_shape == (9, 9)
    full = coverage_map(net, (size, size), method="full", global_pooling="drop")
    np.testing.assert_array_equal(full.counts, expected)
    # Image pooling reaches every pixel once, weighted 1/(H W) by the average.
    kept = coverage_map(net, (size, size))
    np.testing.assert_allclose(kept.counts, expected + 1 / size**2, rtol=1e-12)
    assert kept.hole_fraction == 0 and kept.box == (0, size, 0, size)


def test_max_pool_counts_every_window_member_and_avg_pool_weights_them() -> None:
    conv = nn.Conv2d(3, 3, 3)
    max_net = nn.Sequential(nn.MaxPool2d(2, 2), nn.ReLU(), conv)
    avg_net = nn.Sequential(nn.AvgPool2d(2, 2), conv)
    line = np.zeros(6)
    for position, paths in brute_force_1d([(2, 2, 1), (3, 1, 1)]).items():
        line[position] = paths
    expected = np.outer(line, line)
    np.testing.assert_array_equal(coverage_map(max_net, (6, 6), (0, 0)).counts, expected)
    np.testing.assert_array_equal(coverage_map(avg_net, (6, 6), (0, 0)).counts, expected / 4)


def test_bilinear_upsampling_gives_interpolation_weights() -> None:
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Upsample(scale_factor=2, mode="bilinear"))
    coverage = coverage_map(net, (8, 8), (5, 5))
    # Output 5 samples source (5 + 0.5) / 2 - 0.5 = 2.25: 0.75 of pixel 2, 0.25 of pixel 3.
    expected = np.zeros((8, 8))
    expected[2:4, 2:4] = np.outer([0.75, 0.25], [0.75, 0.25])
    np.testing.assert_array_equal(coverage.counts, expected)


def test_dict_output_source_and_errors() -> None:
    class TwoStage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 3, padding=2, dilation=2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            a = self.a(x)
            return {"a": a, "out": self.b(a)}

    net = TwoStage()
    on_a = coverage_map(net, (15, 15), source="a")
    assert on_a.hole_fraction == pytest.approx(1 - (3 / 5) ** 2) and on_a.grid_period == (2, 2)
    by_module = coverage_map(net, (15, 15), source="a")
    np.testing.assert_array_equal(on_a.counts, by_module.counts)
    at_image = coverage_map(net, (15, 15))
    assert at_image.hole_fraction == 0 and at_image.box_shape == (7, 7)
    with pytest.raises(KeyError, match="output_index"):
        coverage_map(net, (15, 15), output_index="missing")
    with pytest.raises(ValueError, match="outside the output"):
        coverage_map(net, (15, 15), location=(20, 3))


def test_a_submodules_output_and_the_position_over_an_input_pixel() -> None:
    from atrous.analysis import CoverageRequest, coverage_maps

    # Stride 2, then a rate-2 conv: the 8x10 map of a 16x20 input; its position over input
    # pixel (p + 0.5) * 8 / 16 for rows, the same for columns.
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=2, dilation=2)
    )
    over, at = coverage_maps(
        net,
        (16, 20),
        [
            CoverageRequest(output_index="1", source="0", over=(13, 2)),
            CoverageRequest(source="0", location=(6, 1)),
        ],
    )
    assert over.location == (6, 1)
    np.testing.assert_array_equal(over.counts, at.counts)
    # Rows 4, 6 (8 is off the map), columns 1 and 3 (-1 is off): cut by the border.
    assert over.grid_period == (2, 2) and over.box == (4, 7, 1, 4)
    with pytest.raises(ValueError, match="outside the input"):
        coverage_maps(net, (16, 20), [CoverageRequest(over=(16, 0))])


def test_dilated_resnet_collapsed_equals_full_channel_reference() -> None:
    pytest.importorskip("torchvision")
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.resnet import Bottleneck, ResNet

    # torchvision's own dilated ResNet (fewer blocks than ResNet-50 to keep the
    # full-channel reference quick; layer4 keeps its 3 blocks).
    # Built on the meta device: the linearised copy never reads conv or norm weights.
    with torch.device("meta"):
        resnet = ResNet(Bottleneck, [1, 1, 1, 3], replace_stride_with_dilation=[False, True, True])
    backbone = IntermediateLayerGetter(resnet, {"layer3": "layer3", "layer4": "out"})
    fast = coverage_map(backbone, (25, 25), method="collapsed", source="layer3")
    slow = coverage_map(backbone, (25, 25), method="full", source="layer3")
    assert fast.method == "collapsed" and slow.method == "full"
    np.testing.assert_allclose(fast.counts, slow.counts, rtol=1e-12)
    assert np.array_equal(fast.counts == 0, slow.counts == 0)
    # torchvision's OS8 layer4 uses rates 2, 4, 4: only even offsets of layer3 are reached.
    assert fast.is_grid and fast.grid_period == (2, 2)
    assert fast.counts.sum() == pytest.approx(slow.counts.sum(), rel=1e-12)


def test_pixel_shuffle_collapsed_matches_full_channel_reference() -> None:
    # DUC-like: a dilated conv predicting r*r sub-pixels, then a pixel shuffle.
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=2, dilation=2), nn.ReLU(), nn.Conv2d(4, 2 * 9, 3, padding=1)
    )
    duc = nn.Sequential(net, nn.PixelShuffle(3))
    fast = coverage_map(duc, (11, 11), (16, 17), method="collapsed")
    slow = coverage_map(duc, (11, 11), (16, 17), method="full")
    np.testing.assert_allclose(fast.counts, slow.counts, rtol=1e-12)
    # Output (16, 17) reads feature pixel (5, 5): the chain 2, 1 around it, over 9.
    expected = np.zeros((11, 11))
    expected[2:9, 2:9] = chain_coverage([2, 1]).counts / 9
    np.testing.assert_allclose(fast.counts, expected, rtol=1e-12)
