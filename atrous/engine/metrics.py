"""Segmentation metrics from a confusion matrix, and a boundary F-score.

The confusion matrix ``M[gt, pred]`` is accumulated over a whole split before any
ratio is taken (averaging per-image IoUs overweights small images). Per-class IoU is
``M[c, c] / (row_c + col_c - M[c, c])``. A class absent from both the ground truth and
the predictions has no defined IoU: it is reported as NaN and left out of the mean,
the convention of the VOC and Cityscapes evaluation scripts.

The boundary F-score (Csurka et al., BMVC 2013) asks what region metrics cannot: are
the object *edges* in the right place, within ``tolerance`` pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from atrous.constants import IGNORE_INDEX


class ConfusionMatrix:
    """Accumulates ``M[gt, pred]`` counts over batches.

    Args:
        num_classes: number of classes.
        ignore_index: ground-truth label excluded from every metric.

    Ground-truth values outside ``[0, num_classes)`` other than the ignore index raise
    (a silently dropped label hides a broken dataset), as do predictions out of range.

    Example:
        ```python
        import torch

        from atrous.engine import ConfusionMatrix

        matrix = ConfusionMatrix(2)
        matrix.update(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 255]]))  # 255: ignored
        print(matrix.per_class_iou().tolist(), matrix.miou())  # [0.5, 0.5] 0.5
        ```
    """

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are integer label maps of the same shape."""
        if pred.shape != target.shape:
            raise ValueError(
                f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
            )
        pred = pred.reshape(-1).long().cpu()
        target = target.reshape(-1).long().cpu()
        valid = target != self.ignore_index
        bad = valid & ((target < 0) | (target >= self.num_classes))
        if bad.any():
            values = sorted(set(target[bad].unique().tolist()))[:10]
            raise ValueError(
                f"target labels {values} are outside [0, {self.num_classes}) and not the "
                f"ignore index {self.ignore_index}"
            )
        pred, target = pred[valid], target[valid]
        if pred.numel() and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise ValueError(f"predictions must lie in [0, {self.num_classes})")
        counts = torch.bincount(target * self.num_classes + pred, minlength=self.num_classes**2)
        self.matrix += counts.reshape(self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    @property
    def _float(self) -> Tensor:
        return self.matrix.double()

    def per_class_iou(self) -> Tensor:
        """IoU per class; NaN where the class is absent from both prediction and truth."""
        m = self._float
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))

    def per_class_acc(self) -> Tensor:
        """Recall per class; NaN where the class has no ground-truth pixel."""
        m = self._float
        gt = m.sum(1)
        return torch.where(gt > 0, m.diag() / gt.clamp(min=1), torch.full_like(gt, math.nan))

    def absent_classes(self) -> list[int]:
        """Classes in neither prediction nor ground truth (excluded from the mean IoU)."""
        return [int(i) for i in torch.nonzero(self.per_class_iou().isnan()).flatten()]

    def miou(self) -> float:
        """Mean IoU over the classes present in prediction or ground truth."""
        iou = self.per_class_iou()
        return float(iou.nanmean()) if (~iou.isnan()).any() else math.nan

    def pixel_acc(self) -> float:
        total = self.matrix.sum()
        return float(self.matrix.diag().sum() / total) if total else math.nan

    def mean_class_acc(self) -> float:
        """Mean per-class recall over classes with ground-truth pixels."""
        acc = self.per_class_acc()
        return float(acc.nanmean()) if (~acc.isnan()).any() else math.nan

    def fw_iou(self) -> float:
        """Frequency-weighted IoU: per-class IoU weighted by ground-truth pixel share."""
        m = self._float
        total = m.sum()
        if total == 0:
            return math.nan
        freq = m.sum(1) / total
        iou = self.per_class_iou().nan_to_num(0.0)
        return float((freq * iou).sum())


def _boundaries(labels: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """Pixels whose right or lower neighbour has another label, and the ignore mask."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    edge[..., :, :-1] |= labels[..., :, :-1] != labels[..., :, 1:]
    edge[..., :-1, :] |= labels[..., :-1, :] != labels[..., 1:, :]
    return edge, labels == ignore_index


def _dilate(mask: Tensor, radius: int) -> Tensor:
    if radius <= 0:
        return mask
    x = mask[None, None].float() if mask.dim() == 2 else mask[:, None].float()
    out = F.max_pool2d(x, kernel_size=2 * radius + 1, stride=1, padding=radius) > 0
    return out[0, 0] if mask.dim() == 2 else out[:, 0]


class BoundaryF1:
    """Accumulates boundary precision/recall counts over many images (class-agnostic).

    A predicted boundary pixel is correct if a ground-truth boundary lies within
    ``tolerance`` pixels (Chebyshev distance), and vice versa for recall. Pixels at or
    next to the ignore label are left out of both.
    """

    def __init__(self, *, tolerance: int = 2, ignore_index: int = IGNORE_INDEX) -> None:
        self.tolerance = tolerance
        self.ignore_index = ignore_index
        self.matched_pred = self.total_pred = self.matched_gt = self.total_gt = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        pred, target = pred.long().cpu(), target.long().cpu()
        gt_edge, ignored = _boundaries(target, self.ignore_index)
        pred_edge, _ = _boundaries(pred, self.ignore_index)
        keep = ~_dilate(ignored, 1)
        gt_edge, pred_edge = gt_edge & keep, pred_edge & keep
        self.matched_pred += int((pred_edge & _dilate(gt_edge, self.tolerance)).sum())
        self.total_pred += int(pred_edge.sum())
        self.matched_gt += int((gt_edge & _dilate(pred_edge, self.tolerance)).sum())
        self.total_gt += int(gt_edge.sum())

    def compute(self) -> float:
        """F1 of boundary precision and recall; 1.0 when neither has any boundary."""
        if self.total_pred == 0 and self.total_gt == 0:
            return 1.0
        precision = self.matched_pred / self.total_pred if self.total_pred else 0.0
        recall = self.matched_gt / self.total_gt if self.total_gt else 0.0
        if precision + recall == 0:
            return 0.0
        return 2 * precision * recall / (precision + recall)


def boundary_f1(
    pred: Tensor, target: Tensor, *, tolerance: int = 2, ignore_index: int = IGNORE_INDEX
) -> float:
    """Boundary F-score of one label map (or a batch) against the ground truth."""
    meter = BoundaryF1(tolerance=tolerance, ignore_index=ignore_index)
    meter.update(pred, target)
    return meter.compute()
