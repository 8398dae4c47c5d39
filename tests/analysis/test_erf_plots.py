"""Effective receptive field and the PNG plots read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from atrous.analysis import (
    chain_coverage,
    coverage_map,
    effective_receptive_field,
    plot_coverage,
    plot_erf,
    plot_schedules,
)
from atrous.analysis.plots import HOLE_COLOUR

HOLE_RGB = np.array([round(255 * c) for c in HOLE_COLOUR])


def test_erf_of_a_single_linear_conv_is_its_normalised_kernel() -> None:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(1.0, 10.0).reshape(1, 1, 3, 3))
    erf = effective_receptive_field(conv, (9, 9), samples=2, in_channels=1)
    expected = np.zeros((9, 9))
    expected[3:6, 3:6] = np.arange(1.0, 10.0).reshape(3, 3)
    np.testing.assert_allclose(erf.map, expected / expected.sum(), rtol=1e-6)
    assert erf.centre == (4.0, 4.0)
    assert erf.radius(1.0) == pytest.approx(np.sqrt(2))
    # The centre tap holds 5/45 of the mass, so 5% lies at radius 0.
    assert erf.radius(0.05) == 0.0


def test_erf_lives_inside_the_exact_coverage_and_has_zeros_at_holes() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, padding=2, dilation=2),
    )
    erf = effective_receptive_field(net, (21, 21), samples=4)
    coverage = coverage_map(net, (21, 21))
    assert np.all(erf.map[coverage.counts == 0] == 0)
    assert erf.map.sum() == pytest.approx(1.0)
    assert 0 < erf.radius(0.5) <= erf.radius(0.95) <= np.sqrt(2) * 6 + 1e-9
    assert net.training  # evaluated in eval mode, then put back in train mode
    assert erf.to_dict()["samples"] == 4


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _hole_pixels(pixels: np.ndarray) -> int:
    return int(np.all(np.abs(pixels - HOLE_RGB) <= 1, axis=-1).sum())


def test_coverage_plot_shows_holes_only_for_a_gridded_schedule(tmp_path: Path) -> None:
    gridded = plot_coverage(chain_coverage([2, 2, 2]), tmp_path / "grid.png", title="2,2,2")
    clean = plot_coverage(chain_coverage([1, 2, 5]), tmp_path / "hdc.png")
    for path in (gridded, clean):
        pixels = _rgb(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200
        assert pixels.std() > 10  # not blank
    # The legend swatch uses the hole colour too; the gridded map has far more of it.
    assert _hole_pixels(_rgb(gridded)) > 20 * max(1, _hole_pixels(_rgb(clean)))


def test_schedule_comparison_and_erf_plots(tmp_path: Path) -> None:
    path = plot_schedules([[2, 2, 2], [1, 2, 5], [1, 2, 9]], tmp_path / "cmp.png")
    pixels = _rgb(path)
    assert pixels.shape[1] > 2 * pixels.shape[0]  # three panels side by side
    thirds = np.array_split(pixels, 3, axis=1)
    holes = [_hole_pixels(third) for third in thirds]
    assert holes[0] > 1000 and holes[2] > 300 and holes[1] < holes[2]
    net = nn.Conv2d(3, 2, 5, padding=2)
    erf_path = plot_erf(effective_receptive_field(net, (15, 15), samples=1), tmp_path / "e.png")
    assert _rgb(erf_path).std() > 10
    with pytest.raises(ValueError):
        plot_schedules([], tmp_path / "none.png")
