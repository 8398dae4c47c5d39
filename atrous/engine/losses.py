"""Segmentation loss: cross-entropy with the ignore index, class weights, OHEM, aux loss."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atrous.constants import IGNORE_INDEX


class SegmentationLoss(nn.Module):
    """Cross-entropy over labelled pixels plus ``aux_weight`` x the auxiliary head's loss.

    Args:
        ignore_index: label contributing nothing.
        class_weights: optional per-class weights (e.g. median frequency balancing).
        ohem_thresh: online hard example mining (Wu et al., 2016, arXiv:1604.04339;
            PSPNet/mmseg's form): average only over pixels whose predicted probability
            of the true class is below this, keeping at least ``ohem_min_kept`` of the
            hardest. ``None`` disables it.
        ohem_min_kept: lower bound on the pixels kept per batch.
        aux_weight: weight of the ``"aux"`` output's loss (PSPNet's 0.4).
    """

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE_INDEX,
        class_weights: Sequence[float] | Tensor | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 10000,
        aux_weight: float = 0.4,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        weight = (
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        )
        self.register_buffer("class_weights", weight, persistent=False)
        self.ohem_thresh = ohem_thresh
        self.ohem_min_kept = ohem_min_kept
        self.aux_weight = aux_weight

    def single(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of one output ``(N, C, H, W)`` against ``(N, H, W)`` labels."""
        logits = logits.float()
        weight = self.class_weights
        if self.ohem_thresh is None:
            return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
        pixel_loss = F.cross_entropy(
            logits, target, weight=weight, ignore_index=self.ignore_index, reduction="none"
        ).flatten()
        valid = (target != self.ignore_index).flatten()
        if not valid.any():
            return pixel_loss.sum() * 0.0
        with torch.no_grad():
            safe_target = target.masked_fill(target == self.ignore_index, 0)
            prob = logits.softmax(1).gather(1, safe_target[:, None]).flatten()
            prob = prob.masked_fill(~valid, float("inf"))
            threshold = torch.tensor(self.ohem_thresh, device=logits.device)
            kept = int(min(self.ohem_min_kept, int(valid.sum())))
            if kept > 0:
                kth = prob.kthvalue(kept).values
                threshold = torch.maximum(threshold, kth)
            hard = valid & (prob <= threshold)
        return pixel_loss[hard].mean()

    def forward(self, outputs: Tensor | dict[str, Tensor], target: Tensor) -> Tensor:
        if isinstance(outputs, Tensor):
            return self.single(outputs, target)
        loss = self.single(outputs["out"], target)
        if "aux" in outputs and self.aux_weight > 0:
            loss = loss + self.aux_weight * self.single(outputs["aux"], target)
        return loss


def poly_lr_factor(
    iteration: int,
    total: int,
    *,
    warmup_iters: int = 0,
    warmup_ratio: float = 0.1,
    power: float = 0.9,
) -> float:
    """DeepLab's poly schedule ``(1 - t/T) ** power`` after a linear warm-up.

    During the first ``warmup_iters`` the factor rises linearly from ``warmup_ratio`` to
    1, which keeps the large early gradients of a fresh head from wrecking pretrained
    features (Goyal et al., 2017).
    """
    if warmup_iters > 0 and iteration < warmup_iters:
        return warmup_ratio + (1 - warmup_ratio) * iteration / warmup_iters
    span = max(1, total - warmup_iters)
    progress = min(1.0, (iteration - warmup_iters) / span)
    return (1 - progress) ** power
