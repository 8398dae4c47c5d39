"""Metrics against a confusion matrix computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from atrous.engine.metrics import ConfusionMatrix, boundary_f1

# gt:   0 0 1 1 2 255     pred: 0 1 1 1 0 2
GT = torch.tensor([0, 0, 1, 1, 2, 255])
PRED = torch.tensor([0, 1, 1, 1, 0, 2])


def test_confusion_matrix_and_metrics_by_hand() -> None:
    cm = ConfusionMatrix(4)
    cm.update(PRED, GT)
    # rows = gt, cols = pred; the ignored pixel is left out; class 3 never occurs.
    assert cm.matrix.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    iou = cm.per_class_iou()
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert math.isnan(iou[3]) and cm.absent_classes() == [3]
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert cm.pixel_acc() == pytest.approx(3 / 5)
    assert cm.mean_class_acc() == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert cm.fw_iou() == pytest.approx(2 / 5 * 1 / 3 + 2 / 5 * 2 / 3 + 1 / 5 * 0)


def test_batches_accumulate_like_one_update() -> None:
    gt = torch.randint(0, 5, (3, 9, 11))
    pred = torch.randint(0, 5, (3, 9, 11))
    whole, parts = ConfusionMatrix(5), ConfusionMatrix(5)
    whole.update(pred, gt)
    for i in range(3):
        parts.update(pred[i], gt[i])
    assert torch.equal(whole.matrix, parts.matrix)


def test_out_of_range_labels_are_an_error_not_dropped() -> None:
    with pytest.raises(ValueError, match=r"target labels \[7\] are outside \[0, 4\)"):
        ConfusionMatrix(4).update(torch.tensor([0, 1]), torch.tensor([7, 1]))


def test_boundary_f1() -> None:
    gt = torch.zeros(20, 20, dtype=torch.long)
    gt[:, 10:] = 1
    assert boundary_f1(gt, gt) == 1.0
    shifted = torch.zeros_like(gt)
    shifted[:, 12:] = 1  # edge 2 px away: inside a tolerance of 2, outside one of 1
    assert boundary_f1(shifted, gt, tolerance=2) == 1.0
    assert boundary_f1(shifted, gt, tolerance=1) == 0.0
    blank = torch.zeros_like(gt)  # no predicted boundary: recall 0
    assert boundary_f1(blank, gt) == 0.0
    half = gt.clone()
    half[10:, 10:] = 0
    # Predicted edges: column 9 of rows 0-9 (10 px, correct) + row 9 of columns 10-19
    # (10 px, wrong): precision 10/20. Ground-truth edge: column 9, 20 px, half found.
    assert boundary_f1(half, gt, tolerance=0) == pytest.approx(0.5)
