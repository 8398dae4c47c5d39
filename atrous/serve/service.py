"""The model behind the service: segmentation, and the receptive-field view of a pixel.

Everything here is blocking (torch); the app runs it in worker threads through the
:class:`~atrous.serve.limiter.InferenceLimiter`.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from atrous.constants import voc_palette

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class ReceptiveFieldView:
    """Where the network looks from one output pixel, on the grid it was analysed at.

    Attributes:
        analysed_size: ``(height, width)`` of the grid analysed; the image resized so
            that its longest side is at most the server's ``max_analysis_side``.
        location: ``(y, x)`` of the clicked pixel on that grid.
        scale: analysed size / image size (1.0 when the image was small enough).
        coverage: ``HxW`` count of the paths from each input pixel to the output pixel
            through the dilated convolutions (zeros inside the box are the holes).
        box: ``(y0, y1, x0, x1)``, half-open: the bounding box of the pixels reached,
            on the grid (clipped to it near borders).
        hole_fraction: share of pixels inside ``box`` that no path reaches (gridding).
        erf: ``HxW`` effective receptive field: mean absolute input gradient, scaled
            so its maximum is 1.
        erf_radius: radius in grid pixels holding half of the ERF's mass.
    """

    analysed_size: tuple[int, int]
    location: tuple[int, int]
    scale: float
    coverage: np.ndarray
    box: tuple[int, int, int, int]
    hole_fraction: float
    erf: np.ndarray
    erf_radius: float


def analysis_grid(
    image_size: tuple[int, int], location: tuple[int, int], max_side: int
) -> tuple[tuple[int, int], tuple[int, int], float]:
    """Map an image size and a pixel onto the (possibly smaller) grid that is analysed.

    Returns:
        ``(grid_size, grid_location, scale)``.

    Raises:
        ValueError: size not positive, or the location outside the image.
    """
    height, width = image_size
    y, x = location
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"pixel (x={x}, y={y}) lies outside the {width}x{height} image")
    scale = min(1.0, max_side / max(height, width))
    grid = (max(1, round(height * scale)), max(1, round(width * scale)))
    grid_location = (
        min(grid[0] - 1, math.floor((y + 0.5) * grid[0] / height)),
        min(grid[1] - 1, math.floor((x + 0.5) * grid[1] / width)),
    )
    return grid, grid_location, scale


class ServedModel:
    """A loaded segmentation model plus what the service reports about it.

    Args:
        model: the network (a :class:`atrous.models.Segmentor` or any module with the
            same contract: normalised RGB in, logits at the input size out).
        name: what the client is told it is talking to.
        class_names: one name per class; ``class_0..`` when the model has none.
        palette: one RGB colour per class; VOC's colour map when the model has none.
        device: torch device.
        erf_samples: random inputs averaged for the effective receptive field.
        max_analysis_side: longest side of the grid the receptive field is computed on.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        class_names: list[str] | None = None,
        palette: list[Colour] | None = None,
        device: str = "cpu",
        erf_samples: int = 4,
        max_analysis_side: int = 128,
    ) -> None:
        from atrous.infer import Predictor

        num_classes = int(getattr(model, "num_classes", 0) or len(class_names or []))
        if num_classes < 1:
            raise ValueError("the model reports no classes (num_classes and class_names unset)")
        self.model = model.eval()
        self.name = name
        self.num_classes = num_classes
        self.class_names = list(class_names or [f"class_{i}" for i in range(num_classes)])
        self.palette = [
            tuple(int(c) for c in colour) for colour in (palette or voc_palette(num_classes))
        ]
        if len(self.class_names) != num_classes or len(self.palette) != num_classes:
            raise ValueError(
                f"{name}: {num_classes} classes but {len(self.class_names)} names and "
                f"{len(self.palette)} colours"
            )
        self.output_stride = getattr(model, "output_stride", None)
        self.device = device
        self.erf_samples = erf_samples
        self.max_analysis_side = max_analysis_side
        self.predictor = Predictor(self.model, device=device, mode="whole")
        self._analysis_lock = threading.Lock()
        self._coverage_cache: OrderedDict[tuple, Any] = OrderedDict()

    @classmethod
    def load(
        cls,
        name_or_dir: str,
        *,
        device: str = "cpu",
        erf_samples: int = 4,
        max_analysis_side: int = 128,
    ) -> ServedModel:
        """Load a shipped model by name or a folder written by ``save_pretrained``."""
        from atrous.models import load_pretrained

        model = load_pretrained(name_or_dir)
        # A folder is named by its last part: clients need no paths of the server's disk.
        return cls(
            model,
            name=Path(name_or_dir).name if Path(name_or_dir).is_dir() else str(name_or_dir),
            class_names=model.class_names,
            palette=model.palette,
            device=device,
            erf_samples=erf_samples,
            max_analysis_side=max_analysis_side,
        )

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` reports about the model."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "output_stride": self.output_stride,
            "classes": [
                {"index": i, "name": n, "color": list(c)}
                for i, (n, c) in enumerate(zip(self.class_names, self.palette))
            ],
        }

    def segment(self, image: np.ndarray) -> np.ndarray:
        """``HxW`` int64 labels for an ``HxWx3`` uint8 RGB image."""
        return self.predictor.predict(image)

    def receptive_field(
        self, image_size: tuple[int, int], location: tuple[int, int]
    ) -> ReceptiveFieldView:
        """Coverage map and effective receptive field of the output pixel ``location``.

        Both are computed for the exact clicked pixel (near a border the field is cut
        off, which is what the network really sees there), on the image's grid shrunk to
        ``max_analysis_side``. Coverage maps are cached: they depend only on the
        architecture, the grid and the pixel.
        """
        from atrous.analysis import coverage_map, effective_receptive_field

        grid, grid_location, scale = analysis_grid(image_size, location, self.max_analysis_side)
        key = (grid, grid_location)
        # Analysis hooks and gradients on the shared model must not interleave.
        with self._analysis_lock:
            coverage = self._coverage_cache.get(key)
            if coverage is None:
                # Image-level pooling branches reach every pixel equally; dropping them
                # keeps the holes of the dilated branches visible. The ERF keeps them.
                coverage = coverage_map(
                    self.model, input_size=grid, location=grid_location, global_pooling="drop"
                )
                self._coverage_cache[key] = coverage
                while len(self._coverage_cache) > 64:
                    self._coverage_cache.popitem(last=False)
            erf = effective_receptive_field(
                self.model, input_size=grid, samples=self.erf_samples, location=grid_location
            )
        erf_map = np.abs(np.asarray(erf.map, dtype=np.float64))
        peak = float(erf_map.max())
        if peak > 0:
            erf_map = erf_map / peak
        return ReceptiveFieldView(
            analysed_size=grid,
            location=grid_location,
            scale=scale,
            coverage=np.asarray(coverage.counts),
            box=tuple(int(v) for v in coverage.box),
            hole_fraction=float(coverage.hole_fraction),
            erf=erf_map,
            erf_radius=float(erf.radius(0.5)),
        )
