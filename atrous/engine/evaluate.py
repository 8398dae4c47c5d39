"""Evaluate a model on a dataset: whole image, sliding window, or multi-scale + flip.

``evaluate(model, dataset, num_classes=11)`` returns an ``EvalResult``, a
dict-like of metrics (``result["miou"]``) with a per-class table; ``result.table()``
is the terminal view and ``result.to_dict()`` the JSON one. Inputs are batches of
normalised images as the datasets in ``atrous.data`` yield them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from atrous.constants import IGNORE_INDEX
from atrous.engine.metrics import BoundaryF1, ConfusionMatrix
from atrous.infer.predictor import Predictor

Mode = Literal["whole", "slide", "ms_flip"]
MODES = ("whole", "slide", "ms_flip")


def make_predictor(
    model: nn.Module | Callable[[Tensor], Any],
    device: str | torch.device,
    *,
    mode: Mode = "whole",
    window: int = 512,
    overlap: float = 0.33,
    scales: Sequence[float] = (0.75, 1.0, 1.25),
) -> Predictor:
    """The ``atrous.infer.Predictor`` for an evaluation mode.

    The modes are the predictor's, so evaluation scores exactly what ``atrous predict``
    produces: ``"slide"`` averages the logits of overlapping ``window`` tiles (memory
    bounded by a tile), ``"ms_flip"`` averages the softmax over ``scales`` and their
    horizontal flips (DeepLab's test-time augmentation).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    return Predictor(
        model,
        device=device,
        mode="slide" if mode == "slide" else "whole",
        window=window,
        overlap=overlap,
        scales=tuple(scales) if mode == "ms_flip" else (1.0,),
        flip=mode == "ms_flip",
    )


@torch.no_grad()
def predict_batch(
    model: nn.Module,
    x: Tensor,
    *,
    mode: Mode = "whole",
    window: int = 512,
    overlap: float = 0.33,
    scales: Sequence[float] = (0.75, 1.0, 1.25),
) -> Tensor:
    """Label maps ``(N, H, W)`` for a normalised batch ``(N, 3, H, W)``; see ``make_predictor``."""
    predictor = make_predictor(
        model, x.device, mode=mode, window=window, overlap=overlap, scales=scales
    )
    return predictor.predict_tensor(x)


@dataclass
class EvalResult:
    """Metrics of one evaluation; ``result["miou"]`` etc., plus a per-class table.

    ``per_class`` rows: ``name``, ``iou``, ``acc`` (NaN where undefined), ``gt_pixels``,
    ``pred_pixels`` and ``note`` (``"absent"`` for classes in neither prediction nor
    ground truth, which the mean IoU leaves out).
    """

    metrics: dict[str, float]
    per_class: list[dict[str, Any]]
    confusion: ConfusionMatrix
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.metrics)

    def keys(self) -> Iterable[str]:
        return self.metrics.keys()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN becomes None."""

        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and math.isnan(value) else value

        return {
            "metrics": {k: clean(v) for k, v in self.metrics.items()},
            "per_class": [{k: clean(v) for k, v in row.items()} for row in self.per_class],
            "confusion_matrix": self.confusion.matrix.tolist(),
            "notes": self.notes,
        }

    def table(self) -> str:
        """Aligned per-class table and the summary metrics, for the terminal."""
        width = max([len(str(row["name"])) for row in self.per_class] + [5])
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}  {'GT pixels':>10}"]
        for row in self.per_class:
            iou = "   n/a" if math.isnan(row["iou"]) else f"{100 * row['iou']:6.2f}"
            acc = "   n/a" if math.isnan(row["acc"]) else f"{100 * row['acc']:6.2f}"
            note = f"  ({row['note']})" if row["note"] else ""
            lines.append(f"{row['name']:<{width}}  {iou}  {acc}  {row['gt_pixels']:>10}{note}")
        lines.append("")
        for key, value in self.metrics.items():
            shown = f"{100 * value:.2f}" if key != "images" else f"{int(value)}"
            lines.append(f"{key:<16} {shown}")
        lines.extend(self.notes)
        return "\n".join(lines)


def evaluate(
    model: nn.Module | Callable[[Tensor], Any],
    data: Dataset | DataLoader,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    mode: Mode = "whole",
    window: int = 512,
    overlap: float = 0.33,
    scales: Sequence[float] = (0.75, 1.0, 1.25),
    boundary_tolerance: int = 2,
    class_names: Sequence[str] | None = None,
    device: str | torch.device | None = None,
    max_samples: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Run ``model`` over ``data`` and compute confusion-matrix and boundary metrics.

    Args:
        model: returns logits ``(N, C, H, W)`` (or ``{"out": ...}``): a module, or a
            runner from ``atrous.infer.runtime.build_runner`` (int8, bf16, OpenVINO).
        data: a dataset of ``(image, mask)`` pairs (evaluated one image at a time, so
            sizes may differ) or a DataLoader yielding batches.
        num_classes: classes of the confusion matrix.
        ignore_index: ground-truth label left out.
        mode: ``"whole"``, ``"slide"`` (``window``, ``overlap``) or ``"ms_flip"`` (``scales``).
        boundary_tolerance: pixels of slack for the boundary F-score.
        class_names: names for the table (default ``class0``...).
        device: where to run; default the model's device.
        max_samples: stop after this many images (quick checks).
        progress: show a tqdm bar.

    Example:
        ```python
        import tempfile

        import atrous
        from atrous.data import build_dataset
        from atrous.data.synthetic import generate
        from atrous.engine import evaluate

        dataset = build_dataset("folder", generate(tempfile.mkdtemp(), train=0, val=2, size=64),
                                split="val")
        model = atrous.build_model("dilated_net", num_classes=dataset.num_classes, width=8)
        result = evaluate(model, dataset, num_classes=dataset.num_classes,
                          class_names=dataset.class_names)
        print(f"mIoU {result['miou']:.3f}", [(row["name"], row["iou"]) for row in result.per_class])
        ```
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
    module = model if isinstance(model, nn.Module) else None  # else a runner (int8, ORT...)
    if device is None:
        device = next(module.parameters()).device if module is not None else "cpu"
    was_training = module is not None and module.training
    if module is not None:
        module.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    boundary = BoundaryF1(tolerance=boundary_tolerance, ignore_index=ignore_index)
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=1)
    total = len(loader.dataset) if max_samples is None else min(max_samples, len(loader.dataset))  # type: ignore[arg-type]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"eval ({mode})", unit="img", leave=False)
    predictor = make_predictor(
        model, device, mode=mode, window=window, overlap=overlap, scales=scales
    )
    seen = 0
    with torch.no_grad():
        for images, masks in loader:
            if seen >= total:
                break
            images, masks = images[: total - seen], masks[: total - seen]
            pred = predictor.predict_tensor(images).cpu()
            confusion.update(pred, masks)
            boundary.update(pred, masks)
            seen += images.shape[0]
            if bar is not None:
                bar.update(images.shape[0])
    if bar is not None:
        bar.close()
    if module is not None:
        module.train(was_training)
    names = (
        list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
    )
    return _result(confusion, boundary, names, seen)


def _result(
    confusion: ConfusionMatrix, boundary: BoundaryF1, names: list[str], seen: int
) -> EvalResult:
    """Per-class rows, notes and summary metrics from the accumulated counts."""
    iou, acc = confusion.per_class_iou(), confusion.per_class_acc()
    gt, predicted = confusion.matrix.sum(1), confusion.matrix.sum(0)
    per_class = [
        {
            "name": names[c],
            "iou": float(iou[c]),
            "acc": float(acc[c]),
            "gt_pixels": int(gt[c]),
            "pred_pixels": int(predicted[c]),
            "note": "absent" if math.isnan(float(iou[c])) else "",
        }
        for c in range(confusion.num_classes)
    ]
    notes = []
    absent = confusion.absent_classes()
    if absent:
        notes.append(
            f"note: {len(absent)} class(es) absent from both prediction and ground truth "
            f"({', '.join(names[c] for c in absent)}) have no IoU and are left out of mIoU"
        )
    metrics = {
        "miou": confusion.miou(),
        "pixel_acc": confusion.pixel_acc(),
        "mean_class_acc": confusion.mean_class_acc(),
        "fw_iou": confusion.fw_iou(),
        "boundary_f1": boundary.compute(),
        "images": float(seen),
    }
    return EvalResult(metrics=metrics, per_class=per_class, confusion=confusion, notes=notes)


def agreement(
    reference: Callable[[torch.Tensor], torch.Tensor],
    candidate: Callable[[torch.Tensor], torch.Tensor],
    samples: Iterable[tuple[torch.Tensor, torch.Tensor | None]],
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Any]:
    """Pixel agreement of ``candidate``'s labels with ``reference``'s, and both mIoUs where
    the samples carry masks.

    Args:
        reference, candidate: runners (``x -> logits``) of the same model.
        samples: ``(image, mask)`` pairs, ``image`` normalised ``CxHxW`` or ``1xCxHxW``;
            ``mask`` None for unlabelled images.
        num_classes, ignore_index: for the confusion matrices.
        progress: called with 1 after each image.

    Returns:
        ``images``, ``pixel_agreement``, the worst image's ``min_pixel_agreement``, and
        ``miou_fp32``/``miou_int8`` (None without masks).
    """
    from atrous.infer.logits import class_labels, model_logits

    matrices = [ConfusionMatrix(num_classes, ignore_index=ignore_index) for _ in range(2)]
    same = total = images = 0
    worst = 1.0
    labelled = True
    with torch.inference_mode():
        for image, mask in samples:
            x = image if image.dim() == 4 else image[None]
            want = class_labels(model_logits(reference(x)).float())
            got = class_labels(model_logits(candidate(x)).float())
            equal = int((want == got).sum())
            same, total, images = same + equal, total + want.numel(), images + 1
            worst = min(worst, equal / want.numel())
            if mask is None:
                labelled = False
            else:
                target = mask if mask.dim() == 3 else mask[None]
                matrices[0].update(want, target)
                matrices[1].update(got, target)
            if progress is not None:
                progress(1)
    if images == 0:
        raise ValueError("no images to measure agreement on")
    return {
        "images": images,
        "pixel_agreement": same / total,
        "min_pixel_agreement": worst,
        "miou_fp32": matrices[0].miou() if labelled else None,
        "miou_int8": matrices[1].miou() if labelled else None,
    }
