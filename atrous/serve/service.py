"""The model behind the service: segmentation, and the receptive-field view of a pixel.

Everything here is blocking (torch); the app runs it in worker threads through the
``InferenceLimiter``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atrous.constants import voc_palette
from atrous.serve.limiter import Cancelled

logger = logging.getLogger(__name__)

Colour = tuple[int, int, int]


class CancelEvent(Protocol):
    """What a cancellation check needs: ``threading.Event`` or ``AllSet``."""

    def is_set(self) -> bool: ...


# The cancel event of the segmentation that runs in the current thread, if any.
_RUNNING = threading.local()


def _check_cancelled(_module: nn.Module, _inputs: object) -> None:
    cancel = getattr(_RUNNING, "cancel", None)
    if cancel is not None and cancel.is_set():
        raise Cancelled("stopped between layers: nobody waits for this segmentation")


class AllSet:
    """Set when every one of ``events`` is set: a batch stops once none of its clients waits."""

    def __init__(self, events: list[threading.Event]) -> None:
        self.events = events

    def is_set(self) -> bool:
        return all(event.is_set() for event in self.events)


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
        erf: ``HxW`` effective receptive field: absolute input gradient, scaled so its
            maximum is 1; at the uploaded image when one was named, else the mean over
            random inputs.
        erf_radius: radius in grid pixels holding half of the ERF's mass.
        erf_on_image: whether ``erf`` was computed on the uploaded image.
        stages: each dilated stage's coverage at the pixel, on the feature map it reads
            (``atrous.analysis.model_report.dilated_stages_at``); where gridding shows.
        stage_size: ``(height, width)`` of the image the stages were analysed at: the
            image itself, shrunk when its longest side exceeds ``MAX_STAGE_SIDE``.
    """

    analysed_size: tuple[int, int]
    location: tuple[int, int]
    scale: float
    coverage: np.ndarray
    box: tuple[int, int, int, int]
    hole_fraction: float
    erf: np.ndarray
    erf_radius: float
    erf_on_image: bool = False
    stages: tuple[Any, ...] = ()
    stage_size: tuple[int, int] | None = None


MAX_STAGE_SIDE = 1024
"""Longest image side at which the dilated stages are analysed.

Gridding lives on the feature maps, whose size follows the image: ASPP's rate 18 on the
30-position-wide stride-16 map of a 480-pixel photo reaches past its border, on the
map of a 128-pixel thumbnail it reaches nothing. So stages are analysed at the image's
own size (coverage maps are cheap: well under a second at 1024 pixels for the shipped
models), shrunk only beyond this side.
"""


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


class CostModel:
    """Seconds of inference per pixel, measured on this machine and kept up to date.

    Admission control needs to know, before decoding an upload, whether it can finish
    within the request timeout. The cost of a forward pass of a fully convolutional
    network grows linearly with the pixels it processes, so one number per model and
    machine predicts it: calibrated once at start-up, then refined from every large
    enough inference (an exponential moving average, so a busier machine is noticed).
    Small inferences are not used: their fixed overhead would inflate the per-pixel
    rate and refuse large images that would fit.
    """

    def __init__(self, seconds_per_pixel: float | None = None, *, weight: float = 0.2) -> None:
        self.seconds_per_pixel = seconds_per_pixel
        self.weight = weight
        self.min_pixels = 65_536

    def observe(self, pixels: int, seconds: float) -> None:
        """Record one measured inference of ``pixels`` processed pixels."""
        if pixels < self.min_pixels or seconds <= 0:
            return
        rate = seconds / pixels
        if self.seconds_per_pixel is None:
            self.seconds_per_pixel = rate
        else:
            self.seconds_per_pixel += self.weight * (rate - self.seconds_per_pixel)

    def estimate_s(self, pixels: int) -> float:
        """Estimated seconds for ``pixels`` processed pixels (0 before calibration)."""
        return pixels * (self.seconds_per_pixel or 0.0)


class ServedModel:
    """A loaded segmentation model plus what the service reports about it.

    Args:
        model: the network (a ``atrous.models.Segmentor`` or any module with the
            same contract: normalised RGB in, logits at the input size out).
        name: what the client is told it is talking to.
        class_names: one name per class; ``class_0..`` when the model has none.
        palette: one RGB colour per class; VOC's colour map when the model has none.
        device: torch device.
        erf_samples: random inputs averaged for the effective receptive field.
        max_analysis_side: longest side of the grid the receptive field is computed on.
        max_batch_size: most same-sized images segmented in one forward.
        slide_above_pixels: larger images run through sliding windows.
        window: sliding-window side in pixels.
        runtime, precision: the CPU path segmentation runs on (``atrous.infer.runtime``;
            ``auto`` never compiles per size here, as request sizes vary). The
            receptive-field views always read the fp32 model.
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
        max_batch_size: int = 4,
        slide_above_pixels: int = 1_048_576,
        window: int = 512,
        runtime: str = "torch",
        precision: str = "fp32",
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
        self.slide_above_pixels = slide_above_pixels
        self.window = window
        self.overlap = 1 / 3
        self.choice, self.runner = self._runner(runtime, precision)
        self.predictor = Predictor(
            self.runner, device=device, mode="whole", batch_size=max_batch_size
        )
        self.cost = CostModel()
        self._analysis_lock = threading.Lock()
        # Every module checks the cancel event of the segmentation running in its thread
        # before it runs, so even a whole-image forward stops within a layer once nobody
        # waits for it (a torch call itself cannot be interrupted). A plain function, so
        # that analyses which deep-copy the model copy no lock.
        runner_modules = self.runner.modules() if isinstance(self.runner, nn.Module) else []
        for module in [*self.model.modules(), *runner_modules]:
            module.register_forward_pre_hook(_check_cancelled)
        self._coverage_cache: OrderedDict[tuple, Any] = OrderedDict()
        self._images: OrderedDict[str, tuple[np.ndarray, tuple[int, int]]] = OrderedDict()
        self._images_lock = threading.Lock()

    def _runner(self, runtime: str, precision: str) -> tuple[Any, Any]:
        """The runtime choice and the runner segmentation calls (the model itself for
        exact fp32 with torch, and on any device but the CPU)."""
        from atrous.infer.runtime import RuntimeChoice, build_runner, choose

        if str(self.device) != "cpu" or (runtime, precision) == ("torch", "fp32"):
            return RuntimeChoice("torch", "fp32", False, "as asked"), self.model
        choice = choose(self.model, runtime, precision, varied_shapes=True)
        logger.info("%s: segmentation runs on %s", self.name, choice.describe())
        return choice, build_runner(self.model, choice)

    @classmethod
    def load(cls, name_or_dir: str, **options: Any) -> ServedModel:
        """Load a shipped model by name or a folder written by ``save_pretrained``.

        Args:
            name_or_dir: registry name or folder.
            **options: the keyword arguments of the constructor (device, limits...).
        """
        from atrous.models import load_pretrained

        model = load_pretrained(name_or_dir)
        # A folder is named by its last part: clients need no paths of the server's disk.
        return cls(
            model,
            name=Path(name_or_dir).name if Path(name_or_dir).is_dir() else str(name_or_dir),
            class_names=model.class_names,
            palette=model.palette,
            **options,
        )

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/models`` reports about the model."""
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "output_stride": self.output_stride,
            "runtime": self.choice.runtime,
            "precision": self.choice.precision,
            "seconds_per_megapixel": (
                None
                if self.cost.seconds_per_pixel is None
                else round(self.cost.seconds_per_pixel * 1e6, 4)
            ),
            "classes": [
                {"index": i, "name": n, "color": list(c)}
                for i, (n, c) in enumerate(zip(self.class_names, self.palette))
            ],
        }

    # -- cost ------------------------------------------------------------------------
    def slides(self, height: int, width: int) -> bool:
        """Whether an image of this size runs through sliding windows."""
        return height * width > self.slide_above_pixels

    def processed_pixels(self, height: int, width: int) -> int:
        """Pixels the network processes for an image: windows overlap, so slide costs more."""
        if not self.slides(height, width):
            return height * width
        stride = max(1, math.ceil(self.window * (1.0 - self.overlap)))
        rows = len(window_starts(height, self.window, stride))
        columns = len(window_starts(width, self.window, stride))
        return rows * columns * self.window * self.window

    def estimate_s(self, height: int, width: int) -> float:
        """Estimated seconds to segment an image of this size on this machine."""
        return self.cost.estimate_s(self.processed_pixels(height, width))

    def largest_within(self, seconds: float) -> int:
        """Pixels of the largest square image estimated to segment within ``seconds``."""
        low, high = 0, 100_000
        while low < high:
            side = (low + high + 1) // 2
            if self.estimate_s(side, side) <= seconds:
                low = side
            else:
                high = side - 1
        return low * low

    def calibrate(self, side: int = 256) -> float:
        """Measure the per-pixel cost on a ``side`` x ``side`` image (after a warm-up run)."""
        image = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
        self.predictor.predict(image)  # first call: allocations, kernel selection
        started = time.perf_counter()
        self.predictor.predict(image)
        elapsed = time.perf_counter() - started
        self.cost.seconds_per_pixel = elapsed / (side * side)
        return elapsed

    # -- segmentation ----------------------------------------------------------------
    def segment(self, image: np.ndarray) -> np.ndarray:
        """``HxW`` labels for an ``HxWx3`` uint8 RGB image."""
        return self.segment_batch([image])[0]

    def segment_batch(
        self, images: list[np.ndarray], cancel: CancelEvent | None = None
    ) -> list[np.ndarray]:
        """Labels for several images: same-sized small ones share forwards, large ones slide.

        Raises:
            Cancelled: ``cancel`` was set; checked before every layer and window.
        """
        _RUNNING.cancel = cancel
        try:
            return self._segment_batch(images, cancel)
        finally:
            _RUNNING.cancel = None

    def _segment_batch(
        self, images: list[np.ndarray], cancel: CancelEvent | None
    ) -> list[np.ndarray]:
        small = [i for i, im in enumerate(images) if not self.slides(*im.shape[:2])]
        results: list[np.ndarray | None] = [None] * len(images)
        if small:
            started = time.perf_counter()
            labels = self.predictor.predict_batch([images[i] for i in small])
            elapsed = time.perf_counter() - started
            self.cost.observe(sum(images[i].shape[0] * images[i].shape[1] for i in small), elapsed)
            for index, mask in zip(small, labels):
                results[index] = mask
        for index, image in enumerate(images):
            if results[index] is None:
                started = time.perf_counter()
                results[index] = self.segment_windows(image, cancel)
                self.cost.observe(
                    self.processed_pixels(*image.shape[:2]), time.perf_counter() - started
                )
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def segment_windows(self, image: np.ndarray, cancel: CancelEvent | None = None) -> np.ndarray:
        """Labels of a large image from overlapping windows, in bounded memory.

        The same windows and the same logit averaging as
        ``Predictor(mode="slide", window=..., overlap=1/3)``, but the windows are
        normalised one at a time from the uint8 image and the logits are accumulated in a
        band one window high that is resolved to labels as it moves down. Memory is then
        ``classes x window x width`` floats instead of ``classes x height x width`` (700 MB
        for 11 classes at 16 megapixels) plus a normalised copy of the whole image.

        Raises:
            Cancelled: ``cancel`` was set; checked before every window.
        """
        from atrous.infer.logits import class_labels, model_logits
        from atrous.infer.predictor import normalize

        height, width = image.shape[:2]
        window = self.window
        stride = max(1, math.ceil(window * (1.0 - self.overlap)))
        tops = window_starts(height, window, stride)
        lefts = window_starts(width, window, stride)
        dtype = np.uint8 if self.num_classes <= 256 else np.int64
        labels = np.empty((height, width), dtype=dtype)
        band_h = min(window, height)
        band: torch.Tensor | None = None
        counts = torch.zeros((band_h, width))
        band_top = 0
        for row, top in enumerate(tops):
            rows = min(window, height - top)
            for left in lefts:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("stopped between sliding windows: nobody waits for it")
                columns = min(window, width - left)
                crop = normalize(image[top : top + rows, left : left + columns])
                # Zero after normalisation = the mean colour: windows stay full-sized.
                crop = F.pad(crop, (0, window - columns, 0, window - rows)).to(self.device)
                logits = model_logits(self.runner(crop)).float()
                if logits.shape[-2:] != crop.shape[-2:]:
                    logits = F.interpolate(
                        logits, size=crop.shape[-2:], mode="bilinear", align_corners=False
                    )
                logits = logits[0, :, :rows, :columns].cpu()
                if band is None:
                    band = torch.zeros((logits.shape[0], band_h, width))
                offset = top - band_top
                band[:, offset : offset + rows, left : left + columns] += logits
                counts[offset : offset + rows, left : left + columns] += 1
            assert band is not None
            done = tops[row + 1] if row + 1 < len(tops) else height
            resolved = done - band_top
            labels[band_top:done] = (
                class_labels(band[:, :resolved] / counts[:resolved], dim=0).numpy().astype(dtype)
            )
            # Shift the band: rows not resolved yet move to its top, the rest is zeroed.
            band = torch.cat([band[:, resolved:], torch.zeros_like(band[:, :resolved])], dim=1)
            counts = torch.cat([counts[resolved:], torch.zeros_like(counts[:resolved])])
            band_top = done
        return labels

    # -- receptive field -------------------------------------------------------------
    def remember_image(self, image_id: str, image: np.ndarray) -> None:
        """Keep the image, shrunk to the analysis grid, for the ERF of later clicks."""
        height, width = image.shape[:2]
        grid, _, scale = analysis_grid((height, width), (0, 0), self.max_analysis_side)
        if scale < 1.0:
            from PIL import Image

            small = Image.fromarray(image).resize((grid[1], grid[0]), Image.Resampling.BILINEAR)
            image = np.asarray(small)
        with self._images_lock:
            self._images[image_id] = (np.ascontiguousarray(image), (height, width))
            self._images.move_to_end(image_id)
            while len(self._images) > 32:
                self._images.popitem(last=False)

    def remembered(self, image_id: str) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The analysis-grid image and the original ``(height, width)`` of an upload."""
        with self._images_lock:
            return self._images.get(image_id)

    def receptive_field(
        self,
        image_size: tuple[int, int],
        location: tuple[int, int],
        image: np.ndarray | None = None,
    ) -> ReceptiveFieldView:
        """Coverage map and effective receptive field of the output pixel ``location``.

        Both are computed for the exact clicked pixel (near a border the field is cut
        off, which is what the network really sees there), on the image's grid shrunk to
        ``max_analysis_side``. Coverage maps depend only on the architecture, the grid
        and the pixel (never on the image or the weights), so they are cached. The ERF
        is the input gradient at ``image`` (the upload on the analysis grid) with the
        model's weights when given, else its mean over random inputs.
        """
        from atrous.analysis import coverage_map, effective_receptive_field

        grid, grid_location, scale = analysis_grid(image_size, location, self.max_analysis_side)
        if image is not None and tuple(image.shape[:2]) != grid:
            raise ValueError(f"image of shape {image.shape[:2]} is not on the grid {grid}")
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
            stage_size, stage_location, _ = analysis_grid(image_size, location, MAX_STAGE_SIDE)
            stages = self._stages_at(stage_size, stage_location)
            if image is None:
                erf = effective_receptive_field(
                    self.model, input_size=grid, samples=self.erf_samples, location=grid_location
                )
            else:
                erf = self._erf_at(image, grid_location)
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
            erf_on_image=image is not None,
            stages=stages,
            stage_size=stage_size,
        )

    def _stages_at(self, size: tuple[int, int], pixel: tuple[int, int]) -> tuple[Any, ...]:
        """The dilated stages' coverage at ``pixel`` (cached: architecture only)."""
        from atrous.analysis.model_report import dilated_stages_at

        key = ("stages", size, pixel)
        stages = self._coverage_cache.get(key)
        if stages is None:
            stages = tuple(dilated_stages_at(self.model, size, pixel))
            self._coverage_cache[key] = stages
            while len(self._coverage_cache) > 64:
                self._coverage_cache.popitem(last=False)
        return stages

    def _erf_at(self, image: np.ndarray, location: tuple[int, int]) -> Any:
        """|d logits(location) / d input| at this image, summed over classes and channels.

        The same quantity as ``atrous.analysis.effective_receptive_field`` (Luo et
        al. 2016), taken at the user's image instead of averaged over noise: what this
        trained network attends to for this photo.
        """
        from atrous.analysis.erf import ERF
        from atrous.infer.logits import model_logits
        from atrous.infer.predictor import normalize

        x = normalize(image).to(self.device).requires_grad_(True)
        with torch.enable_grad():
            out = model_logits(self.model(x))
            out_h, out_w = out.shape[-2:]
            height, width = image.shape[:2]
            loc = (
                min(out_h - 1, location[0] * out_h // height),
                min(out_w - 1, location[1] * out_w // width),
            )
            (grad,) = torch.autograd.grad(out[0, :, loc[0], loc[1]].sum(), x)
        total = grad[0].abs().sum(dim=0).double().cpu().numpy()
        mass = total.sum()
        centre = tuple(
            (v + 0.5) * n / m - 0.5 for v, n, m in zip(loc, (height, width), (out_h, out_w))
        )
        return ERF(map=total / mass if mass > 0 else total, location=loc, centre=centre, samples=1)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of the sliding windows (the predictor's rule, one source)."""
    from atrous.infer.predictor import window_starts as starts

    return starts(length, window, stride)
