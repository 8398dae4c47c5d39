"""Whole-image and sliding-window prediction with multi-scale and flip test-time augmentation.

Sliding windows are how dilated networks are run on images larger than the crops they
were trained on (DeepLab, PSPNet and mmsegmentation all evaluate Cityscapes that way):
memory stays bounded by the window, not the image, and every pixel still sees a full
window of context. Overlapping windows are averaged in logit space; scales and flips are
averaged in probability space, as in DeepLab's multi-scale inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from atrous.constants import IMAGENET_MEAN, IMAGENET_STD
from atrous.infer.fast import prepare_for_cpu
from atrous.infer.logits import class_labels, model_logits

Mode = Literal["whole", "slide"]

__all__ = ["Mode", "Predictor", "model_logits", "normalize", "window_starts"]


def normalize(image: np.ndarray) -> torch.Tensor:
    """``HxWx3`` uint8 RGB -> ``1x3xHxW`` float32 normalised with ImageNet's statistics."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"expected an HxWx3 uint8 RGB image, got shape {image.shape} dtype {image.dtype}"
        )
    if not image.flags.writeable:  # e.g. np.asarray(PIL image); torch wants writable memory
        image = image.copy()
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of size ``window`` covering ``0..length``; the last window
    is flush with the end so no window hangs over the border (unless length < window)."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    starts.append(length - window)
    return starts


class Predictor:
    """Runs a segmentation model on RGB images and returns label maps or probabilities.

    Args:
        model: an ``nn.Module`` (or any callable taking an ``NxCxHxW`` float tensor and
            returning logits, e.g. an ONNX Runtime wrapper); outputs smaller than the input
            are resized bilinearly.
        device: torch device of the model and the inputs.
        mode: ``"whole"`` (one forward per image) or ``"slide"`` (windows of ``window``
            pixels, memory bounded by the window).
        window: sliding-window side in pixels.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.
        scales: input scales averaged for multi-scale TTA (``(1.0,)`` = none).
        flip: also average the horizontally flipped prediction.
        batch_size: windows per forward in slide mode; images per forward in
            ``predict_batch`` for whole mode.
        fast: run ``atrous.infer.fast.prepare_for_cpu`` on the model first (CPU only).

    Example:
        ```python
        import numpy as np

        from atrous.infer import Predictor
        from atrous.models import build_model

        model = build_model("dilated_net", num_classes=3, width=8, rates=(1, 2, 4))
        image = np.zeros((48, 64, 3), dtype=np.uint8)  # HxWx3 uint8 RGB
        labels = Predictor(model).predict(image)
        print(labels.shape, labels.dtype)
        windows = Predictor(model, mode="slide", window=32)  # bounded memory
        print(windows.predict_proba(image).shape)  # CxHxW probabilities
        ```
    """

    def __init__(
        self,
        model: nn.Module | Callable[[torch.Tensor], object],
        *,
        device: str | torch.device = "cpu",
        mode: Mode = "whole",
        window: int = 512,
        overlap: float = 1 / 3,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        batch_size: int = 1,
        fast: bool = False,
    ) -> None:
        if mode not in ("whole", "slide"):
            raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
        if window < 1:
            raise ValueError(f"window must be >= 1 pixel, got {window}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must lie in [0, 1), got {overlap}")
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive, got {tuple(scales)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        if isinstance(model, nn.Module):
            model = model.eval().to(self.device)
            if fast:
                if self.device.type != "cpu":
                    raise ValueError("fast=True prepares the model for the CPU; use device='cpu'")
                model = prepare_for_cpu(model)
        elif fast:
            raise ValueError("fast=True needs an nn.Module")
        self.model = model
        self.mode: Mode = mode
        self.window = int(window)
        self.overlap = float(overlap)
        self.stride = max(1, math.ceil(self.window * (1.0 - self.overlap)))
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.batch_size = int(batch_size)

    # -- public API ------------------------------------------------------------------
    def predict(self, image: np.ndarray) -> np.ndarray:
        """Label map ``HxW`` int64 for one ``HxWx3`` uint8 RGB image."""
        return self.predict_batch([image])[0]

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Class probabilities ``CxHxW`` float32 for one ``HxWx3`` uint8 RGB image."""
        return self.predict_proba_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps for several images (same-sized images share forwards in whole mode)."""
        return self._run(images, labels=True)

    def predict_proba_batch(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Probabilities for several images; see ``predict_proba``."""
        return self._run(images, labels=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores ``NxCxHxW`` for a batch already normalised (as the datasets yield it).

        Logits for a single view; with scales or flip, the mean of their softmax
        probabilities. Same-sized images only; the evaluation engine uses this.
        """
        return self._tta_scores(x.to(self.device), labels=True)

    def predict_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps ``NxHxW`` for a normalised batch; see ``scores``."""
        return class_labels(self.scores(x))

    # -- internals -------------------------------------------------------------------
    def _run(self, images: Sequence[np.ndarray], *, labels: bool) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(tuple(image.shape[:2]), []).append(index)
        step = self.batch_size if self.mode == "whole" else 1
        for indices in groups.values():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                x = torch.cat([normalize(images[i]) for i in chunk]).to(self.device)
                scores = self._tta_scores(x, labels=labels)
                if labels:
                    scores = class_labels(scores)
                array = scores.cpu().numpy()
                for row, index in enumerate(chunk):
                    results[index] = array[row]
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = model_logits(self.model(x)).float()
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def _tta_scores(self, x: torch.Tensor, *, labels: bool) -> torch.Tensor:
        """Averaged class probabilities; with ``labels`` and a single view, the logits
        themselves (same argmax, and no second ``CxHxW`` tensor for a large image)."""
        height, width = x.shape[-2:]
        single_view = len(self.scales) == 1 and not self.flip
        total: torch.Tensor | None = None
        count = 0
        for scale in self.scales:
            if scale == 1.0:
                scaled = x
            else:
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            for flipped in (False, True) if self.flip else (False,):
                view = scaled.flip(-1) if flipped else scaled
                logits = self._mode_logits(view)
                if flipped:
                    logits = logits.flip(-1)
                if logits.shape[-2:] != (height, width):
                    logits = F.interpolate(
                        logits, size=(height, width), mode="bilinear", align_corners=False
                    )
                if labels and single_view:
                    return logits
                probabilities = logits.softmax(dim=1)
                total = probabilities if total is None else total.add_(probabilities)
                count += 1
        assert total is not None
        return total.div_(count)

    def _mode_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "whole":
            return self._forward(x)
        return torch.cat([self._slide(x[i : i + 1]) for i in range(x.shape[0])])

    def _slide(self, x: torch.Tensor) -> torch.Tensor:
        """Average the logits of overlapping windows; memory ~ one batch of windows plus
        the ``CxHxW`` accumulator."""
        height, width = x.shape[-2:]
        pad_h, pad_w = max(0, self.window - height), max(0, self.window - width)
        if pad_h or pad_w:
            # Zero after normalisation = the mean colour; keeps every window full-sized.
            x = F.pad(x, (0, pad_w, 0, pad_h))
        full_h, full_w = x.shape[-2:]
        boxes = [
            (top, left)
            for top in window_starts(full_h, self.window, self.stride)
            for left in window_starts(full_w, self.window, self.stride)
        ]
        accumulator: torch.Tensor | None = None
        counts = torch.zeros((1, 1, full_h, full_w), device=x.device)
        for start in range(0, len(boxes), self.batch_size):
            chunk = boxes[start : start + self.batch_size]
            crops = torch.cat(
                [x[:, :, t : t + self.window, le : le + self.window] for t, le in chunk]
            )
            logits = self._forward(crops)
            if accumulator is None:
                accumulator = torch.zeros(
                    (1, logits.shape[1], full_h, full_w), device=x.device, dtype=torch.float32
                )
            for row, (top, left) in enumerate(chunk):
                accumulator[:, :, top : top + self.window, left : left + self.window] += logits[
                    row : row + 1
                ]
                counts[:, :, top : top + self.window, left : left + self.window] += 1
        assert accumulator is not None
        return (accumulator / counts)[:, :, :height, :width]
