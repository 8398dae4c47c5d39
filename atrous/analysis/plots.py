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
TITLE_SIZE = 11  # points: figures are shown scaled down on the documentation pages
LABEL_SIZE = 10
COUNT_COLOURS_FROM = (
    0.15  # reached pixels use viridis from here up (its darkest end reads as a hole)
)


def _legend_handles() -> list[Any]:
    from matplotlib.patches import Patch

    reached = _pyplot().get_cmap("viridis")(0.6)
    return [
        Patch(color=HOLE_COLOUR, label="hole (never reached)"),
        Patch(color=reached, label="reached (colour: log10 path count)"),
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
        start = COUNT_COLOURS_FROM
        image[reached] = plt.get_cmap("viridis")(start + (1 - start) * scaled)[:, :3]
    inside = np.zeros_like(reached)
    inside[box[0] - y0 : box[1] - y0, box[2] - x0 : box[3] - x0] = True
    image[inside & ~reached] = HOLE_COLOUR
    return image, (y0, x0)


def _count_colour_bar(figure: Any, axis: Any, coverage: CoverageMap) -> None:
    """A colour bar beside ``axis`` in log10 path counts, matching ``coverage_image``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    reached = coverage.counts[coverage.counts > 0]
    low, high = (np.log10(reached.min()), np.log10(reached.max())) if reached.size else (0, 0)
    # One count only: coverage_image draws it at 3/4 of the scale.
    norm = Normalize(low, high) if high > low else Normalize(low - 0.75, low + 0.25)
    start = COUNT_COLOURS_FROM
    colours = ListedColormap(_pyplot().get_cmap("viridis")(np.linspace(start, 1.0, 256)))
    bar = figure.colorbar(ScalarMappable(norm, colours), ax=axis, fraction=0.046, pad=0.03)
    bar.set_label("log10 path count", fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=LABEL_SIZE)


def _draw_coverage(figure: Any, axis: Any, coverage: CoverageMap, title: str | None) -> None:
    image, (y0, x0) = coverage_image(coverage)
    h, w = image.shape[:2]
    axis.imshow(
        image, interpolation="nearest", extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5)
    )
    shape = "x".join(str(s) for s in coverage.box_shape)
    label = f"RF {shape}, holes {coverage.hole_fraction:.1%}"
    if coverage.is_grid and coverage.grid_period:
        label += f"\ngrid period {tuple(coverage.grid_period)}"
    axis.set_title(f"{title}\n{label}" if title else label, fontsize=TITLE_SIZE)
    axis.set_xticks([])
    axis.set_yticks([])
    _count_colour_bar(figure, axis, coverage)


def plot_coverage(coverage: CoverageMap, path: str | Path, title: str | None = None) -> Path:
    """Heatmap of log path counts with holes (inside the receptive field) in red."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.2, 5.0), dpi=100)
    _draw_coverage(figure, axis, coverage, title)
    axis.legend(
        handles=_legend_handles(),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=1,
        fontsize=LABEL_SIZE,
        frameon=False,
    )
    return _save(figure, path)


def plot_schedules(
    rates_list: Sequence[Sequence[int]], path: str | Path, kernel_size: int = 3
) -> Path:
    """Side-by-side coverage of several dilation schedules (2-D chains of ``k x k`` convs).

    Example:
        ```python
        import tempfile
        from pathlib import Path

        from atrous.analysis import plot_schedules

        path = plot_schedules([[2, 2, 2], [1, 2, 5]], Path(tempfile.mkdtemp()) / "schedules.png")
        ```
    """
    plt = _pyplot()
    if not rates_list:
        raise ValueError("plot_schedules needs at least one schedule")
    count = len(rates_list)
    figure, axes = plt.subplots(1, count, figsize=(3.6 * count, 4.0), dpi=100, squeeze=False)
    for axis, rates in zip(axes[0], rates_list):
        coverage = chain_coverage(rates, kernel_size, dims=2)
        _draw_coverage(figure, axis, coverage, "rates " + ",".join(str(r) for r in rates))
    figure.legend(
        handles=_legend_handles(),
        loc="lower center",
        ncol=2,
        fontsize=LABEL_SIZE,
        frameon=False,
    )
    figure.tight_layout(rect=(0, 0.08, 1, 1))  # room for the shared legend below
    return _save(figure, path, tight=False)


def plot_erf(erf: ERF, path: str | Path, title: str | None = None) -> Path:
    """Heatmap of the effective receptive field with its 50% and 95% mass circles."""
    plt = _pyplot()
    from matplotlib.patches import Circle

    figure, axis = plt.subplots(figsize=(5.0, 4.6), dpi=100)
    shown = axis.imshow(erf.map, cmap="magma", interpolation="nearest")
    bar = figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.03)
    bar.set_label("share of the gradient mass per pixel", fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=LABEL_SIZE)
    cy, cx = erf.centre[0], erf.centre[-1]
    for fraction, style in ((0.5, ":"), (0.95, "--")):
        radius = erf.radius(fraction)
        axis.add_patch(Circle((cx, cy), radius, fill=False, color="cyan", linestyle=style))
    label = f"ERF: 50% in r={erf.radius(0.5):.1f}px, 95% in r={erf.radius(0.95):.1f}px"
    axis.set_title(f"{title}\n{label}" if title else label, fontsize=TITLE_SIZE)
    axis.set_xticks([])
    axis.set_yticks([])
    return _save(figure, path)


def _save(figure: Any, path: str | Path, *, tight: bool = True) -> Path:
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        figure.tight_layout()
    figure.savefig(path, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(figure)
    return path
