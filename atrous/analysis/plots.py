"""PNG plots of coverage maps, schedule comparisons and effective receptive fields.

Holes are drawn in red on a log-scaled viridis map of the path counts, so gridding is a
red lattice you see at a glance; pixels outside the receptive-field box stay white.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atrous.analysis.coverage import CoverageMap, chain_coverage
from atrous.analysis.erf import ERF

HOLE_COLOUR = (0.86, 0.08, 0.08)  # red: never reached, inside the receptive field


def _legend_handles() -> list[Any]:
    from matplotlib.patches import Patch

    reached = _pyplot().get_cmap("viridis")(0.6)
    return [
        Patch(color=HOLE_COLOUR, label="hole (never reached)"),
        Patch(color=reached, label="reached (colour: log path count)"),
    ]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def coverage_image(coverage: CoverageMap, *, margin: int = 2) -> tuple[np.ndarray, tuple[int, int]]:
    """RGB image of a 2-D coverage map cropped to its box plus ``margin``.

    Returns the ``(h, w, 3)`` float image and the crop origin ``(y, x)``.
    """
    plt = _pyplot()
    counts = coverage.counts
    if counts.ndim == 1:
        counts = counts[None, :]
        box = (0, 1, *coverage.box)
    else:
        box = coverage.box
    y0, y1 = max(0, box[0] - margin), min(counts.shape[0], box[1] + margin)
    x0, x1 = max(0, box[2] - margin), min(counts.shape[1], box[3] + margin)
    crop = counts[y0:y1, x0:x1]
    reached = crop > 0
    image = np.ones((*crop.shape, 3))
    if reached.any():
        logs = np.log10(crop[reached])
        low, high = logs.min(), logs.max()
        scaled = (logs - low) / (high - low) if high > low else np.full_like(logs, 0.75)
        image[reached] = plt.get_cmap("viridis")(0.15 + 0.85 * scaled)[:, :3]
    inside = np.zeros_like(reached)
    inside[box[0] - y0 : box[1] - y0, box[2] - x0 : box[3] - x0] = True
    image[inside & ~reached] = HOLE_COLOUR
    return image, (y0, x0)


def _draw_coverage(axis: Any, coverage: CoverageMap, title: str | None) -> None:
    image, (y0, x0) = coverage_image(coverage)
    h, w = image.shape[:2]
    axis.imshow(
        image, interpolation="nearest", extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5)
    )
    shape = "x".join(str(s) for s in coverage.box_shape)
    label = f"RF {shape}, holes {coverage.hole_fraction:.1%}"
    if coverage.is_grid and coverage.grid_period:
        label += f", grid period {tuple(coverage.grid_period)}"
    axis.set_title(f"{title}\n{label}" if title else label, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])


def plot_coverage(coverage: CoverageMap, path: str | Path, title: str | None = None) -> Path:
    """Heatmap of log path counts with holes (inside the receptive field) in red."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.6, 4.8), dpi=100)
    _draw_coverage(axis, coverage, title)
    axis.legend(
        handles=_legend_handles(),
        loc="lower center",
        bbox_to_anchor=(0.5, -0.14),
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    return _save(figure, path)


def plot_schedules(
    rates_list: Sequence[Sequence[int]], path: str | Path, kernel_size: int = 3
) -> Path:
    """Side-by-side coverage of several dilation schedules (2-D chains of ``k x k`` convs)."""
    plt = _pyplot()
    if not rates_list:
        raise ValueError("plot_schedules needs at least one schedule")
    count = len(rates_list)
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.6), dpi=100, squeeze=False)
    for axis, rates in zip(axes[0], rates_list):
        coverage = chain_coverage(rates, kernel_size, dims=2)
        _draw_coverage(axis, coverage, "rates " + ",".join(str(r) for r in rates))
    figure.legend(
        handles=_legend_handles(),
        loc="lower center",
        ncol=2,
        fontsize=8,
        frameon=False,
    )
    figure.subplots_adjust(bottom=0.1)
    return _save(figure, path)


def plot_erf(erf: ERF, path: str | Path, title: str | None = None) -> Path:
    """Heatmap of the effective receptive field with its 50% and 95% mass circles."""
    plt = _pyplot()
    from matplotlib.patches import Circle

    figure, axis = plt.subplots(figsize=(4.6, 4.6), dpi=100)
    axis.imshow(erf.map, cmap="magma", interpolation="nearest")
    cy, cx = erf.centre[0], erf.centre[-1]
    for fraction, style in ((0.5, ":"), (0.95, "--")):
        radius = erf.radius(fraction)
        axis.add_patch(Circle((cx, cy), radius, fill=False, color="cyan", linestyle=style))
    label = f"ERF: 50% in r={erf.radius(0.5):.1f}px, 95% in r={erf.radius(0.95):.1f}px"
    axis.set_title(f"{title}\n{label}" if title else label, fontsize=9)
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def _save(figure: Any, path: str | Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(figure)
    return path
